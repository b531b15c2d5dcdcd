"""Connection limits aiohttp lacks, and its bad-request path made quiet about headers.

Every Rasa pod pulls from the model server, so a few clients that open connections and never
finish a request (or open thousands) must not starve the pulls. aiohttp 3 bounds only the
idle time between requests (`keepalive_timeout`, one hour by default) and counts neither
the time a request's head takes to arrive nor the connections. Three limits, per connection:

- header timeout: the request line and headers must be complete within `header_timeout`
  seconds of the connection opening or, on a kept-alive connection, of the next request's
  first byte. Only that phase is bounded: once a request is received the timer is off, so a
  download to a slow reader takes as long as it takes.
- keep-alive timeout: aiohttp's own, the idle time between two requests (a response in
  progress is not idle).
- connection cap: a connection beyond `max_connections` is closed as soon as it is accepted,
  before aiohttp sets up anything for it; the connections being served are not touched.

aiohttp has no hook for the protocol class (web.Server.__call__ makes a RequestHandler), so
`GuardedRunner` hands TCPSite a web.Server subclass that makes `_GuardedHandler`s. These
read a few of RequestHandler's attributes (`_request_count`, `_waiter`, `_loop`, and
`_keepalive_timeout`, `_next_keepalive_close_time` for the fast path) and web.Server's
`_kwargs`, as of aiohttp 3.14 (constraints.txt); tests/modelserver/
test_slow_clients.py checks every limit over real sockets after an upgrade.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)
access_log = logging.getLogger("botenv.modelserver.access")


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    keepalive_timeout: float = 15.0
    max_connections: int = 512

    def __post_init__(self) -> None:
        if self.header_timeout <= 0 or self.keepalive_timeout <= 0:
            raise ValueError("the header and keep-alive timeouts must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")


# Given the bytes a connection sent and its peer, the complete answer to write back, or None
# for aiohttp to handle them (botenv.modelserver.revalidation).
FastPath = Callable[[bytes, str], "bytes | None"]


class _GuardedServer(web.Server):
    """aiohttp's protocol factory, making `_GuardedHandler`s and counting their connections."""

    def __init__(
        self, limits: ConnectionLimits, fast_path: FastPath | None, *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.fast_path = fast_path
        self.open_connections = 0

    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)


class _GuardedHandler(RequestHandler):
    __slots__ = ("_guard", "_counted", "_header_timer", "_fast", "_peer")

    def __init__(self, manager: _GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager  # aiohttp drops its own reference on connection_lost
        self._counted = False
        self._header_timer: asyncio.TimerHandle | None = None
        # The fast path, while every byte this connection sent was answered by it: aiohttp's
        # parser then has no partial request and no answer of aiohttp's is outstanding.
        self._fast = manager.fast_path
        self._peer = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._guard.open_connections >= self._guard.limits.max_connections:
            transport.abort()  # connection_lost follows; nothing was started for it
            return
        self._guard.open_connections += 1
        self._counted = True
        super().connection_made(transport)
        if self._fast is not None:
            peer = transport.get_extra_info("peername")
            self._peer = str(peer[0]) if isinstance(peer, tuple) else ""
        self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._guard.open_connections -= 1
            self._counted = False
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._fast is not None:
            answer = None
            # Not while the client does not read its answers: aiohttp's writer then waits.
            if not self.writing_paused:
                try:
                    answer = self._fast(data, self._peer)
                except Exception:  # then aiohttp takes it, as any other request
                    log.exception("revalidation fast path failed")
            if answer is not None and self.transport is not None:
                self._cancel_header_timer()
                self.transport.write(answer)
                # Idle from now on: aiohttp's keep-alive timer (armed when the connection
                # was made) closes the connection keepalive_timeout after this answer.
                self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
                return
            self._fast = None  # from here on every byte goes to aiohttp's parser
        received = self._request_count
        super().data_received(data)
        if self._request_count != received:
            # A request's head is complete (or was rejected): its handling is not bounded.
            self._cancel_header_timer()
        elif data and self._header_timer is None and self._waiting_for_request():
            # The first bytes of the next request on a kept-alive connection. (Bytes that
            # come in the instant between a response's end and the wait for the next
            # request are bounded by the keep-alive timeout only.)
            self._arm_header_timer()

    def _waiting_for_request(self) -> bool:
        return self._waiter is not None and not self._waiter.done()

    def _arm_header_timer(self) -> None:
        self._header_timer = self._loop.call_later(
            self._guard.limits.header_timeout, self._header_timed_out
        )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._waiting_for_request():  # as aiohttp's keep-alive close does
            self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:  # the app's own failures: aiohttp logs the traceback
            return super().handle_error(request, status, exc, message)
        # A request aiohttp could not parse. aiohttp would log the parser's exception at
        # ERROR and send its text back, and both quote the raw request line or header, a
        # pull token included; a client's garbage is no server error either.
        access_log.info(
            '%s "-" %d - bad request: %s',
            request.remote,
            status,
            type(exc).__name__ if exc is not None else "-",
        )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started, cannot answer 400")
        response = web.Response(status=status, text="bad request\n")
        response.force_close()
        return response


class GuardedRunner(web.AppRunner):
    """web.AppRunner whose connections are bounded by `limits`; `fast_path` may answer a
    connection's requests before aiohttp sees them, for as long as it answers every one."""

    def __init__(
        self,
        app: web.Application,
        limits: ConnectionLimits,
        *,
        fast_path: FastPath | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, keepalive_timeout=limits.keepalive_timeout, **kwargs)
        self._limits = limits
        self._fast_path = fast_path

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # starts the app; aiohttp's handler options
        return _GuardedServer(
            self._limits,
            self._fast_path,
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **plain._kwargs,
        )
