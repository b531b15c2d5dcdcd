"""ModelTag status: the resolution, its bounded history and the environments using it."""

from __future__ import annotations

from botenv.controller.tag import tag_status

T0, T1, T2, T3 = (
    "2024-01-01T00:00:00Z",
    "2024-01-02T00:00:00Z",
    "2024-01-03T00:00:00Z",
    "2024-01-04T00:00:00Z",
)


def status(
    previous: dict,
    model: str | None,
    *,
    problem: str = "",
    timestamp: str,
    environments: list[str] | None = None,
    history_limit: int = 10,
    generation: int = 1,
) -> dict:
    return tag_status(
        previous,
        model=model,
        problem=problem,
        environments=environments if environments is not None else [],
        generation=generation,
        history_limit=history_limit,
        timestamp=timestamp,
    )


def ready(s: dict) -> dict:
    return next(c for c in s["conditions"] if c["type"] == "Ready")


def test_first_resolution_has_no_history():
    s = status({}, "m1.tar.gz", timestamp=T0, environments=["production"])
    assert s["model"] == "m1.tar.gz"
    assert s["resolvedAt"] == T0
    assert s["history"] == []
    assert s["environments"] == ["production"]
    assert s["observedGeneration"] == 1
    assert (ready(s)["status"], ready(s)["reason"]) == ("True", "Resolved")
    assert "m1.tar.gz" in ready(s)["message"]


def test_moving_the_tag_pushes_the_previous_model_to_the_front_of_history():
    s1 = status({}, "m1.tar.gz", timestamp=T0)
    s1["digest"] = "d1"  # filled in by whoever resolved it
    s2 = status(s1, "m2.tar.gz", timestamp=T1, generation=2)
    assert s2["model"] == "m2.tar.gz"
    assert s2["resolvedAt"] == T1
    assert s2["history"] == [{"model": "m1.tar.gz", "digest": "d1", "resolvedAt": T0}]
    s3 = status(s2, "m3.tar.gz", timestamp=T2, generation=3)
    assert [h["model"] for h in s3["history"]] == ["m2.tar.gz", "m1.tar.gz"]
    assert s3["history"][0] == {"model": "m2.tar.gz", "resolvedAt": T1}


def test_history_is_bounded():
    s = status({}, "m0.tar.gz", timestamp=T0, history_limit=3)
    for i in range(1, 10):
        s = status(s, f"m{i}.tar.gz", timestamp=f"2024-02-{i:02d}T00:00:00Z", history_limit=3)
    assert [h["model"] for h in s["history"]] == ["m8.tar.gz", "m7.tar.gz", "m6.tar.gz"]


def test_unchanged_model_keeps_resolution_and_history():
    s1 = status({}, "m1.tar.gz", timestamp=T0)
    s2 = status(s1, "m2.tar.gz", timestamp=T1)
    s2["digest"], s2["size"] = "d2", 42
    again = status(s2, "m2.tar.gz", timestamp=T2)
    assert again == s2  # nothing to write


def test_an_invalid_spec_keeps_the_last_resolution():
    s1 = status({}, "m1.tar.gz", timestamp=T0, environments=["production"])
    s1["digest"] = "d1"
    bad = status(
        s1,
        None,
        problem="spec.storage.bucket: is required for provider s3",
        timestamp=T1,
        environments=["production"],
        generation=2,
    )
    assert bad["model"] == "m1.tar.gz"
    assert bad["digest"] == "d1"
    assert bad["resolvedAt"] == T0
    assert bad["history"] == []
    assert bad["observedGeneration"] == 2
    r = ready(bad)
    assert (r["status"], r["reason"]) == ("False", "InvalidSpec")
    assert "spec.storage.bucket" in r["message"]
    assert r["lastTransitionTime"] == T1


def test_fixing_the_spec_makes_it_ready_again():
    s1 = status({}, "m1.tar.gz", timestamp=T0)
    bad = status(s1, None, problem="spec.model: is required", timestamp=T1)
    fixed = status(bad, "m2.tar.gz", timestamp=T2)
    assert fixed["model"] == "m2.tar.gz"
    assert [h["model"] for h in fixed["history"]] == ["m1.tar.gz"]
    assert (ready(fixed)["status"], ready(fixed)["lastTransitionTime"]) == ("True", T2)


def test_invalid_from_the_start_has_no_model():
    bad = status({}, None, problem="spec.model: is required", timestamp=T0)
    assert "model" not in bad
    assert ready(bad)["status"] == "False"


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
