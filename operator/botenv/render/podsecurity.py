"""Restricted pod security for every pod botenv creates: non-root with the image's own user,
the RuntimeDefault seccomp profile, no privilege escalation, no capabilities, a read-only
root filesystem for botenv's containers (emptyDirs cover where they write). A spec's
podSecurityContext and securityContext override these key by key."""

from __future__ import annotations

import copy
from typing import Any

RASA_USER = 1001  # USER of the rasa/rasa and rasa/rasa-sdk images
BOTENV_USER = 10001  # USER of botenv's own image (Dockerfile)


def pod_context(user: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """The pod's securityContext: runAsNonRoot as `user`, RuntimeDefault seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": user,
        "seccompProfile": {"type": "RuntimeDefault"},
        **copy.deepcopy(overrides),
    }


def _over_locked_down(overrides: dict[str, Any], **more: Any) -> dict[str, Any]:
    """No privilege escalation and no capabilities, under `overrides`. The API server
    refuses allowPrivilegeEscalation false beside privileged or CAP_SYS_ADMIN: a context that
    asks for those gets no such default (admission decides whether the namespace allows it)."""
    defaults: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        **more,
    }
    added = set((overrides.get("capabilities") or {}).get("add") or [])
    if overrides.get("privileged") or added & {"SYS_ADMIN", "CAP_SYS_ADMIN"}:
        del defaults["allowPrivilegeEscalation"]
    return {**defaults, **copy.deepcopy(overrides)}


def container_context(overrides: dict[str, Any]) -> dict[str, Any]:
    """A botenv container's securityContext (it writes only to its emptyDirs)."""
    return _over_locked_down(overrides, readOnlyRootFilesystem=True)


def botenv_step_context() -> dict[str, Any]:
    """botenv's own image in a training Job, as the chart runs it."""
    return container_context({"runAsUser": BOTENV_USER, "runAsGroup": BOTENV_USER})


def users_container(container: dict[str, Any]) -> dict[str, Any]:
    """A user's init container or sidecar: no privilege escalation and no capabilities
    unless its own securityContext says otherwise (its root filesystem is its own affair)."""
    out = copy.deepcopy(container)
    out["securityContext"] = _over_locked_down(out.get("securityContext") or {})
    return out


def automount(service_account: str) -> dict[str, Any]:
    """No service account token in the pod unless a service account is asked for."""
    return {} if service_account else {"automountServiceAccountToken": False}
