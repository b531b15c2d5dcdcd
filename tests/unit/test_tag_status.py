"""ModelTag status: the resolution against storage, its bounded history, the environments
using it, and what happens when the model cannot be resolved."""

from __future__ import annotations

from botenv.controller.tag import tag_status
from botenv.render.problem import Problem
from botenv.storage import ObjectInfo

T0, T1, T2, T3 = (
    "2024-01-01T00:00:00Z",
    "2024-01-02T00:00:00Z",
    "2024-01-03T00:00:00Z",
    "2024-01-04T00:00:00Z",
)


def status(
    previous: dict,
    model: str,
    *,
    digest: str = "",
    problem: Problem | None = None,
    timestamp: str,
    environments: list[str] | None = None,
    history_limit: int = 10,
    generation: int = 1,
) -> dict:
    """The next status when storage says `model` has `digest` (default: d-<model>), or,
    with a problem, when it could not be resolved."""
    resolved = (
        None if problem else ObjectInfo(key=model, digest=digest or f"d-{model}", size=len(model))
    )
    return tag_status(
        previous,
        resolved=resolved,
        model=model,
        problem=problem,
        environments=environments if environments is not None else [],
        generation=generation,
        history_limit=history_limit,
        timestamp=timestamp,
    )


def ready(s: dict) -> dict:
    return next(c for c in s["conditions"] if c["type"] == "Ready")


def test_first_resolution_records_digest_and_size_and_has_no_history():
    s = status({}, "m1.tar.gz", digest="abc", timestamp=T0, environments=["production"])
    assert (s["model"], s["digest"], s["size"], s["resolvedAt"]) == ("m1.tar.gz", "abc", 9, T0)
    assert s["history"] == []
    assert s["environments"] == ["production"]
    assert s["observedGeneration"] == 1
    assert (ready(s)["status"], ready(s)["reason"]) == ("True", "Resolved")
    assert "m1.tar.gz" in ready(s)["message"]


def test_moving_the_tag_pushes_the_previous_resolution_to_the_front_of_history():
    s1 = status({}, "m1.tar.gz", timestamp=T0)
    s2 = status(s1, "m2.tar.gz", timestamp=T1, generation=2)
    assert (s2["model"], s2["resolvedAt"]) == ("m2.tar.gz", T1)
    assert s2["history"] == [
        {"model": "m1.tar.gz", "digest": "d-m1.tar.gz", "size": 9, "resolvedAt": T0}
    ]
    s3 = status(s2, "m3.tar.gz", timestamp=T2, generation=3)
    assert [h["model"] for h in s3["history"]] == ["m2.tar.gz", "m1.tar.gz"]


def test_a_model_reuploaded_under_the_same_name_is_a_new_resolution():
    s1 = status({}, "m1.tar.gz", digest="old", timestamp=T0)
    s2 = status(s1, "m1.tar.gz", digest="new", timestamp=T1)
    assert (s2["digest"], s2["resolvedAt"]) == ("new", T1)
    assert s2["history"] == [{"model": "m1.tar.gz", "digest": "old", "size": 9, "resolvedAt": T0}]


def test_history_is_bounded():
    s = status({}, "m0.tar.gz", timestamp=T0, history_limit=3)
    for i in range(1, 10):
        s = status(s, f"m{i}.tar.gz", timestamp=f"2024-02-{i:02d}T00:00:00Z", history_limit=3)
    assert [h["model"] for h in s["history"]] == ["m8.tar.gz", "m7.tar.gz", "m6.tar.gz"]


def test_unchanged_resolution_writes_nothing_new():
    s1 = status({}, "m1.tar.gz", timestamp=T0)
    again = status(s1, "m1.tar.gz", timestamp=T2)
    assert again == s1


def test_a_missing_model_keeps_the_last_resolution_and_says_why():
    s1 = status({}, "m1.tar.gz", timestamp=T0, environments=["production"])
    missing = Problem("ModelNotFound", "model 'm2.tar.gz' not found at s3://models")
    bad = status(
        s1, "m2.tar.gz", problem=missing, timestamp=T1, environments=["production"], generation=2
    )
    assert (bad["model"], bad["digest"], bad["resolvedAt"]) == ("m1.tar.gz", "d-m1.tar.gz", T0)
    assert bad["history"] == []
    assert bad["observedGeneration"] == 2
    r = ready(bad)
    assert (r["status"], r["reason"], r["lastTransitionTime"]) == ("False", "ModelNotFound", T1)
    assert "m2.tar.gz" in r["message"] and "stays on m1.tar.gz" in r["message"]


