"""How a fleet of pods scales and survives disruptions: autoscaling, its disruption budget and
how its pods spread. The Rasa servers (spec) and the action server (spec.actionServer) each
have one."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from botenv.api.reader import Reader

# spec.autoscaling's metrics: the field -> the container resource the HPA measures.
METRICS = {
    "targetCPUUtilizationPercentage": "cpu",
    "targetMemoryUtilizationPercentage": "memory",
}
AUTOSCALING_FIELDS = ("minReplicas", "maxReplicas", "behavior", *METRICS)
MAX_REPLICAS = 1000
WHEN_UNSATISFIABLE = ("DoNotSchedule", "ScheduleAnyway")
_PERCENT = re.compile(r"^(100|[1-9]?[0-9])%$")


@dataclasses.dataclass(frozen=True)
class AutoscalingSpec:
    """A HorizontalPodAutoscaler's range and targets; the HPA then owns the replicas."""

    min_replicas: int
    max_replicas: int
    # (container resource, target average utilization in percent of the pods' requests)
    targets: tuple[tuple[str, int], ...]
    behavior: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DisruptionBudgetSpec:
    """A PodDisruptionBudget, made when more than one replica can run. Without either
    bound: maxUnavailable 1."""

    enabled: bool = True
    max_unavailable: int | str | None = None
    min_available: int | str | None = None


@dataclasses.dataclass(frozen=True)
class ScalingSpec:
    autoscaling: AutoscalingSpec | None = None
    disruption_budget: DisruptionBudgetSpec = DisruptionBudgetSpec()
    # None: botenv's default spread (nodes and zones); () turns spreading off.
    spread: tuple[dict[str, Any], ...] | None = None

    def most_replicas(self, replicas: int) -> tuple[str, int]:
        """(field, count): the most pods that can run, and the field that allows them."""
        if self.autoscaling is not None:
            return "autoscaling.maxReplicas", self.autoscaling.max_replicas
        return "replicas", replicas


def _autoscaling(parent: Reader) -> AutoscalingSpec | None:
    reader = parent.child("autoscaling")
    if reader is None:
        return None
    path = reader.path
    for key in reader.data:
        if key not in AUTOSCALING_FIELDS:
            reader.fail(
                f"{path}.{key}",
                "is not a metric botenv scales on: use targetCPUUtilizationPercentage "
                "and/or targetMemoryUtilizationPercentage",
            )
    low = reader.integer("minReplicas", 1, minimum=1, maximum=MAX_REPLICAS) or 1
    high = reader.integer("maxReplicas", minimum=1, maximum=MAX_REPLICAS)
    if high is None:
        reader.fail(f"{path}.maxReplicas", "is required: the most replicas the HPA may run")
        high = low
    elif high < low:
        reader.fail(
            f"{path}.maxReplicas",
            f"must be at least {path}.minReplicas ({low}), got {high}",
        )
    targets = []
    for key, resource in METRICS.items():
        value = reader.integer(key, minimum=1)
        if value is not None:
            targets.append((resource, value))
    if not targets and not any(k in reader.data for k in METRICS):
        reader.fail(
            path,
            "needs a target: targetCPUUtilizationPercentage and/or "
            "targetMemoryUtilizationPercentage (percent of the pods' resource requests)",
        )
    return AutoscalingSpec(
        min_replicas=low,
        max_replicas=high,
        targets=tuple(targets),
        behavior=reader.mapping("behavior"),
    )


def _count_or_percent(reader: Reader, key: str) -> int | str | None:
    value = reader.data.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _PERCENT.match(value):
        return value
    reader.fail(
        f"{reader.path}.{key}",
        f"must be a number of pods (0 or more) or a percentage like '50%', got {value!r}",
    )
    return None


def _disruption_budget(parent: Reader) -> DisruptionBudgetSpec:
    reader = parent.child("disruptionBudget")
    if reader is None:
        return DisruptionBudgetSpec()
    budget = DisruptionBudgetSpec(
        enabled=bool(reader.flag("enabled", True)),
        max_unavailable=_count_or_percent(reader, "maxUnavailable"),
        min_available=_count_or_percent(reader, "minAvailable"),
    )
    if budget.max_unavailable is not None and budget.min_available is not None:
        reader.fail(
            f"{reader.path}.minAvailable",
            "set either maxUnavailable or minAvailable, not both",
        )
    return budget


def _spread(parent: Reader) -> tuple[dict[str, Any], ...] | None:
    if "topologySpreadConstraints" not in parent.data:
        return None
    path = f"{parent.path}.topologySpreadConstraints"
    out: list[dict[str, Any]] = []
    seen: set[tuple[object, object]] = set()
    for i, item in enumerate(parent.items("topologySpreadConstraints")):
        here = f"{path}[{i}]"
        entry = Reader(item, here, parent.problems)
        if not isinstance(item, dict):
            continue
        key = entry.text("topologyKey")
        if not key:
            entry.fail(f"{here}.topologyKey", "is required, e.g. kubernetes.io/hostname")
        if entry.integer("maxSkew", minimum=1) is None:
            entry.fail(f"{here}.maxSkew", "is required: an integer of 1 or more")
        when = entry.text("whenUnsatisfiable")
        if when not in WHEN_UNSATISFIABLE:
            entry.fail(
                f"{here}.whenUnsatisfiable",
                f"must be one of {', '.join(WHEN_UNSATISFIABLE)}; got {when!r}",
            )
        if (key, when) in seen:
            entry.fail(here, f"repeats topologyKey {key!r} with whenUnsatisfiable {when!r}")
        seen.add((key, when))
        entry.mapping("labelSelector")
        out.append(item)
    return tuple(out)


def parse_scaling(reader: Reader) -> ScalingSpec:
    """spec's (or spec.actionServer's) autoscaling, disruptionBudget and
    topologySpreadConstraints."""
    return ScalingSpec(
        autoscaling=_autoscaling(reader),
        disruption_budget=_disruption_budget(reader),
        spread=_spread(reader),
    )
