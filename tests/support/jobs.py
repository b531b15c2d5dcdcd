"""Stand-in for a kubelet that runs a training Job's pod to its end in cluster tests: binds the
pod and reports every container as terminated (with the exit codes and termination messages
a test gives), so kube-controller-manager's Job controller completes or fails the Job. (No
container runs: tests/e2e runs the steps for real.)"""

from __future__ import annotations

from collections.abc import Mapping

from tests.support.kubectl import Kubectl, eventually
from tests.support.pods import bind, ensure_node, timestamp


def finish_pod(
    kubectl: Kubectl,
    namespace: str,
    job: str,
    *,
    exit_codes: Mapping[str, int] | None = None,
    messages: Mapping[str, str] | None = None,
) -> dict:
    """Run the Job's pod to its end: each container exits with exit_codes.get(name, 0) and
    leaves messages.get(name, "") as its termination message; the init containers after
    one that failed never start (restartPolicy Never). Returns the pod."""
    exit_codes, messages = exit_codes or {}, messages or {}
    ensure_node(kubectl)
    pod = eventually(
        lambda: next(iter(kubectl.list("pods", namespace, f"job-name={job}")), None),
        message=f"a pod of Job {job}",
    )
    name, now = pod["metadata"]["name"], timestamp()
    bind(kubectl, namespace, name)
    failed = False

    def status(container: dict) -> dict:
        nonlocal failed
        state: dict
        if failed:
            state = {"waiting": {"reason": "PodInitializing"}}
        else:
            code = exit_codes.get(container["name"], 0)
            failed = code != 0
            state = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Error" if code else "Completed",
                    "message": messages.get(container["name"], ""),
                    "startedAt": now,
                    "finishedAt": now,
                }
            }
        return {
            "name": container["name"],
            "image": container["image"],
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "state": state,
        }

    inits = [status(c) for c in pod["spec"].get("initContainers") or []]
    containers = [status(c) for c in pod["spec"]["containers"]]
    kubectl.patch(
        "pod",
        name,
        namespace,
        {
            "status": {
                "phase": "Failed" if failed else "Succeeded",
                "startTime": now,
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                    {"type": "Ready", "status": "False", "lastTransitionTime": now},
                ],
                "initContainerStatuses": inits,
                "containerStatuses": containers,
            }
        },
        subresource="status",
    )
    return pod
