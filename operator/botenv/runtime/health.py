"""The operator's health port, alive from the first second: /healthz, /readyz, /metrics.

kopf's own liveness endpoint starts only with kopf, so a standby replica waiting for the
leader Lease would fail its liveness probe and be restarted again and again.

- /healthz: 200 while the operator can do its job; 503 naming what is stuck when the
  watches have delivered no event and the periodic resync has not run for `stall_seconds`,
  or the work queue holds keys but no reconcile finished for `stall_seconds`. A standby
  answers 200 ("standby"): waiting for the Lease is its job.
- /readyz: 200 ("leader") on the replica that holds the Lease and reconciles; 503
  ("standby") on the others, and while the leader is still starting.
- /metrics: Prometheus text format (controller/metrics.py, and prometheus_client's process
  metrics); botenv_leader says which of the above this replica is.
"""

from __future__ import annotations

import dataclasses
import http.server
import threading
import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from botenv.controller import metrics


@dataclasses.dataclass(frozen=True)
class Activity:
    """What the running operator did last (time.monotonic() values)."""

    started: bool  # the operator's start-up has run (it leads and reconciles)
    last_event: float
    last_resync: float
    busy: bool  # the work queue holds or runs keys
    last_done: float  # the last reconcile finished then


def problems(activity: Activity, now: float, stall_seconds: float) -> list[str]:
    """Pure: why the operator cannot do its job, empty when it can."""
    if not activity.started:
        return []
    found = []
    quiet = now - max(activity.last_event, activity.last_resync)
    if quiet > stall_seconds:
        found.append(f"no watch event and no resync for {quiet:.0f}s")
    stalled = now - activity.last_done
    if activity.busy and stalled > stall_seconds:
        found.append(f"the work queue has work but finished nothing for {stalled:.0f}s")
    return found


def running_activity() -> Activity:
    """The in-process operator's activity (runtime/operator.py)."""
    from botenv.runtime import operator as wiring

    queue = wiring.QUEUE
    if wiring.STATE is None or queue is None:
        return Activity(False, 0.0, 0.0, False, 0.0)
    return Activity(True, wiring.LAST_EVENT, wiring.LAST_RESYNC, queue.busy, queue.last_done)


def serve_health(
    address: str,
    leading: Callable[[], bool],
    *,
    stall_seconds: float,
    activity: Callable[[], Activity] = running_activity,
) -> http.server.ThreadingHTTPServer:
    """Serve /healthz, /readyz and /metrics on HOST:PORT (see the module's docstring)."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--health-address: expected HOST:PORT, got {address!r}")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?")[0]
            if path == "/metrics":
                self._answer(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
                return
            if path not in ("/healthz", "/readyz"):
                self.send_error(404)
                return
            current = activity()
            role = "leader" if leading() else "standby"
            if path == "/readyz":
                ok = role == "leader" and current.started
                text = role if current.started or role == "standby" else "starting"
                self._answer(200 if ok else 503, text.encode())
                return
            found = problems(current, time.monotonic(), stall_seconds)
            self._answer(503 if found else 200, "; ".join(found or [role]).encode())

        def _answer(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # probes every few seconds: no log
            pass

    metrics.LEADER.set_function(lambda: 1.0 if leading() and activity().started else 0.0)
    server = http.server.ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
