"""The whole environment lifecycle with real Rasa pods: the operator and the model server as
their own processes under the chart's RBAC, the test kubelet running the pods as Rasa 3.6.21
processes, and real PostgreSQL, Redis, RabbitMQ and S3 (moto).

The tests of this module run in order and share one namespace: each builds on what the
previous one left (as a team's environments live on), which keeps the number of Rasa starts,
the slow part, small.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.emulators import MotoServer
from tests.support.kubectl import Kubectl, condition, eventually
from tests.support.kubelet import TestKubelet
from tests.support.peers import PostgresServer, RabbitMQServer, RedisServer
from tests.support.rasa import greeting_models

pytestmark = [pytest.mark.e2e, pytest.mark.rasa]

NS = "e2e-bots"
BUCKET = "rasa-models"
MODEL_SERVER_SERVICE = "botenv-model-server.botenv-system:8080"
ANSWERS = {"a": "Hello from model A.", "b": "Hello from model B."}
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def report_timings(request: pytest.FixtureRequest) -> Iterator[None]:
    """Prints how long each scenario took, after the module (shown without -s too)."""
    yield
    if TIMINGS:
        capman = request.config.pluginmanager.getplugin("capturemanager")
        with capman.global_and_fixture_disabled():
            print(
                "\n"
                + "\n".join(
                    f"e2e timing: {what}: {seconds:.1f} s" for what, seconds in TIMINGS.items()
                )
            )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return greeting_models(tmp_path_factory.mktemp("e2e-models"), ANSWERS)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        server.bucket(BUCKET, models.values(), prefix="acme/")
        yield server


def _secret(name: str, **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "stringData": data,
    }


def _tag(name: str, model: Path, endpoint: str) -> dict:
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "ModelTag",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": model.name,
            "storage": {
                "provider": "s3",
                "bucket": BUCKET,
                "prefix": "acme/",
                "endpoint": endpoint,
                "secretRef": {"name": "s3"},
            },
        },
    }


def _env(name: str, **spec: object) -> dict:
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "BotEnvironment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"pullIntervalSeconds": 2, **spec},
    }


def _benv(kubectl: Kubectl, name: str) -> dict:
    return kubectl.get("benv", name, NS) or {}


def _ready(kubectl: Kubectl, name: str) -> bool:
    return condition(_benv(kubectl, name), "Ready").get("status") == "True"


def wait_ready(kubectl: Kubectl, kubelet: TestKubelet, name: str, timeout: float = 240) -> float:
    began = time.monotonic()

    def ready() -> bool:
        return _ready(kubectl, name)

    try:
        eventually(ready, timeout=timeout, interval=1, message=f"{name} Ready")
    except AssertionError as exc:
        status = json.dumps(_benv(kubectl, name).get("status"), indent=1)
        logs = "\n".join(
            f"--- {p.namespace}/{p.pod} {p.container}\n"
            f"{kubelet.logs(p.namespace, p.pod, p.container)[-2000:]}"
            for p in kubelet.processes(NS)
        )
        raise AssertionError(f"{exc}\nstatus: {status}\n{logs}") from None
    return time.monotonic() - began


def rasa_pods(kubectl: Kubectl, name: str) -> list[dict]:
    return [
        p
        for p in kubectl.list(
            "pods", NS, f"botenv.dev/environment={name},app.kubernetes.io/component=rasa-server"
        )
        if not p["metadata"].get("deletionTimestamp")
    ]


def say(
    kubectl: Kubectl, kubelet: TestKubelet, environment: str, sender: str, text: str = "hello"
) -> list[str]:
    """A message through Rasa's REST channel, to each ready pod of the environment in turn
    (by pod IP: the test kubelet's Service proxy may still route to a pod on its way out
    for a moment after a roll); the replies of the last one."""
    pods = [
        p for p in rasa_pods(kubectl, environment) if condition(p, "Ready").get("status") == "True"
    ]
    assert pods, f"{environment} has no ready pod"
    for pod in pods:
        replies = _say(kubelet, environment, f"http://{pod['status']['podIP']}:5005", sender, text)
    return replies


def _say(kubelet: TestKubelet, environment: str, base: str, sender: str, text: str) -> list[str]:
    request = urllib.request.Request(
        f"{base}/webhooks/rest/webhook",
        data=json.dumps({"sender": sender, "message": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return [m.get("text", "") for m in json.load(response)]
        except OSError as exc:
            # A Service's first use: the test kubelet's proxy learns its endpoints within
            # a second (kube-proxy, too, takes a moment to program a new Service).
            reason = getattr(exc, "reason", exc)  # urllib wraps it in a URLError
            if isinstance(reason, ConnectionError) and time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            failure = exc
        break
    logs = "\n".join(
        f"--- {p.pod} {p.container}\n{kubelet.logs(p.namespace, p.pod, p.container)[-3000:]}"
        for p in kubelet.processes(NS)
        if environment in p.pod
    )
    raise AssertionError(f"{environment} did not answer: {failure!r}\n{logs}")


def served(kubectl: Kubectl, name: str) -> list[dict]:
    return _benv(kubectl, name).get("status", {}).get("servedModels", [])


def one_pod_serving(model: Path) -> list[dict]:
    """servedModels with one pod on `model`, as pulled through the model server: its file
    name carries the content's digest (the S3 ETag, the file's MD5)."""
    digest = hashlib.md5(model.read_bytes()).hexdigest()
    return [{"name": model.name, "digest": digest, "replicas": 1}]


@pytest.fixture(scope="module")
def bots(
    kubectl: Kubectl,
    kubelet: TestKubelet,
    botenv: dict,
    s3: MotoServer,
    models: dict[str, Path],
    postgres: PostgresServer,
    redis: RedisServer,
    rabbitmq: RabbitMQServer,
) -> dict:
    """production (PostgreSQL tracker store) and experimental (Redis), both on one RabbitMQ,
    each on its own tag, both on model A."""
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    broker = {"host": "127.0.0.1", "port": rabbitmq.port, "secretRef": {"name": "rabbitmq"}}
    kubectl.apply(
        _secret("s3", **s3.credentials),
        _secret("tracker-db", username=postgres.user, password=postgres.password),
        _secret("redis", password=redis.password),
        _secret("rabbitmq", username=rabbitmq.user, password=rabbitmq.password),
        _tag("production", models["a"], s3.url),
        _tag("experimental", models["a"], s3.url),
        _env(
            "production",
            trackerStore={
                "type": "sql",
                "dialect": "postgresql",
                "host": "127.0.0.1",
                "port": postgres.port,
                "db": postgres.database,
                "secretRef": {"name": "tracker-db"},
            },
            eventBroker=broker,
        ),
        _env(
            "experimental",
            modelTag="experimental",
            trackerStore={
                "type": "redis",
                "host": "127.0.0.1",
                "port": redis.port,
                "secretRef": {"name": "redis"},
            },
            eventBroker=broker,
        ),
    )
    TIMINGS["production Ready"] = wait_ready(kubectl, kubelet, "production")
    TIMINGS["experimental Ready"] = wait_ready(kubectl, kubelet, "experimental")
    return {"postgres": postgres, "redis": redis, "rabbitmq": rabbitmq, "models": models}


def test_1_conversations_land_in_their_own_store_and_queue(kubectl, kubelet, bots) -> None:
    began = time.monotonic()
    assert say(kubectl, kubelet, "production", "prod-user") == [ANSWERS["a"]]
    assert say(kubectl, kubelet, "experimental", "exp-user") == [ANSWERS["a"]]
    for name in ("production", "experimental"):
        assert served(kubectl, name) == one_pod_serving(bots["models"]["a"])

    rows = bots["postgres"].query("SELECT DISTINCT sender_id FROM events")
    assert {r[0] for r in rows} == {"prod-user"}
    assert any("exp-user" in k for k in bots["redis"].keys("*"))
    assert not any("prod-user" in k for k in bots["redis"].keys("*"))

    for name, sender in (("production", "prod-user"), ("experimental", "exp-user")):
        queue = f"rasa_{NS}_{name}_events"
        messages = eventually(
            lambda q=queue: bots["rabbitmq"].messages(q), timeout=20, message=f"events in {queue}"
        )
        assert {m.app_id for m in messages} == {name}
        assert {json.loads(m.body)["sender_id"] for m in messages} == {sender}
    TIMINGS["conversations, stores and queues"] = time.monotonic() - began


def test_2_move_promote_and_roll_back(kubectl, kubelet, bots, tmp_path) -> None:
    began = time.monotonic()
    models = bots["models"]
    production_pods = {p["metadata"]["uid"] for p in rasa_pods(kubectl, "production")}
    experimental_pods = {p["metadata"]["uid"] for p in rasa_pods(kubectl, "experimental")}

    kubectl.patch("mtag", "experimental", NS, {"spec": {"model": models["b"].name}})
    eventually(
        lambda: (
            {p["metadata"]["uid"] for p in rasa_pods(kubectl, "experimental")}.isdisjoint(
                experimental_pods
            )
            and _ready(kubectl, "experimental")
        ),
        timeout=240,
        interval=1,
        message="experimental rolled to model B and Ready",
    )
    assert served(kubectl, "experimental") == one_pod_serving(models["b"])
    assert say(kubectl, kubelet, "experimental", "exp-user-2") == [ANSWERS["b"]]
    # production: same pods, same model
    assert {p["metadata"]["uid"] for p in rasa_pods(kubectl, "production")} == production_pods
    assert say(kubectl, kubelet, "production", "prod-user-2") == [ANSWERS["a"]]
    TIMINGS["tag move (experimental rolls)"] = time.monotonic() - began

    env = {**os.environ, "KUBECONFIG": str(kubectl.kubeconfig)}
    began = time.monotonic()
    promote = subprocess.run(
        [
            sys.executable,
            "-m",
            "botenv",
            "promote",
            "production",
            "--from",
            "experimental",
            "-n",
            NS,
            "--wait",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert promote.returncode == 0, promote.stderr
    eventually(
        lambda: (
            served(kubectl, "production") == one_pod_serving(models["b"])
            and _ready(kubectl, "production")
        ),
        timeout=240,
        interval=1,
        message="production serves model B",
    )
    assert say(kubectl, kubelet, "production", "prod-user-3") == [ANSWERS["b"]]
    TIMINGS["promote production"] = time.monotonic() - began

    began = time.monotonic()
    rollback = subprocess.run(
        [sys.executable, "-m", "botenv", "rollback", "production", "-n", NS, "--wait"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert rollback.returncode == 0, rollback.stderr
    eventually(
        lambda: (
            served(kubectl, "production") == one_pod_serving(models["a"])
            and _ready(kubectl, "production")
        ),
        timeout=240,
        interval=1,
        message="production back on model A",
    )
    assert say(kubectl, kubelet, "production", "prod-user-4") == [ANSWERS["a"]]
    TIMINGS["roll back production"] = time.monotonic() - began


def test_3_remote_storage_serves_the_tags_model(kubectl, kubelet, bots, s3) -> None:
    began = time.monotonic()
    kubectl.apply(_env("archive", modelTag="production", delivery="remoteStorage"))
    wait_ready(kubectl, kubelet, "archive")
    (pod,) = rasa_pods(kubectl, "archive")
    args = pod["spec"]["containers"][0]["args"]
    assert args[args.index("--remote-storage") + 1] == "aws"
    assert served(kubectl, "archive") == [{"name": bots["models"]["a"].name, "replicas": 1}]
    assert say(kubectl, kubelet, "archive", "archive-user") == [ANSWERS["a"]]
    kubectl.delete("benv", "archive", NS)
    TIMINGS["remoteStorage from S3"] = time.monotonic() - began


def test_4_rotated_tracker_store_password_rolls_pods_that_keep_working(
    kubectl, kubelet, bots
) -> None:
    began = time.monotonic()
    postgres = bots["postgres"]
    before = {p["metadata"]["uid"] for p in rasa_pods(kubectl, "production")}
    new_password = base64.b32encode(os.urandom(10)).decode().lower()
    postgres.query(f"ALTER ROLE {postgres.user} PASSWORD '{new_password}'", admin=True)
    postgres.password = new_password
    kubectl.apply(_secret("tracker-db", username=postgres.user, password=new_password))
    eventually(
        lambda: (
            {p["metadata"]["uid"] for p in rasa_pods(kubectl, "production")}.isdisjoint(before)
            and _ready(kubectl, "production")
        ),
        timeout=240,
        interval=1,
        message="production rolled with the new password",
    )
    assert say(kubectl, kubelet, "production", "after-rotation") == [ANSWERS["a"]]
    rows = postgres.query("SELECT count(*) FROM events WHERE sender_id = 'after-rotation'")
    assert int(rows[0][0]) > 0
    TIMINGS["tracker password rotation"] = time.monotonic() - began


def test_5_rabbitmq_outage_degrades_then_recovers_without_losing_conversations(
    kubectl, kubelet, bots
) -> None:
    began = time.monotonic()
    rabbitmq, postgres = bots["rabbitmq"], bots["postgres"]
    stored = int(postgres.query("SELECT count(*) FROM events")[0][0])
    restarts = {
        p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"]
        for p in rasa_pods(kubectl, "production")
    }
    rabbitmq.stop()
    try:
        degraded = eventually(
            lambda: (
                (c := condition(_benv(kubectl, "production"), "Degraded")).get("reason")
                == "EventBrokerUnreachable"
                and c
            ),
            timeout=60,
            message="production Degraded for the broker",
        )
        assert f"127.0.0.1:{rabbitmq.port}" in degraded["message"]
        assert "spec.eventBroker.host" in degraded["message"]
        assert not _ready(kubectl, "production")
        # Conversations go on meanwhile: the tracker store keeps them.
        assert say(kubectl, kubelet, "production", "during-outage") == [ANSWERS["a"]]
    finally:
        rabbitmq.start()
    wait_ready(kubectl, kubelet, "production", timeout=120)
    assert condition(_benv(kubectl, "production"), "Degraded")["status"] == "False"
    assert int(postgres.query("SELECT count(*) FROM events")[0][0]) > stored
    assert (
        int(postgres.query("SELECT count(*) FROM events WHERE sender_id = 'during-outage'")[0][0])
        > 0
    )
    # Nothing was restarted or rolled for it.
    assert {
        p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"]
        for p in rasa_pods(kubectl, "production")
    } == restarts
    TIMINGS["RabbitMQ outage and recovery"] = time.monotonic() - began


def test_6_tag_moved_to_a_missing_model_changes_nothing_running(kubectl, kubelet, bots) -> None:
    began = time.monotonic()
    before = {p["metadata"]["uid"] for p in rasa_pods(kubectl, "production")}
    kubectl.patch("mtag", "production", NS, {"spec": {"model": "does-not-exist.tar.gz"}})
    eventually(
        lambda: (
            condition(kubectl.get("mtag", "production", NS), "Ready").get("reason")
            == "ModelNotFound"
        ),
        timeout=30,
        message="ModelNotFound",
    )
    time.sleep(6)  # a resync and a few pulls later
    assert {p["metadata"]["uid"] for p in rasa_pods(kubectl, "production")} == before
    assert _ready(kubectl, "production")
    assert say(kubectl, kubelet, "production", "still-here") == [ANSWERS["a"]]
    TIMINGS["tag to a missing model"] = time.monotonic() - began
