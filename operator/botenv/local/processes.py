"""Local server processes: free ports, log tails, process groups that die with their parent.

``ManagedProcess`` is a server process on loopback ports picked up front: ``start()`` runs
it in its own process group (tied to the starting thread by PR_SET_PDEATHSIG, so it does
not outlive a crashed parent) and waits until it is ready; ``stop()`` stops the whole
group (a graceful signal first, then SIGTERM and SIGKILL) and waits for its port to close.
Subclasses give its argv, environment and readiness check.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

HOST = "127.0.0.1"

_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


# -- ports ---------------------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    """A free TCP port on host (free now: another process may take it before it is used)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = HOST) -> list[int]:
    """count different free TCP ports on host (all held open until every one is chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def wait_port_closed(port: int, host: str = HOST, timeout: float = 5.0) -> None:
    """Wait (at most timeout) until nothing accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and port_open(port, host, 0.2):
        time.sleep(0.05)


# -- logs ----------------------------------------------------------------------------------


def tail_text(text: str, lines: int = 30) -> str:
    """The last lines of text."""
    return "\n".join(text.splitlines()[-lines:])


def tail(path: Path, lines: int = 30, missing: str | None = None) -> str:
    """The last lines of the file at path; missing (default ``(no log at PATH)``) when it
    cannot be read."""
    try:
        return tail_text(Path(path).read_text(errors="replace"), lines)
    except OSError:
        return f"(no log at {path})" if missing is None else missing


# -- process groups -----------------------------------------------------------------------


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the kernel send sig to the child when the thread that
    started it ends (even by SIGKILL of the whole process). Start long-lived children from
    a long-lived thread. It runs between fork and exec, after Popen's user switch (which
    would clear it). A no-op off Linux."""

    def preexec() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, int(sig))

    return preexec


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send sig to proc's process group (which may outlive its leader); gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def signal_running_group(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
    """Send sig to proc's process group while proc is not reaped (once reaped, its pid may
    belong to someone else)."""
    if proc is None or proc.poll() is not None:
        return
    signal_group(proc, sig)


def stop_group(
    proc: subprocess.Popen[bytes],
    timeout: float = 5.0,
    *,
    graceful_signal: int | None = None,
    graceful_timeout: float = 0.0,
) -> None:
    """Stop proc and its process group: graceful_signal to proc alone first (if given) with
    graceful_timeout to exit, then SIGTERM to the group and SIGKILL after timeout; the
    group's stragglers are killed after its leader has exited."""
    if graceful_signal is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(graceful_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(graceful_timeout)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        signal_group(proc, sig)
        try:
            proc.wait(timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    signal_group(proc, signal.SIGKILL)  # children the leader left behind


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    death_signal: int = signal.SIGTERM,
    **kwargs: Any,
) -> subprocess.Popen[bytes]:
    """Start argv in its own process group, stdout and stderr appended to log_path after a
    line naming the command; it gets death_signal when the calling thread ends."""
    with Path(log_path).open("ab") as log:
        log.write(f"--- {time.strftime('%H:%M:%S')} start {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own process group: stopped as a whole
            preexec_fn=die_with_parent(death_signal),
            **kwargs,
        )


# -- a managed server process ---------------------------------------------------------------


class ProcessError(RuntimeError):
    """A managed process could not be started or did not become ready."""


class ManagedProcess:
    """One server process (in its own process group) with start()/stop() on a port fixed at
    construction, and its log under workdir.

    Subclasses give argv() and ready(), and may give env(), popen_kwargs(), log_tails(),
    `error` (the class of what start() raises) and exited_error() for a special case.
    """

    name = "process"
    error: type[Exception] = ProcessError
    start_timeout = 30.0
    ready_interval = 0.1  # seconds between readiness checks
    # Sent to the server process alone first, for a clean shutdown; the whole group gets
    # SIGTERM and then SIGKILL if it is still there after stop_timeout.
    graceful_signal: int = signal.SIGTERM
    stop_timeout = 15.0
    # After the first successful check, look again that our process still lives (another
    # process holding the port may have answered the check).
    confirm_alive = False

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = port or free_port()
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- hooks ---------------------------------------------------------------------------

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> Mapping[str, str] | None:
        return None

    def popen_kwargs(self) -> dict[str, Any]:
        return {}

    def ready(self) -> bool:
        raise NotImplementedError

    def log_tails(self) -> str:
        return f"last lines of {self.log_path}:\n{tail(self.log_path)}"

    def exited_error(self, code: int) -> Exception:
        """The error when the process exits before it is ready."""
        return self.error(
            f"{self.name} exited with code {code} while starting on port {self.port}; "
            f"{self.log_tails()}"
        )

    def not_ready_error(self) -> Exception:
        """The error when it is not ready after start_timeout."""
        return self.error(
            f"{self.name} not ready on port {self.port} after {self.start_timeout:.0f} s; "
            f"{self.log_tails()}"
        )

    # -- public API ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop the process group (graceful signal, then SIGTERM/SIGKILL); wait for its port
        to close. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            was_running = proc.poll() is None
            stop_group(
                proc, 5.0, graceful_signal=self.graceful_signal, graceful_timeout=self.stop_timeout
            )
            if was_running:  # else the port may be someone else's (a failed start)
                wait_port_closed(self.port, self.host)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Start the process (if it is not running) and wait until it is ready; stopped
        again when it does not get there."""
        if self.running:
            return self
        began = time.monotonic()
        try:
            self.launch()
            self.wait_ready(began)
        except BaseException:
            self.stop()
            raise
        return self

    # -- building blocks -----------------------------------------------------------------

    def spawn(
        self,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None,
        death_signal: int = signal.SIGTERM,
        cwd: Path | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen[bytes]:
        """A process of this server (the server itself, or a helper) in its own group."""
        return spawn(
            argv, log_path, env=env, cwd=cwd or self.workdir, death_signal=death_signal, **kwargs
        )

    def launch(self) -> None:
        self._proc = self.spawn(
            self.argv(), self.log_path, self.env(), self.graceful_signal, **self.popen_kwargs()
        )

    def wait_ready(self, began: float) -> None:
        """Until ready() (from began on, at most start_timeout): exited_error() when the
        process exits first, not_ready_error() on time-out."""
        deadline = began + self.start_timeout
        while True:
            proc = self._proc
            assert proc is not None
            if proc.poll() is not None:
                raise self.exited_error(proc.returncode)
            if self.ready():
                break
            if time.monotonic() > deadline:
                raise self.not_ready_error()
            time.sleep(self.ready_interval)
        if self.confirm_alive:
            time.sleep(0.05)
            if proc.poll() is not None:
                raise self.exited_error(proc.returncode)


def model_server_argv(port: int, cache_dir: Path, host: str = HOST) -> list[str]:
    """`botenv model-server` of this interpreter on host:port (loopback by default)."""
    return [
        sys.executable,
        "-m",
        "botenv",
        "model-server",
        "--host",
        host,
        "--port",
        str(port),
        "--cache-dir",
        str(cache_dir),
    ]


def own_environ(**settings: str) -> dict[str, str]:
    """This process's environment for a botenv process of its own: without the caller's
    botenv settings and kubeconfig (the process gets its own), plus `settings`."""
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith("BOTENV_") and k != "KUBECONFIG"
    }
    return {**inherited, **settings}
