"""Stand-in for a kubelet in cluster tests: binds Pending pods to a fake Node and marks
them Running and Ready, so Deployments become Available. (No container runs: that is what
the end-to-end tests with real Rasa processes are for.)"""

from __future__ import annotations

import datetime
import json

from tests.support.kubectl import Kubectl

NODE = "botenv-test-node"


def timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ensure_node(kubectl: Kubectl) -> None:
    if kubectl.run("get", "node", NODE, check=False).returncode == 0:
        return
    kubectl.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})


def bind(kubectl: Kubectl, namespace: str, name: str) -> None:
    """Bind the pod to the fake Node, as the scheduler would (the Binding subresource)."""
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace},
        "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
    }
    kubectl.run(
        "create",
        "--raw",
        f"/api/v1/namespaces/{namespace}/pods/{name}/binding",
        "-f",
        "-",
        stdin=json.dumps(binding),
    )


def make_ready(kubectl: Kubectl, namespace: str, selector: str, pod_ip: str = "10.0.0.1") -> int:
    """Bind and mark Ready every pod matching `selector` (its status.podIP `pod_ip`); returns
    how many are Ready."""
    ensure_node(kubectl)
    ready = 0
    for pod in kubectl.list("pods", namespace, selector):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        name = pod["metadata"]["name"]
        if not pod["spec"].get("nodeName"):
            bind(kubectl, namespace, name)
        if pod.get("status", {}).get("phase") != "Running":
            now = timestamp()
            status = {
                "status": {
                    "phase": "Running",
                    "podIP": pod_ip,
                    "startTime": now,
                    "conditions": [
                        {"type": t, "status": "True", "lastTransitionTime": now}
                        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                    ],
                    "containerStatuses": [
                        {
                            "name": c["name"],
                            "image": c["image"],
                            "imageID": "",
                            "ready": True,
                            "restartCount": 0,
                            "started": True,
                            "state": {"running": {"startedAt": now}},
                        }
                        for c in pod["spec"]["containers"]
                    ],
                }
            }
            kubectl.patch("pod", name, namespace, status, subresource="status")
        ready += 1
    return ready
