"""The operator against a real API server and controller manager: what it creates, how
it rolls, how it reports, and what it leaves alone."""

from __future__ import annotations

import base64
import hashlib
import itertools
import time
from pathlib import Path

import pytest
import yaml

from tests.cluster.conftest import MODELS
from tests.support.kubectl import CEL_SINCE, condition, eventually
from tests.support.pods import make_ready

pytestmark = pytest.mark.cluster

_names = itertools.count()


@pytest.fixture
def ns(kubectl):
    name = f"bots-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def model_file(model: str, content: bytes | None = None) -> Path:
    path = MODELS / model
    if content is not None or not path.exists():
        path.write_bytes(content if content is not None else f"model {model}".encode())
    return path


def tag(ns: str, name: str, model: str, *, create_model: bool = True) -> dict:
    if create_model:
        model_file(model)
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "ModelTag",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"model": model, "storage": {"provider": "local", "path": str(MODELS)}},
    }


def env(ns: str, name: str, **spec: object) -> dict:
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "BotEnvironment",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def secret(ns: str, name: str, **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def deployment(kubectl, ns, environment):
    return kubectl.get("deployment", f"rasa-{environment}", ns)


def replicasets(kubectl, ns, environment):
    return kubectl.list("replicasets", ns, f"botenv.dev/environment={environment}")


def wait_degraded(kubectl, ns, name, reason):
    return eventually(
        lambda: (
            condition(kubectl.get("benv", name, ns), "Degraded")
            if condition(kubectl.get("benv", name, ns), "Degraded").get("reason") == reason
            else None
        ),
        message=f"{name} Degraded {reason}",
    )


@pytest.mark.compat
def test_environment_reconciled_into_children(kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "production", "20190506-100418.tar.gz"),
        secret(ns, "tracker-db", username="rasa", password="pw-1"),
        secret(ns, "rabbitmq", username="mq", password="mq-pw"),
        env(
            ns,
            "production",
            replicas=2,
            trackerStore={
                "type": "sql",
                "host": "postgres.db",
                "port": 5432,
                "db": "rasa",
                "secretRef": {"name": "tracker-db"},
            },
            lockStore={"type": "redis", "host": "redis.db"},
            eventBroker={"host": "rabbitmq.mq", "secretRef": {"name": "rabbitmq"}},
        ),
    )
    deploy = eventually(lambda: deployment(kubectl, ns, "production"), message="Deployment")
    cm = kubectl.get("configmap", "rasa-production-endpoints", ns)
    svc = kubectl.get("service", "rasa-production", ns)
    owner = kubectl.get("benv", "production", ns)["metadata"]["uid"]
    for child in (deploy, cm, svc):
        ref = child["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["uid"], ref["controller"]) == ("BotEnvironment", owner, True)
        assert child["metadata"]["labels"]["botenv.dev/tag"] == "production"
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "botenv"

    endpoints = yaml.safe_load(cm["data"]["endpoints.yml"])
    # rollout Restart: pinned to the digest the pods start with (from their env)
    assert endpoints["models"]["url"].endswith(
        f"/models/{ns}/tags/production?digest=${{BOTENV_MODEL_DIGEST}}"
    )
    assert endpoints["tracker_store"]["password"] == "${BOTENV_TRACKER_STORE_PASSWORD}"
    assert endpoints["event_broker"]["queues"] == [f"rasa_{ns}_production_events"]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["run", "--enable-api"]
    env_vars = {e["name"]: e for e in container["env"]}
    assert env_vars["RASA_ENVIRONMENT"]["value"] == "production"
    digest = kubectl.get("mtag", "production", ns)["status"]["digest"]
    assert env_vars["BOTENV_MODEL_DIGEST"]["value"] == digest
    assert env_vars["BOTENV_TRACKER_STORE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "tracker-db",
        "key": "password",
    }
    assert (
        deploy["spec"]["template"]["metadata"]["annotations"]["botenv.dev/model"]
        == "20190506-100418.tar.gz"
    )

    benv = eventually(
        lambda: (
            kubectl.get("benv", "production", ns).get("status", {}).get("conditions")
            and kubectl.get("benv", "production", ns)
        )
    )
    status = benv["status"]
    assert status["queue"] == f"rasa_{ns}_production_events"
    assert status["model"] == {
        "tag": "production",
        "name": "20190506-100418.tar.gz",
        "digest": hashlib.md5(b"model 20190506-100418.tar.gz").hexdigest(),
    }
    assert status["endpoint"] == f"http://rasa-production.{ns}.svc:5005"
    assert condition(benv, "Ready")["status"] == "False"  # no pod is ready yet
    assert condition(benv, "Progressing")["status"] == "True"
    mtag = eventually(
        lambda: (
            kubectl.get("mtag", "production", ns)["status"].get("environments")
            and kubectl.get("mtag", "production", ns)
        )
    )
    assert mtag["status"]["environments"] == ["production"]


@pytest.mark.compat
def test_ready_when_pods_ready_and_kubectl_wait_works(kubectl, operator, ns):
    kubectl.apply(tag(ns, "staging", "a.tar.gz"), env(ns, "staging"))
    eventually(lambda: deployment(kubectl, ns, "staging"))
    eventually(
        lambda: make_ready(kubectl, ns, "botenv.dev/environment=staging") == 1,
        message="pod created and marked ready",
    )
    kubectl.run("wait", "--for=condition=Ready", "benv/staging", "-n", ns, "--timeout=30s")
    benv = kubectl.get("benv", "staging", ns)
    assert benv["status"]["readyReplicas"] == 1
    assert benv["status"]["observedGeneration"] == benv["metadata"]["generation"]
    assert condition(benv, "Degraded")["status"] == "False"
    events = kubectl.list("events", ns)
    reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "staging"}
    assert {"ModelChanged", "Ready"} <= reasons


