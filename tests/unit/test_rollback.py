"""Which model an environment's children carry after a roll that failed (render.rollback)."""

from __future__ import annotations

import datetime

from botenv.api.tag import StorageSpec
from botenv.render import rollback
from botenv.render.deployment import DIGEST_ANNOTATION, ModelRef

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.UTC)
NEW = ModelRef(tag="production", model="m2.tar.gz", digest="d2", storage=StorageSpec("http"))
SERVED = {"tag": "production", "name": "m1.tar.gz", "digest": "d1"}


def stalled(digest: str = "d2", reason: str = "ProgressDeadlineExceeded") -> dict:
    return {
        "spec": {"template": {"metadata": {"annotations": {DIGEST_ANNOTATION: digest}}}},
        "status": {
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": reason,
                    "message": 'ReplicaSet "rasa-production-2" has timed out progressing.',
                }
            ]
        },
    }


NOT_READY_POD = {
    "metadata": {"name": "rasa-production-2-abc"},
    "status": {
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": "rasa", "state": {"running": {}}}],
    },
}


def decide(**overrides):
    args = {
        "tag_model": NEW,
        "rollout": "Restart",
        "served": SERVED,
        "refused": None,
        "deployment": stalled(),
        "pods": [NOT_READY_POD],
        "tag_resolved_at": "2026-12-04T11:00:00Z",
        "timeout_seconds": 300,
        "verifying": True,
        "now": NOW,
    }
    return rollback.decide(**{**args, **overrides})


def test_a_stalled_roll_to_the_new_model_goes_back_to_the_served_one():
    decision = decide()
    assert (decision.model.model, decision.model.digest) == ("m1.tar.gz", "d1")
    assert decision.model.tag == "production" and not decision.pinned
    refused = decision.refused
    assert (refused["name"], refused["digest"], refused["reason"]) == (
        "m2.tar.gz",
        "d2",
        "RolledBack",
    )
    assert refused["refusedAt"] == "2026-12-04T12:00:00Z"
    assert "did not become ready on every replica within 300 s" in refused["message"]
    assert "has timed out progressing" in refused["message"]
    assert "rasa-production-2-abc: running, not ready (no model loaded)" in refused["message"]
    assert "back on model m1.tar.gz" in refused["message"]


def test_a_roll_under_way_or_of_other_content_is_left_alone():
    assert decide(deployment=stalled(reason="ReplicaSetUpdated")).model is NEW
    assert decide(deployment=stalled(digest="d0")).model is NEW  # stalled on something else
    assert decide(deployment=None).model is NEW
    # Nothing to go back to: the first model, or the tag's model is the one served.
    assert decide(served=None).model is NEW
    assert decide(served={**SERVED, "digest": "d2"}).model is NEW
    # Just moved to another tag: what it served was the other tag's.
    assert decide(served={**SERVED, "tag": "experimental"}, rollout="HotSwap").model is NEW


def test_a_refused_digest_is_not_tried_again_until_the_tag_moves():
    refused = decide().refused
    again = decide(refused=refused, deployment=None, pods=[])
    assert again.model.digest == "d1" and again.refused == refused
    moved = ModelRef(tag="production", model="m3.tar.gz", digest="d3", storage=NEW.storage)
    onwards = decide(tag_model=moved, refused=refused, deployment=None)
    assert onwards.model is moved and onwards.refused is None


def test_hotswap_goes_back_once_the_pods_have_not_loaded_it_in_time_and_is_pinned():
    late = decide(rollout="HotSwap", deployment=None)
    assert late.model.digest == "d1" and late.pinned
    assert "did not all load it within 300 s of the tag's move" in late.refused["message"]
    in_time = decide(rollout="HotSwap", deployment=None, tag_resolved_at="2026-12-04T11:58:00Z")
    assert in_time.model is NEW and not in_time.pinned
    # Without the model check botenv cannot tell what the pods serve: no rollback.
    assert decide(rollout="HotSwap", verifying=False).model is NEW


def test_report_sets_degraded_rolled_back_and_clears_it():
    refused = decide().refused
    status = {"conditions": [{"type": "Degraded", "status": "False", "reason": "AsExpected"}]}
    reported = rollback.report(status, {}, refused, 7, "2026-12-04T12:00:00Z")
    assert reported["refusedModel"] == refused
    degraded = next(c for c in reported["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RolledBack")
    assert "refusedModel" not in rollback.report(reported, reported, None, 8, "x")


def test_the_tag_lists_the_environments_that_went_back_from_its_model():
    from botenv.controller.tag import tag_status
    from botenv.storage.base import ObjectInfo

    refused = {"name": "m2.tar.gz", "digest": "d2", "message": "did not become ready"}
    status = tag_status(
        {},
        resolved=ObjectInfo(key="m2.tar.gz", digest="d2", size=2),
        model="m2.tar.gz",
        problem=None,
        environments=["canary", "production"],
        generation=1,
        history_limit=5,
        timestamp="2026-12-04T12:00:00Z",
        # canary went back from an older digest: not this model's refusal
        rolled_back={"production": refused, "canary": {**refused, "digest": "d1"}},
    )
    assert status["refusedBy"] == [
        {"environment": "production", "reason": "RolledBack", "message": "did not become ready"}
    ]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "refused by production (it did not get ready on their pods in time" in ready["message"]
