"""Automatic rollback of a failed roll: which model an environment's children carry.

An environment normally serves its tag's model. When a roll to a new model does not get
every replica ready within spec.promotion.readyTimeoutSeconds, botenv puts the
environment back on the model it served before (status.model) and records the refused
model (status.refusedModel). It does not try that digest again until the tag moves. The
tag is not changed: it is its owner's.

- rollout Restart: the Deployment's progressDeadlineSeconds is the timeout, so the
  controller manager itself says when the roll stalled (ProgressDeadlineExceeded: no
  replica of the new ReplicaSet became ready in that time).
- rollout HotSwap: the pods pull the tag's model themselves; the roll failed when, that
  long after the tag resolved it, the pods still do not all serve it (botenv's model check,
  BOTENV_VERIFY_MODELS). The model server then serves its pods the model they served
  (the pull token's pin, status.pullToken.digest) until the tag moves.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from botenv.render import conditions as cond
from botenv.render.deployment import DIGEST_ANNOTATION, ModelRef

REASON = "RolledBack"


@dataclasses.dataclass(frozen=True)
class Decision:
    model: ModelRef  # what the children carry
    refused: dict[str, Any] | None  # status.refusedModel; None when none is refused
    pinned: bool  # a HotSwap environment held on `model` by the model server


def _parse(timestamp: str | None) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(timestamp or "", "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC
        )
    except ValueError:
        return None


def _stalled_on(deployment: dict[str, Any] | None, digest: str) -> str:
    """The Deployment's own message when its roll to `digest` passed its progress
    deadline, else ''."""
    if deployment is None:
        return ""
    template = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    progressing = cond.get((deployment.get("status") or {}).get("conditions"), cond.PROGRESSING)
    if template.get(DIGEST_ANNOTATION) != digest:
        return ""
    if progressing.get("reason") != "ProgressDeadlineExceeded":
        return ""
    return str(progressing.get("message") or "its progress deadline passed")


def pod_errors(pods: list[dict[str, Any]], limit: int = 3) -> str:
    """What the pods that are not ready say about themselves, briefly."""
    said: list[str] = []
    for pod in pods:
        status = pod.get("status") or {}
        if cond.get(status.get("conditions"), "Ready").get("status") == "True":
            continue
        for container in status.get("containerStatuses") or []:
            state = container.get("state") or {}
            last = (container.get("lastState") or {}).get("terminated") or {}
            if "waiting" in state:
                what = state["waiting"].get("reason", "waiting")
                if last.get("message"):
                    what += f" (last exit: {last['message'].strip().splitlines()[-1][:200]})"
            elif "running" in state:
                what = "running, not ready (no model loaded)"
            else:
                what = (state.get("terminated") or {}).get("reason", "terminated")
            said.append(f"{pod['metadata']['name']}: {what}")
    return "; ".join(said[:limit])


def decide(
    *,
    tag_model: ModelRef,
    rollout: str,
    served: dict[str, Any] | None,
    refused: dict[str, Any] | None,
    deployment: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    tag_resolved_at: str | None,
    timeout_seconds: int,
    verifying: bool,
    now: datetime.datetime,
) -> Decision:
    """`served`: status.model, what every replica served last; `refused`: status.refusedModel."""
    previous = (
        dataclasses.replace(tag_model, model=served["name"], digest=served.get("digest", ""))
        if served
        and served.get("tag") == tag_model.tag
        and served.get("digest")
        and served.get("digest") != tag_model.digest
        else None
    )
    # Nothing to go back to: the first model, the tag's model is served, or the environment
    # has just moved to another tag (what it served belongs to the other tag).
    if previous is None:
        return Decision(tag_model, None, pinned=False)
    if refused and refused.get("digest") == tag_model.digest:  # refused; the tag has not moved
        return Decision(previous, refused, pinned=rollout == "HotSwap")
    why = ""
    if rollout == "Restart":
        why = _stalled_on(deployment, tag_model.digest)
    elif verifying:
        resolved = _parse(tag_resolved_at)
        if resolved is not None and (now - resolved).total_seconds() > timeout_seconds:
            why = f"the pods did not all load it within {timeout_seconds} s of the tag's move"
    if not why:
        return Decision(tag_model, None, pinned=False)
    errors = pod_errors(pods)
    message = (
        f"model {tag_model.model} (digest {tag_model.digest}) did not become ready on every "
        f"replica within {timeout_seconds} s ({why}){': ' + errors if errors else ''}; "
        f"back on model {previous.model}; botenv tries again when ModelTag "
        f"{tag_model.tag!r} moves"
    )
    record = {
        "name": tag_model.model,
        "digest": tag_model.digest,
        "reason": REASON,
        "message": message,
        "refusedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return Decision(previous, record, pinned=rollout == "HotSwap")


def report(
    status: dict[str, Any],
    previous: dict[str, Any],
    refused: dict[str, Any] | None,
    generation: int,
    timestamp: str,
) -> dict[str, Any]:
    """`status` with status.refusedModel and, while a model is refused, Degraded
    RolledBack (the environment serves; it does not serve its tag's model)."""
    status = {k: v for k, v in status.items() if k != "refusedModel"}
    if refused is None:
        return status
    status["refusedModel"] = refused
    desired = [c for c in status.get("conditions", []) if c.get("type") != cond.DEGRADED]
    desired.append(cond.condition(cond.DEGRADED, True, REASON, refused["message"], generation))
    status["conditions"] = cond.merge(previous.get("conditions"), desired, timestamp)
    return status
