"""What keeps a fleet's cost linear: a tag's users from an index kept by the events (the
same as a scan of every environment), events that touch only what depends on them, botenv's
own writes told apart from other changes, tags reconciled before their environments, a
promotion check that looks at one environment per event, and small index snapshots."""

from __future__ import annotations

import asyncio
import datetime
import json
import random

from botenv.controller import tag as tag_reconciler
from botenv.controller.fanout import Fanout
from botenv.controller.metrics import Promotions
from botenv.controller.state import ENV, TAG, State
from botenv.controller.workqueue import Requeue, WorkQueue
from botenv.runtime.snapshot import snapshot
from botenv.settings import Settings
from tests.unit.builders import environment, tag

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def state(environments: dict | None = None, tags: dict | None = None) -> State:
    return State(
        kube=None,  # type: ignore[arg-type]
        settings=Settings(),
        environments=environments if environments is not None else {},
        tags=tags if tags is not None else {},
        children={"Deployment": {}},
    )


# -- a tag's users: an index kept from the events, the same as a scan ---------------------


def scanned(index: dict, namespace: str, name: str) -> list[str]:
    """The users as a scan of every environment finds them (State without tag_users)."""
    bodies = tag_reconciler.user_bodies(state(index), namespace, name)
    return [b["metadata"]["name"] for b in bodies]


def test_a_tags_users_from_the_events_are_the_ones_a_scan_finds():
    rng = random.Random(18)
    fan, index = Fanout(), {}
    places = [("bots", "a"), ("bots", "b"), ("other", "a")]  # (namespace, tag)
    for step in range(600):
        namespace, tag_name = rng.choice(places)
        name = f"env-{rng.randrange(40)}"
        key = (namespace, name)
        what = rng.random()
        if what < 0.15 and key in index:  # deleted: the DELETED event
            body = index.pop(key)[0]
            fan.environment(namespace, name, body, deleted=True)
        else:
            body = environment(name, namespace, modelTag=tag_name)  # added, or moved
            if what < 0.25:
                body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            index[key] = [body]
            fan.environment(namespace, name, body, deleted=False)
        for ns, t in places:
            assert fan.users(ns, t) == scanned(index, ns, t), f"step {step}: {ns}/{t}"
            with_index = state(index)
            with_index.tag_users = fan
            bodies = tag_reconciler.user_bodies(with_index, ns, t)
            assert [b["metadata"]["name"] for b in bodies] == scanned(index, ns, t)


def test_a_tags_users_do_not_scan_the_fleet():
    class NoScan(dict):
        def __iter__(self):
            raise AssertionError("scanned every environment")

    fan = Fanout()
    body = environment("a", modelTag="prod")
    fan.environment("bots", "a", body, deleted=False)
    with_index = state(NoScan({("bots", "a"): [body]}))
    with_index.tag_users = fan
    assert [
        b["metadata"]["name"] for b in tag_reconciler.user_bodies(with_index, "bots", "prod")
    ] == ["a"]


# -- events touch only what depends on them ------------------------------------------------


def test_an_environments_status_report_does_not_reconcile_its_tag():
    fan = Fanout()
    fan.environment("bots", "a", environment("a", modelTag="prod"), deleted=False)
    reported = environment("a", modelTag="prod", status={"conditions": [{"type": "Ready"}]})
    assert fan.environment("bots", "a", reported, deleted=False) == [("env", "bots", "a")]


def test_what_a_tag_lists_of_an_environment_reconciles_the_tag():
    fan = Fanout()
    fan.environment("bots", "a", environment("a", modelTag="prod"), deleted=False)
    for changed in (
        environment("a", modelTag="prod", image="rasa/rasa:3.5.0-full"),
        environment("a", modelTag="prod", image="rasa/rasa:3.5.0-full", rasaVersion="3.5.0"),
        environment(
            "a",
            modelTag="prod",
            image="rasa/rasa:3.5.0-full",
            rasaVersion="3.5.0",
            status={"refusedModel": {"digest": "d2"}},
        ),
    ):
        assert ("tag", "bots", "prod") in fan.environment("bots", "a", changed, deleted=False)
    going = environment("a", modelTag="prod")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert ("tag", "bots", "prod") in fan.environment("bots", "a", going, deleted=False)
    assert ("tag", "bots", "prod") in fan.environment("bots", "a", going, deleted=True)


