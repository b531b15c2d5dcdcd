"""Reading a training Job's progress and failure from its status and its pods'."""

from __future__ import annotations

from typing import Any

from botenv.render import conditions as cond


def job_condition(job: dict[str, Any], type_: str) -> dict[str, Any]:
    """The Job's condition of `type_` when it is True, else {}."""
    found = cond.get((job.get("status") or {}).get("conditions"), type_)
    return found if found.get("status") == "True" else {}


def phase_of(pods: list[dict[str, Any]]) -> str:
    """Training while `rasa train` (the init container) runs, Uploading after it."""
    for pod in pods:
        # `rasa train` is the last init container (an archive source fetches first)
        init = ((pod.get("status") or {}).get("initContainerStatuses") or [{}])[-1]
        done = ((init.get("state") or {}).get("terminated") or {}).get("exitCode") == 0
        if done:
            return "Uploading"
    return "Training" if pods else "Pending"


def failure_of(job: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[str, str, str]:
    """(reason, message, log tail) of a failed Job, from its condition and its pods' last
    terminated container (whose message the kubelet fills from the log's tail)."""
    failed = job_condition(job, "Failed")
    reason = failed.get("reason") or "Failed"
    message = failed.get("message") or "the training Job failed"
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True):
        status = pod.get("status") or {}
        statuses = [
            (c, "SourceFailed" if c.get("name") == "fetch-project" else "TrainingFailed")
            for c in status.get("initContainerStatuses") or []
        ] + [(c, "UploadFailed") for c in status.get("containerStatuses") or []]
        for container, why in statuses:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if terminated.get("exitCode", 0) != 0:
                if reason in ("BackoffLimitExceeded", "Failed"):
                    reason = why
                step = {"TrainingFailed": "rasa train", "SourceFailed": "botenv fetch-project"}.get(
                    why, "botenv upload"
                )
                return (
                    reason,
                    f"{step} exited with code {terminated['exitCode']}: {message}",
                    (terminated.get("message") or "")[-2048:],
                )
    return reason, message, ""
