"""What a spec will lose without failing: a Warning condition (and event) says so."""

from __future__ import annotations

from typing import Any

from botenv.api.environment import EnvironmentSpec
from botenv.render import conditions as cond

WARNING = "Warning"  # the condition type; True while the spec carries a risk


def conversation_loss(spec: EnvironmentSpec) -> tuple[str, str] | None:
    """(reason, message) when the tracker store keeps conversations in the pods' memory and
    a tag move replaces the pods; None otherwise. (More than one replica with an in-memory
    tracker is refused outright: api.environment.)"""
    if spec.tracker_store.type != "memory" or spec.rollout != "Restart":
        return None
    return (
        "ConversationsLostOnRoll",
        "spec.trackerStore is memory and spec.rollout is Restart: every tag move starts new "
        "pods, and every conversation in progress, with its history, is lost (a pod restart "
        "or eviction loses them too); use a persistent trackerStore (sql, redis, mongod, "
        "dynamo) to keep them",
    )


def with_warning(
    status: dict[str, Any],
    previous: dict[str, Any],
    warning: tuple[str, str] | None,
    generation: int,
    timestamp: str,
) -> dict[str, Any]:
    """`status` with the Warning condition while `warning` holds (the condition is left out
    once it does not)."""
    if warning is None:
        return status
    reason, message = warning
    warned = cond.condition(WARNING, True, reason, message, generation)
    desired = [*status.get("conditions", []), warned]
    return {**status, "conditions": cond.merge(previous.get("conditions"), desired, timestamp)}


def warning_events(previous: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A Warning Event when the Warning condition appears or changes its reason."""
    old, new = (cond.get(s.get("conditions"), WARNING) for s in (previous, current))
    if new.get("status") == "True" and old.get("reason") != new.get("reason"):
        return [("Warning", new["reason"], new.get("message", ""))]
    return []
