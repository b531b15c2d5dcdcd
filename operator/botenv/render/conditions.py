"""Status conditions (kstatus-compatible): Ready, Progressing, Degraded."""

from __future__ import annotations

import datetime
from typing import Any

READY, PROGRESSING, DEGRADED = "Ready", "Progressing", "Degraded"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    type_: str, status: bool, reason: str, message: str, generation: int
) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def merge(
    existing: list[dict[str, Any]] | None, desired: list[dict[str, Any]], timestamp: str
) -> list[dict[str, Any]]:
    """Desired conditions with lastTransitionTime kept where the status did not change."""
    previous = {c.get("type"): c for c in existing or []}
    merged = []
    for cond in desired:
        old = previous.get(cond["type"])
        since = (
            old.get("lastTransitionTime") if old and old.get("status") == cond["status"] else None
        ) or timestamp
        merged.append({**cond, "lastTransitionTime": since})
    return merged


def get(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any]:
    return next((c for c in conditions or [] if c.get("type") == type_), {})
