"""One reconcile of a ModelTag, in the same steps as every kind:

gather   the tag and the environments using it (indexes), whether each serves the tag's
         model (controller/serving.py); its model, stat-ed in storage
plan     pure: the tag's next status (its resolution, history and users, and servedAt once
         every user serves the resolution)
apply    nothing: a tag owns no children
report   the status patch, and Events for a move or a new problem"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import Any

from botenv.api import SpecError, parse_tag
from botenv.api.versions import is_version
from botenv.controller import reporting
from botenv.controller.resolve import Unresolved
from botenv.controller.serving import serves
from botenv.controller.state import State, tag_of
from botenv.render import compat
from botenv.render import conditions as cond
from botenv.render.problem import Problem, Retry
from botenv.storage import ObjectInfo
from botenv.storage.modelmeta import ModelMetadata

# What one resolution of a tag is made of; a history entry keeps the same fields.
# servedAt: when every environment on the tag first served it (its promotion time).
HISTORY_FIELDS = (
    "model",
    "digest",
    "size",
    "resolvedAt",
    "actionServerImage",
    "rasaVersion",
    "servedAt",
)
RESOLVED = (*HISTORY_FIELDS, "history")
# Status fields a new status may drop (a merge patch keeps what it does not name).
REMOVABLE = (*RESOLVED, "refusedBy")


def user_bodies(state: State, namespace: str, name: str) -> list[dict[str, Any]]:
    """The environments that name the tag and are not being deleted, by name. From the
    fan-out's users (kept from the events): a scan of every environment per tag reconcile
    would make a fleet's start quadratic."""
    if state.tag_users is None:
        candidates: Iterable[dict[str, Any]] = state.all_environments()
    else:
        found = (state.environment(namespace, n) for n in state.tag_users.users(namespace, name))
        candidates = (b for b in found if b is not None)
    return sorted(
        (
            b
            for b in candidates
            if b["metadata"]["namespace"] == namespace
            and tag_of(b) == name
            and not b["metadata"].get("deletionTimestamp")
        ),
        key=lambda b: str(b["metadata"]["name"]),
    )


def server_of(body: dict[str, Any], default_image: str) -> compat.Server:
    """What the environment `body` runs, as far as its spec tells (an unreadable spec
    tells nothing: its own status reports that)."""
    spec = body.get("spec") or {}
    image, version = spec.get("image") or default_image, spec.get("rasaVersion") or ""
    if not isinstance(image, str) or not isinstance(version, str):
        return compat.Server("", "")
    return compat.server_of(image, version if is_version(version) else "")


@dataclasses.dataclass
class Seen:
    body: dict[str, Any]
    model: str  # the model the spec names (the last resolved one when the spec is invalid)
    action_server_image: str
    environments: list[str]
    resolved: ObjectInfo | None = None  # None: not resolved (`problem` says why)
    problem: Problem | None = None
    # The resolved model's metadata, or why it could not be read (None: not read).
    metadata: ModelMetadata | str | None = None
    # What each environment on the tag runs: who refuses a model is decided from it.
    servers: dict[str, compat.Server] = dataclasses.field(default_factory=dict)
    # The environments that went back from a model of this tag (their status.refusedModel).
    rolled_back: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # Whether each environment serves the resolution in the tag's status as gathered.
    serving: dict[str, bool] = dataclasses.field(default_factory=dict)


