"""Fixtures for the test kubelet's own tests (tests/e2e/test_kubelet.py): the real control
plane of tests/cluster, a TestKubelet on it for the session, a namespace per test, and a
tiny HTTP "image" that starts in milliseconds.

A test module binds the fixtures to names of its own (pytest finds fixtures in a module's
namespace): ``kubelet = kubelet_fixtures.kubelet``."""

from __future__ import annotations

import itertools
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from botenv.local.controlplane import ControlPlane
from tests.cluster import conftest as cluster
from tests.support.kubectl import Kubectl, condition, eventually
from tests.support.kubelet import PYTHON, Image, TestKubelet
from tests.support.rasa import rasa_venv

# An image no registry has: the test kubelet runs it as TINY_SERVER (see tiny_image).
TINY_IMAGE = "registry.example.test/tiny-http:1"
TINY_PORT = 8080
MANAGED = {"app.kubernetes.io/managed-by": "botenv"}

# The tiny image's program: `<port>` as its first argument; it binds $BIND_ADDRESS (the pod IP,
# set by the image mapping, as a real image would bind 0.0.0.0).
TINY_SERVER = r"""
import hashlib, json, os, sys, urllib.parse, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

healthy = True


class Handler(BaseHTTPRequestHandler):
    def send(self, code, body, ctype="application/json", headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/healthz":
            return self.send(200 if healthy else 500, {"healthy": healthy})
        if url.path == "/env":
            return self.send(200, {"argv": sys.argv, "env": dict(os.environ),
                                   "cwd": os.getcwd(), "pid": os.getpid()})
        if url.path == "/whoami":
            return self.send(200, {"pod": os.environ.get("HOSTNAME", "")})
        if url.path == "/file":
            try:
                with open(query["path"], "rb") as f:
                    return self.send(200, f.read(), "text/plain")
            except OSError as exc:
                return self.send(404, {"error": str(exc)})
        if url.path == "/fetch":  # a request made from inside the pod
            try:
                with urllib.request.urlopen(query["url"], timeout=5) as r:
                    return self.send(200, r.read(), "text/plain")
            except Exception as exc:
                return self.send(502, {"error": repr(exc)})
        root = os.environ.get("SERVE_DIR")
        path = os.path.join(root, url.path.lstrip("/")) if root else ""
        if path and os.path.isfile(path):
            token = os.environ.get("REQUIRE_TOKEN")
            if token and self.headers.get("Authorization") != "Bearer " + token:
                return self.send(401, {"error": "wrong or no bearer token"})
            with open(path, "rb") as f:
                data = f.read()
            etag = hashlib.md5(data).hexdigest()
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.end_headers()
                return
            return self.send(200, data, "application/octet-stream", [("ETag", etag)])
        self.send(404, {"error": "not found: " + url.path})

    def do_POST(self):
        global healthy
        if self.path == "/fail":
            healthy = False
            return self.send(200, {"healthy": False})
        self.send(404, {})

    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))
        sys.stderr.flush()


if os.environ.get("IGNORE_SIGTERM"):  # a server that only SIGKILL stops
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
ThreadingHTTPServer((os.environ["BIND_ADDRESS"], port), Handler).serve_forever()
"""


