"""Asking Rasa pods which model they serve: the pod view botenv indexes, and the queue's
quiet requeue while pods catch up."""

from __future__ import annotations

import asyncio

from aiohttp import web

from botenv.controller import verify
from botenv.controller.workqueue import Requeue, WorkQueue


def pod(name: str, ip: str, ready: bool = True, deleting: bool = False) -> dict:
    meta: dict = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "status": {
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_pod_view_is_ready_only_when_ready_and_not_terminating() -> None:
    assert verify.pod_view(pod("a", "10.0.0.1")) == {"name": "a", "ip": "10.0.0.1", "ready": True}
    assert not verify.pod_view(pod("a", "10.0.0.1", ready=False))["ready"]
    assert not verify.pod_view(pod("a", "10.0.0.1", deleting=True))["ready"]


def test_served_models_asks_each_ready_pod_with_the_token() -> None:
    """Small HTTP servers, each on its own loopback IP and one port, stand in for the pods'
    Rasa /status (the real Rasa answers in tests/e2e)."""
    seen: list[str] = []

    def rasa(model: str) -> web.Application:
        async def status(request: web.Request) -> web.Response:
            seen.append(request.query.get("token", ""))
            return web.json_response({"model_file": model})

        app = web.Application()
        app.router.add_get("/status", status)
        return app

    async def run() -> dict[str, str]:
        first = web.AppRunner(rasa("m1.tar.gz"))
        await first.setup()
        site = web.TCPSite(first, "127.0.0.2", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
        second = web.AppRunner(rasa("m2.tar.gz"))
        await second.setup()
        await web.TCPSite(second, "127.0.0.3", port).start()
        try:
            answers = await verify.served_models(
                [
                    {"name": "p0", "ip": "127.0.0.2", "ready": True},
                    {"name": "p1", "ip": "127.0.0.3", "ready": True},
                    {"name": "gone", "ip": "127.0.0.4", "ready": True},
                    {"name": "not-ready", "ip": "127.0.0.2", "ready": False},
                ],
                port=port,
                token="s3cret",
                timeout=2,
            )
        finally:
            await first.cleanup()
            await second.cleanup()
        return answers

    answers = asyncio.run(run())
    assert answers == {"p0": "m1.tar.gz", "p1": "m2.tar.gz", "gone": verify.NO_ANSWER}
    assert seen == ["s3cret", "s3cret"]


def test_requeue_looks_again_without_backoff_or_error() -> None:
    calls: list[float] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()

        async def handler(key: object) -> None:
            calls.append(loop.time())
            if len(calls) < 3:
                raise Requeue(0.05)

        queue = WorkQueue(handler, workers=1)
        queue.start()
        queue.add(("env", "ns", "x"))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if len(calls) == 3 and queue.idle.is_set():
                break
        await queue.stop()
        assert queue._failures == {}  # noqa: SLF001

    asyncio.run(run())
    assert len(calls) == 3