def gather(state: State, namespace: str, name: str) -> Seen | None:
    """None when the tag is gone (or going)."""
    body = state.tag(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    previous = body.get("status") or {}
    bodies = user_bodies(state, namespace, name)
    seen = Seen(
        body=body,
        model=previous.get("model", ""),
        action_server_image=previous.get("actionServerImage", ""),
        environments=[b["metadata"]["name"] for b in bodies],
        servers={b["metadata"]["name"]: server_of(b, state.settings.default_image) for b in bodies},
        rolled_back={
            b["metadata"]["name"]: refused
            for b in bodies
            if (refused := (b.get("status") or {}).get("refusedModel"))
        },
        serving={b["metadata"]["name"]: serves(b, body) for b in bodies},
    )
    try:
        spec = parse_tag(body)
        seen.model, seen.action_server_image = spec.model, spec.action_server_image
        assert state.resolver is not None
        resolved = state.resolver.resolve(namespace, name, spec)
        if resolved.digest == previous.get("digest") and previous.get("rasaVersion"):
            # Known already (also across operator restarts): not downloaded again.
            seen.metadata = ModelMetadata(rasa_version=previous["rasaVersion"])
        else:
            seen.metadata = state.resolver.metadata(namespace, spec, resolved)
        seen.resolved = resolved
    except SpecError as exc:
        seen.problem = Problem("InvalidSpec", str(exc))
    except Unresolved as exc:
        seen.problem = exc.problem
    return seen


def tag_status(
    previous: dict[str, Any],
    *,
    resolved: ObjectInfo | None,
    model: str,
    problem: Problem | None,
    environments: list[str],
    generation: int,
    history_limit: int,
    timestamp: str,
    action_server_image: str = "",
    metadata: ModelMetadata | str | None = None,
    servers: dict[str, compat.Server] | None = None,
    rolled_back: dict[str, dict[str, Any]] | None = None,
    serving: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """Pure: the tag's next status. `resolved` is what storage says about `model`, or None
    when it could not be resolved: the last good resolution then stays in force. The action
    server image moves with the model, never before it resolves. `metadata` is the resolved
    model's (or why it is unknown); `servers` what each environment on the tag runs, so
    the status lists those that cannot load the model in force. `serving` says which
    environments serve the resolution in `previous`: once all do, servedAt records when."""
    status = {k: v for k, v in previous.items() if k in RESOLVED}
    rasa_version = metadata.rasa_version if isinstance(metadata, ModelMetadata) else ""
    current = (previous.get("model"), previous.get("digest"), previous.get("actionServerImage", ""))
    moved = resolved is not None and (model, resolved.digest, action_server_image) != current
    if resolved is not None and moved:
        history = list(previous.get("history") or [])
        if previous.get("model"):
            history = [{k: previous[k] for k in HISTORY_FIELDS if previous.get(k)}, *history]
        status = {
            "model": model,
            "digest": resolved.digest,
            "size": resolved.size,
            "resolvedAt": timestamp,
            "history": history[:history_limit],
        }
        if action_server_image:
            status["actionServerImage"] = action_server_image
        if rasa_version:
            status["rasaVersion"] = rasa_version
    elif resolved is not None and rasa_version:
        status["rasaVersion"] = rasa_version  # read for a resolution made before
    status["environments"] = environments
    refused = [
        {"environment": env, "reason": "ModelIncompatible", "message": why}
        for env in environments
        if (why := compat.refusal(status.get("rasaVersion", ""), (servers or {}).get(env, _NONE)))
    ]
    listed = {r["environment"] for r in refused}
    refused += [
        {"environment": env, "reason": "RolledBack", "message": record.get("message", "")}
        for env, record in sorted((rolled_back or {}).items())
        if env in environments
        and env not in listed
        and record.get("digest") == status.get("digest")
    ]
    if refused:
        status["refusedBy"] = refused
    if not moved and _first_served(status, environments, serving or {}):
        status["servedAt"] = timestamp
    status["observedGeneration"] = generation
    if problem is not None:
        kept = (
            f"; the tag stays on {status['model']}"
            if status.get("model")
            else "; no environment can start until it resolves"
        )
        ready = cond.condition(
            cond.READY, False, problem.reason, problem.message + kept, generation
        )
    else:
        ready = cond.condition(
            cond.READY,
            True,
            "Resolved",
            f"model {status['model']} (digest {status['digest']})"
            + _version_note(status, metadata),
            generation,
        )
    status["conditions"] = cond.merge(previous.get("conditions"), [ready], timestamp)
    return status


_NONE = compat.Server("", "")


def _first_served(
    status: dict[str, Any], environments: list[str], serving: dict[str, bool]
) -> bool:
    """Every environment on the tag now serves its resolution in force, for the first time.
    Set once: a resync never moves it, and a new resolution starts without it. A model an
    environment refuses (or went back from) is never served by all."""
    return (
        bool(status.get("model"))
        and "servedAt" not in status
        and bool(environments)
        and not status.get("refusedBy")
        and all(serving.get(env, False) for env in environments)
    )


def _version_note(status: dict[str, Any], metadata: ModelMetadata | str | None) -> str:
    if status.get("rasaVersion"):
        note = f", trained with Rasa {status['rasaVersion']}"
    elif isinstance(metadata, str):
        note = (
            f"; its Rasa version is unknown ({metadata}): environments load it without a "
            "version check"
        )
    else:
        note = ""
    refusals = status.get("refusedBy") or []
    for reason, why in (
        ("ModelIncompatible", "their Rasa cannot load it"),
        ("RolledBack", "it did not get ready on their pods in time; they went back"),
    ):
        names = [
            r["environment"] for r in refusals if r.get("reason", "ModelIncompatible") == reason
        ]
        if names:
            note += f"; refused by {', '.join(names)} ({why})"
    return note


def plan(seen: Seen, history_limit: int, timestamp: str) -> dict[str, Any]:
    """Pure: the status the tag should have."""
    return tag_status(
        seen.body.get("status") or {},
        resolved=seen.resolved,
        model=seen.model,
        problem=seen.problem,
        environments=seen.environments,
        generation=seen.body["metadata"].get("generation", 0),
        history_limit=history_limit,
        timestamp=timestamp,
        action_server_image=seen.action_server_image,
        metadata=seen.metadata,
        servers=seen.servers,
        rolled_back=seen.rolled_back,
        serving=seen.serving,
    )


def events(previous: dict[str, Any], status: dict[str, Any]) -> list[reporting.Event]:
    """(type, reason, message) Events for what changed between two statuses."""
    out: list[reporting.Event] = []
    old, new = previous.get("model"), status.get("model")
    old_image, image = previous.get("actionServerImage"), status.get("actionServerImage")
    if (new, status.get("digest"), image) != (old, previous.get("digest"), old_image):
        users_ = ", ".join(status["environments"]) or "none"
        message = (
            f"moved from {old} to {new}"
            if old and old != new
            else f"points to {new} (digest {status.get('digest')})"
        )
        if image != old_image:
            message += f", action server image {image or 'of each environment'}"
        out.append(("Normal", "Moved", f"{message}; environments: {users_}"))
    was_refused = {(r["environment"], r["message"]) for r in previous.get("refusedBy") or []}
    for refusal in status.get("refusedBy") or []:
        if (refusal["environment"], refusal["message"]) in was_refused:
            continue
        if refusal.get("reason") == "RolledBack":
            said = f"went back from model {status.get('model')}: {refusal['message']}"
        else:
            said = (
                f"cannot load model {status.get('model')}: {refusal['message']}; it does not "
                "roll to it"
            )
        out.append(
            (
                "Warning",
                refusal.get("reason") or "ModelIncompatible",
                f"BotEnvironment {refusal['environment']} {said}",
            )
        )
    ready = cond.get(status["conditions"], cond.READY)
    if ready.get("status") == "False" and ready != cond.get(previous.get("conditions"), cond.READY):
        out.append(("Warning", ready["reason"], ready["message"]))
    return out


def report(state: State, body: dict[str, Any], status: dict[str, Any], timestamp: str) -> None:
    previous = body.get("status") or {}
    if status == previous:
        return
    found = events(previous, status)  # reporting logs each, with its reason
    # merge patch: an image no longer set is removed
    reporting.report(
        state, "ModelTag", body, status, removable=REMOVABLE, events=found, timestamp=timestamp
    )


async def reconcile(state: State, namespace: str, name: str) -> None:
    seen = await asyncio.to_thread(gather, state, namespace, name)
    if seen is None:
        if state.resolver is not None:
            state.resolver.forget(namespace, name)
        return
    timestamp = cond.now()
    status = plan(seen, state.settings.history_limit, timestamp)
    await asyncio.to_thread(report, state, seen.body, status, timestamp)
    if seen.problem is not None and seen.problem.retry:
        raise Retry(seen.problem)  # the work queue retries with backoff
