"""The one way a reconcile reports: a status patch (only when it changed) and Events."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from botenv.controller.state import State

log = logging.getLogger(__name__)

Event = tuple[str, str, str]  # (type, reason, message)


def report(
    state: State,
    kind: str,
    body: dict[str, Any],
    status: dict[str, Any],
    *,
    removable: Iterable[str],
    events: Iterable[Event],
    timestamp: str,
) -> None:
    """Patch `body`'s status to `status` when it differs, removing the `removable` fields
    it no longer has (a merge patch keeps what it does not name), then post `events`."""
    meta = body["metadata"]
    previous = body.get("status") or {}
    patch = dict(status)
    for key in removable:
        if key in previous and key not in status:
            patch[key] = None
    for key, value in status.items():
        old = previous.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and old.keys() - value.keys():
            # A merge patch keeps the keys of a nested object it does not name.
            patch[key] = {**value, **dict.fromkeys(old.keys() - value.keys())}
    if patch != previous:
        state.remember(state.kube.patch_status(kind, meta["namespace"], meta["name"], patch))
    for type_, reason, message in events:
        state.kube.event(body, type_, reason, message, timestamp)
        # The log says what the Events say, with their reason (runtime/logformat.py).
        log.log(
            logging.WARNING if type_ == "Warning" else logging.INFO,
            "%s",
            message,
            extra={"reason": reason, "object": f"{kind} {meta['namespace']}/{meta['name']}"},
        )
