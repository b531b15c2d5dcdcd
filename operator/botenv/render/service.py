"""The environment's Service: Rasa's HTTP API and channels."""

from __future__ import annotations

from typing import Any

from botenv.api.environment import EnvironmentSpec
from botenv.api.exposure import DEFAULT_AFFINITY_SECONDS
from botenv.render import names


def service(spec: EnvironmentSpec, *, tag: str, uid: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": names.rasa_name(spec.name),
        "namespace": spec.namespace,
        "labels": names.labels(spec.name, tag),
        "ownerReferences": [names.owner_reference(spec.name, uid)],
    }
    if spec.service.annotations:
        metadata["annotations"] = dict(spec.service.annotations)
    body: dict[str, Any] = {
        "type": spec.service.type,
        "selector": names.selector_labels(spec.name),
        "ports": [
            {"name": "http", "port": spec.service.port, "targetPort": "http", "protocol": "TCP"}
        ],
    }
    if spec.service.session_affinity:
        body["sessionAffinity"] = spec.service.session_affinity
    if spec.service.session_affinity == "ClientIP":
        # Always set, so botenv owns it and removes it with the affinity (the server would
        # refuse a config left behind by its own default under sessionAffinity None).
        seconds = spec.service.session_affinity_seconds or DEFAULT_AFFINITY_SECONDS
        body["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": seconds}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": body}
