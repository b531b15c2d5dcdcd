"""One reconcile of a ModelTag: its resolution, history and the environments using it."""

from __future__ import annotations

import asyncio
import logging

from botenv.api import SpecError, parse_tag
from botenv.controller.resolve import Unresolved
from botenv.controller.state import State, tag_of
from botenv.render import conditions as cond
from botenv.storage import ObjectInfo

log = logging.getLogger(__name__)


# What one resolution of a tag is made of; a history entry keeps the same fields.
RESOLVED = ("model", "digest", "size", "resolvedAt", "actionServerImage", "history")
HISTORY_FIELDS = ("model", "digest", "size", "resolvedAt", "actionServerImage")


def users(state: State, namespace: str, name: str) -> list[str]:
    return sorted(b["metadata"]["name"] for b in state.all_environments()
                  if b["metadata"]["namespace"] == namespace and tag_of(b) == name
                  and not b["metadata"].get("deletionTimestamp"))


def tag_status(previous: dict, *, resolved: ObjectInfo | None, model: str,
               problem: Unresolved | None, environments: list[str], generation: int,
               history_limit: int, timestamp: str, action_server_image: str = "") -> dict:
    """Pure: the tag's next status. `resolved` is what storage says about `model`, or None
    when it could not be resolved: the last good resolution then stays in force. The action
    server image moves with the model, never before it resolves."""
    status = {k: v for k, v in previous.items() if k in RESOLVED}
    current = (previous.get("model"), previous.get("digest"),
               previous.get("actionServerImage", ""))
    if resolved is not None and (model, resolved.digest, action_server_image) != current:
        history = list(previous.get("history") or [])
        if previous.get("model"):
            history = [{k: previous[k] for k in HISTORY_FIELDS if previous.get(k)}, *history]
        status = {"model": model, "digest": resolved.digest, "size": resolved.size,
                  "resolvedAt": timestamp, "history": history[:history_limit]}
        if action_server_image:
            status["actionServerImage"] = action_server_image
    status["environments"] = environments
    status["observedGeneration"] = generation
    if problem is not None:
        kept = (f"; the tag stays on {status['model']}" if status.get("model")
                else "; no environment can start until it resolves")
        ready = cond.condition(cond.READY, False, problem.reason, problem.message + kept,
                               generation)
    else:
        ready = cond.condition(cond.READY, True, "Resolved",
                               f"model {status['model']} (digest {status['digest']})",
                               generation)
    status["conditions"] = cond.merge(previous.get("conditions"), [ready], timestamp)
    return status


async def reconcile(state: State, namespace: str, name: str) -> None:
    body = state.tag(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        state.resolver.forget(namespace, name)
        return
    previous = body.get("status") or {}
    resolved, problem, model = None, None, previous.get("model", "")
    image = previous.get("actionServerImage", "")
    try:
        spec = parse_tag(body)
        model, image = spec.model, spec.action_server_image
        resolved = await asyncio.to_thread(state.resolver.resolve, namespace, name, spec)
    except SpecError as exc:
        problem = Unresolved("InvalidSpec", str(exc))
    except Unresolved as exc:
        problem = exc
    timestamp = cond.now()
    status = tag_status(previous, resolved=resolved, model=model, problem=problem,
                        environments=users(state, namespace, name),
                        generation=body["metadata"].get("generation", 0),
                        history_limit=state.settings.history_limit, timestamp=timestamp,
                        action_server_image=image)
    if status != previous:
        await asyncio.to_thread(_report, state, body, previous, status, timestamp)
    if problem is not None and problem.retry:
        raise problem  # the work queue retries with backoff


def _report(state: State, body: dict, previous: dict, status: dict, timestamp: str) -> None:
    meta = body["metadata"]
    patch = dict(status)
    for key in RESOLVED:
        if key in previous and key not in status:
            patch[key] = None  # merge patch: an image no longer set is removed
    state.remember(state.kube.patch_status("ModelTag", meta["namespace"], meta["name"], patch))
    old, new = previous.get("model"), status.get("model")
    old_image, image = previous.get("actionServerImage"), status.get("actionServerImage")
    if (new, status.get("digest"), image) != (old, previous.get("digest"), old_image):
        users_ = ", ".join(status["environments"]) or "none"
        message = (f"moved from {old} to {new}" if old and old != new
                   else f"points to {new} (digest {status.get('digest')})")
        if image != old_image:
            message += f", action server image {image or 'of each environment'}"
        state.kube.event(body, "Normal", "Moved", f"{message}; environments: {users_}", timestamp)
        log.info("ModelTag %s/%s %s", meta["namespace"], meta["name"], message)
    ready = cond.get(status["conditions"], cond.READY)
    if ready.get("status") == "False" and ready != cond.get(previous.get("conditions"),
                                                            cond.READY):
        state.kube.event(body, "Warning", ready["reason"], ready["message"], timestamp)
