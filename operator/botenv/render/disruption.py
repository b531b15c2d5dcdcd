"""A PodDisruptionBudget for a Deployment botenv renders: a node drain evicts its pods a few
at a time, never all at once."""

from __future__ import annotations

import copy
from typing import Any

from botenv.api.scaling import DisruptionBudgetSpec, ScalingSpec
from botenv.render.companion import companion

KIND = "PodDisruptionBudget"
# policy/v1 is GA from 1.21; 1.20 serves policy/v1beta1 only.
API_VERSIONS = ("policy/v1", "policy/v1beta1")


def wanted(scaling: ScalingSpec, replicas: int) -> bool:
    """A budget only protects something when more than one replica can run."""
    return scaling.disruption_budget.enabled and scaling.most_replicas(replicas)[1] > 1


def pod_disruption_budget(
    deployment: dict[str, Any], budget: DisruptionBudgetSpec, *, api_version: str
) -> dict[str, Any]:
    """The budget of `deployment`'s pods (as rendered): same name, labels, owner, selector."""
    spec: dict[str, Any] = {"selector": copy.deepcopy(deployment["spec"]["selector"])}
    if budget.min_available is not None:
        spec["minAvailable"] = budget.min_available
    else:
        spec["maxUnavailable"] = 1 if budget.max_unavailable is None else budget.max_unavailable
    return companion(deployment, spec, kind=KIND, api_version=api_version)
