"""Probes: startup, readiness and liveness, each httpGet, tcpSocket or exec."""

from __future__ import annotations

import concurrent.futures
import http.client
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable
from typing import Any

from botenv.local.node.recorder import Recorder
from botenv.local.node.state import Container, Pod, Probe
from botenv.local.processes import die_with_parent, signal_running_group


def _port(c: Container, rt: Pod, port: Any) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    found = c.ports().get(port) or rt.named_port(port)
    if found is None:
        raise ValueError(f"no container port named {port!r}")
    return found


def run_probe(rt: Pod, c: Container, spec: dict, release: str = "1.20") -> tuple[bool, str]:
    """Run one probe (on a worker thread): (success, message). `release` (e.g. 1.34) goes
    into the User-Agent, as a kubelet of that release sends it."""
    timeout = float(spec.get("timeoutSeconds") or 1)
    if "httpGet" in spec:
        get = spec["httpGet"]
        host = get.get("host") or rt.ip
        port = _port(c, rt, get.get("port"))
        path = get.get("path") or "/"
        scheme = (get.get("scheme") or "HTTP").lower()
        headers = {"User-Agent": f"kube-probe/{release}", "Accept": "*/*"}
        headers.update({h["name"]: h["value"] for h in get.get("httpHeaders") or []})
        conn: http.client.HTTPConnection
        if scheme == "https":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read(1024)
        except (OSError, http.client.HTTPException) as exc:
            return False, f'Get "{scheme}://{host}:{port}{path}": {exc}'
        finally:
            conn.close()
        if 200 <= resp.status < 400:
            return True, ""
        return False, (
            f"HTTP probe failed with statuscode: {resp.status} "
            f"({body[:200].decode(errors='replace').strip()})"
        )
    if "tcpSocket" in spec:
        tcp = spec["tcpSocket"]
        host = tcp.get("host") or rt.ip
        port = _port(c, rt, tcp.get("port"))
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True, ""
        except OSError as exc:
            return False, f"dial tcp {host}:{port}: {exc}"
    if "exec" in spec:
        argv = [c.rewrite_path(a) for a in spec["exec"].get("command") or []]
        if not argv:
            return False, "exec probe without a command"
        argv[0] = c.programs.get(argv[0], argv[0])
        try:
            proc = subprocess.Popen(
                argv,
                cwd=c.cwd or None,
                env=c.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGKILL),
            )
        except OSError as exc:
            return False, f"exec {argv[0]}: {exc}"
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            signal_running_group(proc, signal.SIGKILL)
            proc.communicate()
            return False, f"command timed out after {timeout:g}s"
        text = out.decode(errors="replace").strip()[-300:]
        if proc.returncode == 0:
            return True, ""
        return False, f"command exited with {proc.returncode}: {text}"
    return False, "unsupported probe handler (the test kubelet runs httpGet, tcpSocket, exec)"


class Prober:
    """Runs the probes of running containers on a small thread pool and acts on their
    results: a startup probe passed starts the others, readiness sets ready, a failed
    liveness or startup probe has the container killed (and restarted)."""

    def __init__(
        self,
        recorder: Recorder,
        kill: Callable[[Pod, Container, float], None],
        workers: int,
        version: str = "v1.20.2",
    ) -> None:
        self.recorder = recorder
        self.kill = kill
        self.release = ".".join(version.lstrip("v").split(".")[:2])
        self.executor: concurrent.futures.ThreadPoolExecutor | None = (
            concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="test-kubelet-probe")
        )

    def stop(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)

    def tick(self, rt: Pod, c: Container, now: float) -> None:
        for kind in ("startup", "liveness", "readiness"):
            probe = c.probes.get(kind)
            if probe is None or (kind == "startup") == c.started:
                continue
            if probe.future is not None:
                if not probe.future.done():
                    continue
                future, probe.future = probe.future, None
                try:
                    ok, message = future.result()
                except Exception as exc:  # a bug in a probe: count it as a failure
                    ok, message = False, f"{type(exc).__name__}: {exc}"
                self._probe_result(rt, c, probe, ok, message, now)
                if c.killing or c.proc is None:
                    return
            if probe.future is None and now >= probe.next_at and self.executor is not None:
                probe.next_at = now + probe.period()
                probe.future = self.executor.submit(run_probe, rt, c, probe.spec, self.release)

    def _probe_result(
        self, rt: Pod, c: Container, probe: Probe, ok: bool, message: str, now: float
    ) -> None:
        spec = probe.spec
        if ok:
            probe.successes += 1
            probe.failures = 0
            if probe.kind == "startup":
                c.mark_started(now)
            elif probe.kind == "readiness" and (
                probe.successes >= int(spec.get("successThreshold") or 1)
            ):
                c.ready = True
            return
        probe.failures += 1
        probe.successes = 0
        threshold = int(spec.get("failureThreshold") or 3)
        title = probe.kind.capitalize()
        if probe.failures == 1 or probe.failures >= threshold:
            self.recorder.event(
                rt.pod["metadata"],
                "Unhealthy",
                f"{title} probe failed: {message}",
                "Warning",
                c.field_path,
            )
        if probe.failures < threshold:
            return
        if probe.kind == "readiness":
            if c.ready:
                self.recorder.log(f"{rt.namespace}/{rt.name}/{c.name}: not ready: {message}")
            c.ready = False
            return
        self.recorder.log(
            f"{rt.namespace}/{rt.name}/{c.name}: {probe.kind} probe failed "
            f"{probe.failures}x ({message}): restarting it"
        )
        self.recorder.event(
            rt.pod["metadata"],
            "Killing",
            f"Container {c.name} failed {probe.kind} probe, will be restarted",
            container=c.field_path,
        )
        self.kill(rt, c, now)
