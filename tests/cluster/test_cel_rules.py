"""The CRDs' CEL rules (x-kubernetes-validations) on a real API server: an object that breaks a
rule spanning several fields is refused at `kubectl apply`, with a message that names the field
and what is expected, and the operator's own check names the same field. Servers before 1.25
do not enforce CEL in CRDs; there the operator's check is what reports the problem (see
tests/cluster/test_environments.py and README "Supported Kubernetes versions")."""

from __future__ import annotations

import copy

import pytest

from botenv.api import SpecError, parse_environment, parse_tag
from botenv.api.training import parse_training
from tests.support.kubectl import CEL_SINCE, Kubectl

pytestmark = pytest.mark.cluster

NS = "cel-rules"
REDIS = {"type": "redis", "host": "redis.db"}


def _env(name: str = "cel", **spec: object) -> dict:
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "BotEnvironment",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def _tag(storage: dict, name: str = "cel") -> dict:
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "ModelTag",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"model": "m.tar.gz", "storage": storage},
    }


def _training(name: str = "cel", source: dict | None = None, output: dict | None = None) -> dict:
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "ModelTraining",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "source": source if source is not None else {"configMap": {"name": "p"}},
            "output": {"storage": output or {"provider": "s3", "bucket": "models"}},
        },
    }


# (object, the field the server's error names, what it says is expected)
CASES = {
    "replicas-need-a-shared-lock-store": (
        _env(replicas=2, trackerStore=REDIS),
        "spec.lockStore",
        "must be redis or custom when spec.replicas > 1",
    ),
    "replicas-need-a-shared-tracker-store": (
        _env(replicas=2, lockStore=REDIS),
        "spec.trackerStore",
        "must not be memory when spec.replicas > 1",
    ),
    "hotswap-needs-pull": (
        _env(rollout="HotSwap", delivery="remoteStorage"),
        "spec.rollout",
        "HotSwap needs delivery: pull",
    ),
    "action-server-excludes-action-endpoint": (
        _env(actionServer={"image": "acme/actions:1"}, actionEndpoint={"url": "http://a:5055"}),
        "spec.actionEndpoint.url",
        "must be empty with spec.actionServer",
    ),
    "environment-name-too-long": (_env("e" * 59), "metadata.name", "must be at most 58 characters"),
    "environment-name-starts-with-a-digit": (
        _env("1st"),
        "metadata.name",
        "starting with a letter",
    ),
    "environment-name-too-long-for-its-action-server": (
        _env("e" * 51, actionServer={"image": "acme/actions:1"}),
        "metadata.name",
        "must be at most 50 characters with spec.actionServer",
    ),
    "sql-tracker-store-needs-a-host": (
        _env(trackerStore={"type": "sql"}),
        "spec.trackerStore.host",
        "is required for type sql: the server's host name",
    ),
    "custom-tracker-store-needs-a-class": (
        _env(trackerStore={"type": "custom"}),
        "spec.trackerStore.class",
        "is required for type custom: module.Class",
    ),
    "redis-lock-store-needs-a-host": (
        _env(lockStore={"type": "redis"}),
        "spec.lockStore.host",
        "is required for type redis: the Redis host name",
    ),
    "custom-lock-store-needs-a-class": (
        _env(lockStore={"type": "custom"}),
        "spec.lockStore.class",
        "is required for type custom: module.Class",
    ),
    "event-broker-needs-credentials": (
        _env(eventBroker={"host": "rabbitmq.mq"}),
        "spec.eventBroker.secretRef",
        "Rasa's pika broker needs a username and a password",
    ),
    "autoscaling-min-above-max": (
        _env(
            autoscaling={"minReplicas": 3, "maxReplicas": 2, "targetCPUUtilizationPercentage": 60}
        ),
        "spec.autoscaling.maxReplicas",
        "must be at least",
    ),
    "autoscaling-needs-a-target": (
        _env(autoscaling={"maxReplicas": 1}),
        "spec.autoscaling",
        "needs a target: targetCPUUtilizationPercentage and/or",
    ),
    "autoscaling-needs-a-shared-lock-store": (
        _env(
            autoscaling={"maxReplicas": 3, "targetCPUUtilizationPercentage": 60}, trackerStore=REDIS
        ),
        "spec.lockStore",
        "must be redis or custom when spec.autoscaling.maxReplicas > 1",
    ),
    "action-server-autoscaling-min-above-max": (
        _env(
            actionServer={
                "image": "acme/actions:1",
                "autoscaling": {
                    "minReplicas": 4,
                    "maxReplicas": 2,
                    "targetCPUUtilizationPercentage": 60,
                },
            }
        ),
        "spec.actionServer.autoscaling.maxReplicas",
        "must be at least",
    ),
    "disruption-budget-has-both-bounds": (
        _env(disruptionBudget={"maxUnavailable": 1, "minAvailable": 1}),
        "spec.disruptionBudget.minAvailable",
        "set either maxUnavailable or minAvailable, not both",
    ),
    "s3-needs-a-bucket": (
        _tag({"provider": "s3"}),
        "spec.storage.bucket",
        "is required for provider s3 (the bucket, or the Azure container)",
    ),
    "gcs-needs-a-bucket": (
        _tag({"provider": "gcs"}),
        "spec.storage.bucket",
        "is required for provider gcs",
    ),
    "azure-needs-a-container": (
        _tag({"provider": "azure"}),
        "spec.storage.bucket",
        "is required for provider azure",
    ),
    "http-needs-a-url": (
        _tag({"provider": "http"}),
        "spec.storage.url",
        "is required for provider http: an http(s):// base URL",
    ),
    "local-needs-a-path": (
        _tag({"provider": "local"}),
        "spec.storage.path",
        "is required for provider local: an absolute directory",
    ),
    "training-source-has-both": (
        _training(
            source={
                "configMap": {"name": "p"},
                "storage": {"provider": "s3", "bucket": "b"},
                "object": "p.tar.gz",
            }
        ),
        "spec.source",
        "needs exactly one of configMap",
    ),
    "training-source-has-neither": (
        _training(source={}),
        "spec.source",
        "needs exactly one of configMap",
    ),
    "training-archive-needs-an-object": (
        _training(source={"storage": {"provider": "s3", "bucket": "b"}}),
        "spec.source.object",
        "is required with spec.source.storage",
    ),
    "training-archive-storage-needs-a-bucket": (
        _training(source={"storage": {"provider": "s3"}, "object": "p.tar.gz"}),
        "spec.source.storage.bucket",
        "is required for provider s3",
    ),
    "training-output-is-not-http": (
        _training(output={"provider": "http", "url": "https://models.example/"}),
        "spec.output.storage.provider",
        "http storage is read-only",
    ),
    "training-output-needs-a-bucket": (
        _training(output={"provider": "gcs"}),
        "spec.output.storage.bucket",
        "is required for provider gcs",
    ),
    "training-name-too-long": (
        _training("t" * 58),
        "metadata.name",
        "must be at most 57 characters",
    ),
}


