"""The local node's kubelet: its loop over the pods bound to it; see botenv.local.node."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from botenv.local.node.api import Api, KubeletError
from botenv.local.node.constants import DEFAULT_NODE, DEFAULT_SELECTOR
from botenv.local.node.envs import PodConfig
from botenv.local.node.images import Image, Placeholders
from botenv.local.node.network import LoopbackPool, Services
from botenv.local.node.node import NodeAgent
from botenv.local.node.probes import Prober
from botenv.local.node.recorder import Recorder
from botenv.local.node.runtime import SITECUSTOMIZE, ContainerRuntime
from botenv.local.node.security import unseal
from botenv.local.node.state import Container, Pod, ProcessInfo, utc_now
from botenv.local.node.status import patch_status
from botenv.local.node.volumes import Volumes
from botenv.local.processes import signal_running_group


class LocalKubelet:
    """A kubelet (and scheduler) for the pods matching ``selector``; see botenv.local.node.

    ``images`` maps an image reference, or its repository (``rasa/rasa``), to an ``Image``;
    it is read at every container start, so callers may add entries later. ``service_hosts``
    maps ``name.namespace:port`` (or ``name.namespace``) to ``host:port`` (or ``host``) for
    Services served outside the cluster. ``namespaces`` limits the pods it takes (default:
    all). ``rasa_python`` gives the interpreter that RASA_PYTHON stands for (default: the
    cached Rasa venv of botenv.local.rasa, built on first use).

    It is a collaboration: NodeAgent (the Node object, binding), ContainerRuntime (processes),
    PodConfig and Volumes (what a container starts with), Prober, Services (pod IPs and the
    proxy) and the status module; this class runs the loop that ties them together.
    """

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
        rasa_python: Callable[[], str | Path] | None = None,
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
        self._placeholders = Placeholders(rasa_python or _cached_rasa_python)
        self._api: Api | None = None
        self._pool = LoopbackPool()
        self._services = Services(self._pool, self.service_hosts)
        self._log_file = self.workdir / "kubelet.log"
        self._recorder = Recorder(self._log_file, node_name)
        self._node: NodeAgent | None = None
        self._runtime: ContainerRuntime | None = None
        self._prober: Prober | None = None
        self._pods: dict[str, Pod] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shim_dir = self.workdir / ".kubelet-python"
        self._errors = 0
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    # -- public API ---------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise KubeletError("this kubelet was already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._shim_dir.mkdir(parents=True, exist_ok=True)
        (self._shim_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
        api = self._api = Api(self.kubeconfig)
        self._recorder.api = api
        self._node = NodeAgent(api, self.node_name, self.node_labels, self.workdir, self._recorder)
        config = PodConfig(api, self.node_name, self._node.capacity)
        self._runtime = ContainerRuntime(
            workdir=self.workdir,
            images=self.images,
            placeholders=self._placeholders,
            config=config,
            volumes=Volumes(config, self.rewrite_service_urls),
            rewrite_urls=self.rewrite_service_urls,
            recorder=self._recorder,
            shim_dir=self._shim_dir,
            backoff_seconds=self.backoff_seconds,
            max_grace_seconds=self.max_grace_seconds,
        )
        self._node.register()
        self._node.delete_stale_pods()
        self._services.start()
        self._prober = Prober(
            self._recorder, self._runtime.kill, self._probe_workers, self._node.version
        )
        # Processes are started from this thread: PR_SET_PDEATHSIG ties them to it.
        self._thread = threading.Thread(target=self._run, name="test-kubelet", daemon=True)
        self._thread.start()
        self._started.wait(60)
        if self._start_error is not None:
            error = self._start_error
            self.stop()
            raise KubeletError(f"the kubelet's first sync failed: {error}") from error
        self._recorder.log(f"node {self.node_name} ready; selector {self.selector!r}")
        return self

    def stop(self) -> None:
        """Kill every process, delete this node's pods and the Node. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(30)  # the loop kills the processes it started before it ends
        if self._prober is not None:
            self._prober.stop()
        self._services.stop()
        api = self._api
        if api is not None:
            if self._node is not None:
                with contextlib.suppress(Exception):
                    self._node.delete_stale_pods()
            with contextlib.suppress(Exception):
                api("DELETE", f"/api/v1/nodes/{self.node_name}")
            api.close()
        self._pool.close()
        self._recorder.log("stopped")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
                known = [
                    rt for rt in self._pods.values() if (rt.namespace, rt.name) == (namespace, pod)
                ]
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
                    out.append(
                        ProcessInfo(
                            rt.namespace,
                            rt.name,
                            c.name,
                            c.proc.pid,
                            rt.ip,
                            tuple(int(p["containerPort"]) for p in c.spec.get("ports") or []),
                            c.restart_count,
                            c.ready,
                            tuple(c.argv),
                            c.cwd,
                            c.user,
                            c.rootfs is not None,
                            c.root_writes,
                            c.env.get("HOME", ""),
                            c.env.get("TMPDIR", ""),
                        )
                    )
            out += [
                ProcessInfo(
                    "",
                    "",
                    "(terminating)",
                    p.pid,
                    "",
                    (),
                    0,
                    False,
                    tuple(str(a) for a in p.args),
                    "",
                )
                for p, _ in self._reaping()
                if p.poll() is None and namespace is None
            ]
        return out

    def pod_ip(self, namespace: str, pod: str) -> str | None:
        with self._lock:
            for rt in self._pods.values():
                if (rt.namespace, rt.name) == (namespace, pod):
                    return rt.ip
        return None

    def service_address(self, namespace: str, name: str, port: int) -> str:
        """host:port where this kubelet's processes reach Service namespace/name:port."""
        return self._services.service_address(namespace, name, port)

    def rewrite_service_urls(self, text: str) -> str:
        """Every ``scheme://<svc>.<ns>.svc[.cluster.local][:port]`` in text pointed at an
        address this machine can reach (see service_address)."""
        return self._services.rewrite_urls(text)

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
                    self._recorder.log(
                        f"tick failed ({self._errors}x): {type(exc).__name__}: {exc}"
                    )
        self._shutdown_processes()

    def _tick(self) -> None:
        api = self._api
        assert api is not None
        now = time.monotonic()
        if now >= self._node.heartbeat_at:
            self._node.heartbeat()
        pending = self._list_pods(
            {"labelSelector": self.selector, "fieldSelector": "spec.nodeName="}
        )
        mine = self._list_pods({"fieldSelector": f"spec.nodeName={self.node_name}"})
        with self._lock:
            for pod in pending:
                meta = pod["metadata"]
                phase = (pod.get("status") or {}).get("phase")
                if (
                    meta.get("deletionTimestamp")
                    or phase in ("Succeeded", "Failed")
                    or not self._node.fits(pod)
                    or not self._node.bind(pod)
                ):
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
                        self._node.delete_pod(
                            pod["metadata"]["namespace"], pod["metadata"]["name"], uid
                        )
                        continue
                    rt = self._admit(pod)
                rt.pod = pod
                try:
                    self._sync(rt, time.monotonic())
                except Exception as exc:  # one pod's trouble must not stall the others
                    self._recorder.log(
                        f"{rt.namespace}/{rt.name}: sync failed: {type(exc).__name__}: {exc}"
                    )
            for uid in [u for u in self._pods if u not in seen]:
                rt = self._pods.pop(uid)
                self._recorder.log(f"{rt.namespace}/{rt.name} is gone from the API: killing it")
                for c in rt.all_containers:
                    self._runtime.reap(c.proc, 0.0)
                    c.proc = None
            self._runtime.reap_tick()
            self._services.refresh(api, list(self._pods.values()))

    def _list_pods(self, query: dict[str, str]) -> list[dict]:
        assert self._api is not None
        if self.namespaces is None:
            return self._api("GET", "/api/v1/pods", query=query)["items"]
        items: list[dict] = []
        for ns in self.namespaces:
            items += self._api("GET", f"/api/v1/namespaces/{ns}/pods", query=query)["items"]
        return items

    def _reaping(self) -> list[tuple[subprocess.Popen[bytes], float]]:
        return self._runtime.reaping if self._runtime is not None else []

    def _shutdown_processes(self) -> None:
        """In the loop thread, as it ends: every process it started goes."""
        with self._lock:
            if self._runtime is not None:
                self._runtime.shutdown(list(self._pods.values()))

    # -- one pod ----------------------------------------------------------------------

    def _admit(self, pod: dict) -> Pod:
        meta = pod["metadata"]
        ip = self._pool.take()
        directory = self.pod_dir(meta["namespace"], meta["name"])
        shutil.rmtree(directory / "volumes", ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        init_specs = pod["spec"].get("initContainers") or []
        # Until it runs, a container waits as ContainerCreating, or PodInitializing in a pod
        # with init containers (init containers included), as the kubelet reports it.
        waiting = "PodInitializing" if init_specs else "ContainerCreating"
        containers = [
            Container(spec=c, name=c["name"], image=c.get("image", ""), reason=waiting)
            for c in pod["spec"].get("containers") or []
        ]
        init_containers = [
            Container(spec=c, name=c["name"], image=c.get("image", ""), init=True, reason=waiting)
            for c in init_specs
        ]
        rt = Pod(
            uid=meta["uid"],
            namespace=meta["namespace"],
            name=meta["name"],
            ip=ip,
            dir=directory,
            pod=pod,
            containers=containers,
            start_time=utc_now(),
            init_containers=init_containers,
        )
        self._pods[rt.uid] = rt
        extra = pod["spec"].get("ephemeralContainers")
        self._recorder.log(
            f"{rt.namespace}/{rt.name}: admitted with IP {ip}"
            + (f", {len(init_containers)} init container(s) first" if init_containers else "")
            + (" (ephemeral containers are not run)" if extra else "")
        )
        return rt

    def _sync(self, rt: Pod, now: float) -> None:
        if rt.pod["metadata"].get("deletionTimestamp"):
            self._terminate(rt, now)
            if rt.uid in self._pods:  # still stopping: report it not ready
                patch_status(self._api, rt)
            return
        if self._sync_init(rt, now):
            for c in rt.containers:
                self._sync_container(rt, c, now)
        patch_status(self._api, rt)

    def _sync_init(self, rt: Pod, now: float) -> bool:
        """Run the init containers one at a time, in order; True once each has exited 0.
        The next one starts in the same sync as its predecessor is seen done. One that
        failed for good (restartPolicy Never) leaves the pod Failed: nothing else runs."""
        for c in rt.init_containers:
            if not c.succeeded:
                self._sync_container(rt, c, now)
            if not c.succeeded:
                return False  # running, waiting to (re)start, or failed for good
        return True

    def _sync_container(self, rt: Pod, c: Container, now: float) -> None:
        self._runtime.check_root(rt, c)
        if c.proc is not None and c.proc.poll() is not None:
            self._runtime.exited(rt, c, now)
        if c.proc is None:
            if c.terminated is None and now >= c.next_start:
                self._runtime.start(rt, c, now)
            return
        if c.killing:
            if now >= c.kill_deadline:
                signal_running_group(c.proc, signal.SIGKILL)
            return
        self._prober.tick(rt, c, now)

    def _terminate(self, rt: Pod, now: float) -> None:
        if rt.term_deadline is None:
            rt.term_deadline = now + self._runtime.grace(rt)
            self._recorder.log(
                f"{rt.namespace}/{rt.name}: deleting; SIGTERM, grace {self._runtime.grace(rt):g} s"
            )
            for c in rt.all_containers:
                c.ready = c.ready and c.init  # an init container that exited 0 stays ready
                for probe in c.probes.values():
                    if probe.future is not None:
                        probe.future.cancel()
                if c.proc is not None:
                    self._recorder.event(
                        rt.pod["metadata"],
                        "Killing",
                        f"Stopping container {c.name}",
                        container=c.field_path,
                    )
                    signal_running_group(c.proc, signal.SIGTERM)
        alive = [c for c in rt.all_containers if c.proc is not None and c.proc.poll() is None]
        if alive and now < rt.term_deadline:
            return
        for c in alive:
            self._recorder.log(
                f"{rt.namespace}/{rt.name}/{c.name}: still running after the grace period: SIGKILL"
            )
        for c in rt.all_containers:
            self._runtime.reap(c.proc, 0.0)
            c.proc = None
        self._node.delete_pod(rt.namespace, rt.name, rt.uid)
        self._pods.pop(rt.uid, None)
        unseal(rt.dir / "rootfs")
        for scratch in ("volumes", "tmp", "rootfs"):  # logs stay for the tests to read
            shutil.rmtree(rt.dir / scratch, ignore_errors=True)
        self._recorder.log(f"{rt.namespace}/{rt.name}: terminated and deleted")


def _cached_rasa_python() -> Path:
    from botenv.local.rasa import rasa_python  # builds the venv the first time

    return rasa_python()
