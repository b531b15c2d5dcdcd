"""The Node object: registration, heartbeat, and binding pods to it."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from botenv.local.node.api import Api, ApiError
from botenv.local.node.constants import HEARTBEAT_SECONDS, HOST_IP, KUBELET_VERSION, RUNTIME
from botenv.local.node.recorder import Recorder
from botenv.local.node.state import utc_now


class NodeAgent:
    """This node in the API: its Node object (labels, capacity, Ready heartbeat), the
    scheduler's part (which Pending pods fit, binding them) and deleting its pods."""

    def __init__(
        self,
        api: Api,
        node_name: str,
        node_labels: Mapping[str, str],
        workdir: Path,
        recorder: Recorder,
    ) -> None:
        self.api = api
        self.node_name = node_name
        self.node_labels = node_labels
        self.workdir = workdir
        self.recorder = recorder
        self._node_since = utc_now()
        self.heartbeat_at = 0.0
        # Until the API server says its own: a kubelet reports its release, which is the
        # control plane's.
        self.version = KUBELET_VERSION

    def capacity(self) -> dict[str, str]:
        try:
            pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            pages = 8 << 30
        disk = shutil.disk_usage(self.workdir).total
        return {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{pages // 1024}Ki",
            "pods": "110",
            "ephemeral-storage": f"{disk // 1024}Ki",
            "hugepages-2Mi": "0",
            "hugepages-1Gi": "0",
        }

    def register(self) -> None:
        self.version = (self.api.get("/version") or {}).get("gitVersion") or KUBELET_VERSION
        path = f"/api/v1/nodes/{self.node_name}"
        if self.api.get(path) is None:
            self.api(
                "POST",
                "/api/v1/nodes",
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": self.node_name, "labels": self.node_labels},
                },
            )
        else:  # left by an earlier kubelet: take it over, without its stale taints
            self.api(
                "PATCH",
                path,
                {
                    "metadata": {"labels": self.node_labels},
                    "spec": {"taints": None, "unschedulable": None},
                },
                patch=True,
            )
        self.heartbeat()

    def heartbeat(self) -> None:
        now = utc_now()
        capacity = self.capacity()
        conditions = [
            {
                "type": t,
                "status": "False",
                "reason": f"KubeletHas{r}",
                "message": m,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._node_since,
            }
            for t, r, m in (
                ("MemoryPressure", "SufficientMemory", "enough memory"),
                ("DiskPressure", "NoDiskPressure", "no disk pressure"),
                ("PIDPressure", "SufficientPID", "enough PIDs"),
            )
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "test kubelet (local processes) is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._node_since,
            }
        )
        uname = os.uname()
        self.api(
            "PATCH",
            f"/api/v1/nodes/{self.node_name}/status",
            {
                "status": {
                    "capacity": capacity,
                    "allocatable": capacity,
                    "conditions": conditions,
                    "addresses": [
                        {"type": "InternalIP", "address": HOST_IP},
                        {"type": "Hostname", "address": self.node_name},
                    ],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                    "nodeInfo": {
                        "machineID": hashlib.md5(self.node_name.encode()).hexdigest(),
                        "systemUUID": hashlib.md5(self.node_name.encode()).hexdigest(),
                        "bootID": hashlib.md5(self._node_since.encode()).hexdigest(),
                        "kernelVersion": uname.release,
                        "osImage": f"{uname.sysname} (test kubelet)",
                        "containerRuntimeVersion": f"{RUNTIME}://1",
                        "kubeletVersion": self.version,
                        "kubeProxyVersion": self.version,
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                    },
                }
            },
            patch=True,
        )
        self.heartbeat_at = time.monotonic() + HEARTBEAT_SECONDS

    def delete_stale_pods(self) -> None:
        """Delete this node's pods: their processes belong to a kubelet that is gone."""
        for pod in self.api(
            "GET", "/api/v1/pods", query={"fieldSelector": f"spec.nodeName={self.node_name}"}
        )["items"]:
            meta = pod["metadata"]
            self.delete_pod(meta["namespace"], meta["name"], meta["uid"])

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        try:
            self.api(
                "DELETE",
                f"/api/v1/namespaces/{namespace}/pods/{name}",
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": uid},
                },
            )
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise

    def fits(self, pod: dict) -> bool:
        wanted = pod["spec"].get("nodeSelector") or {}
        return all(self.node_labels.get(k) == v for k, v in wanted.items())

    def bind(self, pod: dict) -> bool:
        meta = pod["metadata"]
        try:
            self.api(
                "POST",
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding",
                {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {
                        "name": meta["name"],
                        "namespace": meta["namespace"],
                        "uid": meta["uid"],
                    },
                    "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
                },
            )
        except ApiError as exc:
            if exc.status in (404, 409):  # deleted, or bound by someone else meanwhile
                return False
            raise
        self.recorder.event(
            meta,
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {self.node_name}",
            component="default-scheduler",
        )
        return True
