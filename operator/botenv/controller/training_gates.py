"""A training's gates as its Job's pods report them: whether `rasa data validate` passed
(its init container's exit code) and the summary `botenv check-gates` left in its
termination message. Pure: pods in, status.gates and status.testResults out."""

from __future__ import annotations

import json
from typing import Any

from botenv.api.gates import TEST, VALIDATE
from botenv.api.training import TrainingSpec

VALIDATE_STEP, CHECK_STEP = "validate", "gates"  # the init containers (render/gates.py)


def _newest_first(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)


def _terminated(pod: dict[str, Any], name: str) -> dict[str, Any]:
    for container in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if container.get("name") == name:
            return (container.get("state") or {}).get("terminated") or {}
    return {}


def summary_of(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The JSON summary of the newest `botenv check-gates` that finished, or None."""
    for pod in _newest_first(pods):
        done = _terminated(pod, CHECK_STEP)
        if done.get("exitCode") != 0:
            continue
        try:
            summary = json.loads(done.get("message") or "")
        except ValueError:
            continue
        if isinstance(summary, dict) and isinstance(summary.get("gates"), list):
            return summary
    return None


def threshold_missed(spec: TrainingSpec, pods: list[dict[str, Any]]) -> bool:
    """A threshold of spec.test was not met (the Job then stored nothing)."""
    summary = summary_of(pods) if spec.gates.test is not None else None
    return summary is not None and summary.get("passed") is not True


def _validation(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    for pod in _newest_first(pods):
        code = _terminated(pod, VALIDATE_STEP).get("exitCode")
        if code == 0:
            return {"name": VALIDATE, "passed": True, "message": "rasa data validate passed"}
        if code is not None:
            return {
                "name": VALIDATE,
                "passed": False,
                "message": f"rasa data validate exited with code {code}",
            }
    return None


def _gate(entry: dict[str, Any]) -> dict[str, Any]:
    """One gate of a summary, with only the fields (and types) status.gates has."""
    gate: dict[str, Any] = {
        "name": str(entry.get("name", "")),
        "passed": entry.get("passed") is True,
        "message": str(entry.get("message", "")),
    }
    for key in ("value", "threshold"):
        if isinstance(entry.get(key), int | float) and not isinstance(entry.get(key), bool):
            gate[key] = entry[key]
    return gate


def results(spec: TrainingSpec, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """status.gates: one entry per gate that ran (validate, then each threshold of
    spec.test, or `test` when it has none)."""
    gates: list[dict[str, Any]] = []
    validation = _validation(pods) if spec.gates.validate else None
    if validation is not None:
        gates.append(validation)
    summary = summary_of(pods) if spec.gates.test is not None else None
    if summary is not None:
        checked = [_gate(g) for g in summary["gates"] if isinstance(g, dict)]
        gates += checked or [
            {"name": TEST, "passed": True, "message": "rasa test ran (no thresholds set)"}
        ]
    return gates


def figures(spec: TrainingSpec, pods: list[dict[str, Any]]) -> dict[str, float]:
    """status.testResults: the figures rasa test reported."""
    summary = summary_of(pods) if spec.gates.test is not None else None
    found = (summary or {}).get("figures")
    if not isinstance(found, dict):
        return {}
    return {
        str(k): v
        for k, v in found.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def describe(gates: list[dict[str, Any]], *, failed_only: bool = False) -> str:
    """The gates in words, e.g. `validate passed; minIntentF1 0.93 >= 0.8`."""
    parts = []
    for gate in gates:
        if failed_only and gate["passed"]:
            continue
        if "value" in gate and "threshold" in gate:
            sign = ">=" if gate["passed"] else "<"
            parts.append(f"{gate['name']} {gate['value']:g} {sign} {gate['threshold']:g}")
        elif "threshold" in gate:
            parts.append(f"{gate['name']}: {gate['message']}")
        else:
            parts.append(f"{gate['name']} {'passed' if gate['passed'] else 'failed'}")
    return "; ".join(parts)
