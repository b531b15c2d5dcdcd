"""Status of a BotEnvironment: conditions, rollout progress, and the Events they emit."""

from __future__ import annotations

from botenv.render import conditions as cond
from botenv.render import status as st

T0, T1, T2 = "2024-01-01T00:00:00Z", "2024-01-01T00:05:00Z", "2024-01-01T00:10:00Z"


def deployment(
    *,
    replicas: int = 2,
    updated: int = 2,
    ready: int = 2,
    available: int = 2,
    total: int | None = None,
    generation: int = 3,
    observed: int = 3,
    conditions: list[dict] | None = None,
) -> dict:
    return {
        "metadata": {"name": "rasa-production", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": updated if total is None else total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "conditions": conditions or [],
        },
    }


def by_type(conditions: list[dict]) -> dict[str, dict]:
    return {c["type"]: c for c in conditions}


def status_of(
    *,
    previous: dict | None = None,
    problem: st.Problem | None = None,
    deploy: dict | None = None,
    applied: dict | None = None,
    timestamp: str = T0,
    generation: int = 1,
    replicas: int = 2,
) -> dict:
    return st.environment_status(
        previous=previous or {},
        generation=generation,
        problem=problem,
        deployment=deploy,
        replicas=replicas,
        applied=applied,
        timestamp=timestamp,
    )


APPLIED = {
    "model": {"tag": "production", "name": "m1.tar.gz", "digest": "d1"},
    "modelServerUrl": "http://ms/models/bots/tags/production",
    "queue": "rasa_bots_production_events",
    "endpoint": "http://rasa-production.bots.svc:5005",
}


# --- conditions.merge ----------------------------------------------------------------------


def test_merge_keeps_the_transition_time_while_status_is_unchanged():
    first = cond.merge(None, [cond.condition("Ready", False, "RollingOut", "a", 1)], T0)
    again = cond.merge(first, [cond.condition("Ready", False, "SecretMissing", "b", 2)], T1)
    assert again[0]["lastTransitionTime"] == T0
    assert again[0]["reason"] == "SecretMissing"  # reason and message still follow the spec
    assert again[0]["observedGeneration"] == 2


def test_merge_resets_the_transition_time_when_status_changes():
    first = cond.merge(None, [cond.condition("Ready", False, "RollingOut", "a", 1)], T0)
    flipped = cond.merge(first, [cond.condition("Ready", True, "Ready", "ok", 1)], T1)
    assert flipped[0]["lastTransitionTime"] == T1
    assert flipped[0]["status"] == "True"


def test_merge_stamps_new_conditions():
    merged = cond.merge([], [cond.condition("Degraded", False, "AsExpected", "", 1)], T2)
    assert merged[0]["lastTransitionTime"] == T2


def test_condition_status_strings():
    assert cond.condition("Ready", True, "R", "m", 4) == {
        "type": "Ready",
        "status": "True",
        "reason": "R",
        "message": "m",
        "observedGeneration": 4,
    }
    assert cond.condition("Ready", False, "R", "m", 4)["status"] == "False"


# --- rollout -------------------------------------------------------------------------------


def test_no_deployment_yet_is_progressing():
    progress = st.rollout(None, 2)
    assert not progress.done and not progress.stalled
    conditions = by_type(st.conditions(None, progress, 1))
    assert conditions["Progressing"]["status"] == "True"
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Degraded"]["status"] == "False"


def test_deployment_controller_has_not_seen_the_new_spec():
    progress = st.rollout(deployment(generation=4, observed=3), 2)
    assert not progress.done
    assert "new spec" in progress.message


def test_rollout_in_progress_messages():
    assert (
        st.rollout(deployment(updated=1, available=1), 2).message
        == "rolling out: 1 of 2 replicas updated"
    )
    assert (
        st.rollout(deployment(updated=2, total=3), 2).message
        == "rolling out: 1 old replicas terminating"
    )
    assert (
        st.rollout(deployment(available=1), 2).message
        == "rolling out: 1 of 2 updated replicas available"
    )
    for d in (deployment(updated=1), deployment(total=3), deployment(available=1)):
        assert not st.rollout(d, 2).done


def test_complete_rollout_is_ready():
    progress = st.rollout(deployment(), 2)
    assert progress.done
    conditions = by_type(st.conditions(None, progress, 3))
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["reason"] == "Ready"
    assert conditions["Progressing"]["status"] == "False"
    assert conditions["Degraded"]["status"] == "False"
    assert all(c["observedGeneration"] == 3 for c in conditions.values())