@pytest.mark.compat
def test_tag_move_rolls_only_environments_on_that_tag(kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "experimental", "m1.tar.gz"),
        tag(ns, "production", "p1.tar.gz"),
        env(ns, "exp-a", modelTag="experimental"),
        env(ns, "exp-b", modelTag="experimental"),
        env(ns, "production"),
    )
    for name in ("exp-a", "exp-b", "production"):
        eventually(lambda n=name: len(replicasets(kubectl, ns, n)) == 1, message=name)
    model_file("m2.tar.gz")
    kubectl.patch("mtag", "experimental", ns, {"spec": {"model": "m2.tar.gz"}})
    for name in ("exp-a", "exp-b"):
        eventually(
            lambda n=name: len(replicasets(kubectl, ns, n)) == 2,
            message=f"a new ReplicaSet for {name}",
        )
        annotations = deployment(kubectl, ns, name)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["botenv.dev/model"] == "m2.tar.gz"
    operator.settle()
    assert len(replicasets(kubectl, ns, "production")) == 1
    history = kubectl.get("mtag", "experimental", ns)["status"]["history"]
    assert history[0]["model"] == "m1.tar.gz"


def test_hotswap_environment_does_not_roll_on_tag_move(kubectl, operator, ns):
    kubectl.apply(tag(ns, "canary", "m1.tar.gz"), env(ns, "canary", rollout="HotSwap"))
    eventually(lambda: len(replicasets(kubectl, ns, "canary")) == 1)
    model_file("m2.tar.gz")
    kubectl.patch("mtag", "canary", ns, {"spec": {"model": "m2.tar.gz"}})
    eventually(
        lambda: kubectl.get("benv", "canary", ns)["status"]["model"]["name"] == "m2.tar.gz",
        message="status follows the tag",
    )
    operator.settle()
    assert len(replicasets(kubectl, ns, "canary")) == 1


def test_secret_rotation_rolls_only_its_users(kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "t", "m.tar.gz"),
        secret(ns, "auth-a", token="first"),
        secret(ns, "auth-b", token="other"),
        env(ns, "uses-a", modelTag="t", auth={"tokenSecretRef": {"name": "auth-a"}}),
        env(ns, "uses-b", modelTag="t", auth={"tokenSecretRef": {"name": "auth-b"}}),
    )
    for name in ("uses-a", "uses-b"):
        eventually(lambda n=name: len(replicasets(kubectl, ns, n)) == 1, message=name)
    kubectl.apply(secret(ns, "auth-a", token="rotated"))
    operator.resync_now()  # Secrets are not watched: the periodic resync sees rotation
    eventually(lambda: len(replicasets(kubectl, ns, "uses-a")) == 2, message="uses-a rolled")
    operator.settle()
    assert len(replicasets(kubectl, ns, "uses-b")) == 1


