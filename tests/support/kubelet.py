"""A test kubelet: runs the pods of botenv's Deployments and Jobs as local processes.

The local control plane (tests/support/controlplane.py) has an API server and a controller
manager but no scheduler and no kubelet, so pods stay Pending. ``TestKubelet`` fills both
roles for the pods that match a label selector (default ``app.kubernetes.io/managed-by=
botenv``):

- It registers a Node (Ready, with capacity and allocatable) and keeps its heartbeat fresh.
  It binds Pending pods that fit it (``nodeSelector``) to it with the Binding subresource.
- It runs every container as a local process group. ``images`` maps an image to an
  ``Image``: the local argv of its ENTRYPOINT and CMD. ``rasa/rasa`` runs the cached Rasa
  3.6.21 venv (``python -m rasa``), ``rasa/rasa-sdk`` runs ``python -m rasa_sdk``, and tests add
  their own. An unmapped image waits with reason ``ErrImagePull``, as on a real node.
- Environment from ``value``, ``valueFrom`` (secretKeyRef, configMapKeyRef, fieldRef,
  resourceFieldRef) and ``envFrom`` is read through the API at every start. ``$(VAR)`` is
  expanded in command, args and env values the way the kubelet does (``$$`` escapes). A
  missing Secret, ConfigMap or key makes the container wait with
  ``CreateContainerConfigError``, and the kubelet retries.
- Volumes: configMap and secret (with ``items`` and modes), emptyDir, downwardAPI,
  hostPath and projected (configMap, secret, downwardAPI and serviceAccountToken sources; the
  token comes from the TokenRequest API, bound to the pod, as the kubelet gets it). They are
  written under the pod's directory. Every mountPath is mapped to its directory there, and
  each occurrence of a mount path in command, args, env values, workingDir and exec probe
  commands is rewritten to the mapped path.
- Init containers run one at a time, in order, before the containers start; each must
  exit 0 before the next one starts. ``initContainerStatuses`` and the Initialized
  condition (False, ContainersNotInitialized, until the last one has exited 0) are
  reported as a kubelet does. A failed init container is restarted with back-off
  (restartPolicy Always or OnFailure); with Never the pod fails and its containers never
  start (they stay waiting with reason PodInitializing).
- Termination messages: each run of a container gets a fresh, empty, writable file for
  its ``terminationMessagePath`` (default /dev/termination-log) under the pod's directory,
  and the path is rewritten like a mount path. When the container exits, the file's last
  4096 bytes are ``state.terminated.message``. With ``terminationMessagePolicy:
  FallbackToLogsOnError``, a non-zero exit and an empty file, the message is the last 80
  lines of the run's output, at most 2048 bytes, as the kubelet does. A program that opens
  the path without getting it through its command, args or env cannot be redirected.
- Networking: each pod gets its own loopback address 127.0.X.Y (never 127.0.0.x), which is
  its ``status.podIP``. Its processes listen there on their own container ports
  (``Image.bind`` adds ``--interface`` for rasa and ``SANIC_HOST`` for rasa_sdk), so
  ``http://<podIP>:5005/status`` works from the test process as it would in a cluster.
  Inside a pod, Python processes (the containers and the exec probes) reach the pod's own
  ports on ``127.0.0.1``/``localhost`` too (see ``_SITECUSTOMIZE``).
- Service DNS names cannot be resolved by the processes. A tiny kube-proxy stands in: in
  configMap and secret volume files, env values and args, every
  ``<scheme>://<svc>.<ns>.svc[.cluster.local][:port]`` is rewritten to a virtual loopback IP
  of that Service. A proxy forwards each connection there to a Ready pod that the Service
  selects (its targetPort, by number or by name), chosen when the connection is made. A
  Service without a ready pod refuses connections until one is ready, which follows rolls
  and restarts. ``service_hosts`` sends a Service to an address outside the cluster instead
  (for example a server the test runs itself).
- Probes: startup, readiness and liveness, each with httpGet (path, port by name or number,
  headers, scheme), tcpSocket or exec. They honour initialDelaySeconds, periodSeconds,
  timeoutSeconds, successThreshold and failureThreshold. A failed liveness or startup probe
  restarts the container.
- Status: it patches the pod's status like a kubelet (phase, podIP/podIPs, hostIP,
  startTime, conditions, initContainerStatuses and containerStatuses with state, lastState,
  ready, started, restartCount, image, imageID and containerID). The phase is the
  kubelet's: an exited container restarts with back-off (``CrashLoopBackOff`` in between)
  under restartPolicy Always, only after a non-zero exit under OnFailure, never under
  Never; the pod is Succeeded once every container exited 0 and will not restart, Failed
  once one failed and will not restart (then Ready and ContainersReady are False with
  reason PodCompleted if Succeeded, ContainersNotReady if Failed). So the Job controller of
  kube-controller-manager completes or fails Jobs, retries up to backoffLimit, and
  enforces activeDeadlineSeconds by deleting the pods (which kills their processes).
- Deletion: a pod with a deletionTimestamp gets SIGTERM, then SIGKILL after its grace
  period (capped at ``max_grace_seconds``). The kubelet then deletes it with
  gracePeriodSeconds=0. Leaving the context manager kills every process and deletes this
  node's pods and the Node.
- Logs: each container writes ``workdir/<ns>_<pod>/<container>.log``, appended across
  restarts. The kubelet's own log is ``workdir/kubelet.log``. ``logs()`` and
  ``processes()`` are there for tests. Every process dies with the test process (own
  process group, PR_SET_PDEATHSIG).

It polls the API every ``poll_seconds`` (0.5 s) with two label/field-selected LISTs. The
probes run on a small thread pool and the proxy on one asyncio thread.

Not emulated: ephemeral containers, lifecycle hooks, the pod's own activeDeadlineSeconds
(the Job controller's deadline works, see above), resource limits, security contexts
(processes run as the test's user), imagePullPolicy, hostPort/hostNetwork, projected
volumes, live updates of mounted ConfigMaps and Secrets (they are rewritten at each
container start), Service environment variables, affinity and tolerations (only
nodeSelector is checked), gRPC probes, and the pod sandbox restarts that make a kubelet
run the init containers again.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import datetime
import fcntl
import hashlib
import http.client
import itertools
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger("botenv.kubelet")

DEFAULT_SELECTOR = "app.kubernetes.io/managed-by=botenv"
DEFAULT_NODE = "botenv-kubelet"
KUBELET_VERSION = "v1.20.2"  # until the API server says its own (a kubelet of its version)
HOST_IP = "127.0.0.1"
HEARTBEAT_SECONDS = 10.0
SERVICE_REFRESH_SECONDS = 1.0
RETRY_SECONDS = 2.0  # config errors, missing volumes, unknown images
RUNTIME = "botenv-test"
# Termination messages, as the kubelet bounds them (pkg/kubelet/container).
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
MAX_TERMINATION_MESSAGE = 4096  # MaxContainerTerminationMessageLength: the file's last bytes
MAX_FALLBACK_LOG_LINES = 80  # MaxContainerTerminationMessageLogLines
MAX_FALLBACK_LOG_BYTES = 2048  # MaxContainerTerminationMessageLogLength

# Placeholders in Image.entrypoint and Image.programs, resolved when a process starts.
RASA_PYTHON = "{rasa_python}"  # the cached Rasa 3.6.21 venv's interpreter
PYTHON = "{python}"  # the interpreter running the tests

# Quiet, private Rasa processes (as tests/support/rasa.py runs them).
RASA_ENV = {
    "RASA_TELEMETRY_ENABLED": "false",
    "PYTHONUNBUFFERED": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
}

BindHook = Callable[[str, list[str]], tuple[list[str], dict[str, str]]]


# -- images ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Image:
    """How the test kubelet runs an image as a local process.

    ``entrypoint`` and ``cmd`` are the image's ENTRYPOINT and CMD as a local argv: a
    container's ``command`` replaces the entrypoint, and its ``args`` replace cmd, as in
    Kubernetes. ``workdir`` is the image's WORKDIR (a directory holding what the image
    would ship, for example actions.py); None gives each container a private empty
    directory. ``env`` is the image's ENV. ``bind(pod_ip, args)`` returns the args and
    extra env that make the process listen on the pod's IP instead of 0.0.0.0.
    ``programs`` maps a program name in ``command`` and exec probes (``python``) to a
    local one. Entries may use the placeholders RASA_PYTHON and PYTHON.
    """

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    workdir: Path | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    bind: BindHook | None = None
    programs: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {"python": RASA_PYTHON, "python3": RASA_PYTHON})


def _without_flag(args: list[str], *flags: str) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in flags:
            skip = True
            continue
        if any(arg.startswith(f + "=") for f in flags if f.startswith("--")):
            continue
        out.append(arg)
    return out


def _rasa_bind(ip: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    if args[:2] == ["run", "actions"]:  # `rasa run actions` is rasa_sdk's server
        return args, {"SANIC_HOST": ip}
    if args[:1] != ["run"]:
        return args, {}
    return [*_without_flag(args, "-i", "--interface"), "--interface", ip], {}


def _rasa_sdk_bind(ip: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    # rasa_sdk 3.6 has no --interface flag: its server binds $SANIC_HOST (default 0.0.0.0).
    # The real image's entrypoint also accepts a leading "start".
    return (args[1:] if args[:1] == ["start"] else args), {"SANIC_HOST": ip}


def rasa_image() -> Image:
    """The rasa/rasa image: ENTRYPOINT rasa, CMD --help, with the cached venv."""
    return Image(entrypoint=(RASA_PYTHON, "-m", "rasa"), cmd=("--help",), env=RASA_ENV,
                 bind=_rasa_bind)


def rasa_sdk_image(actions: Path | None = None) -> Image:
    """A rasa-sdk action server image: ``python -m rasa_sdk --actions actions`` run in
    ``actions``, a directory holding actions.py (or an actions package)."""
    return Image(entrypoint=(RASA_PYTHON, "-m", "rasa_sdk"), cmd=("--actions", "actions"),
                 workdir=Path(actions) if actions else None, env=RASA_ENV,
                 bind=_rasa_sdk_bind)


BUILTIN_IMAGES: dict[str, Callable[[], Image]] = {
    "rasa/rasa": rasa_image,
    "rasa/rasa-sdk": rasa_sdk_image,
}


def repository(image: str) -> str:
    """``docker.io/rasa/rasa:3.6.21-full@sha256:..`` -> ``rasa/rasa``."""
    ref = image.split("@", 1)[0]
    head, _, last = ref.rpartition("/")
    if ":" in last:
        last = last.split(":", 1)[0]
    ref = f"{head}/{last}" if head else last
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
    return ref.removeprefix("library/")


# -- small helpers ------------------------------------------------------------------------


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a defined VAR is replaced, an undefined reference stays
    as written, ``$$`` is a literal ``$`` (k8s.io/kubernetes third_party/forked/golang
    expansion semantics)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close != -1:
                    name = text[i + 2:close]
                    out.append(env[name] if name in env else text[i:close + 1])
                    i = close + 1
                    continue
            out.append(text[i:i + 2])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_SVC_URL = re.compile(
    r"(?<![\w.+-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://"
    r"(?P<name>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.(?P<ns>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)"
    r"\.svc(?:\.cluster\.local)?\.?(?::(?P<port>\d+))?(?![\w.-])"
)
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # In the child between fork and exec: SIGKILL it when the thread that started it (the
    # kubelet's loop thread, or a probe worker) ends, even if the test process is killed.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _signal(proc: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    if proc is None or proc.poll() is not None:
        return  # reaped: its pid may belong to someone else by now
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _exit_code(returncode: int) -> int:
    return returncode if returncode >= 0 else 128 - returncode


def _read_tail(path: Path, limit: int, start: int = 0) -> bytes:
    """The last `limit` bytes of the file from offset `start` on."""
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(start, size - limit))
        return f.read(limit)


def _last_lines(data: bytes, count: int) -> bytes:
    """The last `count` newline-terminated lines of data (a last line without a newline
    counts as one), as `kubectl logs --tail` counts them."""
    stop = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(count):
        stop = data.rfind(b"\n", 0, stop)
        if stop < 0:
            return data
    return data[stop + 1:]


# Put first on PYTHONPATH of every process it starts: inside a pod, "localhost" is the pod.
# A Python process that connects to 127.0.0.1/localhost/::1 on one of its pod's container
# ports reaches the pod's IP instead (botenv's readiness.py asks 127.0.0.1:5005). Other
# ports (peers the test runs on 127.0.0.1) are left alone.
_SITECUSTOMIZE = '''\
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


class KubeletError(RuntimeError):
    """The test kubelet could not start or talk to the API server."""


class _ApiError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:400]}")
        self.status = status


class _Api:
    """JSON over the kubernetes client's connection pool (its kubeconfig loading and auth),
    without its model (de)serialization."""

    def __init__(self, kubeconfig: Path) -> None:
        import kubernetes  # a project dependency; imported here so the module loads fast

        self._client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self._host = self._client.configuration.host.rstrip("/")
        self._pool = self._client.rest_client.pool_manager

    def __call__(self, method: str, path: str, body: Any = None, *,
                 query: Mapping[str, str] | None = None, patch: bool = False,
                 timeout: float = 15.0) -> Any:
        headers: dict[str, str] = {"Accept": "application/json"}
        self._client.update_params_for_auth(headers, [], ["BearerToken"], path, method, body)
        data = None
        if body is not None:
            headers["Content-Type"] = ("application/merge-patch+json" if patch
                                       else "application/json")
            data = json.dumps(body).encode()
        url = self._host + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        resp = self._pool.request(method, url, body=data, headers=headers, timeout=timeout,
                                  retries=False)
        text = resp.data
        if not 200 <= resp.status < 300:
            raise _ApiError(resp.status, text.decode(errors="replace"))
        return json.loads(text) if text else {}

    def get(self, path: str) -> Any:
        try:
            return self("GET", path)
        except _ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


class _LoopbackPool:
    """Unique loopback addresses 127.0.X.Y with X >= 2 (127.0.0.x and Debian's 127.0.1.1 stay
    untouched). Each pool holds whole /24 blocks under an flock, so test processes running
    side by side never share an address; addresses are not reused within a pool."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.gettempdir()) / "botenv-test-kubelet-ips"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._fds: list[int] = []
        self._blocks: list[int] = []
        self._block = 0
        self._next = 255
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            if self._next > 254:
                self._claim()
            ip = f"127.0.{self._block}.{self._next}"
            self._next += 1
            return ip

    def _claim(self) -> None:
        for block in range(2, 255):
            if block in self._blocks:
                continue
            fd = os.open(self._dir / f"127.0.{block}.x.lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._fds.append(fd)
            self._blocks.append(block)
            self._block, self._next = block, 1
            return
        raise KubeletError("no free 127.0.X.0/24 block for pod IPs")

    def close(self) -> None:
        with self._lock:
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds.clear()


class _ServiceProxy:
    """A tiny kube-proxy: one loopback virtual IP per Service, a listener per Service port
    used, each connection forwarded to a Ready pod chosen when it arrives."""

    def __init__(self, pool: _LoopbackPool,
                 routes: Callable[[tuple[str, str, int]], list[tuple[str, int]]]) -> None:
        self._pool = pool
        self._routes = routes
        self._vips: dict[tuple[str, str], str] = {}
        self._listeners: dict[tuple[str, str, int], tuple[asyncio.AbstractServer, str, int]] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-kube-proxy",
                                        daemon=True)
        self._thread.start()

    def keys(self) -> list[tuple[str, str, int]]:
        with self._lock:
            return list(self._listeners)

    def address(self, namespace: str, name: str, port: int) -> str:
        """host:port that reaches Service namespace/name's port `port`."""
        key = (namespace, name, port)
        with self._lock:
            if key not in self._listeners:
                vip = self._vips.get(key[:2]) or self._pool.take()
                self._vips[key[:2]] = vip
                assert self._loop is not None
                server, lport = asyncio.run_coroutine_threadsafe(
                    self._listen(key, vip, port), self._loop).result(10)
                self._listeners[key] = (server, vip, lport)
            _, vip, lport = self._listeners[key]
        return f"{vip}:{lport}"

    async def _listen(self, key: tuple[str, str, int], vip: str,
                      port: int) -> tuple[asyncio.AbstractServer, int]:
        def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
            return self._handle(key, reader, writer)

        try:
            server = await asyncio.start_server(handler, vip, port)
        except OSError:  # a privileged or taken port: any port on the VIP will do
            server = await asyncio.start_server(handler, vip, 0)
        return server, server.sockets[0].getsockname()[1]

    async def _handle(self, key: tuple[str, str, int], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        targets = self._routes(key)
        if not targets:  # no ready endpoint: refuse, as kube-proxy's REJECT rule does
            writer.transport.abort()
            return
        host, port = targets[next(self._counter) % len(targets)]
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), 5)
        except (TimeoutError, OSError):
            writer.transport.abort()
            return
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            writer.transport.abort()

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return

        async def close_all() -> None:
            for server, _, _ in self._listeners.values():
                server.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close_all(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(Exception):
            loop.close()


# -- runtime state --------------------------------------------------------------------------


class _ConfigError(Exception):
    """CreateContainerConfigError: a Secret, ConfigMap or key the env needs is missing."""


class _MountError(Exception):
    """A volume cannot be set up (the container stays ContainerCreating)."""


@dataclasses.dataclass
class _Probe:
    kind: str  # startup, readiness, liveness
    spec: dict
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    future: concurrent.futures.Future[tuple[bool, str]] | None = None

    def period(self) -> float:
        return float(self.spec.get("periodSeconds") or 10)

    def delay(self) -> float:
        return float(self.spec.get("initialDelaySeconds") or 0)


@dataclasses.dataclass
class _Container:
    spec: dict
    name: str
    image: str
    init: bool = False  # an init container: runs to completion before the containers
    state: str = "waiting"  # waiting, running, terminated
    reason: str = "ContainerCreating"
    message: str = ""
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    started_mono: float = 0.0
    terminated: dict | None = None  # the state when terminated for good
    last_terminated: dict | None = None
    restart_count: int = 0
    crashes: int = 0
    next_start: float = 0.0
    ready: bool = False
    started: bool = False
    killing: bool = False
    kill_deadline: float = 0.0
    image_id: str = ""
    container_id: str = ""
    argv: list[str] = dataclasses.field(default_factory=list)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    cwd: str = ""
    log_offset: int = 0  # where this run's output starts in the (appended) log file
    termination_log: Path | None = None  # this run's terminationMessagePath, remapped
    rewrite_path: Callable[[str], str] = lambda s: s
    programs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    probes: dict[str, _Probe] = dataclasses.field(default_factory=dict)
    warned: str = ""  # the last error an event was posted for

    def ports(self) -> dict[str, int]:
        return {p["name"]: int(p["containerPort"]) for p in self.spec.get("ports") or []
                if p.get("name")}

    @property
    def field_path(self) -> str:
        """The container's fieldPath in events."""
        return f"spec.{'initContainers' if self.init else 'containers'}{{{self.name}}}"

    @property
    def succeeded(self) -> bool:
        return self.terminated is not None and self.terminated.get("exitCode") == 0


@dataclasses.dataclass
class _Pod:
    uid: str
    namespace: str
    name: str
    ip: str
    dir: Path
    pod: dict  # the latest object seen
    containers: list[_Container]
    start_time: str
    init_containers: list[_Container] = dataclasses.field(default_factory=list)
    transitions: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    last_status: dict | None = None
    term_deadline: float | None = None

    @property
    def labels(self) -> dict[str, str]:
        return self.pod["metadata"].get("labels") or {}

    @property
    def restart_policy(self) -> str:
        return self.pod["spec"].get("restartPolicy") or "Always"

    @property
    def ready(self) -> bool:
        return all(c.ready for c in self.containers)

    @property
    def all_containers(self) -> list[_Container]:
        return [*self.init_containers, *self.containers]

    def named_port(self, name: str) -> int | None:
        for c in self.containers:
            if name in c.ports():
                return c.ports()[name]
        return None

    def all_ports(self) -> set[int]:
        return {int(p["containerPort"]) for c in self.all_containers
                for p in c.spec.get("ports") or []}


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """One running container process, as ``TestKubelet.processes()`` reports it."""

    namespace: str
    pod: str
    container: str
    pid: int
    pod_ip: str
    ports: tuple[int, ...]
    restart_count: int
    ready: bool
    argv: tuple[str, ...]
    cwd: str


# -- the kubelet ------------------------------------------------------------------------------


class TestKubelet:
    """A kubelet (and scheduler) for the pods matching ``selector``; see the module doc.

    ``images`` maps an image reference, or its repository (``rasa/rasa``), to an ``Image``;
    it is read at every container start, so tests may add entries later. ``service_hosts``
    maps ``name.namespace:port`` (or ``name.namespace``) to ``host:port`` (or ``host``) for
    Services served outside the cluster. ``namespaces`` limits the pods it takes (default:
    all).
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        kubeconfig: Path,
        workdir: Path,
        images: Mapping[str, Image] | None = None,
        *,
        selector: str = DEFAULT_SELECTOR,
        node_name: str = DEFAULT_NODE,
        namespaces: Sequence[str] | None = None,
        service_hosts: Mapping[str, str] | None = None,
        node_labels: Mapping[str, str] | None = None,
        poll_seconds: float = 0.5,
        max_grace_seconds: float = 5.0,
        backoff_seconds: tuple[float, float] = (2.0, 20.0),
        probe_workers: int = 4,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.workdir = Path(workdir).resolve()
        self.images: dict[str, Image] = dict(images or {})
        self.selector = selector
        self.node_name = node_name
        self.namespaces = list(namespaces) if namespaces else None
        self.service_hosts: dict[str, str] = dict(service_hosts or {})
        self.node_labels = {
            "kubernetes.io/hostname": node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "botenv.dev/test-kubelet": "true",
            **(node_labels or {}),
        }
        self.poll_seconds = poll_seconds
        self.max_grace_seconds = max_grace_seconds
        self.backoff_seconds = backoff_seconds
        self._probe_workers = probe_workers
        self._api: _Api | None = None
        self._pool = _LoopbackPool()
        self._proxy = _ServiceProxy(self._pool, self._route)
        self._routes: dict[tuple[str, str, int], list[tuple[str, int]]] = {}
        self._services: dict[tuple[str, str], dict] = {}
        self._services_at = 0.0
        self._pods: dict[str, _Pod] = {}
        self._reaping: list[tuple[subprocess.Popen[bytes], float]] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._node_since = _now()
        self._version = KUBELET_VERSION
        self._heartbeat_at = 0.0
        self._resolved: dict[str, str] = {}
        self._shim_dir = self.workdir / ".kubelet-python"
        self._log_file = self.workdir / "kubelet.log"
        self._errors = 0
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    # -- public API ---------------------------------------------------------------------

    def start(self) -> TestKubelet:
        if self._thread is not None:
            raise KubeletError("this kubelet was already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._shim_dir.mkdir(parents=True, exist_ok=True)
        (self._shim_dir / "sitecustomize.py").write_text(_SITECUSTOMIZE)
        self._api = _Api(self.kubeconfig)
        self._register_node()
        self._delete_stale_pods()
        self._proxy.start()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self._probe_workers, thread_name_prefix="test-kubelet-probe")
        # Processes are started from this thread: PR_SET_PDEATHSIG ties them to it.
        self._thread = threading.Thread(target=self._run, name="test-kubelet", daemon=True)
        self._thread.start()
        self._started.wait(60)
        if self._start_error is not None:
            error = self._start_error
            self.stop()
            raise KubeletError(f"the kubelet's first sync failed: {error}") from error
        self._log(f"node {self.node_name} ready; selector {self.selector!r}")
        return self

    def stop(self) -> None:
        """Kill every process, delete this node's pods and the Node. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(30)  # the loop kills the processes it started before it ends
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._proxy.stop()
        api = self._api
        if api is not None:
            with contextlib.suppress(Exception):
                self._delete_stale_pods()
            with contextlib.suppress(Exception):
                api("DELETE", f"/api/v1/nodes/{self.node_name}")
            api.close()
        self._pool.close()
        self._log("stopped")

    def __enter__(self) -> TestKubelet:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def pod_dir(self, namespace: str, pod: str) -> Path:
        """Where a pod's volumes (``volumes/<name>``) and container logs live."""
        return self.workdir / f"{namespace}_{pod}"

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        """The output of a container (every run, appended); the first container's when
        `container` is not given."""
        directory = self.pod_dir(namespace, pod)
        if container is None:
            with self._lock:
                known = [rt for rt in self._pods.values()
                         if (rt.namespace, rt.name) == (namespace, pod)]
            if known:
                container = known[0].containers[0].name
            else:
                found = sorted(directory.glob("*.log"))
                if not found:
                    return ""
                container = found[0].stem
        try:
            return (directory / f"{container}.log").read_text(errors="replace")
        except OSError:
            return ""

    def kubelet_log(self) -> str:
        try:
            return self._log_file.read_text(errors="replace")
        except OSError:
            return ""

    def processes(self, namespace: str | None = None) -> list[ProcessInfo]:
        """The container processes running now."""
        out: list[ProcessInfo] = []
        with self._lock:
            for rt in self._pods.values():
                if namespace is not None and rt.namespace != namespace:
                    continue
                for c in rt.all_containers:
                    if c.proc is None or c.proc.poll() is not None:
                        continue
                    out.append(ProcessInfo(
                        rt.namespace, rt.name, c.name, c.proc.pid, rt.ip,
                        tuple(int(p["containerPort"]) for p in c.spec.get("ports") or []),
                        c.restart_count, c.ready, tuple(c.argv), c.cwd))
            out += [ProcessInfo("", "", "(terminating)", p.pid, "", (), 0, False,
                                tuple(str(a) for a in p.args), "")
                    for p, _ in self._reaping if p.poll() is None and namespace is None]
        return out

    def pod_ip(self, namespace: str, pod: str) -> str | None:
        with self._lock:
            for rt in self._pods.values():
                if (rt.namespace, rt.name) == (namespace, pod):
                    return rt.ip
        return None

    def service_address(self, namespace: str, name: str, port: int) -> str:
        """host:port where this kubelet's processes reach Service namespace/name:port."""
        for key in (f"{name}.{namespace}:{port}", f"{name}.{namespace}"):
            target = self.service_hosts.get(key)
            if target:
                return target if ":" in target else f"{target}:{port}"
        return self._proxy.address(namespace, name, port)

    def rewrite_service_urls(self, text: str) -> str:
        """Every ``scheme://<svc>.<ns>.svc[.cluster.local][:port]`` in text pointed at an
        address this machine can reach (see service_address)."""

        def replace(m: re.Match[str]) -> str:
            scheme = m.group("scheme")
            port = int(m.group("port")) if m.group("port") else _DEFAULT_PORTS.get(
                scheme.lower())
            if port is None:
                return m.group(0)
            return f"{scheme}://{self.service_address(m.group('ns'), m.group('name'), port)}"

        return _SVC_URL.sub(replace, text)

    # -- the loop ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._tick()
        except BaseException as exc:  # reported by start()
            self._start_error = exc
            self._started.set()
            self._shutdown_processes()
            return
        self._started.set()
        while not self._stop.wait(self.poll_seconds):
            try:
                self._tick()
                self._errors = 0
            except Exception as exc:  # the API may be restarting; keep going
                self._errors += 1
                if self._errors <= 3 or self._errors % 60 == 0:
                    self._log(f"tick failed ({self._errors}x): {type(exc).__name__}: {exc}")
        self._shutdown_processes()

    def _tick(self) -> None:
        api = self._api
        assert api is not None
        now = time.monotonic()
        if now >= self._heartbeat_at:
            self._heartbeat()
        pending = self._list_pods({"labelSelector": self.selector,
                                   "fieldSelector": "spec.nodeName="})
        mine = self._list_pods({"fieldSelector": f"spec.nodeName={self.node_name}"})
        with self._lock:
            for pod in pending:
                meta = pod["metadata"]
                phase = (pod.get("status") or {}).get("phase")
                if (meta.get("deletionTimestamp") or phase in ("Succeeded", "Failed")
                        or not self._fits(pod) or not self._bind(pod)):
                    continue
                pod["spec"]["nodeName"] = self.node_name
                mine.append(pod)
            seen = set()
            for pod in mine:
                uid = pod["metadata"]["uid"]
                seen.add(uid)
                rt = self._pods.get(uid)
                if rt is None:
                    if pod["metadata"].get("deletionTimestamp"):
                        self._delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"],
                                         uid)
                        continue
                    rt = self._admit(pod)
                rt.pod = pod
                try:
                    self._sync(rt, time.monotonic())
                except Exception as exc:  # one pod's trouble must not stall the others
                    self._log(f"{rt.namespace}/{rt.name}: sync failed: "
                              f"{type(exc).__name__}: {exc}")
            for uid in [u for u in self._pods if u not in seen]:
                rt = self._pods.pop(uid)
                self._log(f"{rt.namespace}/{rt.name} is gone from the API: killing it")
                for c in rt.all_containers:
                    self._reap(c.proc, 0.0)
                    c.proc = None
            self._reap_tick()
            self._refresh_routes()

    def _list_pods(self, query: dict[str, str]) -> list[dict]:
        assert self._api is not None
        if self.namespaces is None:
            return self._api("GET", "/api/v1/pods", query=query)["items"]
        items: list[dict] = []
        for ns in self.namespaces:
            items += self._api("GET", f"/api/v1/namespaces/{ns}/pods", query=query)["items"]
        return items

    def _log(self, message: str) -> None:
        log.info("%s", message)
        stamp = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
        with contextlib.suppress(OSError), self._log_file.open("a") as f:
            f.write(f"{stamp} {message}\n")

    # -- node -----------------------------------------------------------------------

    def _capacity(self) -> dict[str, str]:
        try:
            pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            pages = 8 << 30
        disk = shutil.disk_usage(self.workdir).total
        return {"cpu": str(os.cpu_count() or 1), "memory": f"{pages // 1024}Ki",
                "pods": "110", "ephemeral-storage": f"{disk // 1024}Ki",
                "hugepages-2Mi": "0", "hugepages-1Gi": "0"}

    def _register_node(self) -> None:
        assert self._api is not None
        # Report the control plane's own version, as a kubelet of the same release would.
        server = self._api.get("/version") or {}
        self._version = server.get("gitVersion") or KUBELET_VERSION
        path = f"/api/v1/nodes/{self.node_name}"
        if self._api.get(path) is None:
            self._api("POST", "/api/v1/nodes", {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node_name, "labels": self.node_labels},
            })
        else:  # left by an earlier kubelet: take it over, without its stale taints
            self._api("PATCH", path, {"metadata": {"labels": self.node_labels},
                                      "spec": {"taints": None, "unschedulable": None}},
                      patch=True)
        self._heartbeat()

    def _heartbeat(self) -> None:
        assert self._api is not None
        now = _now()
        capacity = self._capacity()
        conditions = [
            {"type": t, "status": "False", "reason": f"KubeletHas{r}", "message": m,
             "lastHeartbeatTime": now, "lastTransitionTime": self._node_since}
            for t, r, m in (("MemoryPressure", "SufficientMemory", "enough memory"),
                            ("DiskPressure", "NoDiskPressure", "no disk pressure"),
                            ("PIDPressure", "SufficientPID", "enough PIDs"))
        ]
        conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                           "message": "test kubelet (local processes) is posting ready status",
                           "lastHeartbeatTime": now, "lastTransitionTime": self._node_since})
        uname = os.uname()
        self._api("PATCH", f"/api/v1/nodes/{self.node_name}/status", {"status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": HOST_IP},
                          {"type": "Hostname", "address": self.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": hashlib.md5(self.node_name.encode()).hexdigest(),
                "systemUUID": hashlib.md5(self.node_name.encode()).hexdigest(),
                "bootID": hashlib.md5(self._node_since.encode()).hexdigest(),
                "kernelVersion": uname.release, "osImage": f"{uname.sysname} (test kubelet)",
                "containerRuntimeVersion": f"{RUNTIME}://1", "kubeletVersion": self._version,
                "kubeProxyVersion": self._version, "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }}, patch=True)
        self._heartbeat_at = time.monotonic() + HEARTBEAT_SECONDS

    def _delete_stale_pods(self) -> None:
        """Delete this node's pods: their processes belong to a kubelet that is gone."""
        assert self._api is not None
        for pod in self._api("GET", "/api/v1/pods",
                             query={"fieldSelector": f"spec.nodeName={self.node_name}"})["items"]:
            meta = pod["metadata"]
            self._delete_pod(meta["namespace"], meta["name"], meta["uid"])

    def _delete_pod(self, namespace: str, name: str, uid: str) -> None:
        assert self._api is not None
        try:
            self._api("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}",
                      {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                       "preconditions": {"uid": uid}})
        except _ApiError as exc:
            if exc.status not in (404, 409):
                raise

    # -- scheduling ---------------------------------------------------------------------

    def _fits(self, pod: dict) -> bool:
        wanted = pod["spec"].get("nodeSelector") or {}
        return all(self.node_labels.get(k) == v for k, v in wanted.items())

    def _bind(self, pod: dict) -> bool:
        assert self._api is not None
        meta = pod["metadata"]
        try:
            self._api("POST", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
                      "/binding", {
                          "apiVersion": "v1", "kind": "Binding",
                          "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                                       "uid": meta["uid"]},
                          "target": {"apiVersion": "v1", "kind": "Node",
                                     "name": self.node_name}})
        except _ApiError as exc:
            if exc.status in (404, 409):  # deleted, or bound by someone else meanwhile
                return False
            raise
        self._event(meta, "Scheduled", f"Successfully assigned {meta['namespace']}/"
                    f"{meta['name']} to {self.node_name}", component="default-scheduler")
        return True

    def _admit(self, pod: dict) -> _Pod:
        meta = pod["metadata"]
        ip = self._pool.take()
        directory = self.pod_dir(meta["namespace"], meta["name"])
        shutil.rmtree(directory / "volumes", ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        init_specs = pod["spec"].get("initContainers") or []
        # Until it runs, a container waits as ContainerCreating, or PodInitializing in a pod
        # with init containers (init containers included), as the kubelet reports it.
        waiting = "PodInitializing" if init_specs else "ContainerCreating"
        containers = [_Container(spec=c, name=c["name"], image=c.get("image", ""),
                                 reason=waiting)
                      for c in pod["spec"].get("containers") or []]
        init_containers = [_Container(spec=c, name=c["name"], image=c.get("image", ""),
                                      init=True, reason=waiting) for c in init_specs]
        rt = _Pod(uid=meta["uid"], namespace=meta["namespace"], name=meta["name"], ip=ip,
                  dir=directory, pod=pod, containers=containers, start_time=_now(),
                  init_containers=init_containers)
        self._pods[rt.uid] = rt
        extra = pod["spec"].get("ephemeralContainers")
        self._log(f"{rt.namespace}/{rt.name}: admitted with IP {ip}"
                  + (f", {len(init_containers)} init container(s) first"
                     if init_containers else "")
                  + (" (ephemeral containers are not run)" if extra else ""))
        return rt

    # -- one pod ----------------------------------------------------------------------

    def _sync(self, rt: _Pod, now: float) -> None:
        if rt.pod["metadata"].get("deletionTimestamp"):
            self._terminate(rt, now)
            if rt.uid in self._pods:  # still stopping: report it not ready
                self._patch_status(rt)
            return
        if self._sync_init(rt, now):
            for c in rt.containers:
                self._sync_container(rt, c, now)
        self._patch_status(rt)

    def _sync_init(self, rt: _Pod, now: float) -> bool:
        """Run the init containers one at a time, in order; True once each has exited 0.
        The next one starts in the same sync as its predecessor is seen done. One that
        failed for good (restartPolicy Never) leaves the pod Failed: nothing else runs."""
        for c in rt.init_containers:
            if not c.succeeded:
                self._sync_container(rt, c, now)
            if not c.succeeded:
                return False  # running, waiting to (re)start, or failed for good
        return True

    def _sync_container(self, rt: _Pod, c: _Container, now: float) -> None:
        if c.proc is not None and c.proc.poll() is not None:
            self._exited(rt, c, now)
        if c.proc is None:
            if c.terminated is None and now >= c.next_start:
                self._start(rt, c, now)
            return
        if c.killing:
            if now >= c.kill_deadline:
                _signal(c.proc, signal.SIGKILL)
            return
        self._probe_tick(rt, c, now)

    def _exited(self, rt: _Pod, c: _Container, now: float) -> None:
        assert c.proc is not None
        code = _exit_code(c.proc.returncode)
        ran = now - c.started_mono
        c.proc = None
        for probe in c.probes.values():
            if probe.future is not None:
                probe.future.cancel()
        state = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                 "startedAt": c.started_at, "finishedAt": _now(),
                 "containerID": c.container_id}
        message = self._termination_message(rt, c, code)
        if message:
            state["message"] = message
        c.ready = c.started = c.killing = False
        self._log(f"{rt.namespace}/{rt.name}/{c.name}: exited with {code} after {ran:.1f} s")
        policy = rt.restart_policy
        # An init container that exited 0 is done whatever the policy (Always restarts it
        # only on failure, as OnFailure does).
        done = code == 0 and (c.init or policy == "OnFailure")
        if policy == "Never" or done:
            c.state, c.terminated = "terminated", state
            if c.init and code == 0:
                c.ready = True
            elif c.init:
                self._log(f"{rt.namespace}/{rt.name}: init container {c.name} failed with "
                          "restartPolicy Never: the pod fails")
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
            c.message = (f"back-off {delay:.0f}s restarting failed container={c.name} "
                         f"pod={rt.name}_{rt.namespace}({rt.uid})")
            self._event(rt.pod["metadata"], "BackOff", "Back-off restarting failed container",
                        "Warning", c.field_path)
        else:
            c.reason, c.message = "ContainerCreating", ""

    def _wait(self, rt: _Pod, c: _Container, reason: str, message: str, retry: float,
              now: float, event: str = "Failed") -> None:
        c.state, c.reason, c.message = "waiting", reason, message
        c.next_start = now + retry
        if c.warned != message:
            c.warned = message
            self._log(f"{rt.namespace}/{rt.name}/{c.name}: {reason}: {message}")
            self._event(rt.pod["metadata"], event, f"Error: {message}", "Warning",
                        c.field_path)

    def _image_for(self, image: str) -> Image | None:
        found = self.images.get(image) or self.images.get(repository(image))
        if found is None and repository(image) in BUILTIN_IMAGES:
            found = BUILTIN_IMAGES[repository(image)]()
        return found

    def _resolve(self, word: str) -> str:
        if word not in (RASA_PYTHON, PYTHON):
            return word
        if word not in self._resolved:
            if word == PYTHON:
                self._resolved[word] = sys.executable
            else:
                from tests.support.rasa import rasa_python

                self._resolved[word] = str(rasa_python())
        return self._resolved[word]

    def _start(self, rt: _Pod, c: _Container, now: float) -> None:
        image = self._image_for(c.image)
        if image is None:
            self._wait(rt, c, "ErrImagePull",
                       f'failed to pull image "{c.image}": the test kubelet has no mapping for '
                       f"it (TestKubelet images=...; known: {sorted(self.images)} and the "
                       f"built-in {sorted(BUILTIN_IMAGES)})", 5.0, now)
            return
        cache: dict[tuple[str, str], dict[str, bytes] | None] = {}
        try:
            volumes = self._volumes(rt, cache)
            mounts = self._mounts(rt, c, volumes)
            env = self._env(rt, c, cache)
        except _MountError as exc:
            self._wait(rt, c, "ContainerCreating", str(exc), RETRY_SECONDS, now, "FailedMount")
            return
        except _ConfigError as exc:
            self._wait(rt, c, "CreateContainerConfigError", str(exc), RETRY_SECONDS, now)
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
        rewrite_path = _path_rewriter(mounts)

        def fix(value: str) -> str:
            return self.rewrite_service_urls(rewrite_path(value))

        env = {k: fix(v) for k, v in env.items()}
        programs = {k: self._resolve(v) for k, v in image.programs.items()}
        if c.spec.get("command"):
            command = [fix(expand(a, env)) for a in c.spec["command"]]
            command[0] = programs.get(command[0], command[0])
            default_args: list[str] = []
        else:
            command = [self._resolve(a) for a in image.entrypoint]
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
        cwd.mkdir(parents=True, exist_ok=True)
        home = self.workdir / "home"  # shared: caches (matplotlib, ...) are built once
        home.mkdir(exist_ok=True)
        tmp = rt.dir / "tmp"  # the container's /tmp, removed with the pod
        tmp.mkdir(exist_ok=True)
        process_env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "LANG": "C.UTF-8",
            "HOSTNAME": rt.name,
            **image.env,
            **env,
            **extra,
            "BOTENV_KUBELET_POD_IP": rt.ip,
            "BOTENV_KUBELET_POD_PORTS": ",".join(str(p) for p in sorted(rt.all_ports())),
        }
        process_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(self._shim_dir), env.get("PYTHONPATH", "")) if p)
        argv = [*command, *args]
        log_path = rt.dir / f"{c.name}.log"
        try:
            with log_path.open("ab") as out:
                log_offset = os.fstat(out.fileno()).st_size
                proc = subprocess.Popen(
                    argv, cwd=cwd, env=process_env, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=_die_with_parent)
        except OSError as exc:
            self._wait(rt, c, "RunContainerError", f"starting {argv[0]}: {exc}", RETRY_SECONDS,
                       now)
            return
        c.proc, c.argv, c.env, c.cwd = proc, argv, process_env, str(cwd)
        c.rewrite_path, c.programs = rewrite_path, programs
        c.log_offset, c.termination_log = log_offset, termination_log
        c.state, c.reason, c.message, c.warned = "running", "", "", ""
        c.started_at, c.started_mono = _now(), now
        c.image_id = (f"{RUNTIME}://{repository(c.image)}@sha256:"
                      + hashlib.sha256(" ".join(command).encode()).hexdigest())
        c.container_id = f"{RUNTIME}://{rt.uid[:8]}-{c.name}-{c.restart_count}-{proc.pid}"
        c.probes = {kind: _Probe(kind, c.spec[f"{kind}Probe"])
                    for kind in ("startup", "readiness", "liveness")
                    if c.spec.get(f"{kind}Probe")}
        if c.init:
            pass  # no probes; ready once it has exited 0
        elif "startup" in c.probes:
            c.probes["startup"].next_at = now + c.probes["startup"].delay()
        else:
            self._mark_started(c, now)
        self._log(f"{rt.namespace}/{rt.name}/{c.name}: started pid {proc.pid} "
                  f"(restart {c.restart_count}) on {rt.ip}: {' '.join(argv)}")
        self._event(rt.pod["metadata"], "Started", f"Started container {c.name}",
                    container=c.field_path)

    def _termination_message(self, rt: _Pod, c: _Container, code: int) -> str:
        """state.terminated.message, as the kubelet makes it: the end of the file at
        terminationMessagePath (its last 4096 bytes); with terminationMessagePolicy
        FallbackToLogsOnError, a non-zero exit and an empty or missing file, the last 80
        lines of this run's output, their last 2048 bytes at most."""
        data = b""
        if c.termination_log is not None:
            try:
                data = _read_tail(c.termination_log, MAX_TERMINATION_MESSAGE)
            except FileNotFoundError:
                data = b""
            except OSError as exc:
                return f"Error on reading termination log {c.termination_log}: {exc}"
        fallback = c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        if not data and fallback and code != 0:
            # Enough of the tail to hold the last 80 lines' last 2048 bytes.
            try:
                tail = _read_tail(rt.dir / f"{c.name}.log", 2 * MAX_FALLBACK_LOG_BYTES,
                                  c.log_offset)
            except OSError as exc:
                return f"Error on reading termination message from logs: {exc}"
            data = _last_lines(tail, MAX_FALLBACK_LOG_LINES)[-MAX_FALLBACK_LOG_BYTES:]
        return data.decode(errors="replace")

    def _mark_started(self, c: _Container, now: float) -> None:
        c.started = True
        for kind in ("readiness", "liveness"):
            probe = c.probes.get(kind)
            if probe is not None:
                probe.next_at = max(now, c.started_mono + probe.delay())
        if "readiness" not in c.probes:
            c.ready = True

    # -- probes ---------------------------------------------------------------------

    def _probe_tick(self, rt: _Pod, c: _Container, now: float) -> None:
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
            if probe.future is None and now >= probe.next_at and self._executor is not None:
                probe.next_at = now + probe.period()
                probe.future = self._executor.submit(self._probe, rt, c, probe.spec)

    def _probe_result(self, rt: _Pod, c: _Container, probe: _Probe, ok: bool, message: str,
                      now: float) -> None:
        spec = probe.spec
        if ok:
            probe.successes += 1
            probe.failures = 0
            if probe.kind == "startup":
                self._mark_started(c, now)
            elif probe.kind == "readiness" and (
                    probe.successes >= int(spec.get("successThreshold") or 1)):
                c.ready = True
            return
        probe.failures += 1
        probe.successes = 0
        threshold = int(spec.get("failureThreshold") or 3)
        title = probe.kind.capitalize()
        if probe.failures == 1 or probe.failures >= threshold:
            self._event(rt.pod["metadata"], "Unhealthy", f"{title} probe failed: {message}",
                        "Warning", c.field_path)
        if probe.failures < threshold:
            return
        if probe.kind == "readiness":
            if c.ready:
                self._log(f"{rt.namespace}/{rt.name}/{c.name}: not ready: {message}")
            c.ready = False
            return
        self._log(f"{rt.namespace}/{rt.name}/{c.name}: {probe.kind} probe failed "
                  f"{probe.failures}x ({message}): restarting it")
        self._event(rt.pod["metadata"], "Killing",
                    f"Container {c.name} failed {probe.kind} probe, will be restarted",
                    container=c.field_path)
        self._kill(rt, c, now)

    def _kill(self, rt: _Pod, c: _Container, now: float) -> None:
        c.killing, c.ready = True, False
        c.kill_deadline = now + self._grace(rt)
        _signal(c.proc, signal.SIGTERM)

    def _port(self, c: _Container, rt: _Pod, port: Any) -> int:
        if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
            return int(port)
        found = c.ports().get(port) or rt.named_port(port)
        if found is None:
            raise ValueError(f"no container port named {port!r}")
        return found

    def _probe(self, rt: _Pod, c: _Container, spec: dict) -> tuple[bool, str]:
        """Run one probe (on a worker thread): (success, message)."""
        timeout = float(spec.get("timeoutSeconds") or 1)
        if "httpGet" in spec:
            get = spec["httpGet"]
            host = get.get("host") or rt.ip
            port = self._port(c, rt, get.get("port"))
            path = get.get("path") or "/"
            scheme = (get.get("scheme") or "HTTP").lower()
            release = ".".join(self._version.lstrip("v").split(".")[:2])
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
            return False, (f"HTTP probe failed with statuscode: {resp.status} "
                           f"({body[:200].decode(errors='replace').strip()})")
        if "tcpSocket" in spec:
            tcp = spec["tcpSocket"]
            host = tcp.get("host") or rt.ip
            port = self._port(c, rt, tcp.get("port"))
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
                proc = subprocess.Popen(argv, cwd=c.cwd or None, env=c.env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=_die_with_parent)
            except OSError as exc:
                return False, f"exec {argv[0]}: {exc}"
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
                proc.communicate()
                return False, f"command timed out after {timeout:g}s"
            text = out.decode(errors="replace").strip()[-300:]
            if proc.returncode == 0:
                return True, ""
            return False, f"command exited with {proc.returncode}: {text}"
        return False, "unsupported probe handler (the test kubelet runs httpGet, tcpSocket, exec)"

    # -- env and volumes ---------------------------------------------------------------

    def _source(self, kind: str, namespace: str, name: str,
                cache: dict[tuple[str, str], dict[str, bytes] | None]) -> dict[str, bytes] | None:
        """A Secret's or ConfigMap's data as bytes, None when it does not exist."""
        key = (kind, name)
        if key not in cache:
            assert self._api is not None
            plural = "secrets" if kind == "secret" else "configmaps"
            obj = self._api.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
            if obj is None:
                cache[key] = None
            elif kind == "secret":
                cache[key] = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
            else:
                data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
                data.update({k: base64.b64decode(v)
                             for k, v in (obj.get("binaryData") or {}).items()})
                cache[key] = data
        return cache[key]

    def _key_ref(self, kind: str, rt: _Pod, ref: dict,
                 cache: dict[tuple[str, str], dict[str, bytes] | None]) -> str | None:
        label = "Secret" if kind == "secret" else "ConfigMap"
        data = self._source(kind, rt.namespace, ref.get("name", ""), cache)
        if data is None:
            if ref.get("optional"):
                return None
            raise _ConfigError(f'{kind} "{ref.get("name", "")}" not found')
        if ref.get("key") not in data:
            if ref.get("optional"):
                return None
            raise _ConfigError(f"couldn't find key {ref.get('key')} in {label} "
                               f"{rt.namespace}/{ref.get('name')}")
        return data[ref["key"]].decode(errors="replace")

    def _field(self, rt: _Pod, path: str) -> str:
        meta = rt.pod["metadata"]
        simple = {
            "metadata.name": rt.name,
            "metadata.namespace": rt.namespace,
            "metadata.uid": rt.uid,
            "spec.nodeName": self.node_name,
            "spec.serviceAccountName": rt.pod["spec"].get("serviceAccountName") or "default",
            "status.podIP": rt.ip,
            "status.podIPs": rt.ip,
            "status.hostIP": HOST_IP,
        }
        if path in simple:
            return simple[path]
        m = re.fullmatch(r"metadata\.(labels|annotations)(?:\['(.+)'\])?", path)
        if m:
            values = meta.get(m.group(1)) or {}
            if m.group(2) is not None:
                return values.get(m.group(2), "")
            return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
        raise _ConfigError(f"unsupported fieldRef fieldPath {path!r}")

    def _resource(self, rt: _Pod, c: _Container, ref: dict) -> str:
        from kubernetes.utils.quantity import parse_quantity

        target = c
        if ref.get("containerName"):
            target = next((x for x in rt.all_containers
                           if x.name == ref["containerName"]), c)
        kind, _, what = ref.get("resource", "").partition(".")
        resources = target.spec.get("resources") or {}
        value = (resources.get(kind) or {}).get(what)
        if value is None and kind == "requests":
            value = (resources.get("limits") or {}).get(what)
        if value is None:
            value = self._capacity().get(what, "0") if kind == "limits" else "0"
        divisor = parse_quantity(ref.get("divisor") or "1")
        return str(math.ceil(parse_quantity(value) / divisor))

    def _env(self, rt: _Pod, c: _Container,
             cache: dict[tuple[str, str], dict[str, bytes] | None]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in c.spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, field in (("configmap", "configMapRef"), ("secret", "secretRef")):
                ref = source.get(field)
                if ref is None:
                    continue
                data = self._source(kind, rt.namespace, ref.get("name", ""), cache)
                if data is None:
                    if ref.get("optional"):
                        continue
                    raise _ConfigError(f'{kind} "{ref.get("name", "")}" not found')
                for key, value in data.items():
                    if _ENV_NAME.fullmatch(prefix + key):
                        env[prefix + key] = value.decode(errors="replace")
        for item in c.spec.get("env") or []:
            name = item["name"]
            source = item.get("valueFrom")
            if source is None:
                env[name] = expand(item.get("value") or "", env)
                continue
            value: str | None
            if "secretKeyRef" in source:
                value = self._key_ref("secret", rt, source["secretKeyRef"], cache)
            elif "configMapKeyRef" in source:
                value = self._key_ref("configmap", rt, source["configMapKeyRef"], cache)
            elif "fieldRef" in source:
                value = self._field(rt, source["fieldRef"].get("fieldPath", ""))
            elif "resourceFieldRef" in source:
                value = self._resource(rt, c, source["resourceFieldRef"])
            else:
                raise _ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
            if value is not None:
                env[name] = value
        return env

    def _volumes(self, rt: _Pod,
                 cache: dict[tuple[str, str], dict[str, bytes] | None]) -> dict[str, Path]:
        """Write the pod's volumes; volume name -> directory (or file, for hostPath files)."""
        out: dict[str, Path] = {}
        base = rt.dir / "volumes"
        for volume in rt.pod["spec"].get("volumes") or []:
            name = volume["name"]
            target = base / name
            if "emptyDir" in volume:
                target.mkdir(parents=True, exist_ok=True)
            elif "hostPath" in volume:
                target = Path(volume["hostPath"]["path"])
                if volume["hostPath"].get("type") in ("DirectoryOrCreate",):
                    target.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    raise _MountError(f'MountVolume.SetUp failed for volume "{name}" : '
                                      f"hostPath {target} does not exist")
            elif "configMap" in volume or "secret" in volume:
                kind = "configMap" if "configMap" in volume else "secret"
                spec = volume[kind] or {}
                self._write_files(target, self._keyed_files(
                    rt, name, kind, spec, spec.get("secretName") or spec.get("name") or "",
                    int(spec.get("defaultMode") or 0o644), cache))
            elif "downwardAPI" in volume:
                spec = volume["downwardAPI"]
                self._write_files(target, self._downward_files(
                    rt, spec, int(spec.get("defaultMode") or 0o644)))
            elif "projected" in volume:
                # What a 1.22+ API server puts in every pod (kube-api-access-*): a bound
                # service account token, the kube-root-ca.crt ConfigMap and the namespace.
                spec = volume["projected"]
                mode = int(spec.get("defaultMode") or 0o644)
                files = {}
                for source in spec.get("sources") or []:
                    if "configMap" in source or "secret" in source:
                        kind = "configMap" if "configMap" in source else "secret"
                        files.update(self._keyed_files(rt, name, kind, source[kind],
                                                       source[kind].get("name") or "", mode,
                                                       cache))
                    elif "downwardAPI" in source:
                        files.update(self._downward_files(rt, source["downwardAPI"], mode))
                    elif "serviceAccountToken" in source:
                        token = source["serviceAccountToken"]
                        files[token["path"]] = (self._token(rt, name, token).encode(), mode)
                    else:
                        kinds = sorted(source)
                        raise _MountError(f'volume "{name}": the test kubelet does not '
                                          f"support projected sources {kinds}")
                self._write_files(target, files)
            else:
                kinds = sorted(k for k in volume if k != "name")
                raise _MountError(f'volume "{name}": the test kubelet does not support '
                                  f"{kinds}")
            out[name] = target
        return out

    def _keyed_files(self, rt: _Pod, volume: str, kind: str, spec: dict, source: str,
                     mode: int, cache: dict[tuple[str, str], dict[str, bytes] | None]
                     ) -> dict[str, tuple[bytes, int]]:
        """The files of a configMap or secret volume (or projected source)."""
        api_kind = kind.lower()
        data = self._source(api_kind, rt.namespace, source, cache)
        if data is None:
            if not spec.get("optional"):
                raise _MountError(f'MountVolume.SetUp failed for volume "{volume}" : '
                                  f'{api_kind} "{source}" not found')
            data = {}
        files = {}
        for item in spec.get("items") or [{"key": k, "path": k} for k in data]:
            if item["key"] not in data:
                if spec.get("optional"):
                    continue
                raise _MountError(f'MountVolume.SetUp failed for volume "{volume}" : '
                                  f"{api_kind} references non-existent key: {item['key']}")
            files[item["path"]] = (self._rewrite_bytes(data[item["key"]]),
                                   int(item.get("mode") or mode))
        return files

    def _downward_files(self, rt: _Pod, spec: dict, mode: int) -> dict[str, tuple[bytes, int]]:
        files = {}
        for item in spec.get("items") or []:
            if "fieldRef" in item:
                try:
                    value = self._field(rt, item["fieldRef"].get("fieldPath", ""))
                except _ConfigError as exc:
                    raise _MountError(str(exc)) from None
            else:
                value = ""
            files[item["path"]] = (value.encode(), int(item.get("mode") or mode))
        return files

    def _token(self, rt: _Pod, volume: str, spec: dict) -> str:
        """A service account token bound to the pod, from the TokenRequest API, as the
        kubelet gets it for a serviceAccountToken projection."""
        assert self._api is not None
        account = rt.pod["spec"].get("serviceAccountName") or "default"
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"audiences": [spec["audience"]] if spec.get("audience") else [],
                            "expirationSeconds": int(spec.get("expirationSeconds") or 3600),
                            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                               "name": rt.name, "uid": rt.uid}}}
        try:
            answer = self._api("POST", f"/api/v1/namespaces/{rt.namespace}/serviceaccounts/"
                                       f"{account}/token", request)
        except _ApiError as exc:
            raise _MountError(f'MountVolume.SetUp failed for volume "{volume}" : failed to '
                              f"fetch token: {exc}") from None
        return answer["status"]["token"]

    def _rewrite_bytes(self, data: bytes) -> bytes:
        try:
            text = data.decode()
        except UnicodeDecodeError:
            return data
        return self.rewrite_service_urls(text).encode()

    @staticmethod
    def _write_files(target: Path, files: dict[str, tuple[bytes, int]]) -> None:
        """Replace the directory's content (a fresh directory swapped in, like the kubelet's
        atomic writer, so a reader never sees half of it)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        for rel, (content, mode) in files.items():
            path = fresh / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            path.chmod(mode & 0o777)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
            target.rename(old)
        fresh.rename(target)
        target.chmod(0o755)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _mounts(self, rt: _Pod, c: _Container,
                volumes: dict[str, Path]) -> list[tuple[str, str]]:
        mounts = []
        for mount in c.spec.get("volumeMounts") or []:
            source = volumes.get(mount["name"])
            if source is None:
                raise _MountError(f'volumeMount "{mount["name"]}" names no volume of the pod')
            if mount.get("subPath"):
                source = source / mount["subPath"]
            path = mount["mountPath"].rstrip("/")
            if path:
                mounts.append((path, str(source)))
        return mounts

    # -- termination ------------------------------------------------------------------

    def _grace(self, rt: _Pod) -> float:
        meta, spec = rt.pod["metadata"], rt.pod["spec"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return float(min(grace, self.max_grace_seconds))

    def _terminate(self, rt: _Pod, now: float) -> None:
        if rt.term_deadline is None:
            rt.term_deadline = now + self._grace(rt)
            self._log(f"{rt.namespace}/{rt.name}: deleting; SIGTERM, grace "
                      f"{self._grace(rt):g} s")
            for c in rt.all_containers:
                c.ready = c.ready and c.init  # an init container that exited 0 stays ready
                for probe in c.probes.values():
                    if probe.future is not None:
                        probe.future.cancel()
                if c.proc is not None:
                    self._event(rt.pod["metadata"], "Killing", f"Stopping container {c.name}",
                                container=c.field_path)
                    _signal(c.proc, signal.SIGTERM)
        alive = [c for c in rt.all_containers if c.proc is not None and c.proc.poll() is None]
        if alive and now < rt.term_deadline:
            return
        for c in alive:
            self._log(f"{rt.namespace}/{rt.name}/{c.name}: still running after the grace "
                      "period: SIGKILL")
        for c in rt.all_containers:
            self._reap(c.proc, 0.0)
            c.proc = None
        self._delete_pod(rt.namespace, rt.name, rt.uid)
        self._pods.pop(rt.uid, None)
        for scratch in ("volumes", "tmp"):  # logs stay for the tests to read
            shutil.rmtree(rt.dir / scratch, ignore_errors=True)
        self._log(f"{rt.namespace}/{rt.name}: terminated and deleted")

    def _reap(self, proc: subprocess.Popen[bytes] | None, grace: float) -> None:
        """Stop proc's group: SIGTERM now, SIGKILL once grace has passed (non-blocking)."""
        if proc is None:
            return
        if grace <= 0:
            _signal(proc, signal.SIGKILL)
        else:
            _signal(proc, signal.SIGTERM)
        self._reaping.append((proc, time.monotonic() + grace))

    def _reap_tick(self) -> None:
        now = time.monotonic()
        keep = []
        for proc, deadline in self._reaping:
            if proc.poll() is not None:
                continue
            if now >= deadline:
                _signal(proc, signal.SIGKILL)
            keep.append((proc, deadline))
        self._reaping = keep

    def _shutdown_processes(self) -> None:
        """In the loop thread, as it ends: every process it started goes."""
        with self._lock:
            procs = [c.proc for rt in self._pods.values() for c in rt.all_containers
                     if c.proc]
            procs += [p for p, _ in self._reaping]
            for proc in procs:
                _signal(proc, signal.SIGTERM)
            deadline = time.monotonic() + min(3.0, self.max_grace_seconds)
            for proc in procs:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal(proc, signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(5)
            for rt in self._pods.values():
                for c in rt.all_containers:
                    c.proc = None
            self._reaping.clear()

    # -- status ----------------------------------------------------------------------

    def _container_status(self, c: _Container) -> dict:
        if c.state == "running":
            state: dict = {"running": {"startedAt": c.started_at}}
        elif c.state == "terminated" and c.terminated is not None:
            state = {"terminated": c.terminated}
        else:
            waiting = {"reason": c.reason}
            if c.message:
                waiting["message"] = c.message
            state = {"waiting": waiting}
        status: dict = {
            "name": c.name,
            "image": c.image,
            "imageID": c.image_id,
            "ready": c.ready,  # an init container: it exited 0
            "started": c.started,
            "restartCount": c.restart_count,
            "state": state,
            "lastState": {"terminated": c.last_terminated} if c.last_terminated else {},
        }
        if c.init:
            del status["started"]  # a 1.20 kubelet sets it for containers only
        if c.container_id:
            status["containerID"] = c.container_id
        return status

    def _condition(self, rt: _Pod, type_: str, ok: bool, reason: str = "",
                   message: str = "") -> dict:
        value = "True" if ok else "False"
        previous = rt.transitions.get(type_)
        if previous is None or previous[0] != value:
            rt.transitions[type_] = (value, _now())
        cond = {"type": type_, "status": value, "lastTransitionTime": rt.transitions[type_][1]}
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        return cond

    def _status(self, rt: _Pod) -> dict:
        init_statuses = [self._container_status(c) for c in rt.init_containers]
        statuses = [self._container_status(c) for c in rt.containers]
        phase = _phase(rt.restart_policy, init_statuses, statuses)
        # The kubelet's GeneratePodInitializedCondition and GenerateContainersReadyCondition
        # (pkg/kubelet/status/generate.go): a Succeeded pod is Initialized, and neither Ready
        # nor ContainersReady, with reason PodCompleted.
        incomplete = [c.name for c in rt.init_containers if not c.ready]
        if not rt.init_containers:
            initialized = self._condition(rt, "Initialized", True)
        elif phase == "Succeeded":
            initialized = self._condition(rt, "Initialized", True, "PodCompleted")
        elif incomplete:
            initialized = self._condition(
                rt, "Initialized", False, "ContainersNotInitialized",
                f"containers with incomplete status: [{' '.join(incomplete)}]")
        else:
            initialized = self._condition(rt, "Initialized", True)
        unready = [c.name for c in rt.containers if not c.ready]
        if phase == "Succeeded":
            reason, message = "PodCompleted", ""
        elif unready:
            reason = "ContainersNotReady"
            message = f"containers with unready status: [{' '.join(unready)}]"
        else:
            reason = message = ""
        status: dict = {
            "phase": phase,
            "conditions": [
                initialized,
                self._condition(rt, "Ready", not reason, reason, message),
                self._condition(rt, "ContainersReady", not reason, reason, message),
                self._condition(rt, "PodScheduled", True),
            ],
            "hostIP": HOST_IP,
            "podIP": rt.ip,
            "podIPs": [{"ip": rt.ip}],
            "startTime": rt.start_time,
        }
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        status["containerStatuses"] = statuses
        return status

    def _patch_status(self, rt: _Pod) -> None:
        assert self._api is not None
        status = self._status(rt)
        current = rt.pod.get("status") or {}
        drifted = current.get("podIP") != rt.ip or current.get("phase") != status["phase"]
        if status == rt.last_status and not drifted:
            return
        try:
            self._api("PATCH", f"/api/v1/namespaces/{rt.namespace}/pods/{rt.name}/status",
                      {"status": status}, patch=True)
        except _ApiError as exc:
            if exc.status == 404:
                return
            raise
        rt.last_status = status

    # -- events ----------------------------------------------------------------------

    def _event(self, meta: dict, reason: str, message: str, type_: str = "Normal",
               container: str = "", component: str = "kubelet") -> None:
        if self._api is None:
            return
        now = _now()
        involved = {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                    "namespace": meta["namespace"], "uid": meta.get("uid", "")}
        if container:  # a fieldPath: spec.containers{name} or spec.initContainers{name}
            involved["fieldPath"] = container
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}",
                         "namespace": meta["namespace"]},
            "involvedObject": involved, "reason": reason, "message": message[:1024],
            "type": type_, "source": {"component": component, "host": self.node_name},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": component, "reportingInstance": self.node_name,
        }
        try:
            self._api("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body)
        except Exception as exc:  # events are best effort
            if not (isinstance(exc, _ApiError) and exc.status in (403, 404)):
                self._log(f"event {reason} not posted: {exc}")  # 403/404: namespace going

    # -- services ------------------------------------------------------------------

    def _route(self, key: tuple[str, str, int]) -> list[tuple[str, int]]:
        return self._routes.get(key, [])

    def _refresh_routes(self) -> None:
        keys = self._proxy.keys()
        if not keys:
            return
        now = time.monotonic()
        if now >= self._services_at:
            assert self._api is not None
            services: dict[tuple[str, str], dict] = {}
            # Only namespaces where this kubelet runs pods can have endpoints.
            running = {rt.namespace for rt in self._pods.values()}
            for ns in sorted({k[0] for k in keys} & running):
                for svc in self._api("GET", f"/api/v1/namespaces/{ns}/services")["items"]:
                    services[(ns, svc["metadata"]["name"])] = svc
            self._services = services
            self._services_at = now + SERVICE_REFRESH_SECONDS
        routes: dict[tuple[str, str, int], list[tuple[str, int]]] = {}
        for key in keys:
            ns, name, port = key
            svc = self._services.get((ns, name))
            targets: list[tuple[str, int]] = []
            spec = (svc or {}).get("spec") or {}
            selector = spec.get("selector") or {}
            entry = next((p for p in spec.get("ports") or [] if int(p.get("port", 0)) == port),
                         None)
            if selector and entry is not None:
                target = entry.get("targetPort", port)
                for rt in self._pods.values():
                    if (rt.namespace != ns or rt.term_deadline is not None or not rt.ready
                            or rt.pod["metadata"].get("deletionTimestamp")
                            or any(rt.labels.get(k) != v for k, v in selector.items())):
                        continue
                    number = (int(target) if isinstance(target, int) or str(target).isdigit()
                              else rt.named_port(str(target)))
                    if number:
                        targets.append((rt.ip, number))
            routes[key] = sorted(targets)
        self._routes = routes


def _phase(policy: str, init_statuses: list[dict], statuses: list[dict]) -> str:
    """The pod phase from its container statuses: the kubelet's getPhase
    (pkg/kubelet/kubelet_pods.go, 1.20)."""
    pending_init = failed_init = 0
    for st in init_statuses:
        state, last = st["state"], st["lastState"].get("terminated")
        if "running" in state:
            pending_init += 1
        elif "terminated" in state:
            failed_init += state["terminated"]["exitCode"] != 0
        elif last is not None:
            failed_init += last["exitCode"] != 0
        else:
            pending_init += 1
    running = waiting = stopped = succeeded = 0
    for st in statuses:
        state = st["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"]["exitCode"] == 0
        elif st["lastState"].get("terminated") is not None:
            stopped += 1  # waiting to restart
        else:
            waiting += 1
    if failed_init and policy == "Never":
        return "Failed"
    if pending_init or waiting:
        return "Pending"  # one or more containers has not been started
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"  # all restarting
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"  # OnFailure: restarting
    return "Pending"


def _path_rewriter(mounts: list[tuple[str, str]]) -> Callable[[str], str]:
    """A function that replaces each mount path (as a whole path prefix) in a string by the
    local directory it is mapped to; nested mounts: the longest path wins."""
    if not mounts:
        return lambda s: s
    table = dict(mounts)
    ordered = sorted(table, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(p) for p in ordered)
                         + r")(?![\w.-])")

    def rewrite(text: str) -> str:
        return pattern.sub(lambda m: table[m.group(1)], text)

    return rewrite
