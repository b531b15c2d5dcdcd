"""One BotEnvironment reconcile on a fake API server: the writes it asks for."""

from __future__ import annotations

import asyncio
import base64

import pytest

from botenv.controller import environment
from botenv.render import conditions as cond
from botenv.render.problem import Retry
from tests.unit.builders import environment as environment_body
from tests.unit.builders import tag
from tests.unit.reconcile_fakes import FakeKube, state

MODEL, NEW_MODEL = "20190506-100418.tar.gz", "20240101-000000.tar.gz"
TOKEN = {"token": base64.b64encode(b"s3cret").decode()}
BROKER = {"host": "rabbitmq", "queue": "events", "secretRef": {"name": "rabbitmq"}}
BROKER_SECRET = {
    "username": base64.b64encode(b"u").decode(),
    "password": base64.b64encode(b"p").decode(),
}


def resolved(model: str = MODEL, **fields: object) -> dict:
    body = tag(model=model, provider="http", url="http://models.example.com/", **fields)
    body["status"] = {"model": model, "digest": f"sha256:{model}"}
    return body


def run(
    kube: FakeKube,
    *environments: dict,
    tags: tuple[dict, ...] = (resolved(),),
    children: tuple[dict, ...] = (),
    name: str = "production",
) -> None:
    asyncio.run(
        environment.reconcile(
            state(kube, environments=environments, tags=tags, children=children), "bots", name
        )
    )


def ready(status: dict) -> dict:
    return cond.get(status["conditions"], cond.READY)


def degraded(status: dict) -> dict:
    return cond.get(status["conditions"], cond.DEGRADED)


def test_happy_path_creates_the_pull_token_then_applies_every_child_and_reports():
    kube = FakeKube()
    run(kube, environment_body())
    assert [(verb, kind) for verb, kind, *_ in kube.writes[:4]] == [
        ("create", "Secret"),
        ("apply", "ConfigMap"),
        ("apply", "Service"),
        ("apply", "Deployment"),
    ]
    deploy = kube.written("apply", "Deployment")[0]
    assert deploy["metadata"]["name"] == "rasa-production"
    [status] = kube.written("status", "BotEnvironment")
    assert status["model"] == {"tag": "production", "name": MODEL, "digest": f"sha256:{MODEL}"}
    assert status["pullToken"]["secret"] == "rasa-production-pull"
    assert degraded(status)["status"] == "False"
    assert ready(status)["reason"] == "RollingOut"  # no Deployment status yet
    assert ("Normal", "ModelChanged") in kube.events()


def test_a_missing_secret_applies_nothing_and_says_which():
    kube = FakeKube()
    run(kube, environment_body(auth={"tokenSecretRef": {"name": "rasa-auth"}}))
    assert kube.written("apply") == []
    [status] = kube.written("status", "BotEnvironment")
    assert degraded(status)["reason"] == "SecretMissing"
    assert "rasa-auth" in degraded(status)["message"]
    # (and the in-memory tracker's warning, tests/unit/test_risks.py)
    assert kube.events() == [("Warning", "SecretMissing"), ("Warning", "ConversationsLostOnRoll")]


def test_a_secret_that_exists_is_read_and_its_token_used():
    kube = FakeKube(secrets={"rasa-auth": TOKEN})
    run(kube, environment_body(auth={"tokenSecretRef": {"name": "rasa-auth"}}))
    assert len(kube.written("apply", "Deployment")) == 1
    assert degraded(kube.written("status")[0])["status"] == "False"


def test_a_queue_conflict_leaves_the_younger_environment_unapplied():
    kube = FakeKube(secrets={"rabbitmq": BROKER_SECRET})
    older = environment_body(
        "first", created="2024-01-01T00:00:00Z", eventBroker=BROKER, modelTag="production"
    )
    younger = environment_body(
        "second", created="2024-06-01T00:00:00Z", eventBroker=BROKER, modelTag="production"
    )
    run(kube, older, younger, name="second")
    assert kube.written("apply") == [] and kube.written("create") == []
    [status] = kube.written("status", "BotEnvironment")
    assert degraded(status)["reason"] == "QueueConflict"
    assert "bots/first" in degraded(status)["message"]
    assert kube.events() == [("Warning", "QueueConflict"), ("Warning", "ConversationsLostOnRoll")]


def test_a_tag_move_rolls_the_deployment_to_the_new_model():
    kube = FakeKube()
    run(kube, environment_body())
    first = kube.written("apply", "Deployment")[0]
    applied = kube.written("status")[0]
    secret = kube.written("create", "Secret")[0]
    live = [
        {**secret, "metadata": {**secret["metadata"], "resourceVersion": "1"}},
        *(
            dict(c, metadata={**c["metadata"], "resourceVersion": "1"})
            for c in kube.written("apply")
        ),
    ]

    kube = FakeKube()
    run(kube, environment_body(status=applied), tags=(resolved(NEW_MODEL),), children=tuple(live))
    assert kube.written("create") == []  # the pull token exists already
    [deploy] = kube.written("apply", "Deployment")
    assert deploy != first
    assert NEW_MODEL in str(deploy["spec"]["template"])
    [status] = kube.written("status", "BotEnvironment")
    assert status["model"]["name"] == NEW_MODEL
    assert ("Normal", "ModelChanged") in kube.events()


def test_an_api_failure_is_reported_then_retried():
    kube = FakeKube()
    kube.fail[("apply", "Deployment")] = 500
    with pytest.raises(Retry) as failed:
        run(kube, environment_body())
    assert failed.value.problem.reason == "ApplyFailed"
    assert kube.written("apply", "Deployment") == []
    [status] = kube.written("status", "BotEnvironment")
    assert degraded(status)["reason"] == "ApplyFailed"
    assert "(500)" in degraded(status)["message"]
    assert ("Warning", "ApplyFailed") in kube.events()


def test_an_unreadable_secret_is_reported_then_retried():
    kube = FakeKube()
    kube.fail[("get", "Secret")] = 403
    with pytest.raises(Retry):
        run(kube, environment_body(auth={"tokenSecretRef": {"name": "rasa-auth"}}))
    assert kube.written("apply") == []
    assert degraded(kube.written("status")[0])["reason"] == "SecretUnreadable"


def test_a_missing_tag_is_reported_and_nothing_is_written_to_children():
    kube = FakeKube()
    run(kube, environment_body(), tags=())
    assert kube.written("apply") == [] and kube.written("create") == []
    assert degraded(kube.written("status")[0])["reason"] == "TagNotFound"


def test_the_pull_token_of_a_deleted_environment_is_deleted():
    kube = FakeKube()
    run(kube, environment_body())
    secret = kube.written("create", "Secret")[0]
    kube = FakeKube()
    asyncio.run(environment.reconcile(state(kube, children=(secret,)), "bots", "production"))
    assert [(verb, kind, name) for verb, kind, _, name, _ in kube.writes] == [
        ("delete", "Secret", "rasa-production-pull")
    ]


def test_a_pull_token_that_cannot_be_written_is_reported_before_a_missing_secret():
    kube = FakeKube()
    kube.fail[("create", "Secret")] = 500
    with pytest.raises(Retry):
        run(kube, environment_body(auth={"tokenSecretRef": {"name": "rasa-auth"}}))
    assert degraded(kube.written("status")[0])["reason"] == "ApplyFailed"