def test_missing_secret_degrades_and_keeps_running_deployment(kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "t", "m.tar.gz"),
        secret(ns, "auth", token="x"),
        env(ns, "stable", modelTag="t", auth={"tokenSecretRef": {"name": "auth"}}),
    )
    before = eventually(lambda: deployment(kubectl, ns, "stable"))
    kubectl.patch(
        "benv",
        "stable",
        ns,
        {
            "spec": {
                "replicas": 3,
                "lockStore": {"type": "redis", "host": "redis"},
                "trackerStore": {"type": "redis", "host": "redis"},
                "auth": {"tokenSecretRef": {"name": "gone"}},
            }
        },
    )
    degraded = wait_degraded(kubectl, ns, "stable", "SecretMissing")
    assert "'gone'" in degraded["message"] and "tokenSecretRef" in degraded["message"]
    benv = kubectl.get("benv", "stable", ns)
    assert condition(benv, "Ready")["status"] == "False"
    assert benv["status"]["observedGeneration"] == benv["metadata"]["generation"]
    after = deployment(kubectl, ns, "stable")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["replicas"] == 1
    warnings = [e for e in kubectl.list("events", ns) if e["reason"] == "SecretMissing"]
    assert warnings and warnings[0]["type"] == "Warning"
    # Creating the Secret repairs it without any other change.
    kubectl.apply(secret(ns, "gone", token="y"))
    operator.resync_now()
    eventually(lambda: deployment(kubectl, ns, "stable")["spec"]["replicas"] == 3)
    eventually(
        lambda: condition(kubectl.get("benv", "stable", ns), "Degraded")["status"] == "False"
    )


def test_missing_tag_degrades(kubectl, operator, ns):
    kubectl.apply(env(ns, "orphan", modelTag="nope"))
    degraded = wait_degraded(kubectl, ns, "orphan", "TagNotFound")
    assert "'nope'" in degraded["message"]
    assert deployment(kubectl, ns, "orphan") is None
    kubectl.apply(tag(ns, "nope", "m.tar.gz"))
    eventually(lambda: deployment(kubectl, ns, "orphan"), message="created once the tag exists")


@pytest.mark.compat
def test_invalid_spec_degrades_with_field(control_plane, kubectl, operator, ns):
    kubectl.apply(tag(ns, "t", "m.tar.gz"), env(ns, "solo", modelTag="t"))
    eventually(lambda: deployment(kubectl, ns, "solo"))
    # Two replicas with the in-memory lock store: the CRD's CEL rule refuses the change on a
    # server that enforces CEL (1.25+); older servers store it, and the operator refuses it.
    change = kubectl.run(
        "patch",
        "benv",
        "solo",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"spec": {"replicas": 2}}',
        check=False,
    )
    if control_plane.version >= CEL_SINCE:
        assert change.returncode != 0
        assert "spec.lockStore: " in change.stderr, change.stderr
        assert "must be redis or custom when spec.replicas > 1" in change.stderr
        assert kubectl.get("benv", "solo", ns)["spec"]["replicas"] == 1
    else:
        assert change.returncode == 0, change.stderr
        degraded = wait_degraded(kubectl, ns, "solo", "InvalidSpec")
        assert "spec.lockStore: must be redis or custom" in degraded["message"]
    assert deployment(kubectl, ns, "solo")["spec"]["replicas"] == 1


