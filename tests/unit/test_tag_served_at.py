"""ModelTag status.servedAt: when every environment on the tag first served the tag's
current resolution, so servedAt - resolvedAt is the promotion time of the last move.

The verdicts ("serves") are the ones the promotion-latency metric uses
(controller.serving); the plan only decides when to record them."""

from __future__ import annotations

import asyncio

from botenv.controller import tag as tag_controller
from botenv.controller.tag import tag_status
from botenv.render.problem import Problem
from botenv.storage import ObjectInfo
from tests.unit.builders import environment, tag
from tests.unit.reconcile_fakes import FakeKube, state

T0, T1, T2, T3 = (
    "2024-01-01T00:00:00Z",
    "2024-01-01T00:02:13Z",
    "2024-01-01T01:00:00Z",
    "2024-01-02T00:00:00Z",
)
USERS = ["canary", "production"]
ALL = dict.fromkeys(USERS, True)


def status(
    previous: dict,
    model: str = "m1.tar.gz",
    *,
    timestamp: str,
    serving: dict[str, bool] | None = None,
    environments: list[str] | None = None,
    problem: Problem | None = None,
    rolled_back: dict | None = None,
) -> dict:
    resolved = None if problem else ObjectInfo(key=model, digest=f"d-{model}", size=len(model))
    return tag_status(
        previous,
        resolved=resolved,
        model=model,
        problem=problem,
        environments=USERS if environments is None else environments,
        generation=1,
        history_limit=10,
        timestamp=timestamp,
        serving=serving,
        rolled_back=rolled_back,
    )


def resolved_m1() -> dict:
    """m1 resolved at T0, its users not serving it yet."""
    s = status({}, timestamp=T0, serving={})
    assert "servedAt" not in s
    return s


def test_served_at_is_set_when_every_user_serves_the_resolution_and_kept_on_resync():
    s = resolved_m1()
    s = status(s, timestamp=T1, serving=ALL)
    assert (s["resolvedAt"], s["servedAt"]) == (T0, T1)
    # Resyncs later, also with users that stopped serving for a while: never moved.
    assert status(s, timestamp=T2, serving=ALL)["servedAt"] == T1
    assert status(s, timestamp=T2, serving={"canary": True})["servedAt"] == T1


def test_not_set_while_one_user_does_not_serve_it():
    s = resolved_m1()
    s = status(s, timestamp=T1, serving={"canary": True, "production": False})
    assert "servedAt" not in s
    s = status(s, timestamp=T1, serving={"canary": True})  # no verdict: not serving
    assert "servedAt" not in s
    assert status(s, timestamp=T2, serving=ALL)["servedAt"] == T2


def test_a_tag_without_environments_gets_none():
    s = status({}, timestamp=T0, environments=[])
    s = status(s, timestamp=T1, environments=[], serving={})
    assert "servedAt" not in s


def test_a_new_resolution_starts_without_it_and_history_keeps_each_moves():
    s = status(resolved_m1(), timestamp=T1, serving=ALL)
    # The verdicts are about the resolution in force before this reconcile (m1): the move
    # to m2 is not served by them.
    moved = status(s, "m2.tar.gz", timestamp=T2, serving=ALL)
    assert (moved["model"], moved["resolvedAt"]) == ("m2.tar.gz", T2)
    assert "servedAt" not in moved
    assert moved["history"][0]["model"] == "m1.tar.gz"
    assert (moved["history"][0]["resolvedAt"], moved["history"][0]["servedAt"]) == (T0, T1)
    assert status(moved, "m2.tar.gz", timestamp=T3, serving=ALL)["servedAt"] == T3
    # A move never served leaves a history entry without it.
    again = status(moved, "m3.tar.gz", timestamp=T3, serving={})
    assert "servedAt" not in again["history"][0]


def test_a_refused_model_never_gets_one():
    refused = {"digest": "d-m1.tar.gz", "message": "did not get ready"}
    s = status(resolved_m1(), timestamp=T1, serving=ALL, rolled_back={"canary": refused})
    assert [r["environment"] for r in s["refusedBy"]] == ["canary"]
    assert "servedAt" not in s


def test_it_survives_an_unresolvable_spec():
    s = status(resolved_m1(), timestamp=T1, serving=ALL)
    missing = Problem("ModelNotFound", "model 'typo.tar.gz' not found")
    bad = status(s, "typo.tar.gz", problem=missing, timestamp=T2, serving=ALL)
    assert (bad["model"], bad["resolvedAt"], bad["servedAt"]) == ("m1.tar.gz", T0, T1)


# --- through one reconcile: gather passes the environments' verdicts -------------------------


class Resolver:
    def __init__(self, answer: ObjectInfo) -> None:
        self.answer = answer

    def resolve(self, namespace: str, name: str, spec: object) -> ObjectInfo:
        return self.answer

    def metadata(self, namespace: str, spec: object, info: ObjectInfo) -> str:
        return "not read here"

    def forget(self, namespace: str, name: str) -> None:
        pass


def user(name: str, model: str, *, ready: str = "True") -> dict:
    return environment(
        name,
        modelTag="production",
        replicas=1,
        status={
            "model": {"tag": "production", "name": model, "digest": "d1"},
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1 if ready == "True" else 0,
            "conditions": [{"type": "Ready", "status": ready, "reason": "Ready"}],
        },
    )


def reconcile(*users: dict) -> dict | None:
    body = tag(model="m1.tar.gz")
    body["status"] = {"model": "m1.tar.gz", "digest": "d1", "size": 1, "resolvedAt": T0}
    kube = FakeKube()
    s = state(kube, tags=(body,), environments=users)
    s.resolver = Resolver(ObjectInfo(key="m1.tar.gz", digest="d1", size=1))  # type: ignore[assignment]
    asyncio.run(tag_controller.reconcile(s, "bots", "production"))
    written = kube.written("status", "ModelTag")
    return written[-1] if written else None


def test_the_reconcile_records_it_when_its_environments_serve_the_model():
    served = reconcile(user("production", "m1.tar.gz"), user("canary", "m1.tar.gz"))
    assert served is not None and served["servedAt"] >= T0
    one_rolling = reconcile(
        user("production", "m1.tar.gz"), user("canary", "m1.tar.gz", ready="False")
    )
    assert one_rolling is not None and "servedAt" not in one_rolling
    other_model = reconcile(user("production", "m0.tar.gz"))
    assert other_model is not None and "servedAt" not in other_model
