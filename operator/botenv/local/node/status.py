"""Pod status as a kubelet reports it: phase, conditions, container statuses."""

from __future__ import annotations

from botenv.local.node.api import Api, ApiError
from botenv.local.node.constants import HOST_IP
from botenv.local.node.state import Container, Pod, utc_now


def container_status(c: Container) -> dict:
    if c.state == "running":
        state: dict = {"running": {"startedAt": c.started_at}}
    elif c.state == "terminated" and c.terminated is not None:
        state = {"terminated": c.terminated}
    else:
        waiting = {"reason": c.reason}
        if c.message:
            waiting["message"] = c.message
        state = {"waiting": waiting}
    status: dict = {
        "name": c.name,
        "image": c.image,
        "imageID": c.image_id,
        "ready": c.ready,  # an init container: it exited 0
        "started": c.started,
        "restartCount": c.restart_count,
        "state": state,
        "lastState": {"terminated": c.last_terminated} if c.last_terminated else {},
    }
    if c.init:
        del status["started"]  # a 1.20 kubelet sets it for containers only
    if c.container_id:
        status["containerID"] = c.container_id
    return status


def _condition(rt: Pod, type_: str, ok: bool, reason: str = "", message: str = "") -> dict:
    value = "True" if ok else "False"
    previous = rt.transitions.get(type_)
    if previous is None or previous[0] != value:
        rt.transitions[type_] = (value, utc_now())
    cond = {"type": type_, "status": value, "lastTransitionTime": rt.transitions[type_][1]}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def pod_status(rt: Pod) -> dict:
    init_statuses = [container_status(c) for c in rt.init_containers]
    statuses = [container_status(c) for c in rt.containers]
    phase = _phase(rt.restart_policy, init_statuses, statuses)
    # The kubelet's GeneratePodInitializedCondition and GenerateContainersReadyCondition
    # (pkg/kubelet/status/generate.go): a Succeeded pod is Initialized, and neither Ready
    # nor ContainersReady, with reason PodCompleted.
    incomplete = [c.name for c in rt.init_containers if not c.ready]
    if not rt.init_containers:
        initialized = _condition(rt, "Initialized", True)
    elif phase == "Succeeded":
        initialized = _condition(rt, "Initialized", True, "PodCompleted")
    elif incomplete:
        initialized = _condition(
            rt,
            "Initialized",
            False,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(incomplete)}]",
        )
    else:
        initialized = _condition(rt, "Initialized", True)
    unready = [c.name for c in rt.containers if not c.ready]
    if phase == "Succeeded":
        reason, message = "PodCompleted", ""
    elif unready:
        reason = "ContainersNotReady"
        message = f"containers with unready status: [{' '.join(unready)}]"
    else:
        reason = message = ""
    status: dict = {
        "phase": phase,
        "conditions": [
            initialized,
            _condition(rt, "Ready", not reason, reason, message),
            _condition(rt, "ContainersReady", not reason, reason, message),
            _condition(rt, "PodScheduled", True),
        ],
        "hostIP": HOST_IP,
        "podIP": rt.ip,
        "podIPs": [{"ip": rt.ip}],
        "startTime": rt.start_time,
    }
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    status["containerStatuses"] = statuses
    return status


def patch_status(api: Api, rt: Pod) -> None:
    """PATCH the pod's status when it changed (or drifted in the API)."""
    status = pod_status(rt)
    current = rt.pod.get("status") or {}
    drifted = current.get("podIP") != rt.ip or current.get("phase") != status["phase"]
    if status == rt.last_status and not drifted:
        return
    try:
        api(
            "PATCH",
            f"/api/v1/namespaces/{rt.namespace}/pods/{rt.name}/status",
            {"status": status},
            patch=True,
        )
    except ApiError as exc:
        if exc.status == 404:
            return
        raise
    rt.last_status = status


def _phase(policy: str, init_statuses: list[dict], statuses: list[dict]) -> str:
    """The pod phase from its container statuses: the kubelet's getPhase
    (pkg/kubelet/kubelet_pods.go, 1.20)."""
    pending_init = failed_init = 0
    for st in init_statuses:
        state, last = st["state"], st["lastState"].get("terminated")
        if "running" in state:
            pending_init += 1
        elif "terminated" in state:
            failed_init += state["terminated"]["exitCode"] != 0
        elif last is not None:
            failed_init += last["exitCode"] != 0
        else:
            pending_init += 1
    running = waiting = stopped = succeeded = 0
    for st in statuses:
        state = st["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"]["exitCode"] == 0
        elif st["lastState"].get("terminated") is not None:
            stopped += 1  # waiting to restart
        else:
            waiting += 1
    if failed_init and policy == "Never":
        return "Failed"
    if pending_init or waiting:
        return "Pending"  # one or more containers has not been started
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"  # all restarting
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"  # OnFailure: restarting
    return "Pending"