def test_queue_conflict_later_environment_degraded(kubectl, operator, ns):
    broker = {"host": "rabbitmq.mq", "queue": "shared", "secretRef": {"name": "mq"}}
    kubectl.apply(
        tag(ns, "t", "m.tar.gz"),
        secret(ns, "mq", username="u", password="p"),
        env(ns, "first", modelTag="t", eventBroker=broker),
    )
    eventually(
        lambda: (kubectl.get("benv", "first", ns).get("status") or {}).get("queue") == "shared",
        message="first holds the queue",
    )
    first_before = deployment(kubectl, ns, "first")
    kubectl.apply(env(ns, "second", modelTag="t", eventBroker=broker))
    degraded = wait_degraded(kubectl, ns, "second", "QueueConflict")
    assert f"{ns}/first" in degraded["message"]
    assert deployment(kubectl, ns, "second") is None
    operator.settle()
    first = deployment(kubectl, ns, "first")
    assert first["metadata"]["generation"] == first_before["metadata"]["generation"]
    assert condition(kubectl.get("benv", "first", ns), "Degraded")["status"] == "False"
    # The queue is released when the first environment goes.
    kubectl.delete("benv", "first", ns)
    eventually(lambda: deployment(kubectl, ns, "second"), message="second takes the queue")


def test_drift_is_repaired(kubectl, operator, ns):
    kubectl.apply(tag(ns, "t", "m.tar.gz"), env(ns, "drift", modelTag="t"))
    eventually(lambda: deployment(kubectl, ns, "drift"))
    kubectl.delete("configmap", "rasa-drift-endpoints", ns)
    eventually(
        lambda: kubectl.get("configmap", "rasa-drift-endpoints", ns), message="ConfigMap restored"
    )
    kubectl.run("set", "image", "deployment/rasa-drift", "rasa=evil/image:1", "-n", ns)
    eventually(
        lambda: (
            deployment(kubectl, ns, "drift")["spec"]["template"]["spec"]["containers"][0]["image"]
            == "rasa/rasa:3.6.21-full"
        ),
        message="image restored",
    )
    kubectl.delete("service", "rasa-drift", ns)
    eventually(lambda: kubectl.get("service", "rasa-drift", ns), message="Service restored")


@pytest.mark.compat
def test_idle_reconcile_writes_nothing(kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "t", "m.tar.gz"),
        secret(ns, "auth", token="x"),
        env(
            ns,
            "quiet",
            modelTag="t",
            auth={"tokenSecretRef": {"name": "auth"}},
            resources={"requests": {"cpu": "1000m", "memory": "1024Mi"}},
        ),
    )
    eventually(lambda: deployment(kubectl, ns, "quiet"))
    eventually(lambda: condition(kubectl.get("benv", "quiet", ns), "Progressing"))
    operator.settle()
    before = operator.writes
    operator.resyncs(3)
    assert operator.writes == before


@pytest.mark.compat
def test_delete_garbage_collects_children(kubectl, operator, ns):
    kubectl.apply(tag(ns, "t", "m.tar.gz"), env(ns, "doomed", modelTag="t"))
    eventually(lambda: replicasets(kubectl, ns, "doomed"))
    kubectl.delete("benv", "doomed", ns)
    eventually(
        lambda: (
            deployment(kubectl, ns, "doomed") is None
            and kubectl.get("configmap", "rasa-doomed-endpoints", ns) is None
            and kubectl.get("service", "rasa-doomed", ns) is None
            and not replicasets(kubectl, ns, "doomed")
        ),
        timeout=60,
        message="children garbage-collected",
    )
    eventually(
        lambda: kubectl.get("mtag", "t", ns)["status"]["environments"] == [],
        message="tag no longer lists it",
    )


def test_operator_restart_applies_changes_made_while_down_and_nothing_else(kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "t", "m.tar.gz"), env(ns, "steady", modelTag="t"), env(ns, "edited", modelTag="t")
    )
    for name in ("steady", "edited"):
        eventually(
            lambda n=name: condition(kubectl.get("benv", n, ns), "Progressing"), message=name
        )
    operator.settle()
    operator.stop()
    # While the operator is down: a spec change, and a child deleted by hand.
    kubectl.patch("benv", "edited", ns, {"spec": {"image": "rasa/rasa:3.6.20-full"}})
    kubectl.delete("service", "rasa-steady", ns)
    operator.start()
    eventually(
        lambda: (
            deployment(kubectl, ns, "edited")["spec"]["template"]["spec"]["containers"][0]["image"]
            == "rasa/rasa:3.6.20-full"
        ),
        message="change applied",
    )
    eventually(lambda: kubectl.get("service", "rasa-steady", ns), message="Service restored")
    operator.settle()
    # Exactly what changed was written: the edited Deployment and the deleted Service.
    # The steady environment's status did not change, so it was not written; the edited
    # one's follows its rollout.
    assert operator.writes_in(ns, "rasa-edited") == {"apply Deployment": 1}
    assert operator.writes_in(ns, "rasa-steady") == {"apply Service": 1}
    assert operator.writes_in(ns, "steady") == {}
    assert operator.writes_in(ns, "edited").get("status BotEnvironment", 0) >= 1
    assert "apply ConfigMap" not in operator.writes_in(ns)


