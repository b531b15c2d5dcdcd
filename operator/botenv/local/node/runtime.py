"""Containers as local process groups: starting, exits and restarts, killing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from botenv.local.node.constants import (
    DEFAULT_TERMINATION_PATH,
    MAX_FALLBACK_LOG_BYTES,
    MAX_FALLBACK_LOG_LINES,
    MAX_TERMINATION_MESSAGE,
    RETRY_SECONDS,
    RUNTIME,
)
from botenv.local.node.envs import PodConfig, expand
from botenv.local.node.images import BUILTIN_IMAGES, Image, Placeholders, find_image, repository
from botenv.local.node.recorder import Recorder
from botenv.local.node.security import (
    RootFilesystem,
    non_root_error,
    read_only_root,
    run_as,
    unseal,
)
from botenv.local.node.state import ConfigError, Container, MountError, Pod, Probe, utc_now
from botenv.local.node.volumes import Volumes, path_rewriter
from botenv.local.processes import die_with_parent, signal_running_group


def exit_code(returncode: int) -> int:
    return returncode if returncode >= 0 else 128 - returncode


def read_tail(path: Path, limit: int, start: int = 0) -> bytes:
    """The last `limit` bytes of the file from offset `start` on."""
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(start, size - limit))
        return f.read(limit)


def last_lines(data: bytes, count: int) -> bytes:
    """The last `count` newline-terminated lines of data (a last line without a newline
    counts as one), as `kubectl logs --tail` counts them."""
    stop = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(count):
        stop = data.rfind(b"\n", 0, stop)
        if stop < 0:
            return data
    return data[stop + 1 :]


# Put first on PYTHONPATH of every process it starts: inside a pod, "localhost" is the pod.
# A Python process that connects to 127.0.0.1/localhost/::1 on one of its pod's container
# ports reaches the pod's IP instead (botenv's readiness.py asks 127.0.0.1:5005). Other
# ports (peers the test runs on 127.0.0.1) are left alone.
SITECUSTOMIZE = '''\
"""Test kubelet: connections to localhost on the pod's own ports go to the pod's IP."""
import os as _os
import socket as _socket

_ip = _os.environ.get("BOTENV_KUBELET_POD_IP", "")
_ports = {int(p) for p in _os.environ.get("BOTENV_KUBELET_POD_PORTS", "").split(",") if p}
if _ip and _ports:
    _LOCAL = {"127.0.0.1", "localhost", "::1", "::ffff:127.0.0.1"}

    def _pod_address(sock, address):
        if (isinstance(address, tuple) and len(address) >= 2 and address[0] in _LOCAL
                and address[1] in _ports):
            if sock.family == _socket.AF_INET6:
                return ("::ffff:" + _ip, *address[1:])
            return (_ip, *address[1:])
        return address

    _connect, _connect_ex = _socket.socket.connect, _socket.socket.connect_ex

    def connect(self, address):
        return _connect(self, _pod_address(self, address))

    def connect_ex(self, address):
        return _connect_ex(self, _pod_address(self, address))

    _socket.socket.connect, _socket.socket.connect_ex = connect, connect_ex
'''


class ContainerRuntime:
    """Runs containers as local process groups: builds each start's argv, environment,
    volumes and working directory from the pod spec and its Image; turns exits into
    restarts with back-off or terminated states; kills and reaps processes."""

    def __init__(
        self,
        *,
        workdir: Path,
        images: dict[str, Image],
        placeholders: Placeholders,
        config: PodConfig,
        volumes: Volumes,
        rewrite_urls: Callable[[str], str],
        recorder: Recorder,
        shim_dir: Path,
        backoff_seconds: tuple[float, float],
        max_grace_seconds: float,
    ) -> None:
        self.workdir = workdir
        self.images = images  # the kubelet's own dict: tests add images while it runs
        self.placeholders = placeholders
        self.config = config
        self.volumes = volumes
        self.rewrite_urls = rewrite_urls
        self.recorder = recorder
        self.shim_dir = shim_dir
        self.backoff_seconds = backoff_seconds
        self.max_grace_seconds = max_grace_seconds
        self.reaping: list[tuple[subprocess.Popen[bytes], float]] = []

    def exited(self, rt: Pod, c: Container, now: float) -> None:
        assert c.proc is not None
        code = exit_code(c.proc.returncode)
        ran = now - c.started_mono
        c.proc = None
        for probe in c.probes.values():
            if probe.future is not None:
                probe.future.cancel()
        state = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": c.started_at,
            "finishedAt": utc_now(),
            "containerID": c.container_id,
        }
        message = self.termination_message(rt, c, code)
        if message:
            state["message"] = message
        c.ready = c.started = c.killing = False
        self.recorder.log(
            f"{rt.namespace}/{rt.name}/{c.name}: exited with {code} after {ran:.1f} s"
        )
        policy = rt.restart_policy
        # An init container that exited 0 is done whatever the policy (Always restarts it
        # only on failure, as OnFailure does).
        done = code == 0 and (c.init or policy == "OnFailure")
        if policy == "Never" or done:
            c.state, c.terminated = "terminated", state
            if c.init and code == 0:
                c.ready = True
            elif c.init:
                self.recorder.log(
                    f"{rt.namespace}/{rt.name}: init container {c.name} failed with "
                    "restartPolicy Never: the pod fails"
                )
            return
        c.last_terminated = state
        c.restart_count += 1
        base, cap = self.backoff_seconds
        if ran > 2 * cap:
            c.crashes = 0  # it ran long enough: no back-off
        delay = 0.0 if c.crashes == 0 else min(cap, base * 2 ** (c.crashes - 1))
        c.crashes += 1
        c.next_start = now + delay
        c.state = "waiting"
        if delay:
            c.reason = "CrashLoopBackOff"
            c.message = (
                f"back-off {delay:.0f}s restarting failed container={c.name} "
                f"pod={rt.name}_{rt.namespace}({rt.uid})"
            )
            self.recorder.event(
                rt.pod["metadata"],
                "BackOff",
                "Back-off restarting failed container",
                "Warning",
                c.field_path,
            )
        else:
            c.reason, c.message = "ContainerCreating", ""

    def wait(
        self,
        rt: Pod,
        c: Container,
        reason: str,
        message: str,
        retry: float,
        now: float,
        event: str = "Failed",
    ) -> None:
        c.state, c.reason, c.message = "waiting", reason, message
        c.next_start = now + retry
        if c.warned != message:
            c.warned = message
            self.recorder.log(f"{rt.namespace}/{rt.name}/{c.name}: {reason}: {message}")
            self.recorder.event(
                rt.pod["metadata"], event, f"Error: {message}", "Warning", c.field_path
            )

    def start(self, rt: Pod, c: Container, now: float) -> None:
        image = find_image(self.images, c.image)
        if image is None:
            self.wait(
                rt,
                c,
                "ErrImagePull",
                f'failed to pull image "{c.image}": the test kubelet has no mapping for '
                f"it (TestKubelet images=...; known: {sorted(self.images)} and the "
                f"built-in {sorted(BUILTIN_IMAGES)})",
                5.0,
                now,
            )
            return
        refusal = non_root_error(rt, c, image)
        if refusal:
            self.wait(rt, c, "CreateContainerConfigError", refusal, RETRY_SECONDS, now)
            return
        cache: dict[tuple[str, str], dict[str, bytes] | None] = {}
        try:
            volumes = self.volumes.volumes(rt, cache)
            mounts = self.volumes.mounts(rt, c, volumes)
            env = self.config.env(rt, c, cache)
        except MountError as exc:
            self.wait(rt, c, "ContainerCreating", str(exc), RETRY_SECONDS, now, "FailedMount")
            return
        except ConfigError as exc:
            self.wait(rt, c, "CreateContainerConfigError", str(exc), RETRY_SECONDS, now)
            return
        message_path = c.spec.get("terminationMessagePath", DEFAULT_TERMINATION_PATH)
        termination_log = None
        if message_path:
            # A fresh, empty, world-writable file for each run, as the kubelet bind-mounts.
            termination_log = rt.dir / "termination-log" / f"{c.name}.{c.restart_count}"
            termination_log.parent.mkdir(parents=True, exist_ok=True)
            termination_log.write_bytes(b"")
            termination_log.chmod(0o666)
            mounts.append((message_path.rstrip("/"), str(termination_log)))
        rewrite_path = path_rewriter(mounts)

        def fix(value: str) -> str:
            return self.rewrite_urls(rewrite_path(value))

        raw_env, env = env, {k: fix(v) for k, v in env.items()}
        programs = {k: self.placeholders(v) for k, v in image.programs.items()}
        if c.spec.get("command"):
            command = [fix(expand(a, env)) for a in c.spec["command"]]
            command[0] = programs.get(command[0], command[0])
            default_args: list[str] = []
        else:
            command = [self.placeholders(a) for a in image.entrypoint]
            default_args = list(image.cmd)
        if c.spec.get("args"):
            args = [fix(expand(a, env)) for a in c.spec["args"]]
        else:
            args = default_args
        extra: dict[str, str] = {}
        if image.bind is not None:
            args, extra = image.bind(rt.ip, list(args))
        cwd = Path(image.workdir) if image.workdir else rt.dir / f"{c.name}.cwd"
        if c.spec.get("workingDir"):
            mapped = rewrite_path(c.spec["workingDir"])
            if mapped != c.spec["workingDir"]:
                cwd = Path(mapped)
        home = self.workdir / "home"  # shared: caches (matplotlib, ...) are built once
        tmp = rt.dir / "tmp"  # the container's /tmp, removed with the pod
        rootfs = None
        if read_only_root(rt, c):
            # Only its mounts are writable: the rest is its read-only root filesystem.
            root = rt.dir / "rootfs" / c.name
            unseal(root)
            shutil.rmtree(root, ignore_errors=True)
            rootfs = RootFilesystem(root, rewrite_path)
            if c.spec.get("workingDir") or not image.workdir:
                cwd = rootfs.place(c.spec.get("workingDir") or "/")
            home = rootfs.place(raw_env.get("HOME") or image.home)
            tmp = rootfs.place(raw_env.get("TMPDIR") or "/tmp")
        for directory in (cwd, home, tmp):
            directory.mkdir(parents=True, exist_ok=True)
        if rootfs is not None:
            rootfs.seal()
        process_env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "LANG": "C.UTF-8",
            "HOSTNAME": rt.name,
            **image.env,
            **env,
            **extra,
            **({"HOME": str(home), "TMPDIR": str(tmp)} if rootfs is not None else {}),
            "BOTENV_KUBELET_POD_IP": rt.ip,
            "BOTENV_KUBELET_POD_PORTS": ",".join(str(p) for p in sorted(rt.all_ports())),
        }
        process_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(self.shim_dir), env.get("PYTHONPATH", "")) if p
        )
        argv = [*command, *args]
        log_path = rt.dir / f"{c.name}.log"
        try:
            with log_path.open("ab") as out:
                log_offset = os.fstat(out.fileno()).st_size
                proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=process_env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent(signal.SIGKILL),
                )
        except OSError as exc:
            self.wait(rt, c, "RunContainerError", f"starting {argv[0]}: {exc}", RETRY_SECONDS, now)
            return
        c.proc, c.argv, c.env, c.cwd = proc, argv, process_env, str(cwd)
        c.user, c.rootfs, c.root_writes = run_as(rt.pod["spec"], c.spec, image), rootfs, ()
        c.rewrite_path, c.programs = rewrite_path, programs
        c.log_offset, c.termination_log = log_offset, termination_log
        c.state, c.reason, c.message, c.warned = "running", "", "", ""
        c.started_at, c.started_mono = utc_now(), now
        c.image_id = (
            f"{RUNTIME}://{repository(c.image)}@sha256:"
            + hashlib.sha256(" ".join(command).encode()).hexdigest()
        )
        c.container_id = f"{RUNTIME}://{rt.uid[:8]}-{c.name}-{c.restart_count}-{proc.pid}"
        c.probes = {
            kind: Probe(kind, c.spec[f"{kind}Probe"])
            for kind in ("startup", "readiness", "liveness")
            if c.spec.get(f"{kind}Probe")
        }
        if c.init:
            pass  # no probes; ready once it has exited 0
        elif "startup" in c.probes:
            c.probes["startup"].next_at = now + c.probes["startup"].delay()
        else:
            c.mark_started(now)
        self.recorder.log(
            f"{rt.namespace}/{rt.name}/{c.name}: started pid {proc.pid} "
            f"(restart {c.restart_count}) on {rt.ip}: {' '.join(argv)}"
        )
        self.recorder.event(
            rt.pod["metadata"], "Started", f"Started container {c.name}", container=c.field_path
        )

    def termination_message(self, rt: Pod, c: Container, code: int) -> str:
        """state.terminated.message, as the kubelet makes it: the end of the file at
        terminationMessagePath (its last 4096 bytes); with terminationMessagePolicy
        FallbackToLogsOnError, a non-zero exit and an empty or missing file, the last 80
        lines of this run's output, their last 2048 bytes at most."""
        data = b""
        if c.termination_log is not None:
            try:
                data = read_tail(c.termination_log, MAX_TERMINATION_MESSAGE)
            except FileNotFoundError:
                data = b""
            except OSError as exc:
                return f"Error on reading termination log {c.termination_log}: {exc}"
        fallback = c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        if not data and fallback and code != 0:
            # Enough of the tail to hold the last 80 lines' last 2048 bytes.
            try:
                tail = read_tail(rt.dir / f"{c.name}.log", 2 * MAX_FALLBACK_LOG_BYTES, c.log_offset)
            except OSError as exc:
                return f"Error on reading termination message from logs: {exc}"
            data = last_lines(tail, MAX_FALLBACK_LOG_LINES)[-MAX_FALLBACK_LOG_BYTES:]
        return data.decode(errors="replace")

    def check_root(self, rt: Pod, c: Container) -> None:
        """Report what a container wrote to its read-only root filesystem (once each)."""
        if c.rootfs is None:
            return
        new = [w for w in c.rootfs.writes() if w not in c.root_writes]
        if not new:
            return
        c.root_writes = (*c.root_writes, *new)
        message = (
            f"wrote to its read-only root filesystem: {', '.join(new)} (a real node "
            "refuses these writes: mount a volume there)"
        )
        self.recorder.log(f"{rt.namespace}/{rt.name}/{c.name}: {message}")
        self.recorder.event(
            rt.pod["metadata"], "ReadOnlyRootFilesystem", message, "Warning", c.field_path
        )

    def kill(self, rt: Pod, c: Container, now: float) -> None:
        c.killing, c.ready = True, False
        c.kill_deadline = now + self.grace(rt)
        signal_running_group(c.proc, signal.SIGTERM)

    def grace(self, rt: Pod) -> float:
        meta, spec = rt.pod["metadata"], rt.pod["spec"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return float(min(grace, self.max_grace_seconds))

    def reap(self, proc: subprocess.Popen[bytes] | None, grace: float) -> None:
        """Stop proc's group: SIGTERM now, SIGKILL once grace has passed (non-blocking)."""
        if proc is None:
            return
        if grace <= 0:
            signal_running_group(proc, signal.SIGKILL)
        else:
            signal_running_group(proc, signal.SIGTERM)
        self.reaping.append((proc, time.monotonic() + grace))

    def reap_tick(self) -> None:
        now = time.monotonic()
        keep = []
        for proc, deadline in self.reaping:
            if proc.poll() is not None:
                continue
            if now >= deadline:
                signal_running_group(proc, signal.SIGKILL)
            keep.append((proc, deadline))
        self.reaping = keep

    def shutdown(self, pods: Sequence[Pod]) -> None:
        """Every process started for pods, and every one being reaped, goes (SIGTERM, then
        SIGKILL after at most 3 s)."""
        procs = [c.proc for rt in pods for c in rt.all_containers if c.proc]
        procs += [p for p, _ in self.reaping]
        for proc in procs:
            signal_running_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + min(3.0, self.max_grace_seconds)
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_running_group(proc, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        for rt in pods:
            for c in rt.all_containers:
                c.proc = None
        self.reaping.clear()
