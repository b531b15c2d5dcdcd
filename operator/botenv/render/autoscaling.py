"""A HorizontalPodAutoscaler for a Deployment botenv renders, and the Deployment as botenv
applies it then: without `replicas`, which belong to the HPA from then on.

Server-side apply removes a field that its only applier stops applying. So before botenv
first applies a running Deployment without `replicas`, another field manager applies the
replicas it runs with (`handover`): the field stays as it is, the pods keep serving, and the
HPA's later writes take the field over."""

from __future__ import annotations

import copy
from typing import Any

from botenv.api.scaling import AutoscalingSpec
from botenv.render.companion import companion

KIND = "HorizontalPodAutoscaler"
# In the order botenv prefers them; 1.20 to 1.22 serve v2beta2 only (v2 is GA from 1.23).
API_VERSIONS = ("autoscaling/v2", "autoscaling/v2beta2")
# A label on a Deployment whose replicas botenv leaves to an HPA. (A label: a changed
# annotation would bump the Deployment's generation, and be copied to its ReplicaSets.)
AUTOSCALED_LABEL = "botenv.dev/autoscaled"
# Applies the replicas a running Deployment has when botenv stops applying them.
HANDOVER_MANAGER = "botenv-replicas-handover"


def horizontal_pod_autoscaler(
    deployment: dict[str, Any], autoscaling: AutoscalingSpec, *, api_version: str
) -> dict[str, Any]:
    """The HPA of `deployment` (as rendered): same name, labels and owner."""
    meta = deployment["metadata"]
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"]},
        "minReplicas": autoscaling.min_replicas,
        "maxReplicas": autoscaling.max_replicas,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": resource,
                    "target": {"type": "Utilization", "averageUtilization": percent},
                },
            }
            for resource, percent in autoscaling.targets
        ],
    }
    if autoscaling.behavior:
        spec["behavior"] = copy.deepcopy(autoscaling.behavior)
    return companion(deployment, spec, kind=KIND, api_version=api_version)


def without_replicas(deployment: dict[str, Any]) -> dict[str, Any]:
    """`deployment` as botenv applies it under an HPA: no replicas, and marked so."""
    out = copy.deepcopy(deployment)
    out["spec"].pop("replicas", None)
    out["metadata"]["labels"] = {**out["metadata"]["labels"], AUTOSCALED_LABEL: "true"}
    return out


def is_autoscaled(live: dict[str, Any] | None) -> bool:
    labels = ((live or {}).get("metadata") or {}).get("labels") or {}
    return labels.get(AUTOSCALED_LABEL) == "true"


def handover(live: dict[str, Any], autoscaling: AutoscalingSpec) -> dict[str, Any]:
    """What HANDOVER_MANAGER applies before botenv first applies the running `live`
    Deployment without replicas: the replicas it runs with (its resourceVersion makes it
    fail, rather than apply a stale count, when the Deployment changed since). A stopped
    Deployment starts at minReplicas: an HPA leaves a target with 0 replicas alone."""
    meta = live["metadata"]
    replicas = (live.get("spec") or {}).get("replicas", 1)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "resourceVersion": meta["resourceVersion"],
        },
        "spec": {"replicas": replicas or autoscaling.min_replicas},
    }


def desired_replicas(rendered: dict[str, Any], live: dict[str, Any] | None) -> int:
    """The replicas a rendered Deployment asks for: its own, else (under an HPA) the ones
    the running Deployment has."""
    if "replicas" in rendered["spec"]:
        return int(rendered["spec"]["replicas"])
    return int(((live or {}).get("spec") or {}).get("replicas", 1))


def label_selector(labels: dict[str, str]) -> str:
    """A label selector in its string form, as a scale subresource's status.selector."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