def test_no_secret_value_reaches_configmaps_annotations_status_or_events(kubectl, operator, s3, ns):
    values = {
        "token": "tok-9f8e7d",
        "jwt": "jwt-5a4b3c",
        "db": "dbpw-1q2w3e",
        "lock": "lockpw-7u8i9o",
        "mq": "mqpw-0p9o8i",
        "key": s3.secret_access_key,
    }
    bucket = f"models-{ns}"
    client = s3.bucket(bucket)
    client.put_object(Bucket=bucket, Key="m.tar.gz", Body=b"a model")
    storage = {"provider": "s3", "bucket": bucket, "endpoint": s3.url, "secretRef": {"name": "s3"}}
    kubectl.apply(
        {**tag(ns, "t", "m.tar.gz"), "spec": {"model": "m.tar.gz", "storage": storage}},
        secret(ns, "auth", token=values["token"], **{"jwt-secret": values["jwt"]}),
        secret(ns, "db", username="rasa", password=values["db"]),
        secret(ns, "lock", password=values["lock"]),
        secret(ns, "mq", username="rasa", password=values["mq"]),
        secret(ns, "s3", **s3.credentials),
        env(
            ns,
            "secretive",
            modelTag="t",
            delivery="remoteStorage",
            replicas=2,
            auth={"tokenSecretRef": {"name": "auth"}, "jwtSecretRef": {"name": "auth"}},
            trackerStore={"type": "sql", "host": "pg", "secretRef": {"name": "db"}},
            lockStore={"type": "redis", "host": "redis", "secretRef": {"name": "lock"}},
            eventBroker={"host": "mq", "secretRef": {"name": "mq"}},
        ),
    )
    eventually(lambda: deployment(kubectl, ns, "secretive"))
    eventually(lambda: condition(kubectl.get("benv", "secretive", ns), "Progressing"))
    # Rotate one, so hashes and events are produced for a change too.
    kubectl.apply(secret(ns, "db", username="rasa", password=values["db"] + "-2"))
    operator.resync_now()
    eventually(lambda: len(replicasets(kubectl, ns, "secretive")) == 2)
    operator.settle()
    visible = [
        kubectl.list(kind, ns)
        for kind in (
            "configmaps",
            "deployments",
            "replicasets",
            "services",
            "events",
            "botenvironments",
            "modeltags",
        )
    ]
    text = str(visible)
    for value in values.values():
        assert value not in text
        assert base64.b64encode(value.encode()).decode() not in text
    cm = kubectl.get("configmap", "rasa-secretive-endpoints", ns)["data"]["endpoints.yml"]
    assert "${BOTENV_EVENT_BROKER_PASSWORD}" in cm


def test_pull_token_provisioned_once_and_follows_the_tag(kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "a", "m.tar.gz"), tag(ns, "b", "n.tar.gz"), env(ns, "puller", modelTag="a")
    )
    token_secret = eventually(lambda: kubectl.get("secret", "rasa-puller-pull", ns))
    assert token_secret["metadata"]["labels"]["botenv.dev/pull-token"] == "true"
    assert token_secret["metadata"]["labels"]["botenv.dev/tag"] == "a"
    token = token_secret["data"]["token"]
    assert len(base64.b64decode(token)) >= 32
    container = eventually(lambda: deployment(kubectl, ns, "puller"))["spec"]["template"]["spec"][
        "containers"
    ][0]
    env_vars = {e["name"]: e for e in container["env"]}
    assert env_vars["BOTENV_PULL_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "rasa-puller-pull",
        "key": "token",
    }
    endpoints = yaml.safe_load(
        kubectl.get("configmap", "rasa-puller-endpoints", ns)["data"]["endpoints.yml"]
    )
    assert endpoints["models"]["headers"] == {"Authorization": "Bearer ${BOTENV_PULL_TOKEN}"}
    # Moving the environment to another tag relabels the token, never rotates it.
    kubectl.patch("benv", "puller", ns, {"spec": {"modelTag": "b"}})
    eventually(
        lambda: (
            kubectl.get("secret", "rasa-puller-pull", ns)["metadata"]["labels"]["botenv.dev/tag"]
            == "b"
        ),
        message="token relabelled",
    )
    assert kubectl.get("secret", "rasa-puller-pull", ns)["data"]["token"] == token


