"""A real Rasa 3.6.21 server pulling its model through botenv's model server, from S3
(moto), with the endpoints.yml and pull token the operator rendered for its environment."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import urllib.request

import pytest
import yaml

from botenv.controller.verify import served_models
from botenv.render.modelfile import served_file_name
from botenv.render.status import served
from tests.cluster.conftest import MODELS
from tests.cluster.test_environments import env, tag
from tests.support.kubectl import eventually
from tests.support.rasa import RasaServer, train, write_project

pytestmark = [pytest.mark.cluster, pytest.mark.rasa]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("pull-models")
    made = {}
    for name in ("a", "b"):
        project = write_project(
            root / f"project-{name}",
            intents={"greet": ["hello", "hi"]},
            responses={"greet": f"Hello from model {name}."},
        )
        made[name] = train(project, root / "out", f"pull-model-{name}")
    return made


def served_name(path) -> str:
    """What Rasa reports for a model pulled through botenv's model server (S3's ETag and
    the local store's digest are the file's MD5)."""
    return served_file_name(path.name, hashlib.md5(path.read_bytes()).hexdigest())


def pulls_by_code(model_server_url: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{model_server_url}/metrics", timeout=5).read().decode()
    counts: dict[str, float] = {}
    for code, value in re.findall(
        r'^\w*requests_total\{code="(\d+)",route="model"\} (\S+)$', text, re.M
    ):
        counts[code] = counts.get(code, 0) + float(value)
    return counts


def rendered_endpoints(kubectl, ns: str, environment: str, server_url: str, path) -> dict:
    """The environment's endpoints.yml as the operator rendered it, written to `path`. The
    pods would reach the model server through its Service; here it is on loopback."""
    cm = eventually(lambda: kubectl.get("configmap", f"rasa-{environment}-endpoints", ns))
    endpoints = yaml.safe_load(cm["data"]["endpoints.yml"])
    endpoints["models"]["url"] = endpoints["models"]["url"].replace(
        "http://botenv-model-server.botenv-system.svc:8080", server_url
    )
    path.write_text(yaml.safe_dump(endpoints))
    return endpoints


def pull_token(kubectl, ns: str, environment: str) -> str:
    return base64.b64decode(
        eventually(lambda: kubectl.get("secret", f"rasa-{environment}-pull", ns))["data"]["token"]
    ).decode()


def test_rasa_pulls_through_the_model_server_and_follows_a_tag_move(
    kubectl, operator, s3, model_server, models, tmp_path
):
    """HotSwap pods follow the tag; Restart pods keep the model they started with until
    the roll replaces them (their pull URL is pinned to it), and new pods get the new one."""
    ns = "rasa-pull"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    s3.bucket("rasa-models", models.values(), prefix="acme/")
    storage = {
        "provider": "s3",
        "bucket": "rasa-models",
        "prefix": "acme/",
        "endpoint": s3.url,
        "secretRef": {"name": "s3"},
    }
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3", "namespace": ns},
            "stringData": s3.credentials,
        },
        {
            "apiVersion": "botenv.dev/v1alpha1",
            "kind": "ModelTag",
            "metadata": {"name": "production", "namespace": ns},
            "spec": {"model": models["a"].name, "storage": storage},
        },
        env(ns, "canary", modelTag="production", pullIntervalSeconds=2, rollout="HotSwap"),
        env(ns, "production", pullIntervalSeconds=2),
    )

    canary = rendered_endpoints(kubectl, ns, "canary", model_server, tmp_path / "canary.yml")
    assert canary["models"]["url"] == f"{model_server}/models/{ns}/tags/production"
    pinned = rendered_endpoints(
        kubectl, ns, "production", model_server, tmp_path / "production.yml"
    )
    assert pinned["models"]["url"] == (
        f"{model_server}/models/{ns}/tags/production?digest=${{BOTENV_MODEL_DIGEST}}"
    )

    def pod_env(environment: str) -> dict[str, str]:
        """What the Deployment's pod template gives Rasa for endpoints.yml's ${VAR}s."""
        deploy = eventually(lambda: kubectl.get("deployment", f"rasa-{environment}", ns))
        values = {
            e["name"]: e["value"]
            for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]
            if "value" in e
        }
        values["BOTENV_PULL_TOKEN"] = pull_token(kubectl, ns, environment)
        return values

    before = pulls_by_code(model_server)
    with (
        RasaServer(
            endpoints=tmp_path / "canary.yml",
            workdir=tmp_path / "rasa-canary",
            env=pod_env("canary"),
        ) as hot,
        RasaServer(
            endpoints=tmp_path / "production.yml",
            workdir=tmp_path / "rasa-prod",
            env=pod_env("production"),
        ) as steady,
    ):
        for rasa in (hot, steady):
            assert rasa.wait_until_ready(timeout=180)["model_file"] == served_name(models["a"])
        # Later pulls are revalidations: 304, counted on the server.
        eventually(
            lambda: pulls_by_code(model_server).get("304", 0) - before.get("304", 0) >= 4,
            timeout=20,
            message="304 revalidations",
        )
        assert pulls_by_code(model_server).get("200", 0) - before.get("200", 0) == 2

        old_digest = pod_env("production")["BOTENV_MODEL_DIGEST"]
        kubectl.patch("mtag", "production", ns, {"spec": {"model": models["b"].name}})
        eventually(
            lambda: hot.status().get("model_file") == served_name(models["b"]),
            timeout=30,
            message="the HotSwap Rasa serves the moved tag's model",
        )
        revalidated = pulls_by_code(model_server).get("304", 0)
        eventually(
            lambda: pulls_by_code(model_server).get("304", 0) - revalidated >= 3,
            timeout=20,
            message="pinned pulls go on",
        )
        assert steady.status().get("model_file") == served_name(models["a"]), (
            "a Restart pod swapped models before its roll"
        )

    # The roll: a new pod starts from the new pod template (same endpoints.yml), whose
    # digest is the new model's.
    rolled = eventually(
        lambda: (e := pod_env("production"))["BOTENV_MODEL_DIGEST"] != old_digest and e,
        message="the pod template follows the tag",
    )
    with RasaServer(
        endpoints=tmp_path / "production.yml", workdir=tmp_path / "rasa-rolled", env=rolled
    ) as new_pod:
        assert new_pod.wait_until_ready(timeout=180)["model_file"] == served_name(models["b"])


def test_a_pod_on_the_old_content_of_a_model_uploaded_again_does_not_count_as_serving_it(
    kubectl, operator, model_server, models, tmp_path
):
    """A model uploaded again under the same name: what a real Rasa reports after pulling
    it through the model server names the content, so botenv's verification counts a pod
    that still has the old content as not serving the tag's model."""
    ns = "rasa-reupload"
    name = "reuploaded.tar.gz"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    (MODELS / name).write_bytes(models["a"].read_bytes())
    kubectl.apply(
        tag(ns, "production", name, create_model=False),
        env(ns, "canary", modelTag="production", pullIntervalSeconds=2, rollout="HotSwap"),
    )
    rendered_endpoints(kubectl, ns, "canary", model_server, tmp_path / "canary.yml")
    digest_a = hashlib.md5(models["a"].read_bytes()).hexdigest()
    digest_b = hashlib.md5(models["b"].read_bytes()).hexdigest()
    eventually(
        lambda: kubectl.get("mtag", "production", ns).get("status", {}).get("digest") == digest_a,
        message="the tag resolves the first upload",
    )
    with RasaServer(
        endpoints=tmp_path / "canary.yml",
        workdir=tmp_path / "rasa-canary",
        env={"BOTENV_PULL_TOKEN": pull_token(kubectl, ns, "canary")},
    ) as rasa:
        assert rasa.wait_until_ready(timeout=180)["model_file"] == f"reuploaded@{digest_a}.tar.gz"
        pod = [{"name": "canary-0", "ip": "127.0.0.1", "ready": True}]

        def ask() -> dict[str, str]:
            return asyncio.run(served_models(pod, port=rasa.port, token=None))

        on_a = ask()
        assert served(name, on_a, 1, digest_a)[0].done

        # The same name, other content: the tag's digest moves, the old answer no longer
        # counts (by file name alone it would).
        partial = MODELS / f".{name}.part"
        partial.write_bytes(models["b"].read_bytes())
        os.replace(partial, MODELS / name)
        operator.resync_now()
        eventually(
            lambda: kubectl.get("mtag", "production", ns)["status"]["digest"] == digest_b,
            message="the tag resolves the new upload",
        )
        progress, listing = served(name, on_a, 1, digest_b)
        assert not progress.done
        assert listing == [{"name": name, "digest": digest_a, "replicas": 1}]

        # Rasa pulls the new content under the new file name; then it counts.
        eventually(
            lambda: rasa.status().get("model_file") == f"reuploaded@{digest_b}.tar.gz",
            timeout=30,
            message="Rasa loads the new content",
        )
        assert served(name, ask(), 1, digest_b)[0].done
