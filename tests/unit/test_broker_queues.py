"""Event queues are unique per broker: who keeps a queue two environments ask for."""

from __future__ import annotations

import itertools

from botenv.api import parse_environment
from botenv.controller import broker_queues
from botenv.render import names
from tests.unit.builders import DEFAULT_IMAGE, environment

EARLY, LATE = "2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z"


def env(
    name: str,
    namespace: str = "bots",
    *,
    host: str = "rabbitmq",
    port: int | None = None,
    queue: str = "",
    created: str = EARLY,
    status: dict | None = None,
) -> dict:
    broker: dict = {"host": host, "secretRef": {"name": "rabbitmq"}}
    if port:
        broker["port"] = port
    if queue:
        broker["queue"] = queue
    return environment(
        name,
        namespace,
        uid=f"uid-{namespace}-{name}",
        created=created,
        status=status,
        eventBroker=broker,
    )


def holding(queue: str, degraded_reason: str = "AsExpected") -> dict:
    return {
        "queue": queue,
        "conditions": [
            {
                "type": "Degraded",
                "status": "True" if degraded_reason != "AsExpected" else "False",
                "reason": degraded_reason,
            }
        ],
    }


def test_derived_queue_names_are_unique_per_namespace_and_name():
    pairs = [
        ("a", "b-c"),
        ("a-b", "c"),
        ("bots", "production"),
        ("bots", "experimental"),
        ("other", "production"),
    ]
    derived = [names.derived_queue(ns, n) for ns, n in pairs]
    assert len(set(derived)) == len(derived)
    assert names.derived_queue("bots", "production") == "rasa_bots_production_events"


def test_derived_queues_never_conflict():
    everyone = [env("production"), env("experimental"), env("production", "other")]
    for me in everyone:
        assert broker_queues.holder(me, everyone) is None


def test_no_broker_no_conflict():
    me = environment("production")
    assert broker_queues.queue_of(me) is None
    assert broker_queues.holder(me, [me, env("other", queue="rasa_bots_production_events")]) is None


def test_same_broker_spelled_differently_is_one_broker():
    short = env("a", host="rabbitmq", queue="events")
    full = env("b", host="rabbitmq.bots.svc.cluster.local", queue="events")
    svc = env("c", host="RabbitMQ.bots.svc.", queue="events")
    assert (
        broker_queues.queue_of(short) == broker_queues.queue_of(full) == broker_queues.queue_of(svc)
    )


def test_older_environment_wins_a_queue_nobody_holds_yet():
    old = env("a", queue="events", created=EARLY)
    new = env("b", host="rabbitmq.bots.svc.cluster.local", queue="events", created=LATE)
    everyone = [old, new]
    assert broker_queues.holder(old, everyone) is None
    assert broker_queues.holder(new, everyone) is old


def test_the_environment_already_holding_the_queue_keeps_it_even_if_newer():
    holder = env("b", queue="events", created=LATE, status=holding("events"))
    newcomer = env(
        "a",
        host="rabbitmq.bots.svc.cluster.local",
        queue="events",
        created=EARLY,
        status=holding("rasa_bots_a_events"),
    )
    everyone = [newcomer, holder]
    assert broker_queues.holder(holder, everyone) is None
    assert broker_queues.holder(newcomer, everyone) is holder


def test_a_queue_conflict_loser_does_not_count_as_holding():
    """status.queue stays from before while Degraded with QueueConflict: that is no claim."""
    loser = env(
        "b",
        queue="events",
        created=LATE,
        status=holding("events", degraded_reason=broker_queues.QUEUE_CONFLICT),
    )
    older = env("a", queue="events", created=EARLY)
    assert broker_queues.holder(loser, [loser, older]) is older
    assert broker_queues.holder(older, [loser, older]) is None


def test_holder_still_holds_while_degraded_for_another_reason():
    holder = env(
        "b", queue="events", created=LATE, status=holding("events", degraded_reason="SecretMissing")
    )
    older = env("a", queue="events", created=EARLY)
    assert broker_queues.holder(older, [older, holder]) is holder


def test_exactly_one_winner_whatever_the_order():
    group = [
        env("a", queue="events", created=LATE),
        env("b", queue="events", created=EARLY),
        env("c", host="rabbitmq.bots", queue="events", created=LATE),
    ]
    for order in itertools.permutations(group):
        winners = [b for b in order if broker_queues.holder(b, list(order)) is None]
        assert [w["metadata"]["name"] for w in winners] == ["b"]


def test_different_brokers_never_conflict():
    a = env("a", queue="events", host="rabbitmq")
    b = env("b", queue="events", host="rabbitmq.mq")
    c = env("c", queue="events", host="rabbitmq", port=5673)
    d = env("d", "other", queue="events", host="rabbitmq")  # its own namespace's rabbitmq
    e = env("e", queue="events", host="rabbitmq.example.com")
    everyone = [a, b, c, d, e]
    for me in everyone:
        assert broker_queues.holder(me, everyone) is None


def test_a_bare_host_from_another_namespace_is_that_namespaces_broker():
    mine = env("a", "bots", host="rabbitmq.other", queue="events", created=EARLY)
    theirs = env("b", "other", host="rabbitmq", queue="events", created=LATE)
    assert broker_queues.holder(theirs, [mine, theirs]) is mine


def test_same_queue_name_in_another_namespace_on_a_shared_broker_conflicts():
    a = env("a", "bots", host="rabbitmq.mq", queue="events", created=EARLY)
    b = env("b", "team2", host="rabbitmq.mq.svc", queue="events", created=LATE)
    assert broker_queues.holder(b, [a, b]) is a


def test_default_port_equals_explicit_5672():
    a = env("a", queue="events", created=EARLY)
    b = env("b", queue="events", port=5672, created=LATE)
    assert broker_queues.holder(b, [a, b]) is a


def test_an_explicit_queue_equal_to_anothers_derived_one_conflicts():
    derived = env("production", created=EARLY)
    copycat = env("copy", queue="rasa_bots_production_events", created=LATE)
    assert broker_queues.holder(copycat, [derived, copycat]) is derived


def test_environments_being_deleted_release_their_queue():
    old = env("a", queue="events", created=EARLY, status=holding("events"))
    old["metadata"]["deletionTimestamp"] = LATE
    new = env("b", queue="events", created=LATE)
    assert broker_queues.holder(new, [old, new]) is None


def test_an_environment_is_not_its_own_rival():
    me = env("a", queue="events")
    assert broker_queues.holder(me, [me, env("a", queue="events")]) is None


def test_the_claim_of_a_parsed_spec_is_the_one_read_from_its_body():
    for body in (
        env("a"),
        env("a", host="RabbitMQ.bots.svc.", port=5673, queue="events"),
        env("a", host="mq.example.com", queue="q"),
    ):
        spec = parse_environment(body, DEFAULT_IMAGE)
        assert spec.event_broker is not None
        assert broker_queues.claim_of("bots", "a", spec.event_broker) == (
            broker_queues.queue_of(body)
        )
