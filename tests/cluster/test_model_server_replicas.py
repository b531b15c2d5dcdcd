"""Two model server replicas, as the chart runs them behind one Service: each its own
process with its own cache, both as the chart's model-server ServiceAccount. Whichever
replica a pull reaches answers it the same way: pull tokens, an environment held on its
model (status.pullToken.digest) and a pod's pinned digest come from what the operator
publishes in the cluster, not from one replica's memory. Each replica downloads a model
from storage once, however many pulls it answers."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest

from botenv.local.processes import free_port
from tests.cluster.conftest import MODEL_SERVER_TOKEN, STORAGE_POLICY, _answers
from tests.cluster.test_environments import env, model_file, tag
from tests.cluster.test_model_server import get, pull_token
from tests.support.archives import rasa_like
from tests.support.kubectl import eventually
from tests.support.operator import model_server_argv

pytestmark = pytest.mark.cluster

V1, OLD = "replicas-v1.tar.gz", "replicas-old.tar.gz"
CONTENT = {V1: rasa_like("3.6.21", b"replicas v1"), OLD: rasa_like("3.5.4", b"replicas old")}
DIGEST = {name: hashlib.md5(data).hexdigest() for name, data in CONTENT.items()}

_names = itertools.count()


@pytest.fixture(scope="module")
def replicas(control_plane, kubectl, chart_rbac, tmp_path_factory) -> Iterator[list[str]]:
    """Two model servers, each with its own cache directory; their base URLs."""
    procs, urls = [], []
    for i in range(2):
        port = free_port()
        workdir = tmp_path_factory.mktemp(f"model-server-{i}")
        procs.append(
            subprocess.Popen(
                model_server_argv(port, workdir / "cache"),
                env={
                    **os.environ,
                    **STORAGE_POLICY,
                    "KUBECONFIG": str(control_plane.kubeconfig_for(MODEL_SERVER_TOKEN)),
                },
                stdout=(workdir / "model-server.log").open("w"),
                stderr=subprocess.STDOUT,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url in urls:
            eventually(lambda u=url: _answers(u + "/readyz"), timeout=60, message=f"{url} ready")
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=15)


@pytest.fixture
def ns(kubectl) -> str:
    name = f"replicas-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def through_the_service(replicas: list[str], path: str, token: str, etag: str = "") -> list:
    """The same pull sent to every replica in turn, twice (as a Service's connections are
    spread): (status, ETag) of each."""
    return [
        (status, headers.get("ETag", "").strip('"'))
        for url in replicas * 2
        for status, headers, _ in [get(url + path, token, etag)]
    ]


def fills(url: str) -> float:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    return float(re.search(r"^botenv_modelserver_cache_fills_total (\S+)$", text, re.M)[1])


def test_every_replica_answers_every_pull_the_same(kubectl, operator, replicas, ns):
    for name, data in CONTENT.items():
        model_file(name, data)
    kubectl.apply(
        tag(ns, "production", V1, create_model=False),
        env(ns, "canary", modelTag="production", rollout="HotSwap"),
        env(ns, "production"),  # rollout Restart: its pods pull a URL pinned to their digest
    )
    canary, production = pull_token(kubectl, ns, "canary"), pull_token(kubectl, ns, "production")
    path = f"/models/{ns}/tags/production"
    fills_before = [fills(url) for url in replicas]

    # Both replicas learn the tokens from the environments' status: any of them opens the tag.
    every_v1 = [(200, DIGEST[V1])] * 4
    eventually(
        lambda: through_the_service(replicas, path, canary) == every_v1,
        message="both replicas serve the canary's token",
    )
    assert through_the_service(replicas, path, production) == every_v1
    assert through_the_service(replicas, path, canary, f'"{DIGEST[V1]}"') == [(304, DIGEST[V1])] * 4
    assert {status for status, _ in through_the_service(replicas, path, "x" * 43)} == {401}

    # An incompatible model: the operator holds the HotSwap canary on v1 (its token's pin in
    # status.pullToken.digest); a Restart pod keeps its pinned digest; the rest follow the tag.
    kubectl.patch("mtag", "production", ns, {"spec": {"model": OLD}})
    eventually(
        lambda: (
            (kubectl.get("benv", "canary", ns)["status"].get("pullToken") or {}).get("digest")
            == DIGEST[V1]
        ),
        message="the operator holds the canary on v1",
    )
    eventually(
        lambda: through_the_service(replicas, path, canary) == every_v1,
        message="both replicas hold the canary on v1",
    )
    pinned = f"{path}?digest={DIGEST[V1]}"
    assert through_the_service(replicas, pinned, production) == every_v1
    eventually(
        lambda: through_the_service(replicas, path, production) == [(200, DIGEST[OLD])] * 4,
        message="both replicas serve the moved tag to the others",
    )

    # A model is downloaded from storage once per replica, however many pulls each answered.
    assert [fills(url) - before for url, before in zip(replicas, fills_before, strict=True)] == [
        2,
        2,
    ]

    # A revoked token (its environment is gone) opens nothing on any replica.
    kubectl.delete("benv", "canary", ns)
    eventually(
        lambda: {status for status, _ in through_the_service(replicas, path, canary)} == {401},
        message="both replicas refuse the deleted environment's token",
    )
