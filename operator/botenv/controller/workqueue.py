"""A coalescing work queue: each key is processed by one worker at a time, and a key added
while it is being processed runs once more afterwards. Many events for one object
(a rollout produces dozens) collapse into few reconciles. Keys of a lower `priority` are
taken first (a tag before the environments that wait for its resolution); keys of one
priority in the order they came."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable

from kubernetes.client.exceptions import ApiException

from botenv.controller import metrics

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
# The object a worker reconciles now ("BotEnvironment ns/name"): every log line written
# during its reconcile names it (runtime/logformat.py).
CURRENT_OBJECT: contextvars.ContextVar[str] = contextvars.ContextVar("botenv_object", default="")


def _describe(exc: Exception) -> str:
    """One line: API errors carry whole HTTP responses in their str()."""
    if isinstance(exc, ApiException):
        return f"API error {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def _name(key: Hashable) -> str:
    """namespace/name of a (kind, namespace, name) key."""
    return "/".join(key[1:]) if isinstance(key, tuple) else str(key)


class Requeue(Exception):  # noqa: N818 (a signal, not an error)
    """Raised by a handler that wants to look again after `delay` seconds (nothing failed:
    no backoff, no error log); `after_others`: only once the keys of its priority that wait
    have been taken."""

    def __init__(self, delay: float, *, after_others: bool = False) -> None:
        super().__init__(f"again in {delay}s")
        self.delay = delay
        self.after_others = after_others


# Added to a key's priority when it is to wait for the others of its priority.
AFTER_OTHERS = 2


class WorkQueue:
    def __init__(
        self,
        handler: Callable[[Hashable], Awaitable[None]],
        workers: int,
        priority: Callable[[Hashable], int] = lambda _: 0,
    ) -> None:
        self._handler = handler
        self._workers = workers
        self._priority = priority
        self._order = itertools.count()  # first come, first served within a priority
        self._queue: asyncio.PriorityQueue[tuple[int, int, Hashable]] = asyncio.PriorityQueue()
        self._queued: set[Hashable] = set()
        self._running: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._added_at: dict[Hashable, float] = {}
        self.idle = asyncio.Event()
        # When a reconcile last finished (health: a queue with work that drains nothing).
        self.last_done = time.monotonic()

    @property
    def busy(self) -> bool:
        """Keys wait or are being reconciled."""
        return bool(self._queued or self._running)

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._work(), name=f"botenv-worker-{i}")
            for i in range(self._workers)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def add(self, key: Hashable, *, after_others: bool = False) -> None:
        if key in self._running:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._added_at[key] = time.monotonic()
            self.idle.clear()
            priority = self._priority(key) + (AFTER_OTHERS if after_others else 0)
            self._queue.put_nowait((priority, next(self._order), key))
            metrics.QUEUE_ADDS.inc()
            metrics.QUEUE_DEPTH.set(len(self._queued))

    def add_after(self, key: Hashable, delay: float, *, after_others: bool = False) -> None:
        asyncio.get_running_loop().call_later(
            delay, functools.partial(self.add, key, after_others=after_others)
        )

    async def _work(self) -> None:
        while True:
            *_, key = await self._queue.get()
            self._queued.discard(key)
            self._running.add(key)
            started = time.monotonic()
            metrics.QUEUE_DEPTH.set(len(self._queued))
            metrics.QUEUE_WAIT.observe(started - self._added_at.pop(key, started))
            kind = metrics.kind_of(key)
            CURRENT_OBJECT.set(f"{kind} {_name(key)}")
            result = "success"
            try:
                await self._handler(key)
                self._failures.pop(key, None)
            except Requeue as again:
                result = "requeue"
                self._failures.pop(key, None)
                self.add_after(key, again.delay, after_others=again.after_others)
            except Exception as exc:  # noqa: BLE001 -- a failed reconcile is retried
                result = "error"
                count = self._failures[key] = self._failures.get(key, 0) + 1
                delay = min(MAX_BACKOFF, 0.5 * 2**count)
                log.error(
                    "reconcile of %s failed (retry in %.0fs): %s",
                    _name(key),
                    delay,
                    _describe(exc),
                    extra={"reason": "ReconcileFailed"},
                )
                metrics.QUEUE_RETRIES.inc()
                self.add_after(key, delay)
            finally:
                CURRENT_OBJECT.set("")
                metrics.RECONCILES.labels(kind=kind, result=result).inc()
                metrics.RECONCILE_SECONDS.labels(kind=kind).observe(time.monotonic() - started)
                self.last_done = time.monotonic()
                self._running.discard(key)
                self._queue.task_done()
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
                if not self._queued and not self._running:
                    self.idle.set()
