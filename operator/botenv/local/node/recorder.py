"""The local node's own log and the Events it posts."""

from __future__ import annotations

import contextlib
import datetime
import logging
import secrets
from pathlib import Path

from botenv.local.node.api import Api, ApiError
from botenv.local.node.state import utc_now

log = logging.getLogger("botenv.kubelet")


class Recorder:
    """Writes the node's log (workdir/kubelet.log, and the botenv.kubelet logger) and posts
    Events (best effort) once it has an API."""

    def __init__(self, log_file: Path, node_name: str) -> None:
        self.log_file = log_file
        self.node_name = node_name
        self.api: Api | None = None

    def log(self, message: str) -> None:
        log.info("%s", message)
        stamp = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
        with contextlib.suppress(OSError), self.log_file.open("a") as f:
            f.write(f"{stamp} {message}\n")

    def event(
        self,
        meta: dict,
        reason: str,
        message: str,
        type_: str = "Normal",
        container: str = "",
        component: str = "kubelet",
    ) -> None:
        if self.api is None:
            return
        now = utc_now()
        involved = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
        }
        if container:  # a fieldPath: spec.containers{name} or spec.initContainers{name}
            involved["fieldPath"] = container
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{secrets.token_hex(8)}",
                "namespace": meta["namespace"],
            },
            "involvedObject": involved,
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": component, "host": self.node_name},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": self.node_name,
        }
        try:
            self.api("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body)
        except Exception as exc:  # events are best effort
            if not (isinstance(exc, ApiError) and exc.status in (403, 404)):
                self.log(f"event {reason} not posted: {exc}")  # 403/404: namespace going
