"""Reading a training Job's progress and failure from its status and its pods'."""

from __future__ import annotations

from typing import Any

from botenv.render import conditions as cond


def job_condition(job: dict[str, Any], type_: str) -> dict[str, Any]:
    """The Job's condition of `type_` when it is True, else {}."""
    found = cond.get((job.get("status") or {}).get("conditions"), type_)
    return found if found.get("status") == "True" else {}


# The init containers of a training Job, in the order they run: the phase while each
# runs, the reason when it fails, and the step as a failure message names it. Another
# init container counts as training; a container (the last step) as the upload.
STEPS = {
    "fetch-project": ("Training", "SourceFailed", "botenv fetch-project"),
    "validate": ("Validating", "ValidationFailed", "rasa data validate"),
    "train": ("Training", "TrainingFailed", "rasa train"),
    "test": ("Testing", "TestFailed", "rasa test"),
    "gates": ("Testing", "TestFailed", "botenv check-gates"),
}
TRAIN_STEP = STEPS["train"]
UPLOAD_STEP = ("Uploading", "UploadFailed", "botenv upload")


def _exit_code(container: dict[str, Any]) -> int | None:
    return ((container.get("state") or {}).get("terminated") or {}).get("exitCode")


def phase_of(pods: list[dict[str, Any]]) -> str:
    """The phase of the step that runs: Validating, Training, Testing, then Uploading once
    every init container is done."""
    running = ""
    for pod in pods:
        inits = (pod.get("status") or {}).get("initContainerStatuses") or []
        if inits and _exit_code(inits[-1]) == 0:
            return "Uploading"
        step: dict[str, Any] = next((c for c in inits if _exit_code(c) != 0), {})
        running = running or STEPS.get(step.get("name", ""), TRAIN_STEP)[0]
    return running if pods else "Pending"


def failure_of(job: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[str, str, str]:
    """(reason, message, log tail) of a failed Job, from its condition and its pods' last
    terminated container (whose message the kubelet fills from the log's tail)."""
    failed = job_condition(job, "Failed")
    reason = failed.get("reason") or "Failed"
    message = failed.get("message") or "the training Job failed"
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True):
        status = pod.get("status") or {}
        statuses = [
            (c, STEPS.get(c.get("name", ""), TRAIN_STEP))
            for c in status.get("initContainerStatuses") or []
        ] + [(c, UPLOAD_STEP) for c in status.get("containerStatuses") or []]
        for container, (_, why, step) in statuses:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if terminated.get("exitCode", 0) != 0:
                if reason in ("BackoffLimitExceeded", "Failed"):
                    reason = why
                return (
                    reason,
                    f"{step} exited with code {terminated['exitCode']}: {message}",
                    (terminated.get("message") or "")[-2048:],
                )
    return reason, message, ""
