"""The version gate on a real API server: a tag's model that an environment's Rasa cannot
load (its archive says an older Rasa trained it) rolls nothing there, the environment and
the tag say why, and a compatible model rolls as before. Models are local files shaped as
Rasa writes them (tests/rasa/test_model_metadata.py reads real ones, and has Rasa itself
refuse the old one)."""

from __future__ import annotations

import hashlib
import itertools
import urllib.error
import urllib.request

import pytest

from tests.cluster.test_environments import deployment, env, model_file, replicasets, tag
from tests.cluster.test_rasa_pull import pull_token
from tests.support.archives import rasa_like
from tests.support.kubectl import condition, eventually

pytestmark = pytest.mark.cluster

V1, OLD, V2 = "gate-v1.tar.gz", "gate-old.tar.gz", "gate-v2.tar.gz"
CONTENT = {
    V1: rasa_like("3.6.21", b"v1"),
    OLD: rasa_like("3.5.4", b"old"),
    V2: rasa_like("3.6.21", b"v2"),
}
DIGEST = {name: hashlib.md5(data).hexdigest() for name, data in CONTENT.items()}


_names = itertools.count()


@pytest.fixture
def ns(kubectl):
    name = f"gate-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def template(kubectl, ns, name) -> dict:
    return deployment(kubectl, ns, name)["spec"]["template"]


def degraded(kubectl, ns, name) -> dict:
    return condition(kubectl.get("benv", name, ns), "Degraded")


def model_server_etag(url: str, token: str) -> str:
    request = urllib.request.Request(
        url, method="HEAD", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.headers["ETag"].strip('"')
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"


def test_an_incompatible_model_rolls_nothing_and_a_compatible_one_rolls(
    kubectl, operator, model_server, ns
):
    for name, data in CONTENT.items():
        model_file(name, data)
    kubectl.apply(
        tag(ns, "production", V1, create_model=False),
        env(ns, "production"),  # the operator's default image, rasa/rasa:3.6.21-full
        env(ns, "canary", modelTag="production", rollout="HotSwap"),
        # An image of its own that says its Rasa: 3.6.0 loads models from 3.5.0 on.
        env(ns, "legacy", modelTag="production", image="acme/bot:7", rasaVersion="3.6.0"),
    )
    for name in ("production", "canary", "legacy"):
        eventually(lambda n=name: len(replicasets(kubectl, ns, n)) == 1, message=name)
    status = eventually(
        lambda: (
            (s := kubectl.get("mtag", "production", ns).get("status") or {}).get("rasaVersion")
            and s
        ),
        message="the tag's Rasa version",
    )
    assert (status["model"], status["rasaVersion"]) == (V1, "3.6.21")
    assert condition(kubectl.get("mtag", "production", ns), "Ready")["message"] == (
        f"model {V1} (digest {DIGEST[V1]}), trained with Rasa 3.6.21"
    )
    before = template(kubectl, ns, "production")

    kubectl.patch("mtag", "production", ns, {"spec": {"model": OLD}})
    refused = eventually(
        lambda: (s := kubectl.get("mtag", "production", ns)["status"]).get("refusedBy") and s,
        message="the tag lists the environments that refuse its model",
    )
    assert (refused["model"], refused["rasaVersion"]) == (OLD, "3.5.4")
    assert [r["environment"] for r in refused["refusedBy"]] == ["canary", "production"]
    assert refused["history"][0] == {**refused["history"][0], "model": V1, "rasaVersion": "3.6.21"}
    why = eventually(
        lambda: (
            (d := degraded(kubectl, ns, "production")).get("reason") == "ModelIncompatible" and d
        ),
        message="production Degraded ModelIncompatible",
    )
    assert why["message"] == (
        f"model {OLD} (digest {DIGEST[OLD]}) of ModelTag 'production' trained with Rasa 3.5.4, "
        "but Rasa 3.6.21 (image rasa/rasa:3.6.21-full) loads only models trained with Rasa "
        f"3.6.21 or later. The environment stays on model {V1} (digest {DIGEST[V1]}) until "
        "the tag moves to a model this Rasa loads"
    )
    assert any(
        e["reason"] == "ModelIncompatible" and e["involvedObject"]["name"] == "production"
        for e in kubectl.list("events", ns)
    )
    # The environment that can load it rolls; the others stay exactly as they were.
    eventually(lambda: len(replicasets(kubectl, ns, "legacy")) == 2, message="legacy rolls")
    assert template(kubectl, ns, "legacy")["metadata"]["annotations"]["botenv.dev/model"] == OLD
    eventually(
        lambda: degraded(kubectl, ns, "canary").get("reason") == "ModelIncompatible",
        message="canary Degraded ModelIncompatible",
    )
    operator.settle()
    assert template(kubectl, ns, "production") == before
    assert len(replicasets(kubectl, ns, "production")) == 1
    assert kubectl.get("benv", "production", ns)["status"]["model"]["name"] == V1
    # HotSwap pods follow the tag through the model server: it holds them on their model.
    canary = kubectl.get("benv", "canary", ns)["status"]
    assert canary["pullToken"]["digest"] == DIGEST[V1]
    assert canary["model"]["digest"] == DIGEST[V1]
    url = f"{model_server}/models/{ns}/tags/production"
    token = pull_token(kubectl, ns, "canary")
    eventually(lambda: model_server_etag(url, token) == DIGEST[V1], message="canary held on v1")
    assert model_server_etag(url, pull_token(kubectl, ns, "legacy")) == DIGEST[OLD]

    kubectl.patch("mtag", "production", ns, {"spec": {"model": V2}})
    eventually(lambda: len(replicasets(kubectl, ns, "production")) == 2, message="production rolls")
    assert template(kubectl, ns, "production")["metadata"]["annotations"]["botenv.dev/model"] == V2
    eventually(
        lambda: (
            degraded(kubectl, ns, "production").get("status") == "False"
            and degraded(kubectl, ns, "canary").get("status") == "False"
        ),
        message="no longer Degraded",
    )
    status = kubectl.get("mtag", "production", ns)["status"]
    assert "refusedBy" not in status and status["rasaVersion"] == "3.6.21"
    assert "digest" not in kubectl.get("benv", "canary", ns)["status"]["pullToken"]
    eventually(lambda: model_server_etag(url, token) == DIGEST[V2], message="canary follows again")


def test_a_first_model_that_cannot_load_creates_nothing(kubectl, operator, ns):
    model_file(OLD, CONTENT[OLD])
    kubectl.apply(
        tag(ns, "old-only", OLD, create_model=False), env(ns, "fresh", modelTag="old-only")
    )
    why = eventually(
        lambda: (d := degraded(kubectl, ns, "fresh")).get("reason") == "ModelIncompatible" and d,
        message="fresh Degraded ModelIncompatible",
    )
    assert "Nothing is rolled out" in why["message"]
    operator.settle()
    assert deployment(kubectl, ns, "fresh") is None


def test_an_archive_without_metadata_resolves_and_is_not_gated(kubectl, operator, ns):
    kubectl.apply(tag(ns, "plain", "gate-plain.tar.gz"), env(ns, "plain"))  # bytes, no archive
    eventually(lambda: len(replicasets(kubectl, ns, "plain")) == 1, message="plain rolls out")
    ready = condition(kubectl.get("mtag", "plain", ns), "Ready")
    assert ready["status"] == "True"
    assert "its Rasa version is unknown (not a gzip-compressed archive)" in ready["message"]