def test_tag_resolves_digest_from_storage_into_the_pod_template(kubectl, operator, ns):
    model_file("digest.tar.gz", b"first upload")
    kubectl.apply(tag(ns, "t", "digest.tar.gz"), env(ns, "digested", modelTag="t"))
    mtag = eventually(
        lambda: (
            (kubectl.get("mtag", "t", ns).get("status") or {}).get("digest")
            and kubectl.get("mtag", "t", ns)
        ),
        message="tag resolved",
    )
    digest = mtag["status"]["digest"]
    assert digest == hashlib.md5(b"first upload").hexdigest()
    assert mtag["status"]["size"] == len(b"first upload")
    assert condition(mtag, "Ready")["reason"] == "Resolved"
    annotations = eventually(lambda: deployment(kubectl, ns, "digested"))["spec"]["template"][
        "metadata"
    ]["annotations"]
    assert annotations["botenv.dev/model-digest"] == digest
    assert kubectl.get("benv", "digested", ns)["status"]["model"]["digest"] == digest


def test_tag_moved_to_a_missing_model_changes_nothing_running(kubectl, operator, ns):
    kubectl.apply(tag(ns, "t", "good.tar.gz"), env(ns, "guarded", modelTag="t"))
    eventually(lambda: len(replicasets(kubectl, ns, "guarded")) == 1)
    kubectl.patch("mtag", "t", ns, {"spec": {"model": "missing.tar.gz"}})
    ready = eventually(
        lambda: (
            condition(kubectl.get("mtag", "t", ns), "Ready")
            if condition(kubectl.get("mtag", "t", ns), "Ready").get("reason") == "ModelNotFound"
            else None
        ),
        message="ModelNotFound",
    )
    assert "missing.tar.gz" in ready["message"] and "stays on good.tar.gz" in ready["message"]
    assert kubectl.get("mtag", "t", ns)["status"]["model"] == "good.tar.gz"
    operator.resync_now()
    operator.settle()
    assert len(replicasets(kubectl, ns, "guarded")) == 1
    assert kubectl.get("benv", "guarded", ns)["status"]["model"]["name"] == "good.tar.gz"
    # Uploading the model makes the move happen.
    model_file("missing.tar.gz")
    operator.resync_now()
    eventually(lambda: len(replicasets(kubectl, ns, "guarded")) == 2, message="rolled")


def test_model_reuploaded_under_the_same_name_rolls_restart_environments(kubectl, operator, ns):
    model_file("same-name.tar.gz", b"v1")
    kubectl.apply(
        tag(ns, "t", "same-name.tar.gz", create_model=False),
        env(ns, "restarting", modelTag="t"),
        env(ns, "hotswapping", modelTag="t", rollout="HotSwap"),
    )
    for name in ("restarting", "hotswapping"):
        eventually(lambda n=name: len(replicasets(kubectl, ns, n)) == 1, message=name)
    time.sleep(1.1)  # let the mtime move, so the new content is read
    model_file("same-name.tar.gz", b"v2 with other content")
    operator.resync_now()
    eventually(lambda: len(replicasets(kubectl, ns, "restarting")) == 2, message="restarted")
    eventually(
        lambda: (
            kubectl.get("benv", "hotswapping", ns)["status"]["model"]["digest"]
            == hashlib.md5(b"v2 with other content").hexdigest()
        ),
        message="HotSwap status follows the digest",
    )
    operator.settle()
    assert len(replicasets(kubectl, ns, "hotswapping")) == 1
