"""A real Rasa 3.6.21 server pulling its model through botenv's model server, from S3
(moto), with the endpoints.yml and pull token the operator rendered for its environment."""

from __future__ import annotations

import base64
import re
import urllib.request

import boto3
import pytest
import yaml

from tests.cluster.test_environments import env
from tests.cluster.test_model_server import model_server  # noqa: F401 (fixture)
from tests.support.kubectl import eventually
from tests.support.rasa import RasaServer, train, write_project

pytestmark = [pytest.mark.cluster, pytest.mark.rasa]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("pull-models")
    made = {}
    for name in ("a", "b"):
        project = write_project(root / f"project-{name}", intents={"greet": ["hello", "hi"]},
                                responses={"greet": f"Hello from model {name}."})
        made[name] = train(project, root / "out", f"pull-model-{name}")
    return made


def pulls_by_code(model_server_url: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{model_server_url}/metrics", timeout=5).read().decode()
    counts: dict[str, float] = {}
    for code, value in re.findall(
            r'^\w*requests_total\{code="(\d+)",route="model"\} (\S+)$', text, re.M):
        counts[code] = counts.get(code, 0) + float(value)
    return counts


def test_rasa_pulls_through_the_model_server_and_follows_a_tag_move(
        kubectl, operator, s3, model_server, models, tmp_path):  # noqa: F811
    ns = "rasa-pull"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    client = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1",
                          aws_access_key_id=s3.access_key_id,
                          aws_secret_access_key=s3.secret_access_key)
    client.create_bucket(Bucket="rasa-models")
    for path in models.values():
        client.upload_file(str(path), "rasa-models", f"acme/{path.name}")
    storage = {"provider": "s3", "bucket": "rasa-models", "prefix": "acme/",
               "endpoint": s3.url, "secretRef": {"name": "s3"}}
    kubectl.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3", "namespace": ns},
         "stringData": s3.credentials},
        {"apiVersion": "botenv.dev/v1alpha1", "kind": "ModelTag",
         "metadata": {"name": "production", "namespace": ns},
         "spec": {"model": models["a"].name, "storage": storage}},
        env(ns, "production", pullIntervalSeconds=2))

    # What the operator rendered for the environment: endpoints.yml and the pull token.
    cm = eventually(lambda: kubectl.get("configmap", "rasa-production-endpoints", ns))
    endpoints = yaml.safe_load(cm["data"]["endpoints.yml"])
    token = base64.b64decode(eventually(lambda: kubectl.get(
        "secret", "rasa-production-pull", ns))["data"]["token"]).decode()
    # The pods would reach the model server through its Service; here it is on loopback.
    endpoints["models"]["url"] = endpoints["models"]["url"].replace(
        "http://botenv-model-server.botenv-system.svc:8080", model_server)
    assert endpoints["models"]["url"] == f"{model_server}/models/{ns}/tags/production"
    (tmp_path / "endpoints.yml").write_text(yaml.safe_dump(endpoints))

    before = pulls_by_code(model_server)
    with RasaServer(endpoints=tmp_path / "endpoints.yml", workdir=tmp_path / "rasa",
                    env={"BOTENV_PULL_TOKEN": token, "RASA_ENVIRONMENT": "production"}) as rasa:
        status = rasa.wait_until_ready(timeout=180)
        assert status["model_file"] == models["a"].name
        # Later pulls are revalidations: 304, counted on the server.
        eventually(lambda: pulls_by_code(model_server).get("304", 0)
                   - before.get("304", 0) >= 2, timeout=20, message="304 revalidations")
        assert pulls_by_code(model_server).get("200", 0) - before.get("200", 0) == 1

        kubectl.patch("mtag", "production", ns, {"spec": {"model": models["b"].name}})
        eventually(lambda: rasa.status().get("model_file") == models["b"].name, timeout=30,
                   message="Rasa serves the moved tag's model")
