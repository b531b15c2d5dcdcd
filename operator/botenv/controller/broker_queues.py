"""RabbitMQ event queues are unique per broker: who holds a queue two environments ask for."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botenv.api.environment import EventBrokerSpec
from botenv.render import conditions as cond
from botenv.render import names

QUEUE_CONFLICT = "QueueConflict"


Claim = tuple[str, str]  # (broker identity, queue)


def claim_of(namespace: str, name: str, broker: EventBrokerSpec) -> Claim:
    """(broker identity, queue) an environment's parsed spec asks for."""
    return (
        names.broker_identity(broker.host, broker.port, namespace),
        broker.queue or names.derived_queue(namespace, name),
    )


def queue_of(body: dict[str, Any]) -> Claim | None:
    """(broker identity, queue) the environment asks for, or None without a broker. Read
    from the body: a rival's spec is compared even when it does not parse."""
    broker = (body.get("spec") or {}).get("eventBroker")
    if not isinstance(broker, dict) or not broker.get("host"):
        return None
    meta = body["metadata"]
    queue = broker.get("queue") or names.derived_queue(meta["namespace"], meta["name"])
    return names.broker_identity(
        str(broker["host"]), int(broker.get("port") or 5672), meta["namespace"]
    ), queue


def _rank(body: dict[str, Any], queue: str) -> tuple[bool, str, str, str]:
    status = body.get("status") or {}
    degraded = cond.get(status.get("conditions"), cond.DEGRADED)
    in_force = status.get("queue") == queue and degraded.get("reason") != QUEUE_CONFLICT
    meta = body["metadata"]
    # The environment already publishing to the queue keeps it; otherwise the older one.
    return (not in_force, meta.get("creationTimestamp", ""), meta["namespace"], meta["name"])


def holder(
    me: dict[str, Any], everyone: Iterable[dict[str, Any]], mine: Claim | None = None
) -> dict[str, Any] | None:
    """The other environment that holds the queue `me` asks for (`mine`, from its parsed
    spec; read from its body when not given), or None if `me` may use it."""
    mine = mine or queue_of(me)
    if mine is None:
        return None
    key = (me["metadata"]["namespace"], me["metadata"]["name"])
    rivals = [
        b
        for b in everyone
        if (b["metadata"]["namespace"], b["metadata"]["name"]) != key
        and not b["metadata"].get("deletionTimestamp")
        and queue_of(b) == mine
    ]
    if not rivals:
        return None
    winner = min([me, *rivals], key=lambda b: _rank(b, mine[1]))
    return None if winner is me else winner
