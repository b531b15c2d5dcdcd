"""Can the environment's stores and broker be reached at all? A TCP connect from the
operator to each host:port the spec names.

Rasa does not report a lost broker or store in its API, and the pods stay ready; without
this check an environment whose RabbitMQ is down would look healthy. It only reports: the
running Deployment is never changed because of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket

from botenv.api.environment import EnvironmentSpec

_SQL_PORTS = {"postgresql": 5432, "oracle": 1521}


@dataclasses.dataclass(frozen=True)
class Dependency:
    reason: str  # the Degraded reason when it cannot be reached
    what: str  # for the message, e.g. "event broker"
    field: str  # the spec field that names the host
    host: str
    port: int


def dependencies(spec: EnvironmentSpec) -> list[Dependency]:
    """The network peers the spec names (skipping those given as URLs or without a host)."""
    found: list[Dependency] = []
    tracker = spec.tracker_store
    port = None
    if tracker.type == "sql":
        port = tracker.port or _SQL_PORTS.get(tracker.dialect)
    elif tracker.type == "redis":
        port = tracker.port or 6379
    elif tracker.type == "mongod":
        port = tracker.port or 27017
    if port and tracker.host and "://" not in tracker.host:
        found.append(
            Dependency(
                "TrackerStoreUnreachable",
                "tracker store",
                "spec.trackerStore.host",
                tracker.host,
                port,
            )
        )
    lock = spec.lock_store
    if lock.type == "redis" and lock.host:
        found.append(
            Dependency(
                "LockStoreUnreachable",
                "lock store",
                "spec.lockStore.host",
                lock.host,
                lock.port or 6379,
            )
        )
    if spec.event_broker is not None and spec.event_broker.host:
        broker = spec.event_broker
        found.append(
            Dependency(
                "EventBrokerUnreachable",
                "event broker",
                "spec.eventBroker.host",
                broker.host,
                broker.port,
            )
        )
    return found


async def _reach(dep: Dependency, timeout: float) -> str:
    """ "" when a TCP connection opens, else why not."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(dep.host, dep.port), timeout)
    except TimeoutError:
        return f"no answer within {timeout:.0f} s"
    except socket.gaierror as exc:
        return f"cannot resolve {dep.host}: {exc.strerror}"
    except OSError as exc:  # asyncio's own text repeats the address: use the errno's
        return os.strerror(exc.errno) if exc.errno else (str(exc) or type(exc).__name__)
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return ""


async def unreachable(deps: list[Dependency], timeout: float = 3.0) -> list[tuple[Dependency, str]]:
    """The dependencies that cannot be reached now, each with why."""
    answers = await asyncio.gather(*(_reach(d, timeout) for d in deps))
    return [(d, why) for d, why in zip(deps, answers, strict=True) if why]


def message(failed: list[tuple[Dependency, str]]) -> str:
    parts = [
        f"cannot connect to the {d.what} at {d.host}:{d.port} ({d.field}): {why}"
        for d, why in failed
    ]
    return (
        "; ".join(parts) + ". The running pods are left as they are; botenv checks again "
        "every few seconds"
    )
