"""An object that goes with a Deployment botenv renders (its HPA, its disruption budget):
the same name, labels and owner, and a hash of the spec botenv applied."""

from __future__ import annotations

import copy
from typing import Any

from botenv.render.hashing import stable_hash

# On an HPA or a disruption budget: a hash of the spec botenv applied.
SPEC_HASH_ANNOTATION = "botenv.dev/spec-hash"


def companion(
    deployment: dict[str, Any], spec: dict[str, Any], *, kind: str, api_version: str
) -> dict[str, Any]:
    meta = deployment["metadata"]
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": dict(meta["labels"]),
            # A field the spec drops is not in what botenv applies, and so cannot show as a
            # difference from what runs: its hash does, and the apply removes the field.
            "annotations": {SPEC_HASH_ANNOTATION: stable_hash(spec)},
            "ownerReferences": copy.deepcopy(meta["ownerReferences"]),
        },
        "spec": spec,
    }