def test_fixing_the_model_makes_it_ready_again():
    s1 = status({}, "m1.tar.gz", timestamp=T0)
    bad = status(s1, "typo.tar.gz", problem=Problem("ModelNotFound", "no"), timestamp=T1)
    fixed = status(bad, "m2.tar.gz", timestamp=T2)
    assert fixed["model"] == "m2.tar.gz"
    assert [h["model"] for h in fixed["history"]] == ["m1.tar.gz"]
    assert (ready(fixed)["status"], ready(fixed)["lastTransitionTime"]) == ("True", T2)


def test_unresolvable_from_the_start_has_no_model():
    bad = status({}, "m.tar.gz", problem=Problem("StorageUnavailable", "down"), timestamp=T0)
    assert "model" not in bad
    assert ready(bad)["status"] == "False"
    assert "no environment can start" in ready(bad)["message"]


def test_environments_are_listed_and_updated():
    s1 = status({}, "m1.tar.gz", timestamp=T0, environments=["production"])
    s2 = status(s1, "m1.tar.gz", timestamp=T1, environments=["production", "worker"])
    assert s2["environments"] == ["production", "worker"]
    assert ready(s2)["lastTransitionTime"] == T0


def test_rollback_to_an_earlier_model_is_recorded_as_a_move():
    s = status({}, "m1.tar.gz", timestamp=T0)
    s = status(s, "m2.tar.gz", timestamp=T1)
    s = status(s, "m1.tar.gz", timestamp=T3)
    assert s["model"] == "m1.tar.gz"
    assert [h["model"] for h in s["history"]] == ["m2.tar.gz", "m1.tar.gz"]


def with_image(
    previous: dict, model: str, image: str, *, timestamp: str, problem: Problem | None = None
) -> dict:
    resolved = None if problem else ObjectInfo(key=model, digest=f"d-{model}", size=len(model))
    return tag_status(
        previous,
        resolved=resolved,
        model=model,
        problem=problem,
        environments=[],
        generation=1,
        history_limit=10,
        timestamp=timestamp,
        action_server_image=image,
    )


def test_the_action_server_image_moves_with_the_model_and_is_kept_in_history():
    s1 = with_image({}, "m1.tar.gz", "actions:1", timestamp=T0)
    s2 = with_image(s1, "m2.tar.gz", "actions:2", timestamp=T1)
    assert (s2["model"], s2["actionServerImage"]) == ("m2.tar.gz", "actions:2")
    assert s2["history"][0] == {
        "model": "m1.tar.gz",
        "digest": "d-m1.tar.gz",
        "size": 9,
        "resolvedAt": T0,
        "actionServerImage": "actions:1",
    }


def test_a_new_action_server_image_alone_is_a_new_resolution():
    s1 = with_image({}, "m1.tar.gz", "actions:1", timestamp=T0)
    s2 = with_image(s1, "m1.tar.gz", "actions:1.1", timestamp=T1)
    assert (s2["actionServerImage"], s2["resolvedAt"]) == ("actions:1.1", T1)
    assert s2["history"][0]["actionServerImage"] == "actions:1"


def test_the_image_does_not_move_before_its_model_resolves():
    s1 = with_image({}, "m1.tar.gz", "actions:1", timestamp=T0)
    s2 = with_image(
        s1,
        "missing.tar.gz",
        "actions:2",
        timestamp=T1,
        problem=Problem("ModelNotFound", "no such model"),
    )
    assert (s2["model"], s2["actionServerImage"]) == ("m1.tar.gz", "actions:1")


def test_dropping_the_image_leaves_it_out_of_status():
    s1 = with_image({}, "m1.tar.gz", "actions:1", timestamp=T0)
    s2 = with_image(s1, "m1.tar.gz", "", timestamp=T1)
    assert "actionServerImage" not in s2
