"""A tiny /healthz endpoint for the operator's probes, alive from the first second.

kopf's own liveness endpoint starts only with kopf, so a standby replica waiting for the
leader Lease would fail its liveness probe and be restarted again and again.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable


def serve_health(address: str, state: Callable[[], str]) -> http.server.ThreadingHTTPServer:
    """Serve GET /healthz -> 200 with `state()` ("leader", "standby") on HOST:PORT."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--health-address: expected HOST:PORT, got {address!r}")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] not in ("/healthz", "/readyz"):
                self.send_error(404)
                return
            body = state().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # probes every few seconds: no log
            pass

    server = http.server.ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
