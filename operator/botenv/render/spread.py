"""How a Deployment's pods spread: by default across nodes and zones, as evenly as the
scheduler can (ScheduleAnyway: a cluster with one zone, or one node, still runs them all)."""

from __future__ import annotations

import copy
from typing import Any

TOPOLOGY_KEYS = ("kubernetes.io/hostname", "topology.kubernetes.io/zone")


def constraints(
    given: tuple[dict[str, Any], ...] | None, selector: dict[str, Any]
) -> list[dict[str, Any]]:
    """The spec's constraints (a missing labelSelector selects the Deployment's own pods),
    or, when the spec gives none, botenv's defaults."""
    if given is None:
        return [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": copy.deepcopy(selector),
            }
            for key in TOPOLOGY_KEYS
        ]
    return [{"labelSelector": copy.deepcopy(selector), **copy.deepcopy(c)} for c in given]


def spread(deployment: dict[str, Any], given: tuple[dict[str, Any], ...] | None) -> dict[str, Any]:
    """`deployment` with its pods' topologySpreadConstraints. An empty list is applied as
    such: it removes the constraints botenv applied before."""
    # A new dict along the path to the field only (the rest is shared, never changed): a
    # deep copy of the whole Deployment cost more than the rest of its render.
    spec = deployment["spec"]
    template = spec["template"]
    pod = {**template["spec"], "topologySpreadConstraints": constraints(given, spec["selector"])}
    return {**deployment, "spec": {**spec, "template": {**template, "spec": pod}}}
