"""A real Kubernetes control plane for tests and local runs.

etcd + kube-apiserver + kube-controller-manager, built by
scripts/build-control-plane.sh, all on 127.0.0.1 with ports picked at start,
token authentication and RBAC. It has no kubelet: pods stay Pending unless the local
node (botenv.local.node) runs them.

BOTENV_KUBERNETES_VERSION picks the version: 1.34 (the default; Kubernetes
1.34.4 and etcd 3.6 from the Go module proxy) or 1.20 (Kubernetes 1.20.2 from
Debian's source, Debian's etcd 3.4).

    python -m botenv.local.controlplane up [--dir D]   # foreground; Ctrl-C stops
    python -m botenv.local.controlplane build          # only ensure the binaries

Binaries come from $BOTENV_CONTROL_PLANE_BIN (a directory holding etcd and
kube-apiserver, optionally kube-controller-manager; their version is read from
kube-apiserver --version) or from the build cache
${BOTENV_CACHE:-~/.cache/botenv}/kubernetes-<BUILD_ID>/bin, built on first use.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import csv
import hashlib
import io
import json
import logging
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from botenv.local.processes import (
    die_with_parent,
    free_ports,
    signal_running_group,
    tail,
)

log = logging.getLogger("botenv.controlplane")

# BOTENV_KUBERNETES_VERSION -> the build's id, which names its cache directory. Must
# match BUILD_ID in scripts/build-control-plane.sh (bumped when its patches change).
VERSIONS = {"1.34": "1.34.4", "1.20": "1.20.2-p3"}
DEFAULT_VERSION = "1.34"
REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-control-plane.sh"
REQUIRED = ("etcd", "kube-apiserver")
CONTROLLER_MANAGER = "kube-controller-manager"
# Room for thousands of Services (benchmarks create one per environment).
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


def selected_version() -> str:
    """The Kubernetes version BOTENV_KUBERNETES_VERSION asks for (1.34 when unset)."""
    version = os.environ.get("BOTENV_KUBERNETES_VERSION") or DEFAULT_VERSION
    if version not in VERSIONS:
        raise ControlPlaneError(
            f"BOTENV_KUBERNETES_VERSION must be one of {', '.join(VERSIONS)}, got {version!r}"
        )
    return version


def cache_bin_dir(version: str | None = None) -> Path:
    """Where scripts/build-control-plane.sh puts the binaries of a version."""
    cache = os.environ.get("BOTENV_CACHE") or str(Path.home() / ".cache" / "botenv")
    build_id = VERSIONS[version or selected_version()]
    return Path(cache).expanduser() / f"kubernetes-{build_id}" / "bin"


def binary_version(bin_dir: Path) -> tuple[int, int]:
    """(major, minor) of the kube-apiserver in bin_dir, from its --version."""
    out = subprocess.run(
        [str(bin_dir / "kube-apiserver"), "--version"], capture_output=True, text=True, timeout=60
    ).stdout
    # "Kubernetes v1.34.4"
    try:
        major, minor = out.split()[1].lstrip("v").split(".")[:2]
        return int(major), int(minor)
    except (IndexError, ValueError):
        raise ControlPlaneError(
            f"cannot read the version of {bin_dir / 'kube-apiserver'}: {out!r}"
        ) from None


def _missing(bin_dir: Path, names: Sequence[str]) -> list[str]:
    return [n for n in names if not os.access(bin_dir / n, os.X_OK)]


def binaries_cached() -> bool:
    """Whether find_binaries() finds them without a build."""
    if os.environ.get("BOTENV_CONTROL_PLANE_BIN"):
        return True
    return not _missing(cache_bin_dir(), (*REQUIRED, CONTROLLER_MANAGER))


def find_binaries() -> Path:
    """Return the directory holding the control-plane binaries, building them if needed."""
    own = os.environ.get("BOTENV_CONTROL_PLANE_BIN")
    if own:
        bin_dir = Path(own).expanduser().resolve()
        missing = _missing(bin_dir, REQUIRED)
        if missing:
            raise ControlPlaneError(
                f"BOTENV_CONTROL_PLANE_BIN={bin_dir} lacks executable {', '.join(missing)}"
            )
        return bin_dir

    version = selected_version()
    bin_dir = cache_bin_dir(version)
    if not _missing(bin_dir, (*REQUIRED, CONTROLLER_MANAGER)):
        return bin_dir
    log.warning(
        "Kubernetes %s control plane binaries not in %s; building them (10-20 minutes)",
        version,
        bin_dir,
    )
    # The build reports its progress on stdout/stderr: pass both to our stderr.
    try:
        err_fd = sys.stderr.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        err_fd = 2
    rc = subprocess.call(
        ["bash", str(BUILD_SCRIPT)],
        stdout=err_fd,
        stderr=err_fd,
        env={**os.environ, "BOTENV_KUBERNETES_VERSION": version},
    )
    if rc != 0 or _missing(bin_dir, (*REQUIRED, CONTROLLER_MANAGER)):
        raise ControlPlaneError(
            f"{BUILD_SCRIPT.relative_to(REPO_ROOT)} failed (exit {rc}); see its output above"
        )
    return bin_dir


def _self_signed_ca(cert_file: Path) -> bytes | None:
    """The CA that kube-apiserver appended to the serving cert it generated."""
    try:
        pems = cert_file.read_text().split("-----END CERTIFICATE-----")
    except OSError:
        return None
    blocks = [p.strip() + "\n-----END CERTIFICATE-----\n" for p in pems if "BEGIN" in p]
    return blocks[-1].encode() if len(blocks) >= 2 else None


def _yaml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) as child processes.

    extra_tokens maps a bearer token to (user, groups); tokens.csv is read once
    by the apiserver, so every identity a test needs is declared here up front
    (or use impersonation with the admin token).
    """

    def __init__(
        self,
        workdir: Path,
        extra_tokens: Mapping[str, tuple[str, Sequence[str]]] | None = None,
        *,
        bin_dir: Path | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.extra_tokens = {t: (u, list(g)) for t, (u, g) in (extra_tokens or {}).items()}
        self.admin_token = secrets.token_hex(16)
        self.timeout = timeout
        self.server = ""
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self._bin_dir = bin_dir
        self._kcm_token = secrets.token_hex(16)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._atexit_registered = False
        self.ca_cert: bytes | None = None  # PEM, once the apiserver made its certs
        self.version: tuple[int, int] = (0, 0)  # (major, minor) of the binaries, at start()
        self._insecure = ssl.create_default_context()
        self._insecure.check_hostname = False
        # Readiness polls: the certs do not exist before the servers create them.
        self._insecure.verify_mode = ssl.CERT_NONE

    # -- public API ---------------------------------------------------------

    def start(self) -> ControlPlane:
        """Start everything and wait until the API answers; returns self."""
        if self._procs:
            raise ControlPlaneError("control plane already started")
        bin_dir = self._bin_dir or find_binaries()
        self.version = binary_version(bin_dir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        began = time.monotonic()
        # Ports are free when picked but another process may grab one before
        # ours binds it: retry then, with new ports.
        for attempt in range(3):
            try:
                self._start_once(bin_dir)
                break
            except _PortTaken as exc:
                self.stop()
                if attempt == 2:
                    raise ControlPlaneError(str(exc)) from None
                log.info("port race (%s); retrying with new ports", exc)
            except BaseException:
                self.stop()
                raise
        log.info(
            "Kubernetes %d.%d control plane up at %s in %.1f s (logs in %s)",
            *self.version,
            self.server,
            time.monotonic() - began,
            self.workdir,
        )
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop all processes (SIGTERM, then SIGKILL after timeout). Idempotent."""
        with self._lock:
            procs = list(self._procs.items())
            self._procs.clear()
        # One by one in reverse start order: the apiserver should not lose etcd
        # while it shuts down (that only fills its log with gRPC errors).
        for name, proc in reversed(procs):
            signal_running_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", name, timeout)
                signal_running_group(proc, signal.SIGKILL)
                proc.wait()

    def kubeconfig_for(self, token: str) -> Path:
        """Write and return a kubeconfig that authenticates with token."""
        if not self.server:
            raise ControlPlaneError("start() the control plane first")
        if token != self.admin_token and token not in self.extra_tokens:
            # The apiserver only knows the tokens it read at start: fail here, not with a 401.
            raise ControlPlaneError("unknown token: pass it in extra_tokens before start()")
        digest = hashlib.sha256(token.encode()).hexdigest()[:12]
        path = self.workdir / f"kubeconfig-{digest}"
        self._write_kubeconfig(path, token)
        return path

    @property
    def running(self) -> bool:
        """Whether every started process is still alive."""
        return bool(self._procs) and all(p.poll() is None for p in self._procs.values())

    @property
    def pids(self) -> dict[str, int]:
        """Process name (etcd, kube-apiserver, ...) -> pid, for benchmarks that account CPU."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------

    def _start_once(self, bin_dir: Path) -> None:
        etcd_client, etcd_peer, api_port, kcm_port = free_ports(4)
        wd = self.workdir
        self.server = f"https://127.0.0.1:{api_port}"
        etcd_url = f"http://127.0.0.1:{etcd_client}"
        peer_url = f"http://127.0.0.1:{etcd_peer}"

        # A fresh cluster every start: old etcd data would not match new tokens.
        shutil.rmtree(wd / "etcd", ignore_errors=True)
        sa_key = wd / "sa.key"
        if not sa_key.exists():
            if not shutil.which("openssl"):
                raise ControlPlaneError("openssl not found (apt-get install openssl)")
            subprocess.run(
                ["openssl", "genrsa", "-out", str(sa_key), "2048"],
                check=True,
                capture_output=True,
            )
        tokens = wd / "tokens.csv"
        with tokens.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow([self.admin_token, "admin", "admin", "system:masters"])
            # system:masters: the controllers run under the manager's own credential.
            w.writerow([self._kcm_token, "system:kube-controller-manager", "kcm", "system:masters"])
            for i, (token, (user, groups)) in enumerate(self.extra_tokens.items()):
                w.writerow([token, user, f"extra-{i}", ",".join(groups)])
        tokens.chmod(0o600)

        self._spawn(
            "etcd",
            [
                str(bin_dir / "etcd"),
                "--name=botenv",
                f"--data-dir={wd / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=botenv={peer_url}",
                "--logger=zap",
                "--log-outputs=stderr",
            ],
        )
        self._wait("etcd", lambda: self._get(f"{etcd_url}/health", auth=False) is not None)

        self._spawn(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={wd / 'certs'}",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--token-auth-file={tokens}",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                # The default reconciler would publish 127.0.0.1 as the endpoint
                # of service "kubernetes", which validation rejects (loopback),
                # logging an error every 10 s; nothing in-cluster needs it.
                "--endpoint-reconciler-type=none",
                # Load tests must measure the operator, not the apiserver's throttling.
                "--enable-priority-and-fairness=false",
                "--max-requests-inflight=1000",
                "--max-mutating-requests-inflight=500",
            ],
        )
        self._wait("kube-apiserver", lambda: self._get(f"{self.server}/readyz") == b"ok")
        # Clients verify TLS against the apiserver's own generated CA (its cert
        # names 127.0.0.1); insecure-skip-tls-verify is only the fallback.
        self.ca_cert = _self_signed_ca(wd / "certs" / "apiserver.crt")
        if self.ca_cert is None:
            log.warning("no CA in %s; kubeconfigs skip TLS verification", wd / "certs")
        self._write_kubeconfig(self.kubeconfig, self.admin_token)

        if os.access(bin_dir / CONTROLLER_MANAGER, os.X_OK):
            kcm_config = wd / "kube-controller-manager.kubeconfig"
            self._write_kubeconfig(kcm_config, self._kcm_token)
            self._spawn(
                CONTROLLER_MANAGER,
                [
                    str(bin_dir / CONTROLLER_MANAGER),
                    f"--kubeconfig={kcm_config}",
                    f"--service-account-private-key-file={sa_key}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={kcm_port}",
                    # Before 1.24 it also serves plain HTTP on 0.0.0.0:10252 unless
                    # told not to: a fixed port that a second cluster beside would
                    # collide on (1.24 removed the flag with the insecure port).
                    *(["--port=0"] if self.version < (1, 24) else []),
                    f"--cert-dir={wd / 'certs-kcm'}",
                    "--controllers=*",
                ],
            )
            self._wait(
                CONTROLLER_MANAGER,
                lambda: self._get(f"https://127.0.0.1:{kcm_port}/healthz", auth=False) == b"ok",
            )
            # The service account controller creating default/default proves
            # the controllers run and talk to the apiserver.
            sa_url = f"{self.server}/api/v1/namespaces/default/serviceaccounts/default"
            self._wait(
                CONTROLLER_MANAGER,
                lambda: self._get(sa_url) is not None,
                "service account default/default",
            )
        else:
            log.warning(
                "no %s in %s: running without a controller manager "
                "(no Deployments -> Pods, no garbage collection)",
                CONTROLLER_MANAGER,
                bin_dir,
            )
            self._wait(
                "kube-apiserver",
                lambda: self._get(f"{self.server}/api/v1/namespaces/default") is not None,
                "namespace default",
            )

    def _spawn(self, name: str, argv: list[str]) -> None:
        log_path = self.workdir / f"{name}.log"
        self._logs[name] = log_path
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                # Own process group: a terminal's Ctrl-C reaches only us, and we
                # stop the children in order.
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        with self._lock:
            self._procs[name] = proc

    def _wait(self, name: str, ready: Callable[[], bool], what: str = "") -> None:
        """Poll ready() until true; name is the process whose log explains a failure."""
        what = what or name
        began = time.monotonic()
        deadline = began + self.timeout
        while True:
            for pname, proc in self._procs.items():
                if proc.poll() is not None:
                    last = tail(self._logs[pname], 25)
                    if "address already in use" in last:
                        raise _PortTaken(f"{pname}: address already in use")
                    raise ControlPlaneError(
                        f"{pname} exited with code {proc.returncode} while waiting for {what}; "
                        f"last lines of {self._logs[pname]}:\n{last}"
                    )
            if ready():
                log.debug("%s ready after %.1f s", what, time.monotonic() - began)
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{what} not ready after {self.timeout:.0f} s; "
                    f"last lines of {self._logs[name]}:\n{tail(self._logs[name], 25)}"
                )
            time.sleep(0.2)

    def _get(self, url: str, auth: bool = True) -> bytes | None:
        """GET url; the body on 2xx, None on any error (the caller polls)."""
        req = urllib.request.Request(url)
        if auth:
            req.add_header("Authorization", f"Bearer {self.admin_token}")
        try:
            with urllib.request.urlopen(req, timeout=5, context=self._insecure) as resp:
                return resp.read()
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def _write_kubeconfig(self, path: Path, token: str) -> None:
        if self.ca_cert is not None:
            tls = f"certificate-authority-data: {base64.b64encode(self.ca_cert).decode()}"
        else:
            tls = "insecure-skip-tls-verify: true"
        text = (
            "apiVersion: v1\n"
            "kind: Config\n"
            "clusters:\n"
            "- name: botenv\n"
            "  cluster:\n"
            f"    server: {_yaml_str(self.server)}\n"
            f"    {tls}\n"
            "users:\n"
            "- name: botenv\n"
            "  user:\n"
            f"    token: {_yaml_str(token)}\n"
            "contexts:\n"
            "- name: botenv\n"
            "  context:\n"
            "    cluster: botenv\n"
            "    user: botenv\n"
            "    namespace: default\n"
            "current-context: botenv\n"
        )
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        tmp.replace(path)


