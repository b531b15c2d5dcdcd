"""Which optional APIs the cluster serves (the Gateway API's HTTPRoute, say), asked once per
group version and asked again after `forget`: the periodic resync calls it, so CRDs installed
while the operator runs are found without a restart."""

from __future__ import annotations

import threading
from typing import Protocol


class _Discovers(Protocol):
    def served_resources(self, group_version: str) -> set[str]: ...


class Discovery:
    def __init__(self, kube: _Discovers) -> None:
        self._kube = kube
        self._lock = threading.Lock()  # reconciles run in worker threads
        self._known: dict[str, set[str]] = {}

    def serves(self, group_version: str, resource: str) -> bool:
        """Whether the server serves `resource` (a plural, e.g. httproutes) in
        `group_version`. An API error propagates (the reconcile is retried) and is not
        remembered."""
        with self._lock:
            known = self._known.get(group_version)
        if known is None:
            known = self._kube.served_resources(group_version)
            with self._lock:
                self._known[group_version] = known
        return resource in known

    def forget(self) -> None:
        with self._lock:
            self._known.clear()