def test_a_problem_is_degraded_and_not_ready():
    problem = st.Problem("SecretMissing", "Secret 'db' not found")
    conditions = by_type(st.conditions(problem, st.rollout(deployment(), 2), 1))
    assert conditions["Degraded"]["status"] == "True"
    assert conditions["Degraded"]["reason"] == "SecretMissing"
    assert conditions["Degraded"]["message"] == "Secret 'db' not found"
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "SecretMissing"


def test_progress_deadline_exceeded_is_a_stalled_rollout():
    stalled = deployment(
        updated=1,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "rasa-production-abc" has timed out progressing.',
            }
        ],
    )
    progress = st.rollout(stalled, 2)
    assert progress.stalled and not progress.done
    conditions = by_type(st.conditions(None, progress, 1))
    assert conditions["Degraded"]["status"] == "True"
    assert conditions["Degraded"]["reason"] == "RolloutStalled"
    assert "timed out" in conditions["Degraded"]["message"]
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Progressing"]["status"] == "False"


def test_scaled_to_zero_is_done():
    assert st.rollout(deployment(replicas=0, updated=0, ready=0, available=0), 0).done


# --- environment_status --------------------------------------------------------------------


def test_applied_fields_and_replica_counts():
    status = status_of(deploy=deployment(ready=1, available=1), applied=APPLIED)
    assert status["model"] == APPLIED["model"]
    assert status["queue"] == "rasa_bots_production_events"
    assert status["endpoint"] == "http://rasa-production.bots.svc:5005"
    assert status["modelServerUrl"] == APPLIED["modelServerUrl"]
    assert (status["replicas"], status["readyReplicas"]) == (2, 1)
    assert status["observedGeneration"] == 1
    assert {c["type"] for c in status["conditions"]} == {"Ready", "Progressing", "Degraded"}


def test_empty_applied_fields_are_left_out():
    status = status_of(
        deploy=deployment(), applied={**APPLIED, "queue": None, "modelServerUrl": None}
    )
    assert "queue" not in status and "modelServerUrl" not in status


def test_a_problem_keeps_what_is_running_in_status():
    good = status_of(deploy=deployment(), applied=APPLIED, timestamp=T0)
    bad = status_of(
        previous=good,
        problem=st.Problem("TagNotFound", "no tag"),
        deploy=deployment(),
        applied=None,
        timestamp=T1,
        generation=2,
    )
    for key in ("model", "modelServerUrl", "queue", "endpoint"):
        assert bad[key] == good[key]
    assert bad["observedGeneration"] == 2
    degraded = by_type(bad["conditions"])["Degraded"]
    assert (degraded["status"], degraded["reason"], degraded["lastTransitionTime"]) == (
        "True",
        "TagNotFound",
        T1,
    )


def test_status_is_identical_when_nothing_changed():
    """An idle operator writes nothing: the same inputs give the same status."""
    first = status_of(deploy=deployment(), applied=APPLIED, timestamp=T0)
    again = status_of(previous=first, deploy=deployment(), applied=APPLIED, timestamp=T1)
    assert again == first


# --- events --------------------------------------------------------------------------------


def test_no_events_when_nothing_changed():
    current = status_of(deploy=deployment(), applied=APPLIED)
    assert st.events(current, current) == []


def test_becoming_degraded_is_a_warning():
    good = status_of(deploy=deployment(), applied=APPLIED, timestamp=T0)
    bad = status_of(
        previous=good,
        problem=st.Problem("QueueConflict", "queue taken"),
        deploy=deployment(),
        timestamp=T1,
    )
    assert ("Warning", "QueueConflict", "queue taken") in st.events(good, bad)
    assert not any(t == "Warning" for t, _, _ in st.events(bad, bad))


def test_a_new_degraded_reason_warns_again():
    one = status_of(problem=st.Problem("SecretMissing", "a"))
    two = status_of(previous=one, problem=st.Problem("TagNotFound", "b"))
    assert ("Warning", "TagNotFound", "b") in st.events(one, two)


def test_recovering_is_announced():
    bad = status_of(problem=st.Problem("SecretMissing", "a"), deploy=deployment())
    good = status_of(previous=bad, deploy=deployment(), applied=APPLIED, timestamp=T1)
    reasons = [(t, r) for t, r, _ in st.events(bad, good)]
    assert ("Normal", "Recovered") in reasons
    assert ("Normal", "Ready") in reasons


def test_model_change_is_announced():
    old = status_of(deploy=deployment(), applied=APPLIED)
    moved = {**APPLIED, "model": {"tag": "production", "name": "m2.tar.gz", "digest": "d2"}}
    new = status_of(previous=old, deploy=deployment(), applied=moved, timestamp=T1)
    changed = [e for e in st.events(old, new) if e[1] == "ModelChanged"]
    assert len(changed) == 1
    assert changed[0][0] == "Normal"
    assert "m2.tar.gz" in changed[0][2] and "m1.tar.gz" in changed[0][2]


