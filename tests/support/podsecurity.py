"""The `restricted` Pod Security Standard, checked on a pod spec, for servers without Pod
Security admission (Kubernetes 1.20; admission came in 1.22, GA 1.25).

Every control of the standard's `baseline` and `restricted` levels (latest version), as the
Kubernetes documentation "Pod Security Standards" lists them. `violations` returns one line
per broken control, each naming the container or volume; an empty list means the pod meets
`restricted`. tests/cluster/test_pod_security.py holds the same pods against the real
admission on a current server.
"""

from __future__ import annotations

from typing import Any

# baseline: capabilities a container may add
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
BASELINE_SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
BASELINE_APPARMOR = frozenset({"", "runtime/default", "RuntimeDefault", "Localhost"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
# restricted: the only volume types
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
# restricted: the only capability a container may add (after dropping ALL)
RESTRICTED_ADD = frozenset({"NET_BIND_SERVICE"})


def _containers(pod: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f'{kind} "{c.get("name", "")}"', c)
        for kind in ("initContainers", "containers", "ephemeralContainers")
        for c in pod.get(kind) or []
    ]


def _baseline(pod: dict[str, Any]) -> list[str]:
    out = []
    psc = pod.get("securityContext") or {}
    containers = _containers(pod)
    # HostProcess
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("hostProcess: pod")
    for where, c in containers:
        if ((c.get("securityContext") or {}).get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"hostProcess: {where}")
    # Host namespaces
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(f"host namespaces: {key}")
    for where, c in containers:
        sc = c.get("securityContext") or {}
        # Privileged containers
        if sc.get("privileged"):
            out.append(f"privileged: {where}")
        # Capabilities (baseline)
        added = set((sc.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            out.append(f"non-default capabilities {sorted(added - BASELINE_CAPABILITIES)}: {where}")
        # Host ports
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"hostPort: {where}")
        # /proc mount type
        if sc.get("procMount", "Default") != "Default":
            out.append(f"procMount: {where}")
    # HostPath volumes
    for volume in pod.get("volumes") or []:
        if "hostPath" in volume:
            out.append(f'hostPath volume: "{volume.get("name")}"')
    # AppArmor, SELinux, Seccomp (baseline: not Unconfined), on the pod and every container
    contexts = [("pod", psc)] + [(w, c.get("securityContext") or {}) for w, c in containers]
    for where, sc in contexts:
        apparmor = (sc.get("appArmorProfile") or {}).get("type", "")
        if apparmor not in BASELINE_APPARMOR:
            out.append(f"appArmorProfile {apparmor}: {where}")
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in BASELINE_SELINUX_TYPES:
            out.append(f"seLinuxOptions.type: {where}")
        if selinux.get("user") or selinux.get("role"):
            out.append(f"seLinuxOptions user/role: {where}")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            out.append(f"seccompProfile Unconfined: {where}")
    # Sysctls
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"unsafe sysctl {sysctl.get('name')}: pod")
    return out


def _restricted(pod: dict[str, Any]) -> list[str]:
    out = []
    psc = pod.get("securityContext") or {}
    containers = _containers(pod)
    # Volume types
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            out.append(f'restricted volume types {sorted(kinds)}: "{volume.get("name")}"')
    for where, c in containers:
        sc = c.get("securityContext") or {}
        # Privilege escalation
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"allowPrivilegeEscalation != false: {where}")
        # Running as non-root: the pod sets it and no container unsets it, or every
        # container sets it.
        if sc.get("runAsNonRoot") is False or (
            psc.get("runAsNonRoot") is not True and sc.get("runAsNonRoot") is not True
        ):
            out.append(f"runAsNonRoot != true: {where}")
        # Running as non-root user
        if sc.get("runAsUser") == 0:
            out.append(f"runAsUser=0: {where}")
        # Seccomp: RuntimeDefault or Localhost, on the pod or on every container
        own = (sc.get("seccompProfile") or {}).get("type")
        inherited = (psc.get("seccompProfile") or {}).get("type")
        if (own or inherited) not in ("RuntimeDefault", "Localhost"):
            out.append(f"seccompProfile: {where}")
        # Capabilities: drop ALL, add only NET_BIND_SERVICE
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"capabilities.drop must include ALL: {where}")
        if set(caps.get("add") or []) - RESTRICTED_ADD:
            out.append(f"capabilities.add beyond NET_BIND_SERVICE: {where}")
    if psc.get("runAsUser") == 0:
        out.append("runAsUser=0: pod")
    return out


def violations(pod: dict[str, Any]) -> list[str]:
    """Every control of the `restricted` standard (baseline included) that `pod` (a pod
    spec) breaks; [] when it meets the standard."""
    return _baseline(pod) + _restricted(pod)