def _operator_problems(obj: dict) -> str:
    """What the operator's own check says about obj ("" when it accepts it)."""
    body = copy.deepcopy(obj)
    parse = {
        "BotEnvironment": lambda b: parse_environment(b, "rasa/rasa:3.6.21-full"),
        "ModelTag": parse_tag,
        "ModelTraining": lambda b: parse_training(b, "rasa/rasa:3.6.21-full"),
    }[body["kind"]]
    try:
        parse(body)
    except SpecError as exc:
        return str(exc)
    return ""


@pytest.fixture(scope="module")
def ns(kubectl: Kubectl, control_plane) -> str:
    if control_plane.version < CEL_SINCE:
        pytest.skip(
            f"Kubernetes {'.'.join(map(str, control_plane.version))} does not enforce "
            "CEL rules in CRDs (test_crds.py::"
            "test_crds_apply_as_the_readme_says_for_this_server shows what it does)"
        )
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    return NS


@pytest.mark.parametrize(("obj", "field", "expected"), CASES.values(), ids=CASES.keys())
def test_a_broken_rule_is_refused_naming_the_field(
    kubectl: Kubectl, ns: str, obj: dict, field: str, expected: str
) -> None:
    proc = kubectl.apply(obj, check=False, server_validation_only=True)
    assert proc.returncode != 0, f"the API server accepted {obj}"
    error = proc.stderr
    assert f"{field}: " in error, error
    assert expected in error, error
    kind = obj["kind"].lower()
    assert kubectl.get(kind, obj["metadata"]["name"], ns) is None
    # The operator's own check, for objects that reach it on servers without CEL, names the
    # same field.
    assert f"{field}: " in _operator_problems(obj)


VALID = {
    "replicas-with-shared-stores": _env("fleet", replicas=2, trackerStore=REDIS, lockStore=REDIS),
    "hotswap-with-pull": _env("swap", rollout="HotSwap", delivery="pull"),
    "autoscaling-with-shared-stores": _env(
        "auto",
        autoscaling={"maxReplicas": 4, "targetMemoryUtilizationPercentage": 75},
        trackerStore=REDIS,
        lockStore=REDIS,
        disruptionBudget={"minAvailable": "50%"},
    ),
    "sqlite-tracker-store-without-host": _env(
        "lite", trackerStore={"type": "sql", "dialect": "sqlite"}
    ),
    "action-server-with-a-50-character-name": _env("a" * 50, actionServer={"image": "x:1"}),
    "action-endpoint-alone": _env("ext", actionEndpoint={"url": "http://actions:5055"}),
    "event-broker-with-credentials": _env(
        "mq", eventBroker={"host": "rabbitmq.mq", "secretRef": {"name": "mq"}}
    ),
    "s3-tag": _tag({"provider": "s3", "bucket": "models"}, "s3"),
    "http-tag": _tag({"provider": "http", "url": "https://models.example/"}, "web"),
    "local-tag": _tag({"provider": "local", "path": "/models"}, "disk"),
    "training-from-an-archive": _training(
        "arch", source={"storage": {"provider": "s3", "bucket": "b"}, "object": "p.tar.gz"}
    ),
    "training-with-a-57-character-name": _training("t" * 57),
}


@pytest.mark.parametrize("obj", VALID.values(), ids=VALID.keys())
def test_a_valid_object_still_applies(kubectl: Kubectl, ns: str, obj: dict) -> None:
    assert _operator_problems(obj) == ""
    kubectl.apply(obj, server_validation_only=True)
    kind, name = obj["kind"].lower(), obj["metadata"]["name"]
    assert kubectl.get(kind, name, ns) is not None
    kubectl.run("delete", kind, name, "-n", ns, "--wait=false")


def test_an_update_that_breaks_a_rule_is_refused(kubectl: Kubectl, ns: str) -> None:
    kubectl.apply(_env("grow"), server_validation_only=True)
    proc = kubectl.run(
        "patch",
        "benv",
        "grow",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"spec": {"replicas": 3}}',
        check=False,
    )
    assert proc.returncode != 0
    assert "spec.lockStore: " in proc.stderr and "must be redis or custom" in proc.stderr
    assert kubectl.get("benv", "grow", ns)["spec"]["replicas"] == 1
