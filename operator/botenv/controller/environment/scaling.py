"""Plan, for each fleet of pods (the Rasa servers, and the action server): its Deployment as
botenv applies it (spread, and without replicas under an HPA), its HorizontalPodAutoscaler
and PodDisruptionBudget, the ones to remove, and the replicas handover that a switch to
autoscaling needs first. Pure: it reads what gather saw."""

from __future__ import annotations

import dataclasses
from typing import Any

from botenv.api.environment import EnvironmentSpec
from botenv.api.scaling import ScalingSpec
from botenv.controller.environment.seen import Seen
from botenv.render import autoscaling, disruption, names, spread
from botenv.render.problem import Problem

Key = tuple[str, str, str]  # (kind, namespace, name)


@dataclasses.dataclass
class Scaled:
    rasa: list[dict[str, Any]]  # Rasa's children, then its HPA and PDB
    actions: list[dict[str, Any]]  # the action server's children, then its HPA and PDB
    remove: list[Key] = dataclasses.field(default_factory=list)
    # Applied by autoscaling.HANDOVER_MANAGER just before the Deployment they name.
    handovers: dict[Key, dict[str, Any]] = dataclasses.field(default_factory=dict)


def scale(
    seen: Seen, spec: EnvironmentSpec, *, rasa: list[dict[str, Any]], actions: list[dict[str, Any]]
) -> Scaled | Problem:
    """`rasa` and `actions` are the rendered children (`actions` empty without an action
    server), each with one Deployment."""
    out = Scaled(rasa=[], actions=[])
    server = spec.action_server
    rasa_fleet = ("spec", names.rasa_name(spec.name), spec.scaling, spec.replicas)
    actions_fleet = (
        "spec.actionServer",
        names.action_server_name(spec.name),
        server.scaling if server else ScalingSpec(),
        server.replicas if server else 0,
    )
    fleets = (
        (*rasa_fleet, rasa, seen.deployment, out.rasa),
        (*actions_fleet, actions, seen.action_server.get("Deployment"), out.actions),
    )
    for field, name, wanted, replicas, rendered, live, into in fleets:
        for child in rendered:
            if child["kind"] != "Deployment":
                into.append(child)
                continue
            problem = _fleet(seen, out, field, wanted, replicas, child, live, into)
            if problem is not None:
                return problem
        kinds = {c["kind"] for c in into}
        for kind in (autoscaling.KIND, disruption.KIND):
            if kind not in kinds and seen.scaling.get((kind, name)) is not None:
                out.remove.append((kind, seen.namespace, name))
    return out


def _fleet(
    seen: Seen,
    out: Scaled,
    field: str,
    wanted: ScalingSpec,
    replicas: int,
    deployment: dict[str, Any],
    live: dict[str, Any] | None,
    into: list[dict[str, Any]],
) -> Problem | None:
    deploy = spread.spread(deployment, wanted.spread)
    extras = []
    auto = wanted.autoscaling
    if auto is not None:
        api_version = seen.api_versions.get(autoscaling.KIND, "")
        if not api_version:
            return Problem(
                "AutoscalingUnavailable",
                f"{field}.autoscaling: the API server serves no HorizontalPodAutoscaler "
                f"API ({' or '.join(autoscaling.API_VERSIONS)}); remove it",
            )
        deploy = autoscaling.without_replicas(deploy)
        if live is not None and not autoscaling.is_autoscaled(live):
            meta = deploy["metadata"]
            key = ("Deployment", meta["namespace"], meta["name"])
            out.handovers[key] = autoscaling.handover(live, auto)
        extras.append(autoscaling.horizontal_pod_autoscaler(deploy, auto, api_version=api_version))
    if disruption.wanted(wanted, replicas):
        api_version = seen.api_versions.get(disruption.KIND, "")
        if not api_version:
            return Problem(
                "DisruptionBudgetUnavailable",
                f"{field}.disruptionBudget: the API server serves no PodDisruptionBudget "
                f"API ({' or '.join(disruption.API_VERSIONS)}); set enabled: false",
            )
        budget = wanted.disruption_budget
        extras.append(disruption.pod_disruption_budget(deploy, budget, api_version=api_version))
    into.append(deploy)
    into.extend(extras)
    return None
