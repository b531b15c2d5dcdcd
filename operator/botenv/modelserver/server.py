"""Running the model server: cache + app + listening socket, until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from aiohttp import web

from botenv.modelserver.app import FAST_PATH_KEY, LIFECYCLE_KEY, make_app
from botenv.modelserver.cache import DiskCache
from botenv.modelserver.catalog import Catalog
from botenv.modelserver.connections import ConnectionLimits, GuardedRunner

log = logging.getLogger(__name__)


async def serve(
    catalog: Catalog,
    *,
    host: str,
    port: int,
    cache_dir: str | os.PathLike[str],
    cache_max_bytes: int,
    stop: asyncio.Event,
    answer_within: float = 4.0,
    retry_after: int = 10,
    fill_workers: int = 4,
    header_timeout: float = 10.0,
    keepalive_timeout: float = 15.0,
    max_connections: int = 512,
    shutdown_delay: float = 0.0,
    on_started: Callable[[int], None] | None = None,
    fast_revalidation: bool = True,
) -> None:
    """Serve until `stop` is set. For callers that run other tasks (a Kubernetes-backed
    catalog's watches) in the same loop. `on_started` gets the bound port (useful with 0).

    A client must send a request's head within `header_timeout` seconds, may idle between
    requests for `keepalive_timeout` seconds, and connections beyond `max_connections` are
    closed at once (botenv.modelserver.connections).

    Once `stop` is set, /readyz fails and requests are still answered for `shutdown_delay`
    seconds: a replica being deleted leaves its Service's endpoints at the same time as it
    gets SIGTERM, and the nodes' proxies learn it a moment later, so connections keep coming
    for that moment. Then the listener closes and responses in progress finish.

    `fast_revalidation`: Rasa's 304 revalidations are answered before aiohttp parses them
    (botenv.modelserver.revalidation); False sends every request through aiohttp (the
    tests compare the two)."""
    limits = ConnectionLimits(header_timeout, keepalive_timeout, max_connections)
    cache = DiskCache(cache_dir, cache_max_bytes, fill_workers=fill_workers)
    app = make_app(catalog, cache, answer_within=answer_within, retry_after=retry_after)
    # access_log=None: aiohttp's default access log prints the query string, where a
    # misconfigured client's token would be; the app logs requests without it.
    runner = GuardedRunner(
        app,
        limits,
        fast_path=app[FAST_PATH_KEY].answer if fast_revalidation else None,
        access_log=None,
        handle_signals=False,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        log.info(
            "model server listening on %s:%s, cache %s (max %d bytes), header timeout "
            "%g s, keep-alive timeout %g s, at most %d connections",
            host,
            bound,
            cache.directory,
            cache_max_bytes,
            header_timeout,
            keepalive_timeout,
            max_connections,
        )
        if on_started is not None:
            on_started(bound)
        await stop.wait()
        app[LIFECYCLE_KEY].draining = True
        if shutdown_delay > 0:
            log.info("model server stopping: not ready, still answering for %g s", shutdown_delay)
            await asyncio.sleep(shutdown_delay)
        log.info("model server stopping")
    finally:
        await runner.cleanup()  # lets responses in progress finish (graceful timeout)
        await cache.close()


def run(
    catalog: Catalog,
    *,
    host: str = "0.0.0.0",
    port: int = 8080,
    cache_dir: str | os.PathLike[str],
    cache_max_bytes: int,
    answer_within: float = 4.0,
    retry_after: int = 10,
    fill_workers: int = 4,
    header_timeout: float = 10.0,
    keepalive_timeout: float = 15.0,
    max_connections: int = 512,
    shutdown_delay: float = 0.0,
    on_started: Callable[[int], None] | None = None,
) -> None:
    """Run the model server in a new event loop until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(
            catalog,
            host=host,
            port=port,
            cache_dir=cache_dir,
            cache_max_bytes=cache_max_bytes,
            stop=stop,
            answer_within=answer_within,
            retry_after=retry_after,
            fill_workers=fill_workers,
            header_timeout=header_timeout,
            keepalive_timeout=keepalive_timeout,
            max_connections=max_connections,
            shutdown_delay=shutdown_delay,
            on_started=on_started,
        )

    asyncio.run(main())
