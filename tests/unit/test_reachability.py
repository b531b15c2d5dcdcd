"""Which stores and broker an environment names, and whether a TCP connection opens (real
sockets on loopback)."""

from __future__ import annotations

import asyncio
import socket

from botenv.controller import reachability
from tests.unit.builders import spec


def test_dependencies_named_by_the_spec_with_default_ports() -> None:
    parsed = spec(
        trackerStore={"type": "sql", "host": "pg.db.svc"},
        lockStore={"type": "redis", "host": "redis.db.svc", "port": 6380},
        eventBroker={"host": "mq.svc", "secretRef": {"name": "mq"}},
    )
    assert [(d.reason, d.host, d.port, d.field) for d in reachability.dependencies(parsed)] == [
        ("TrackerStoreUnreachable", "pg.db.svc", 5432, "spec.trackerStore.host"),
        ("LockStoreUnreachable", "redis.db.svc", 6380, "spec.lockStore.host"),
        ("EventBrokerUnreachable", "mq.svc", 5672, "spec.eventBroker.host"),
    ]


def test_no_network_peers_for_memory_stores_or_url_hosts() -> None:
    assert reachability.dependencies(spec()) == []
    mongo = spec(trackerStore={"type": "mongod", "host": "mongodb://m:27017/rasa"})
    assert reachability.dependencies(mongo) == []


def test_unreachable_reports_a_closed_port_and_not_an_open_one() -> None:
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    deps = [
        reachability.Dependency(
            "TrackerStoreUnreachable",
            "tracker store",
            "spec.trackerStore.host",
            "127.0.0.1",
            listening.getsockname()[1],
        ),
        reachability.Dependency(
            "EventBrokerUnreachable",
            "event broker",
            "spec.eventBroker.host",
            "127.0.0.1",
            closed_port,
        ),
    ]
    try:
        failed = asyncio.run(reachability.unreachable(deps, timeout=2))
    finally:
        listening.close()
    assert [(d.reason, why) for d, why in failed] == [
        ("EventBrokerUnreachable", "Connection refused")
    ]
    assert reachability.message(failed).startswith(
        f"cannot connect to the event broker at 127.0.0.1:{closed_port} "
        "(spec.eventBroker.host): Connection refused."
    )
