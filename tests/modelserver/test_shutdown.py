"""A model server replica that is told to stop (SIGTERM: a rollout, a drain, an eviction):
it leaves its Service's endpoints by failing /readyz, and answers the pulls that still
reach it (the nodes' proxies learn of its end a moment after it gets SIGTERM) until its
shutdown delay is over. Real sockets on 127.0.0.1, started as `botenv model-server` starts
it (server.serve)."""

from __future__ import annotations

import asyncio

import pytest

from tests.modelserver.test_modelserver import AUTH, URL, World
from tests.modelserver.test_slow_clients import Conn, start, warm

pytestmark = [pytest.mark.modelserver, pytest.mark.timeout(60)]


async def get(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    """The status of one request on a new connection."""
    conn = await asyncio.wait_for(Conn.open(port), 5)
    try:
        status, _, _ = await asyncio.wait_for(conn.request(headers, path=path), 10)
        return status
    finally:
        conn.close()


def test_a_stopping_replica_is_not_ready_but_answers_during_its_shutdown_delay(tmp_path):
    world = World(tmp_path)
    world.add()

    async def scenario() -> None:
        # A delay far longer than this test: the delay is not timed here.
        port, stop, task = await start(world, shutdown_delay=600)
        try:
            etag = await warm(port)
            assert await get(port, "/readyz") == 200

            stop.set()  # what SIGTERM does
            for _ in range(100):
                if await get(port, "/readyz") == 503:
                    break
                await asyncio.sleep(0.05)
            assert await get(port, "/readyz") == 503
            # Still serving: revalidations, downloads, probes of its liveness.
            assert await get(port, URL, AUTH) == 200
            revalidation = {**AUTH, "If-None-Match": etag}
            assert await get(port, URL, revalidation) == 304
            assert await get(port, "/healthz") == 200
            assert not task.done()
        finally:
            task.cancel()  # the end of the delay, as far as this test goes
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_without_a_shutdown_delay_the_listener_closes_at_once(tmp_path):
    world = World(tmp_path)
    world.add()

    async def scenario() -> None:
        port, stop, task = await start(world)
        assert await get(port, "/readyz") == 200
        stop.set()
        await asyncio.wait_for(task, 30)
        with pytest.raises(OSError):
            await get(port, "/readyz")

    asyncio.run(scenario())
