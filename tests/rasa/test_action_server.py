"""A real Rasa 3.6.21 server calls a real rasa-sdk action server through the
action_endpoint botenv renders for an environment with spec.actionServer."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from botenv.api import parse_environment
from botenv.local.processes import free_port
from botenv.render.endpoints import endpoints
from tests.support.kubectl import eventually
from tests.support.rasa import RasaServer, rasa_python, train, write_project
from tests.unit.builders import DEFAULT_IMAGE, environment

pytestmark = pytest.mark.rasa

ACTIONS = """
from rasa_sdk import Action


class ActionLookupOrder(Action):
    def name(self):
        return "action_lookup_order"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Order 42 ships today (from the action server).")
        return []
"""


def project_with_a_custom_action(root: Path) -> Path:
    project = write_project(
        root,
        intents={"greet": ["hello"], "order": ["order"]},
        responses={"greet": "Hello!", "order": "unused"},
    )
    domain = project / "domain.yml"
    domain.write_text(domain.read_text() + "actions:\n  - action_lookup_order\n")
    rules = project / "data" / "rules.yml"
    rules.write_text(
        rules.read_text().replace("action: utter_order", "action: action_lookup_order")
    )
    return project


def health(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_rasa_answers_through_the_action_server_botenv_points_it_at(tmp_path: Path) -> None:
    model = train(
        project_with_a_custom_action(tmp_path / "project"), tmp_path / "models", "actions-model"
    )
    # endpoints.yml exactly as the operator renders it for this environment.
    spec = parse_environment(
        environment("shop", "bots", actionServer={"image": "registry.example.com/acme-actions:1"}),
        DEFAULT_IMAGE,
    )
    doc = endpoints(spec, model_url="", queue="", used_vars=set())
    url = doc["action_endpoint"]["url"]
    assert url == "http://rasa-shop-actions.bots.svc:5055/webhook"
    del doc["models"]  # this test loads its model from a file

    actions_dir = tmp_path / "actions"
    actions_dir.mkdir()
    (actions_dir / "actions.py").write_text(ACTIONS)
    port = free_port()
    # The Service routes rasa-shop-actions.bots.svc:5055 to a pod; here the action server
    # listens on loopback, so only host and port are mapped (the path stays as rendered).
    doc["action_endpoint"]["url"] = url.replace(
        "rasa-shop-actions.bots.svc:5055", f"127.0.0.1:{port}"
    )
    (tmp_path / "endpoints.yml").write_text(yaml.safe_dump(doc))
    log = (tmp_path / "actions.log").open("wb")
    sdk = subprocess.Popen(
        [str(rasa_python()), "-m", "rasa_sdk", "--actions", "actions", "--port", str(port)],
        cwd=actions_dir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        eventually(
            lambda: health(port),
            timeout=90,
            message="rasa-sdk /health (the readiness probe botenv renders)",
        )
        with RasaServer(
            model=model, endpoints=tmp_path / "endpoints.yml", workdir=tmp_path / "rasa"
        ) as rasa:
            rasa.wait_until_ready(timeout=180)
            assert rasa.reply("hello") == ["Hello!"]
            assert rasa.reply("order") == ["Order 42 ships today (from the action server)."]
    finally:
        sdk.terminate()
        sdk.wait(timeout=15)
