"""The environment's ConfigMap: endpoints.yml (only ${VAR} references for secrets)."""

from __future__ import annotations

from typing import Any

import yaml

from botenv.render import names, probe

ENDPOINTS_FILE = "endpoints.yml"


def configmap(
    *,
    environment: str,
    namespace: str,
    tag: str,
    uid: str,
    endpoints: dict[str, Any],
    needs_probe_script: bool,
) -> dict[str, Any]:
    data = {ENDPOINTS_FILE: yaml.safe_dump(endpoints, sort_keys=False, default_flow_style=False)}
    if needs_probe_script:
        data[probe.PROBE_FILE] = probe.SCRIPT
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": names.endpoints_configmap_name(environment),
            "namespace": namespace,
            "labels": names.labels(environment, tag),
            "ownerReferences": [names.owner_reference(environment, uid)],
        },
        "data": data,
    }
