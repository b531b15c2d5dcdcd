"""The CRDs on a real API server: bad input is rejected with messages naming the field,
defaults and printer columns work, `kubectl explain` is useful."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.kubectl import CEL_SINCE

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.cluster


def _env(name: str, **spec: object) -> dict:
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "BotEnvironment",
        "metadata": {"name": name, "namespace": "crd-checks"},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def ns(kubectl):
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "crd-checks"}})
    return "crd-checks"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"replicas": "two"}, "spec.replicas"),
        ({"replicas": -1}, "spec.replicas"),
        ({"delivery": "push"}, "spec.delivery"),
        ({"rollout": "Sometimes"}, "spec.rollout"),
        ({"trackerStore": {"type": "cassandra"}}, "spec.trackerStore.type"),
        ({"eventBroker": {"host": "mq", "queue": "bad queue!"}}, "spec.eventBroker.queue"),
        ({"eventBroker": {"queue": "q"}}, "spec.eventBroker.host"),
        ({"pullIntervalSeconds": 0}, "spec.pullIntervalSeconds"),
        ({"service": {"port": 70000}}, "spec.service.port"),
        ({"auth": {"tokenSecretRef": {"key": "token"}}}, "spec.auth.tokenSecretRef.name"),
    ],
)
def test_invalid_environment_rejected_naming_the_field(kubectl, ns, spec, field):
    proc = kubectl.apply(_env("invalid", **spec), check=False, server_validation_only=True)
    assert proc.returncode != 0
    assert field in proc.stderr, proc.stderr
    assert kubectl.get("benv", "invalid", ns) is None


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"storage": {"provider": "s3", "bucket": "b"}}, "spec.model"),
        ({"model": "m.tar.gz"}, "spec.storage"),
        ({"model": "m.tar.gz", "storage": {"provider": "ftp"}}, "spec.storage.provider"),
        ({"model": "/abs.tar.gz", "storage": {"provider": "s3"}}, "spec.model"),
    ],
)
def test_invalid_tag_rejected_naming_the_field(kubectl, ns, spec, field):
    tag = {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "ModelTag",
        "metadata": {"name": "invalid", "namespace": ns},
        "spec": spec,
    }
    proc = kubectl.apply(tag, check=False, server_validation_only=True)
    assert proc.returncode != 0
    assert field in proc.stderr, proc.stderr


@pytest.mark.compat
def test_defaults_are_applied(kubectl, ns):
    kubectl.apply(_env("defaults"))
    spec = kubectl.get("benv", "defaults", ns)["spec"]
    assert spec["replicas"] == 1
    assert spec["delivery"] == "pull"
    assert spec["rollout"] == "Restart"
    assert spec["pullIntervalSeconds"] == 10
    assert spec["trackerStore"]["type"] == "memory"
    assert spec["service"] == {"type": "ClusterIP", "port": 5005}


def test_category_short_names_and_columns(kubectl, ns):
    kubectl.apply(_env("columns"))
    listing = kubectl.run("get", "botenv", "-n", ns).stdout
    assert "botenvironment.botenv.dev/columns" in listing
    header = kubectl.run("get", "benv", "-n", ns).stdout.splitlines()[0].split()
    assert header[:6] == ["NAME", "TAG", "MODEL", "REPLICAS", "AVAILABLE", "READY"]
    assert kubectl.run("get", "mtag", "-n", ns).returncode == 0


def test_kubectl_explain_describes_fields(kubectl):
    out = kubectl.run("explain", "benv.spec.trackerStore.type").stdout
    assert "sql" in out and "redis" in out
    out = kubectl.run("explain", "mtag.spec.storage").stdout
    assert "provider" in out


def test_empty_strings_from_api_md_are_accepted(kubectl, ns):
    # API.md's own example writes `queue: ""` (derive a unique name) and `actionEndpoint:
    # {url: ""}`: valid objects on any 1.20+ cluster, so on the test server too.
    kubectl.apply(
        _env(
            "empty-strings",
            eventBroker={"host": "rabbitmq", "queue": "", "secretRef": {"name": "mq"}},
            actionEndpoint={"url": ""},
        ),
        server_validation_only=True,
    )
    spec = kubectl.get("benv", "empty-strings", ns)["spec"]
    assert spec["eventBroker"]["queue"] == ""


def _has_rules(schema: object) -> bool:
    if isinstance(schema, dict):
        return "x-kubernetes-validations" in schema or any(_has_rules(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_rules(v) for v in schema)
    return False


@pytest.mark.compat
def test_crds_apply_as_the_readme_says_for_this_server(control_plane, kubectl, ns):
    """crds/ carry CEL rules. A server of 1.25 or newer stores and enforces them; 1.20 does not
    know the field: the README's `kubectl apply --validate=false -f crds/` (the kubectl fixture
    applies them so) succeeds there, the server drops the rules, and an object that breaks one
    is stored, for the operator's own check to report (test_invalid_spec_degrades_with_field)."""
    for crd in ("botenvironments", "modeltags", "modeltrainings"):
        stored = json.loads(kubectl.run("get", "crd", f"{crd}.botenv.dev", "-o", "json").stdout)
        schema = stored["spec"]["versions"][0]["schema"]
        assert _has_rules(schema) == (control_plane.version >= CEL_SINCE), crd
    breaks_a_rule = _env("cel-dropped", rollout="HotSwap", delivery="remoteStorage")
    proc = kubectl.apply(breaks_a_rule, check=False, server_validation_only=True)
    if control_plane.version >= CEL_SINCE:
        assert proc.returncode != 0 and "HotSwap needs delivery: pull" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert kubectl.get("benv", "cel-dropped", ns)["spec"]["rollout"] == "HotSwap"
        # Without --validate=false, kubectl's own schema check refuses the unknown field.
        plain = kubectl.run("apply", "--dry-run=server", "-f", str(REPO / "crds"), check=False)
        assert plain.returncode != 0
        assert 'unknown field "x-kubernetes-validations"' in plain.stderr
