"""Run the botenv operator in-process (kopf's KopfRunner) so tests can read its
write counters; it talks to the API server through its own kubeconfig like any process."""

from __future__ import annotations

import os
import time
from pathlib import Path

from kopf.testing import KopfRunner

import botenv.runtime.operator as wiring
from botenv.local.processes import HOST, model_server_argv  # noqa: F401  (re-exported)

# The storage emulators listen on HOST: an operator or model server that reads from them
# needs that address exempt from the storage policy (loopback is refused by default, which
# tests/cluster/test_storage_policy.py shows on 127.0.0.2).
EMULATORS_ALLOWED = {"BOTENV_STORAGE_ALLOWED_NETWORKS": f"{HOST}/32"}


class OperatorProcess:
    def __init__(self, kubeconfig: Path, env: dict[str, str]) -> None:
        self.kubeconfig = kubeconfig
        self.env = env
        self.runner: KopfRunner | None = None
        self._saved: dict[str, str | None] = {}

    def start(self) -> OperatorProcess:
        # kopf and botenv read these from the process environment; stop() puts it back, so
        # nothing leaks into later tests or the processes they start.
        wanted = {"KUBECONFIG": str(self.kubeconfig), **self.env}
        self._saved = {k: os.environ.get(k) for k in wanted}
        os.environ.update(wanted)
        self.runner = KopfRunner(
            ["run", "--standalone", "--all-namespaces", "-m", "botenv.runtime"], timeout=60
        )
        self.runner.__enter__()
        deadline = time.monotonic() + 60
        while wiring.STATE is None or wiring.QUEUE is None:
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the operator did not start within 60 s")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.timeout = 30
            self.runner.__exit__(None, None, None)
            self.runner = None
            wiring.STATE = wiring.QUEUE = None
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved = {}

    @property
    def writes(self) -> int:
        """Write calls (applies, status patches, events) since this operator started."""
        return sum(wiring.STATE.kube.writes.values())

    def writes_in(self, namespace: str, name: str = "") -> dict[str, int]:
        """Write calls by kind in a namespace (on objects named `name`, if given)."""
        counts: dict[str, int] = {}
        for (what, ns, obj), n in wiring.STATE.kube.writes.items():
            if ns == namespace and name in ("", obj):
                counts[what] = counts.get(what, 0) + n
        return counts

    def settle(self, timeout: float = 30.0, quiet: float = 1.5) -> None:
        """Wait until the work queue has been idle for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        idle_since = None
        while time.monotonic() < deadline:
            if wiring.QUEUE.idle.is_set():
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= quiet:
                    return
            else:
                idle_since = None
            time.sleep(0.1)
        raise AssertionError("the operator did not settle")

    def resyncs(self, count: int) -> None:
        """`count` resyncs, each until the operator settles: an idle operator writes
        nothing across them (compare `writes` or `writes_in` before and after)."""
        for _ in range(count):
            self.resync_now()
            self.settle()

    def resync_now(self) -> None:
        """Enqueue every known object, as the periodic resync does."""
        wiring.STATE.discovery.forget()
        for ns, name in list(wiring.STATE.environments):
            _threadsafe_add(wiring.QUEUE, ("env", ns, name))
        for ns, name in list(wiring.STATE.tags):
            _threadsafe_add(wiring.QUEUE, ("tag", ns, name))


def _threadsafe_add(queue: wiring.WorkQueue, key: tuple) -> None:
    queue.loop.call_soon_threadsafe(queue.add, key)