def resolved_tag(model: str, **status: object) -> dict:
    body = tag("prod", model=model)
    body["status"] = {"model": model, "digest": f"d-{model}", **status}
    return body


def test_a_tags_own_bookkeeping_does_not_reconcile_its_users():
    fan = Fanout()
    fan.environment("bots", "a", environment("a", modelTag="prod"), deleted=False)
    assert fan.tag("bots", "prod", resolved_tag("v1")) == [
        ("tag", "bots", "prod"),
        ("env", "bots", "a"),
    ]
    listed = resolved_tag("v1", environments=["a"], refusedBy=[], observedGeneration=2)
    assert fan.tag("bots", "prod", listed) == [("tag", "bots", "prod")]
    # A new spec.model is read by nobody until it resolves (status.model).
    asked = resolved_tag("v1", environments=["a"])
    asked["spec"]["model"] = "v2"
    assert fan.tag("bots", "prod", asked) == [("tag", "bots", "prod")]


def test_a_tags_resolution_storage_and_deletion_reconcile_its_users():
    fan = Fanout()
    fan.environment("bots", "a", environment("a", modelTag="prod"), deleted=False)
    fan.tag("bots", "prod", resolved_tag("v1"))
    users = [("tag", "bots", "prod"), ("env", "bots", "a")]
    assert fan.tag("bots", "prod", resolved_tag("v2")) == users
    moved_storage = resolved_tag("v2")
    moved_storage["spec"]["storage"] = {"provider": "s3", "bucket": "elsewhere"}
    assert fan.tag("bots", "prod", moved_storage) == users
    assert fan.tag("bots", "prod", moved_storage, deleted=True) == users


# -- botenv's own writes ---------------------------------------------------------------------


def obj(kind: str, name: str, rv: str) -> dict:
    return {"kind": kind, "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}}


def test_the_watch_event_of_botenvs_own_write_is_an_echo_and_ends_its_copy():
    s = state()
    s.remember(obj("Deployment", "rasa-a", "12"))
    assert not s.echo("Deployment", "ns", "rasa-a", "11")  # an older event still coming
    assert s.written
    assert s.echo("Deployment", "ns", "rasa-a", "12")
    assert not s.written


def test_a_newer_version_than_botenvs_write_is_news_and_ends_its_copy():
    s = state()
    s.remember(obj("Deployment", "rasa-a", "12"))
    assert not s.echo("Deployment", "ns", "rasa-a", "13")  # someone wrote after botenv
    assert not s.written
    assert not s.echo("Service", "ns", "rasa-a", "5")  # nothing botenv wrote


def test_a_read_of_the_very_version_botenv_wrote_leaves_the_echo_to_be_told():
    s = state()
    s.children["Deployment"][("ns", "rasa-a")] = [obj("Deployment", "rasa-a", "12")]
    s.remember(obj("Deployment", "rasa-a", "12"))
    assert s.child("Deployment", "ns", "rasa-a")["metadata"]["resourceVersion"] == "12"
    assert s.echo("Deployment", "ns", "rasa-a", "12")


def test_botenvs_copy_of_a_write_drops_managed_fields():
    s = state()
    written = obj("Deployment", "rasa-a", "12")
    written["metadata"]["managedFields"] = [{"manager": "botenv"}]
    s.remember(written)
    assert "managedFields" not in s.child("Deployment", "ns", "rasa-a")["metadata"]


# -- tags first ------------------------------------------------------------------------------


def test_the_work_queue_takes_tags_before_the_environments_waiting_for_them():
    done: list = []

    async def run() -> None:
        async def handler(key: object) -> None:
            done.append(key)

        queue = WorkQueue(handler, workers=1, priority=lambda key: 0 if key[0] == TAG else 1)
        for key in [(ENV, "ns", "a"), (ENV, "ns", "b"), (TAG, "ns", "t"), (ENV, "ns", "c")]:
            queue.add(key)
        queue.start()
        await asyncio.wait_for(queue.idle.wait(), 5)
        await queue.stop()

    asyncio.run(run())
    assert done == [(TAG, "ns", "t"), (ENV, "ns", "a"), (ENV, "ns", "b"), (ENV, "ns", "c")]


def test_a_key_requeued_after_the_others_waits_for_those_of_its_priority():
    """A tag move's fan-out: each environment applies its Deployment, then reports its
    status only once the other environments waiting have applied theirs, also those whose
    events came after its own apply."""
    done: list[tuple[str, str]] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()

        async def handler(key: tuple[str, str, str]) -> None:
            name = key[2]
            first = (name, "apply") not in done
            done.append((name, "apply" if first else "report"))
            if name == "slow":  # b and c arrive while it runs, after a's report was queued
                await asyncio.sleep(0.1)
            elif first:
                raise Requeue(0.0, after_others=True)

        queue = WorkQueue(handler, workers=1, priority=lambda key: 0 if key[0] == TAG else 1)
        queue.add((ENV, "ns", "a"))
        queue.add((ENV, "ns", "slow"))
        loop.call_later(0.03, queue.add, (ENV, "ns", "b"))
        loop.call_later(0.03, queue.add, (ENV, "ns", "c"))
        queue.start()
        await asyncio.sleep(0.2)
        await asyncio.wait_for(queue.idle.wait(), 5)
        await queue.stop()

    asyncio.run(run())
    applied = [name for name, step in done if step == "apply"]
    assert applied == ["a", "slow", "b", "c"]
    assert done.index(("c", "apply")) < done.index(("a", "report"))
    assert sorted(name for name, step in done if step == "report") == ["a", "b", "c"]


# -- promotions: one look per event ----------------------------------------------------------


def serving(name: str, model: str) -> dict:
    return environment(
        name,
        modelTag="prod",
        replicas=1,
        status={
            "model": {"tag": "prod", "name": model, "digest": f"d-{model}"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}],
            "readyReplicas": 1,
            "replicas": 1,
            "updatedReplicas": 1,
        },
    )