class _PortTaken(Exception):
    pass


# -- command line -------------------------------------------------------------


def _parse_token(spec: str) -> tuple[str, tuple[str, list[str]]]:
    # TOKEN=USER[:GROUP,GROUP...]
    token, sep, rest = spec.partition("=")
    if not sep or not token or not rest:
        raise argparse.ArgumentTypeError(f"expected TOKEN=USER[:GROUP,...], got {spec!r}")
    user, _, groups = rest.partition(":")
    return token, (user, [g for g in groups.split(",") if g])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m botenv.local.controlplane", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the binaries if they are missing")
    up = sub.add_parser("up", help="run a control plane in the foreground until Ctrl-C")
    up.add_argument("--dir", type=Path, help="work dir for logs/kubeconfigs (default: a temp dir)")
    up.add_argument(
        "--token",
        action="append",
        type=_parse_token,
        default=[],
        metavar="TOKEN=USER[:GROUP,...]",
        help="an extra identity to accept (repeatable)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[controlplane] %(message)s")

    if args.command == "build":
        print(find_binaries())
        return 0

    workdir = args.dir or Path(tempfile.mkdtemp(prefix="botenv-controlplane-"))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    cp = ControlPlane(workdir, extra_tokens=dict(args.token))
    try:
        cp.start()
        print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
        for token in cp.extra_tokens:
            user = cp.extra_tokens[token][0]
            print(f"# {user}: {cp.kubeconfig_for(token)}", flush=True)
        log.info("running; Ctrl-C to stop")
        while not stop.wait(1.0):
            if not cp.running:
                log.error("a control plane process exited; see the logs in %s", workdir)
                return 1
        return 0
    finally:
        log.info("stopping")
        cp.stop()
        if args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
