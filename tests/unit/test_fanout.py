"""Which work-queue keys an event touches: only the objects that depend on it."""

from __future__ import annotations

from botenv.controller.fanout import Fanout
from tests.unit.builders import environment

BROKER = {"host": "rabbitmq", "queue": "events", "secretRef": {"name": "rabbitmq"}}
CONFLICT = {"conditions": [{"type": "Degraded", "status": "True", "reason": "QueueConflict"}]}


def test_an_environment_touches_itself_and_its_tag():
    fan = Fanout()
    assert fan.environment("bots", "a", environment("a", modelTag="prod"), deleted=False) == [
        ("env", "bots", "a"),
        ("tag", "bots", "prod"),
    ]


def test_an_environment_that_moves_touches_the_tag_it_left():
    fan = Fanout()
    fan.environment("bots", "a", environment("a", modelTag="old"), deleted=False)
    keys = fan.environment("bots", "a", environment("a", modelTag="new"), deleted=False)
    assert keys == [("env", "bots", "a"), ("tag", "bots", "new"), ("tag", "bots", "old")]
    assert fan.tag("bots", "old") == [("tag", "bots", "old")]
    assert fan.tag("bots", "new") == [("tag", "bots", "new"), ("env", "bots", "a")]


def test_a_tag_touches_the_environments_in_its_namespace_that_name_it():
    fan = Fanout()
    for name, namespace, tag in (
        ("a", "bots", "prod"),
        ("b", "bots", "prod"),
        ("c", "bots", "dev"),
        ("d", "other", "prod"),
    ):
        fan.environment(namespace, name, environment(name, namespace, modelTag=tag), deleted=False)
    assert fan.tag("bots", "prod") == [
        ("tag", "bots", "prod"),
        ("env", "bots", "a"),
        ("env", "bots", "b"),
    ]


def test_a_deleted_environment_is_forgotten_by_its_tag():
    fan = Fanout()
    body = environment("a", modelTag="prod")
    fan.environment("bots", "a", body, deleted=False)
    assert fan.environment("bots", "a", body, deleted=True) == [
        ("env", "bots", "a"),
        ("tag", "bots", "prod"),
    ]
    assert fan.tag("bots", "prod") == [("tag", "bots", "prod")]


def test_the_holder_of_a_queue_wakes_the_environments_waiting_for_it():
    fan = Fanout()
    fan.environment("bots", "holder", environment("holder", eventBroker=BROKER), deleted=False)
    fan.environment(
        "bots", "waiter", environment("waiter", eventBroker=BROKER, status=CONFLICT), deleted=False
    )
    fan.environment(
        "bots",
        "elsewhere",
        environment("elsewhere", eventBroker={**BROKER, "host": "other-rabbitmq"}, status=CONFLICT),
        deleted=False,
    )
    keys = fan.environment(
        "bots", "holder", environment("holder", eventBroker=BROKER), deleted=True
    )
    assert ("env", "bots", "waiter") in keys
    assert ("env", "bots", "elsewhere") not in keys  # another broker: not its queue


def test_a_holder_that_moves_to_another_queue_wakes_the_waiters_of_the_old_one():
    fan = Fanout()
    fan.environment("bots", "holder", environment("holder", eventBroker=BROKER), deleted=False)
    fan.environment(
        "bots", "waiter", environment("waiter", eventBroker=BROKER, status=CONFLICT), deleted=False
    )
    moved = environment("holder", eventBroker={**BROKER, "queue": "other"})
    assert ("env", "bots", "waiter") in fan.environment("bots", "holder", moved, deleted=False)


def test_a_waiter_that_got_its_queue_is_no_longer_woken():
    fan = Fanout()
    fan.environment(
        "bots", "waiter", environment("waiter", eventBroker=BROKER, status=CONFLICT), deleted=False
    )
    fan.environment("bots", "waiter", environment("waiter", eventBroker=BROKER), deleted=False)
    keys = fan.environment(
        "bots", "holder", environment("holder", eventBroker=BROKER), deleted=False
    )
    assert keys == [("env", "bots", "holder"), ("tag", "bots", "holder")]


def test_an_environment_that_comes_to_serve_its_model_touches_its_tag():
    """The tag's status.servedAt waits for the last of its environments to serve."""
    fan = Fanout()
    rolling = {
        "model": {"name": "v2.tar.gz"},
        "conditions": [{"type": "Ready", "status": "False", "reason": "RollingOut"}],
    }
    serving = {**rolling, "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]}
    fan.environment("bots", "a", environment("a", modelTag="prod", status=rolling), deleted=False)
    assert fan.environment(
        "bots", "a", environment("a", modelTag="prod", status=rolling), deleted=False
    ) == [("env", "bots", "a")]
    assert fan.environment(
        "bots", "a", environment("a", modelTag="prod", status=serving), deleted=False
    ) == [("env", "bots", "a"), ("tag", "bots", "prod")]
