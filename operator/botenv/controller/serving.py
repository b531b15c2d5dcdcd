"""Whether an environment serves its tag's model: pure, on the bodies the watches hold.

One definition for the fleet gauges and the promotion-latency metric (controller/metrics.py)
and the tag's status.servedAt (controller/tag.py)."""

from __future__ import annotations

from typing import Any

from botenv.render import conditions as cond


def desired_replicas(env: dict[str, Any]) -> int:
    """spec.replicas (default 1); under autoscaling, the count the environment has now."""
    spec = env.get("spec") or {}
    if spec.get("autoscaling"):
        return int((env.get("status") or {}).get("replicas") or 0)
    raw = spec.get("replicas", 1)
    return raw if isinstance(raw, int) else 1


def serving_replicas(env: dict[str, Any], tag: dict[str, Any] | None) -> int:
    """Replicas that serve the tag's current model. With the pods' answers (servedModels),
    the ones reporting its name and digest; without (verification off), the ready replicas
    of the current template once status.model is the tag's model."""
    model, digest = tag_model(tag)
    status = env.get("status") or {}
    if not model:
        return 0
    served = status.get("servedModels")
    if isinstance(served, list):
        return sum(
            int(s.get("replicas") or 0)
            for s in served
            if s.get("name") == model and (not digest or s.get("digest", digest) == digest)
        )
    current = status.get("model") or {}
    if current.get("name") != model or (digest and current.get("digest", digest) != digest):
        return 0
    # Ready pods of the current template, at least: during a roll the old pods are ready
    # too, and are not counted.
    old = int(status.get("replicas") or 0) - int(status.get("updatedReplicas") or 0)
    count = max(0, int(status.get("readyReplicas") or 0) - max(0, old))
    if cond.get(status.get("conditions"), cond.READY).get("reason") == "RollingOut":
        # The counts may predate the roll (the Deployment controller has not seen it yet).
        count = min(count, max(0, desired_replicas(env) - 1))
    return count


def tag_model(tag: dict[str, Any] | None) -> tuple[str, str]:
    """The model and digest the tag resolves to now ("" for none)."""
    status = (tag or {}).get("status") or {}
    return str(status.get("model") or ""), str(status.get("digest") or "")


def serves(env: dict[str, Any], tag: dict[str, Any] | None) -> bool:
    """The environment serves the tag's model: status.model is it, Ready is True and every
    desired replica serves it."""
    model, digest = tag_model(tag)
    status = env.get("status") or {}
    current = status.get("model") or {}
    if not model or current.get("name") != model:
        return False
    if digest and current.get("digest") and current.get("digest") != digest:
        return False
    if cond.get(status.get("conditions"), cond.READY).get("status") != "True":
        return False
    return serving_replicas(env, tag) >= desired_replicas(env)


def view(env: dict[str, Any]) -> tuple[Any, ...]:
    """What the functions above read of an environment: when it changes, whether it serves
    its tag's model may have changed (controller/fanout.py reconciles the tag then, for its
    status.servedAt)."""
    spec, status = env.get("spec") or {}, env.get("status") or {}
    ready = cond.get(status.get("conditions"), cond.READY)
    return (
        repr(status.get("model")),
        ready.get("status"),
        ready.get("reason"),
        repr(status.get("servedModels")),
        status.get("replicas"),
        status.get("readyReplicas"),
        status.get("updatedReplicas"),
        repr(spec.get("replicas")),
        bool(spec.get("autoscaling")),
    )
