"""The Warning condition of a spec that will lose conversations without failing."""

from __future__ import annotations

import pytest

from botenv.api import parse_environment
from botenv.render import risks
from tests.unit.builders import environment


def spec(**fields):
    return parse_environment(environment(**fields), default_image="rasa/rasa:3.6.21-full")


@pytest.mark.parametrize(
    ("fields", "warned"),
    [
        ({}, True),  # the defaults: memory tracker, rollout Restart
        ({"rollout": "HotSwap"}, False),
        ({"trackerStore": {"type": "redis", "host": "redis.db"}}, False),
        ({"trackerStore": {"type": "sql", "host": "pg.db", "db": "rasa"}}, False),
    ],
)
def test_memory_tracker_with_restart_warns_what_is_lost(fields, warned):
    warning = risks.conversation_loss(spec(**fields))
    assert (warning is not None) == warned
    if warning:
        reason, message = warning
        assert reason == "ConversationsLostOnRoll"
        assert "every conversation in progress, with its history, is lost" in message
        assert "spec.trackerStore is memory and spec.rollout is Restart" in message


def test_the_warning_condition_comes_and_goes_with_one_event():
    warning = risks.conversation_loss(spec())
    base = {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]}
    warned = risks.with_warning(base, {}, warning, 3, "2026-01-01T00:00:00Z")
    condition = warned["conditions"][-1]
    assert condition["type"] == "Warning" and condition["status"] == "True"
    assert (condition["reason"], condition["observedGeneration"]) == ("ConversationsLostOnRoll", 3)
    assert risks.warning_events({}, warned) == [
        ("Warning", "ConversationsLostOnRoll", condition["message"])
    ]
    # Once told, not again; and once fixed, the condition is gone.
    assert risks.warning_events(warned, warned) == []
    assert risks.with_warning(base, warned, None, 4, "2026-01-02T00:00:00Z") == base
