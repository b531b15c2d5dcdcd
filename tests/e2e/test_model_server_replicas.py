"""The model server's replicas under real Rasa pulls: one replica goes while a tag move rolls
an environment, and no Rasa start fails.

The model server runs as the chart's own Deployment and Service (rendered by Helm with the
chart's default replica count, probes and shutdown), as pods of the test kubelet behind its
Service proxy: the Rasa pods reach it by the Service name the operator writes into
endpoints.yml, and the proxy sends each connection to a Ready replica, as kube-proxy does.
That is closer to a cluster than two processes behind a fixed address: readiness, a pod
being deleted and its replacement all decide where pulls go, as they would there.

The scenario: an environment of two Rasa 3.6.21 pods (rollout Restart) serves model A. The
tag moves to B; as the roll's first new pod appears, one model server replica is evicted
(as a node drain, an eviction or a rollout takes it) and its replacement cannot start (the
node cannot run its image) until every Rasa pod is Ready on B; the chart's disruption
budget refuses to evict another one meanwhile. The environment's
pullIntervalSeconds is an hour, so a Rasa start whose first pull fails stays without a model
for the rest of the test: the claim is about the replicas, not about Rasa pulling again
later. With one replica (the chart's default before) the new pods' pulls are refused and
they never get ready."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from botenv.local.controlplane import ControlPlane
from tests.cluster.conftest import MODEL_SERVER_TOKEN, install_rbac
from tests.e2e.botenv_fixtures import MODEL_SERVER_SERVICE, start_operator, wait_started
from tests.support.emulators import MotoServer
from tests.support.helm import CHART, run_helm
from tests.support.kubectl import Kubectl, condition, eventually
from tests.support.kubelet import Image, TestKubelet
from tests.support.peers import RedisServer
from tests.support.rasa import greeting_models

pytestmark = [pytest.mark.e2e, pytest.mark.rasa]

NS = "e2e-ms-replicas"
SYSTEM = "botenv-system"  # the release's namespace: the Service the operator's URL names
IMAGE = "ghcr.io/botenv/botenv:e2e-model-server"
MODEL_SERVERS = "app.kubernetes.io/instance=botenv,app.kubernetes.io/component=model-server"
RASA_PODS = "botenv.dev/environment=production,app.kubernetes.io/component=rasa-server"
KUBECONFIG_DIR = "/var/run/secrets/botenv/kube"
BUCKET = "models"
ANSWERS = {"a": "Hello from model A.", "b": "Hello from model B."}


def _bind(ip: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    # The image's server binds 0.0.0.0 in a cluster; here, the pod's own loopback address.
    return [*args, "--host", ip], {}


@pytest.fixture(scope="module")
def model_server_image() -> Image:
    return Image(entrypoint=(sys.executable, "-m", "botenv"), bind=_bind, user=10001)


@pytest.fixture(scope="module")
def botenv_in_pods(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    kubelet: TestKubelet,
    model_server_image: Image,
    rasa_python_venv: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict]:
    """The chart's model server (Deployment, Service and, where the chart has one, its
    PodDisruptionBudget) as pods of the test kubelet, and the operator as its own process."""
    workdir = tmp_path_factory.mktemp("botenv-in-pods")
    install_rbac(kubectl)  # the namespace, the ServiceAccounts and their RBAC
    kubelet.images[IMAGE] = model_server_image
    kubelet.service_hosts.pop(MODEL_SERVER_SERVICE, None)  # through the Service, not around it
    values = {
        "image": {"tag": IMAGE.rsplit(":", 1)[1]},
        "storage": {"allowedNetworks": ["127.0.0.1/32"]},  # the S3 emulator
        "modelServer": {
            "shutdownDelaySeconds": 2,  # within the test kubelet's 5 s grace
            "podLabels": {"app.kubernetes.io/managed-by": "botenv"},  # the test kubelet's pods
            # This node mounts no service account token where client libraries look for
            # it: the same identity (the chart's model-server ServiceAccount) comes from a
            # kubeconfig in a Secret volume instead.
            "extraEnv": [{"name": "KUBECONFIG", "value": f"{KUBECONFIG_DIR}/kubeconfig"}],
            "extraVolumes": [{"name": "kube", "secret": {"secretName": "model-server-kube"}}],
            "extraVolumeMounts": [{"name": "kube", "mountPath": KUBECONFIG_DIR, "readOnly": True}],
        },
    }
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "model-server-kube", "namespace": SYSTEM},
            "stringData": {
                "kubeconfig": control_plane.kubeconfig_for(MODEL_SERVER_TOKEN).read_text()
            },
        }
    )
    (workdir / "values.yaml").write_text(yaml.safe_dump(values))
    rendered = run_helm(
        "template",
        "botenv",
        str(CHART),
        "--namespace",
        SYSTEM,
        "-f",
        str(workdir / "values.yaml"),
        "--api-versions",
        "policy/v1/PodDisruptionBudget",
        home=workdir / "helm",
    ).stdout
    objects = [
        d
        for d in yaml.safe_load_all(rendered)
        if d
        and d["kind"] in ("Deployment", "Service", "PodDisruptionBudget")
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == "model-server"
    ]
    kubectl.apply(*objects)
    replicas = next(o for o in objects if o["kind"] == "Deployment")["spec"]["replicas"]
    operator = start_operator(control_plane, workdir)
    try:
        eventually(
            lambda: len(ready_model_servers(kubectl)) == replicas,
            timeout=120,
            interval=1,
            message=f"{replicas} model server replicas ready",
        )
        wait_started(operator)
        yield {"replicas": replicas, "image": model_server_image}
    finally:
        operator.stop()
        for obj in objects:
            kubectl.run(
                "delete",
                obj["kind"].lower(),
                obj["metadata"]["name"],
                "-n",
                SYSTEM,
                "--ignore-not-found",
                "--wait=false",
            )
        kubelet.images.pop(IMAGE, None)
        logs = operator.log.read_text(errors="replace")
        assert "Forbidden" not in logs, f"the operator was denied something:\n{logs[-3000:]}"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return greeting_models(tmp_path_factory.mktemp("models"), ANSWERS)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        server.bucket(BUCKET, models.values())
        yield server


def ready_model_servers(kubectl: Kubectl) -> list[dict]:
    return [
        p
        for p in kubectl.list("pods", SYSTEM, MODEL_SERVERS)
        if condition(p, "Ready").get("status") == "True"
        and not p["metadata"].get("deletionTimestamp")
    ]


def rasa_pods(kubectl: Kubectl) -> list[dict]:
    return [
        p for p in kubectl.list("pods", NS, RASA_PODS) if not p["metadata"].get("deletionTimestamp")
    ]


def metrics(pod: dict) -> str:
    url = f"http://{pod['status']['podIP']}:8080/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def sample(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found[1]) if found else 0.0


def served_model_pulls(text: str) -> float:
    """Model downloads answered (code 200 on the model route)."""
    return sample(text, r'botenv_modelserver_requests_total\{code="200",route="model"\}')


def evict(kubectl: Kubectl, pod: dict, *, check: bool = True) -> str:
    """What a node drain does to a pod: the Eviction API, which honours the budget. Returns
    what kubectl said when it failed (check=False)."""
    name = pod["metadata"]["name"]
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": SYSTEM},
    }
    proc = kubectl.run(
        "create",
        "--raw",
        f"/api/v1/namespaces/{SYSTEM}/pods/{name}/eviction",
        "-f",
        "-",
        stdin=json.dumps(eviction),
        check=check,
    )
    return "" if proc.returncode == 0 else proc.stderr


def pull(pod: dict, path: str, token: str) -> int:
    request = urllib.request.Request(
        f"http://{pod['status']['podIP']}:8080{path}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_replica_evicted_during_a_roll_fails_no_rasa_start(
    kubectl: Kubectl,
    kubelet: TestKubelet,
    botenv_in_pods: dict,
    s3: MotoServer,
    models: dict[str, Path],
    redis: RedisServer,
) -> None:
    def explain() -> str:
        logs = [
            f"--- {p.namespace}/{p.pod} {p.container} (restarts {p.restart_count})\n"
            f"{kubelet.logs(p.namespace, p.pod, p.container)[-2500:]}"
            for p in kubelet.processes(NS) + kubelet.processes(SYSTEM)
        ]
        status = json.dumps((kubectl.get("benv", "production", NS) or {}).get("status"), indent=1)
        return f"status: {status}\n" + "\n".join(logs)

    store = {
        "type": "redis",
        "host": "127.0.0.1",
        "port": redis.port,
        "secretRef": {"name": "redis"},
    }
    kubectl.apply(
        *s3.tag_objects(NS, "production", models["a"].name, BUCKET),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "redis", "namespace": NS},
            "stringData": {"password": redis.password},
        },
        {
            "apiVersion": "botenv.dev/v1alpha1",
            "kind": "BotEnvironment",
            "metadata": {"name": "production", "namespace": NS},
            "spec": {
                "replicas": 2,
                "rollout": "Restart",
                # A failed first pull is not tried again within this test: what starts must
                # get its model at once.
                "pullIntervalSeconds": 3600,
                # Two replicas share their conversations and locks.
                "trackerStore": store,
                "lockStore": store,
            },
        },
    )
    benv = lambda: kubectl.get("benv", "production", NS) or {}  # noqa: E731
    eventually(
        lambda: condition(benv(), "Ready").get("status") == "True",
        timeout=300,
        interval=1,
        message=f"production Ready on model A\n{explain()}",
    )
    old = {p["metadata"]["uid"] for p in rasa_pods(kubectl)}
    assert len(old) == 2
    replicas = ready_model_servers(kubectl)
    assert len(replicas) == botenv_in_pods["replicas"]

    kubectl.patch("mtag", "production", NS, {"spec": {"model": models["b"].name}})
    eventually(
        lambda: any(p["metadata"]["uid"] not in old for p in rasa_pods(kubectl)),
        timeout=60,
        interval=0.2,
        message="the roll's first new pod",
    )
    # One replica goes now, and stays gone: its replacement cannot start on this node.
    victim, *survivors = replicas
    before = {p["metadata"]["name"]: metrics(p) for p in survivors}
    kubelet.images.pop(IMAGE)
    try:
        evict(kubectl, victim)
        # The disruption budget keeps a drain from taking the next one meanwhile.
        for survivor in survivors:
            assert "disruption budget" in evict(kubectl, survivor, check=False)
        b_digest = hashlib.md5(models["b"].read_bytes()).hexdigest()
        eventually(
            lambda: (
                condition(benv(), "Ready").get("status") == "True"
                and benv()["status"].get("servedModels")
                == [{"name": models["b"].name, "digest": b_digest, "replicas": 2}]
                and not {p["metadata"]["uid"] for p in rasa_pods(kubectl)} & old
            ),
            timeout=300,
            interval=1,
            message=f"production Ready on model B, on new pods\n{explain()}",
        )
        # The replica was down for the whole roll: only the survivors run.
        running = sorted(p.pod for p in kubelet.processes(SYSTEM))
        assert running == sorted(before)
        after = {p["metadata"]["name"]: metrics(p) for p in survivors}
    finally:
        kubelet.images[IMAGE] = botenv_in_pods["image"]

    # No failed start: every new pod got its model with its first pull, and never restarted.
    pods = rasa_pods(kubectl)
    assert len(pods) == 2
    for pod in pods:
        assert condition(pod, "Ready").get("status") == "True"
        assert [c["restartCount"] for c in pod["status"]["containerStatuses"]] == [0]
        env = pod["spec"]["containers"][0]["env"]
        assert {"name": "BOTENV_MODEL_DIGEST", "value": b_digest} in env
    # Their two downloads went through the survivors, which fetched B from storage once each
    # at most.
    assert sum(served_model_pulls(after[n]) - served_model_pulls(before[n]) for n in before) == 2
    fills = "botenv_modelserver_cache_fills_total"
    assert all(sample(after[n], fills) - sample(before[n], fills) <= 1 for n in before)

    # Back to full strength: the replacement starts and fills its own cache once, however
    # many pulls it answers.
    eventually(
        lambda: len(ready_model_servers(kubectl)) == botenv_in_pods["replicas"],
        timeout=120,
        interval=1,
        message="the replacement replica ready",
    )
    (replacement,) = [
        p for p in ready_model_servers(kubectl) if p["metadata"]["name"] not in before
    ]
    token = base64.b64decode(kubectl.get("secret", "rasa-production-pull", NS)["data"]["token"])
    for _ in range(3):
        assert pull(replacement, f"/models/{NS}/tags/production", token.decode()) == 200
    text = metrics(replacement)
    assert (sample(text, fills), served_model_pulls(text)) == (1, 3)