def test_first_model_is_announced_without_a_previous_one():
    new = status_of(deploy=deployment(), applied=APPLIED)
    changed = [e for e in st.events({}, new) if e[1] == "ModelChanged"]
    assert len(changed) == 1 and "was" not in changed[0][2]


def test_events_tell_the_action_server_went_first() -> None:
    waiting = st.conditions(
        st.Problem(
            "WaitingForActionServer", "Rasa waits for action server rasa-p-actions", degraded=False
        ),
        st.Rollout(True, "1 of 1 replicas serve the model"),
        2,
    )
    before = {
        "model": {"tag": "p", "name": "m1"},
        "actionServer": {"image": "a:1"},
        "conditions": cond.merge(None, st.conditions(None, st.Rollout(True, "ok"), 1), "t0"),
    }
    held = {**before, "conditions": cond.merge(before["conditions"], waiting, "t1")}
    assert (
        "Normal",
        "WaitingForActionServer",
        "Rasa waits for action server rasa-p-actions",
    ) in st.events(before, held)
    after = {
        "model": {"tag": "p", "name": "m2"},
        "actionServer": {"image": "a:2"},
        "conditions": cond.merge(
            held["conditions"], st.conditions(None, st.Rollout(False, "rolling"), 2), "t2"
        ),
    }
    reasons = [reason for _, reason, _ in st.events(held, after)]
    assert reasons.index("ActionServerChanged") < reasons.index("ModelChanged")


def test_ready_only_when_every_ready_pod_serves_the_model() -> None:
    progress, listing = st.served("acme/m2.tar.gz", {"p1": "m2.tar.gz", "p2": "m2.tar.gz"}, 2)
    assert progress.done and progress.message == "2 of 2 replicas serve model m2.tar.gz"
    assert listing == [{"name": "m2.tar.gz", "replicas": 2}]


def test_pods_on_different_models_are_progressing_with_counts() -> None:
    progress, listing = st.served("m2.tar.gz", {"p1": "m2.tar.gz", "p2": "m1.tar.gz", "p3": ""}, 3)
    assert not progress.done
    assert progress.message == (
        "1 of 3 ready replicas serve model m2.tar.gz (others: 1 (no answer), 1 m1.tar.gz)"
    )
    assert {"name": "m1.tar.gz", "replicas": 1} in listing


def test_fewer_ready_pods_seen_than_replicas_is_not_done() -> None:
    progress, _ = st.served("m2.tar.gz", {}, 2)
    assert not progress.done


def test_status_reports_what_the_pods_serve() -> None:
    deploy = deployment(replicas=2, updated=2, available=2)
    status = st.environment_status(
        previous={},
        generation=1,
        problem=None,
        deployment=deploy,
        replicas=2,
        applied={"model": {"tag": "p", "name": "m2.tar.gz"}},
        timestamp="t",
        answers={"a": "m1.tar.gz", "b": "m2.tar.gz"},
    )
    assert status["servedModels"] == [
        {"name": "m1.tar.gz", "replicas": 1},
        {"name": "m2.tar.gz", "replicas": 1},
    ]
    ready = by_type(status["conditions"])["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "RollingOut")


def test_verified_model_moves_only_once_every_pod_serves_it() -> None:
    before = {"model": {"tag": "p", "name": "m1.tar.gz"}}
    deploy = deployment(replicas=2, updated=2, available=2)
    mixed = st.environment_status(
        previous=before,
        generation=2,
        problem=None,
        deployment=deploy,
        replicas=2,
        applied={"model": {"tag": "p", "name": "m2.tar.gz"}},
        timestamp="t",
        answers={"a": "m1.tar.gz", "b": "m2.tar.gz"},
        verifying=True,
    )
    assert mixed["model"]["name"] == "m1.tar.gz"
    progressing = by_type(mixed["conditions"])["Progressing"]
    assert progressing["message"].startswith("rolling to model m2.tar.gz: 1 of 2 ready")
    done = st.environment_status(
        previous=mixed,
        generation=2,
        problem=None,
        deployment=deploy,
        replicas=2,
        applied={"model": {"tag": "p", "name": "m2.tar.gz"}},
        timestamp="t",
        answers={"a": "m2.tar.gz", "b": "m2.tar.gz"},
        verifying=True,
    )
    assert done["model"]["name"] == "m2.tar.gz"
    assert (
        "Normal",
        "ModelChanged",
        "serving model m2.tar.gz of tag p (was m1.tar.gz)",
    ) in st.events(mixed, done)
