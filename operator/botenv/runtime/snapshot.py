"""What the indexes keep of a watched object, kept small: a fleet holds five children and
a pod view per environment for as long as the operator runs.

Each watch event is a JSON document of its own, so every object holds its own copy of every
key ("metadata", "containerPort", ...) and of every repeated value (labels, images, the
same condition message on every environment): about half of an object's memory. The
snapshot shares them across objects (interned strings), and drops managedFields (large,
never read)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

# Longer strings (a ConfigMap's file, a long message) are mostly one of a kind: not shared.
SHARED_UP_TO = 512


def compact(value: Any) -> Any:
    """`value` (parsed JSON) rebuilt with its keys and short strings shared; equal to it."""
    if isinstance(value, dict):
        return {sys.intern(k): compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v) for v in value]
    if isinstance(value, str) and len(value) <= SHARED_UP_TO:
        return sys.intern(value)
    return value


def snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """What an index keeps of `body`: all but metadata.managedFields, compacted. A new
    object: kopf's own parsed event is not kept alive by it."""
    meta = body.get("metadata") or {}
    data = {k: v for k, v in body.items() if k != "metadata"}
    data["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return compact(data)  # type: ignore[no-any-return]
