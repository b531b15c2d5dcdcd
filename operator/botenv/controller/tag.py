"""One reconcile of a ModelTag: its resolution, history and the environments using it."""

from __future__ import annotations

import asyncio
import logging

from botenv.api import SpecError, parse_tag
from botenv.controller.state import State, tag_of
from botenv.render import conditions as cond

log = logging.getLogger(__name__)


def users(state: State, namespace: str, name: str) -> list[str]:
    return sorted(b["metadata"]["name"] for b in state.all_environments()
                  if b["metadata"]["namespace"] == namespace and tag_of(b) == name
                  and not b["metadata"].get("deletionTimestamp"))


def tag_status(previous: dict, *, model: str | None, problem: str, environments: list[str],
               generation: int, history_limit: int, timestamp: str) -> dict:
    """Pure: the tag's next status. `model` is the model it now resolves to, or None when
    the spec cannot be applied (the last good resolution then stays in force)."""
    status = {k: v for k, v in previous.items()
              if k in ("model", "digest", "size", "resolvedAt", "history")}
    if model is not None and model != previous.get("model"):
        history = list(previous.get("history") or [])
        if previous.get("model"):
            entry = {k: previous[k] for k in ("model", "digest", "resolvedAt") if k in previous}
            history = [entry, *history]
        status = {"model": model, "resolvedAt": timestamp,
                  "history": history[:history_limit]}
    status["environments"] = environments
    status["observedGeneration"] = generation
    if problem:
        ready = cond.condition(cond.READY, False, "InvalidSpec", problem, generation)
    else:
        ready = cond.condition(cond.READY, True, "Resolved",
                               f"tag points to model {status['model']}", generation)
    status["conditions"] = cond.merge(previous.get("conditions"), [ready], timestamp)
    return status


async def reconcile(state: State, namespace: str, name: str) -> None:
    body = state.tag(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    previous = body.get("status") or {}
    try:
        model, problem = parse_tag(body).model, ""
    except SpecError as exc:
        model, problem = None, str(exc)
    timestamp = cond.now()
    status = tag_status(previous, model=model, problem=problem,
                        environments=users(state, namespace, name),
                        generation=body["metadata"].get("generation", 0),
                        history_limit=state.settings.history_limit, timestamp=timestamp)
    if status == previous:
        return
    await asyncio.to_thread(_report, state, body, previous, status, timestamp)


def _report(state: State, body: dict, previous: dict, status: dict, timestamp: str) -> None:
    meta = body["metadata"]
    patch = {**status, "digest": status.get("digest"), "size": status.get("size")}
    state.remember(state.kube.patch_status("ModelTag", meta["namespace"], meta["name"], patch))
    old, new = previous.get("model"), status.get("model")
    if new != old:
        users_ = ", ".join(status["environments"]) or "none"
        message = (f"moved from {old} to {new}" if old else f"points to {new}")
        state.kube.event(body, "Normal", "Moved", f"{message}; environments: {users_}", timestamp)
        log.info("ModelTag %s/%s %s", meta["namespace"], meta["name"], message)
    ready = cond.get(status["conditions"], cond.READY)
    if ready.get("status") == "False" and ready != cond.get(previous.get("conditions"),
                                                            cond.READY):
        state.kube.event(body, "Warning", ready["reason"], ready["message"], timestamp)