def _bind_tiny(ip: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    return args, {"BIND_ADDRESS": ip}


@pytest.fixture(scope="session")
def tiny_image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """TINY_IMAGE as a local program: the test interpreter runs TINY_SERVER (``python`` in
    exec probes is that interpreter too, so these tests need no Rasa venv)."""
    script = tmp_path_factory.mktemp("tiny-image") / "server.py"
    script.write_text(TINY_SERVER)
    return Image(
        entrypoint=(sys.executable, str(script)),
        cmd=(str(TINY_PORT),),
        bind=_bind_tiny,
        programs={"python": PYTHON, "python3": PYTHON},
    )


@pytest.fixture(scope="session")
def kubelet(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_image: Image,
) -> Iterator[TestKubelet]:
    """A TestKubelet on the session's control plane, with TINY_IMAGE mapped (tests may add
    images and service_hosts entries; they are read at each container start)."""
    with TestKubelet(
        control_plane.kubeconfig,
        tmp_path_factory.mktemp("kubelet"),
        images={TINY_IMAGE: tiny_image},
    ) as running:
        yield running


# The real control plane and kubectl (with the CRDs applied), exactly as tests/cluster has them.
control_plane = cluster.control_plane
control_plane_tokens = cluster.control_plane_tokens
kubectl = cluster.kubectl


@pytest.fixture(scope="session")
def rasa_python_venv(request: pytest.FixtureRequest) -> Path:
    """The cached Rasa 3.6.21 venv the rasa/rasa and rasa-sdk images run in (built once,
    about 3 minutes, with its progress shown)."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        return rasa_venv()


_names = itertools.count()


@pytest.fixture
def kubelet_ns(kubectl: Kubectl, kubelet: TestKubelet) -> Iterator[str]:
    """A fresh namespace; deleted afterwards, and its processes seen gone."""
    name = f"kubelet-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    # The garbage collector removes the pods of Deployments and Jobs within a second or
    # two; the namespace controller alone takes about 5 s to get to them.
    kubectl.run("delete", "deployments,jobs", "--all", "-n", name, "--wait=false")
    kubectl.run("delete", "namespace", name, "--wait=false")
    eventually(
        lambda: not kubelet.processes(name),
        timeout=60,
        message=f"the processes of namespace {name} gone",
    )


def tiny_deployment(
    namespace: str,
    name: str,
    *,
    replicas: int = 1,
    env: list[dict] | None = None,
    args: list[str] | None = None,
    container: dict | None = None,
    pod: dict | None = None,
    labels: dict[str, str] | None = None,
    image: str = TINY_IMAGE,
) -> dict:
    """A Deployment of the tiny image with port `http` 8080 and a readiness probe on
    /healthz every second; `container` and `pod` add or override fields."""
    labels = {"app": name, **MANAGED, **(labels or {})}
    spec_container: dict = {
        "name": "web",
        "image": image,
        "ports": [{"name": "http", "containerPort": TINY_PORT}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
    }
    if env:
        spec_container["env"] = env
    if args is not None:
        spec_container["args"] = args
    spec_container.update(container or {})
    pod_spec: dict = {"containers": [spec_container], "terminationGracePeriodSeconds": 2}
    pod_spec.update(pod or {})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def tiny_job(
    namespace: str,
    name: str,
    *,
    containers: list[dict],
    init_containers: list[dict] | None = None,
    restart_policy: str = "Never",
    backoff_limit: int = 0,
    volumes: list[dict] | None = None,
    spec: dict | None = None,
) -> dict:
    """A Job whose pods the test kubelet runs (label ``app: <name>``); a container or init
    container without an image gets TINY_IMAGE (with ``command: [python, -c, ...]`` it runs
    a snippet on the test interpreter). `spec` adds or overrides Job spec fields."""
    labels = {"app": name, **MANAGED}

    def tiny(c: dict) -> dict:
        return {"image": TINY_IMAGE, **c}

    pod_spec: dict = {
        "restartPolicy": restart_policy,
        "terminationGracePeriodSeconds": 2,
        "containers": [tiny(c) for c in containers],
    }
    if init_containers:
        pod_spec["initContainers"] = [tiny(c) for c in init_containers]
    if volumes:
        pod_spec["volumes"] = volumes
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            **(spec or {}),
        },
    }


def python(code: str) -> list[str]:
    """A container command that runs `code` with the image's python."""
    return ["python", "-c", code]


def wait_job(
    kubectl: Kubectl, namespace: str, name: str, type_: str = "Complete", timeout: float = 30
) -> dict:
    """Until the Job has condition `type_` (Complete or Failed) True; returns the Job."""

    def done() -> dict | None:
        job = kubectl.get("job", name, namespace)
        return job if condition(job, type_).get("status") == "True" else None

    return eventually(done, timeout=timeout, interval=0.2, message=f"job {name} {type_}")


def service(
    namespace: str, name: str, selector: dict[str, str], port: int, target: int | str = "http"
) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED)},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": port, "targetPort": target}],
        },
    }


def http(method: str, url: str, body: object = None, timeout: float = 10) -> tuple[int, object]:
    """(status, JSON or text body) of a request from the test process."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def pods(kubectl: Kubectl, namespace: str, app: str) -> list[dict]:
    """The pods of app that are not being deleted."""
    return [
        p
        for p in kubectl.list("pods", namespace, f"app={app}")
        if not p["metadata"].get("deletionTimestamp")
    ]


def wait_available(kubectl: Kubectl, namespace: str, name: str, timeout: int = 60) -> None:
    kubectl.run(
        "wait",
        "--for=condition=Available",
        f"deployment/{name}",
        "-n",
        namespace,
        f"--timeout={timeout}s",
    )


def wait_rolled(kubectl: Kubectl, namespace: str, name: str, timeout: float = 60) -> dict:
    """Until the Deployment's newest generation is rolled out, all replicas updated and
    available and no old pod remains; returns the Deployment."""

    def done() -> dict | None:
        deploy = kubectl.get("deployment", name, namespace)
        status = (deploy or {}).get("status") or {}
        want = deploy["spec"]["replicas"] if deploy else -1
        if (
            deploy
            and status.get("observedGeneration") == deploy["metadata"]["generation"]
            and status.get("updatedReplicas") == want
            and status.get("availableReplicas") == want
            and status.get("replicas") == want
            and len(kubectl.list("pods", namespace, f"app={name}")) == want
        ):
            return deploy
        return None

    return eventually(done, timeout=timeout, message=f"deployment {name} rolled out")
