"""The user's pod settings (api.podsettings) added to a pod spec botenv rendered: volumes and
mounts, init containers, sidecars, probe timings, priority, the grace period, the preStop
pause and the security contexts."""

from __future__ import annotations

import copy
from typing import Any

from botenv.api.podsettings import TMP_DIR, TMP_VOLUME, PodSettings
from botenv.render import podsecurity


def tmp_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    """An emptyDir for /tmp (the root filesystem is read-only): the volume and its mount."""
    return {"name": TMP_VOLUME, "emptyDir": {}}, {"name": TMP_VOLUME, "mountPath": TMP_DIR}


def env_defaults(env: list[dict[str, Any]], **defaults: str) -> list[dict[str, Any]]:
    """`env` with the default variables it does not set (the user's env may set them)."""
    given = {e["name"] for e in env}
    return [*env, *({"name": k, "value": v} for k, v in defaults.items() if k not in given)]


def lifecycle(pre_stop_seconds: int) -> dict[str, Any]:
    """A pause before SIGTERM: the pod leaves the Service's endpoints while it still serves,
    so requests on their way and conversations in flight finish (the images have sleep)."""
    if not pre_stop_seconds:
        return {}
    return {"lifecycle": {"preStop": {"exec": {"command": ["sleep", str(pre_stop_seconds)]}}}}


def pod_spec(
    pod: dict[str, Any],
    settings: PodSettings,
    *,
    user: int,
    service_account: str,
) -> dict[str, Any]:
    """`pod` (its first container is botenv's) with the settings added; a new dict."""
    out = copy.deepcopy(pod)
    main = out["containers"][0]
    for kind, timings in settings.probes.items():
        main[f"{kind}Probe"] = {**main[f"{kind}Probe"], **timings}
    main["volumeMounts"] = [*main.get("volumeMounts", []), *copy.deepcopy(settings.volume_mounts)]
    main["securityContext"] = podsecurity.container_context(settings.security_context)
    main.update(lifecycle(settings.pre_stop_sleep_seconds))
    out["containers"] += [podsecurity.users_container(c) for c in settings.sidecars]
    if settings.init_containers:
        out["initContainers"] = [podsecurity.users_container(c) for c in settings.init_containers]
    out["volumes"] = [*out.get("volumes", []), *copy.deepcopy(settings.volumes)]
    out["securityContext"] = podsecurity.pod_context(user, settings.pod_security_context)
    if service_account:
        out["serviceAccountName"] = service_account
    out.update(podsecurity.automount(service_account))
    if settings.priority_class_name:
        out["priorityClassName"] = settings.priority_class_name
    if settings.termination_grace_period_seconds is not None:
        out["terminationGracePeriodSeconds"] = settings.termination_grace_period_seconds
    return out