def promotion_state(*bodies: dict) -> State:
    tags = {("bots", "prod"): [resolved_tag("v2", resolvedAt="2025-12-31T23:59:00Z")]}
    return state({("bots", b["metadata"]["name"]): [b] for b in bodies}, tags)


def test_an_environment_that_does_not_serve_yet_ends_no_promotion_and_scans_nothing():
    promotions = Promotions()
    lagging = serving("a", "v1")
    s = promotion_state(lagging, serving("b", "v2"))

    def users() -> list[str]:
        raise AssertionError("every user looked at")

    assert promotions.check(s, "bots", "prod", users, NOW, changed=lagging) is None


def test_a_promotion_is_measured_once_when_the_last_environment_serves():
    promotions = Promotions()
    a, b = serving("a", "v1"), serving("b", "v1")
    s = promotion_state(a, b)
    users = lambda: ["a", "b"]  # noqa: E731
    assert promotions.check(s, "bots", "prod", users, NOW) is None  # a promotion begins
    s.environments[("bots", "a")] = [a := serving("a", "v2")]
    assert promotions.check(s, "bots", "prod", users, NOW, changed=a) is None  # b lags
    s.environments[("bots", "b")] = [b := serving("b", "v2")]
    assert promotions.check(s, "bots", "prod", users, NOW, changed=b) == 60.0
    assert promotions.check(s, "bots", "prod", users, NOW, changed=b) is None  # once


def test_the_environment_found_lagging_is_looked_at_first():
    promotions = Promotions()
    a, b = serving("a", "v1"), serving("b", "v2")
    s = promotion_state(a, b)
    promotions.check(s, "bots", "prod", lambda: ["a", "b"], NOW)  # finds a lagging

    def users() -> list[str]:
        raise AssertionError("every user looked at while the lagging one still lags")

    assert promotions.check(s, "bots", "prod", users, NOW, changed=b) is None


# -- snapshots -------------------------------------------------------------------------------


def test_a_snapshot_is_the_object_without_managed_fields_and_shares_its_strings():
    text = json.dumps(
        {
            "kind": "Deployment",
            "metadata": {"name": "rasa-a", "managedFields": [{"manager": "botenv"}]},
            "spec": {"template": {"metadata": {"labels": {"app": "rasa-server"}}}},
        }
    )
    first, second = json.loads(text), json.loads(text)
    kept = snapshot(first), snapshot(second)
    expected = json.loads(text)
    del expected["metadata"]["managedFields"]
    assert kept[0] == kept[1] == expected
    assert first["metadata"]["managedFields"]  # kopf's event is left as it was
    key = next(k for k in kept[0]["spec"] if k == "template")
    assert key is next(k for k in kept[1]["spec"] if k == "template")
    labels = [k["spec"]["template"]["metadata"]["labels"]["app"] for k in kept]
    assert labels[0] is labels[1]
