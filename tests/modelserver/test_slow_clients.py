"""Clients that hold connections without finishing a request, too many connections, garbage
requests and headers that must not reach the log: the model server over real sockets on
127.0.0.1, started as `botenv model-server` starts it (server.serve), with small timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator

import pytest

from botenv.modelserver.server import serve
from tests.modelserver.test_modelserver import AUTH, MODEL, URL, World, model_bytes

pytestmark = [pytest.mark.modelserver, pytest.mark.timeout(60)]

MARGIN = 1.5  # seconds a close may come after its timeout on a loaded test machine
GOOD = 2.0  # a good request is answered within this, whatever the other clients do


async def start(world: World, **options: float) -> tuple[int, asyncio.Event, asyncio.Task]:
    """The model server (server.serve) on a free loopback port: its port, the event that
    stops it (what SIGTERM sets) and its task."""
    stop = asyncio.Event()
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(
            world.catalog,
            host="127.0.0.1",
            port=0,
            cache_dir=world.cache_dir,
            cache_max_bytes=1 << 30,
            stop=stop,
            on_started=started.set_result,
            **options,
        )
    )
    done, _ = await asyncio.wait([started, task], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises what made serve() stop
    return started.result(), stop, task


@contextlib.asynccontextmanager
async def running(world: World, **options: float) -> AsyncIterator[int]:
    """The model server on a free loopback port, stopped at the end."""
    port, stop, task = await start(world, **options)
    try:
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


class Conn:
    """A raw HTTP/1.1 connection: what a client sends is entirely up to the test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, *, rcvbuf: int = 0) -> Conn:
        sock = None
        if rcvbuf:  # a slow reader's small window: set before connect to take effect
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=rcvbuf)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(
        self, headers: dict[str, str] | None = None, *, path: str = URL
    ) -> tuple[int, dict[str, str], bytes]:
        lines = [f"GET {path} HTTP/1.1", "Host: model-server"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return await self.response()

    async def response(
        self, *, chunk: int = 0, pause: float = 0.0
    ) -> tuple[int, dict[str, str], bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = bytearray()
        while len(body) < length:
            part = await self.reader.read(min(chunk or length, length - len(body)))
            if not part:
                break
            body += part
            if pause:
                await asyncio.sleep(pause)
        return int(status_line.split()[1]), headers, bytes(body)

    async def closed_within(self, seconds: float) -> bool:
        """True if the server closes the connection within `seconds` (reads and discards)."""
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                if not await asyncio.wait_for(self.reader.read(65536), left):
                    return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return False

    def close(self) -> None:
        self.writer.close()


async def good_304(port: int, etag: str, conn: Conn | None = None) -> float:
    """A revalidation as Rasa sends it; returns how long it took."""
    started = time.monotonic()
    own = conn is None
    conn = conn or await asyncio.wait_for(Conn.open(port), GOOD)
    try:
        status, headers, _ = await asyncio.wait_for(
            conn.request({**AUTH, "If-None-Match": etag}), GOOD
        )
    finally:
        if own:
            conn.close()
    assert status == 304, headers
    return time.monotonic() - started


async def warm(port: int) -> str:
    """Downloads the model once (fills the cache); returns its ETag."""
    conn = await Conn.open(port)
    try:
        status, headers, _ = await asyncio.wait_for(conn.request(AUTH), 10)
    finally:
        conn.close()
    assert status == 200
    return headers["etag"]


def test_idle_connections_are_closed_after_the_header_timeout(tmp_path):
    world = World(tmp_path)
    world.add()

    async def scenario():
        async with running(world, header_timeout=1.0, keepalive_timeout=30.0) as port:
            started = time.monotonic()
            conns = await asyncio.gather(*(Conn.open(port) for _ in range(50)))
            try:
                closed = await asyncio.gather(*(c.closed_within(1.0 + MARGIN) for c in conns))
                elapsed = time.monotonic() - started
            finally:
                for conn in conns:
                    conn.close()
            assert sum(closed) == 50, f"{50 - sum(closed)} of 50 idle connections still open"
            assert elapsed >= 0.8  # closed by the timeout, not refused
            await good_304(port, await warm(port))  # the server still serves

    asyncio.run(scenario())


SLOW_REQUEST = f"GET {URL} HTTP/1.1\r\nHost: model-server\r\nX-Padding: {'x' * 64}\r\n\r\n"


async def dribble(conn: Conn, every: float) -> None:
    with contextlib.suppress(ConnectionError):
        for byte in SLOW_REQUEST.encode():
            await conn.send(bytes([byte]))
            await asyncio.sleep(every)


def test_slowloris_is_closed_within_the_header_timeout(tmp_path):
    world = World(tmp_path)
    world.add()

    async def scenario():
        async with running(world, header_timeout=1.0, keepalive_timeout=30.0) as port:
            conn = await Conn.open(port)
            sender = asyncio.create_task(dribble(conn, 0.3))  # 30+ s for the whole request
            try:
                assert await conn.closed_within(1.0 + MARGIN), "slowloris still connected"
            finally:
                sender.cancel()
                conn.close()

            # The same on a kept-alive connection: the next request, once begun, must be
            # complete within the header timeout too, although idling may last 30 s.
            conn = await Conn.open(port)
            etag = await warm(port)
            await good_304(port, etag, conn)
            await asyncio.sleep(0.5)
            sender = asyncio.create_task(dribble(conn, 0.3))
            try:
                assert await conn.closed_within(1.0 + MARGIN), "slowloris kept alive"
            finally:
                sender.cancel()
                conn.close()

    asyncio.run(scenario())


def test_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(tmp_path):
    world = World(tmp_path)
    world.add()

    async def scenario():
        async with running(world, header_timeout=30.0, keepalive_timeout=1.0) as port:
            etag = await warm(port)
            conn = await Conn.open(port)
            try:
                await good_304(port, etag, conn)
                await good_304(port, etag, conn)  # kept alive between requests
                started = time.monotonic()
                assert await conn.closed_within(1.0 + MARGIN), "idle connection kept open"
                assert time.monotonic() - started >= 0.8
            finally:
                conn.close()

    asyncio.run(scenario())


def test_connections_over_the_cap_are_closed_while_served_clients_go_on(tmp_path):
    world = World(tmp_path)
    world.add()
    cap = 20

    async def scenario():
        async with running(
            world, header_timeout=30.0, keepalive_timeout=30.0, max_connections=cap
        ) as port:
            etag = await warm(port)
            good = await Conn.open(port)  # a pod's kept-alive connection
            await good_304(port, etag, good)
            idle = [await Conn.open(port) for _ in range(cap - 1)]  # the cap is reached
            extra = await asyncio.gather(*(Conn.open(port) for _ in range(30)))
            try:
                closed = await asyncio.gather(*(c.closed_within(1.0) for c in extra))
                assert all(closed), f"{closed.count(False)} connections over the cap open"
                for _ in range(5):
                    assert await good_304(port, etag, good) < GOOD
                assert not any(await asyncio.gather(*(c.closed_within(0.2) for c in idle)))
            finally:
                for conn in [good, *idle, *extra]:
                    conn.close()
            # Below the cap again: new connections are served.
            await asyncio.sleep(0.2)
            await good_304(port, etag)

    asyncio.run(scenario())


SECRET = "SECRET-5f1c2a"


def test_bad_request_flood_is_answered_quietly_and_good_clients_are_served(tmp_path, caplog):
    world = World(tmp_path)
    world.add()

    async def garbage(port: int, count: int) -> int:
        answered = 0
        for i in range(count):
            conn = await Conn.open(port)
            try:
                await conn.send(
                    f"GET {URL} HTTP/1.1\r\nX-{i}: {SECRET}\x01\x02\r\n\r\n".encode("latin-1")
                    if i % 2
                    else f"\x16\x03\x01{SECRET} /\r\n\r\n".encode("latin-1")
                )
                status, _, body = await asyncio.wait_for(conn.response(), GOOD)
                assert status == 400
                assert SECRET.encode() not in body
                answered += 1
            except (ConnectionError, asyncio.IncompleteReadError):
                pass  # closed without an answer is fine too
            finally:
                conn.close()
        return answered

    async def scenario():
        async with running(world, header_timeout=5.0, keepalive_timeout=5.0) as port:
            etag = await warm(port)
            with caplog.at_level(logging.DEBUG):
                flood = asyncio.gather(*(garbage(port, 50) for _ in range(4)))
                for _ in range(10):
                    assert await good_304(port, etag) < GOOD
                answered = sum(await flood)
            assert answered > 100
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING], (
                "bad requests from clients are not server errors"
            )
            assert not [r for r in caplog.records if r.exc_info], "tracebacks were logged"

    asyncio.run(scenario())
    assert SECRET not in caplog.text
    assert all(SECRET not in str(r.args) for r in caplog.records)


def test_authorization_with_a_control_character_is_never_logged(tmp_path, caplog):
    world = World(tmp_path)
    world.add()

    async def scenario():
        async with running(world, header_timeout=5.0, keepalive_timeout=5.0) as port:
            conn = await Conn.open(port)
            try:
                with caplog.at_level(logging.DEBUG):
                    await conn.send(
                        f"GET {URL} HTTP/1.1\r\nHost: m\r\n"
                        f"Authorization: Bearer {SECRET}\x01X\r\n\r\n".encode("latin-1")
                    )
                    status, _, body = await asyncio.wait_for(conn.response(), GOOD)
                    await asyncio.sleep(0.2)  # anything logged after the answer, too
            finally:
                conn.close()
            assert status == 400
            assert SECRET.encode() not in body

    asyncio.run(scenario())
    assert caplog.records, "the bad request is noted in the log"
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in str(record.args)
        assert not record.exc_info or SECRET not in str(record.exc_info[1])


def test_slow_reader_download_outlasts_both_timeouts(tmp_path):
    world = World(tmp_path)
    data = model_bytes(8 * 1024 * 1024 + 5)
    world.add(MODEL, data)

    async def scenario():
        async with running(world, header_timeout=1.0, keepalive_timeout=1.0) as port:
            etag = await warm(port)  # fills the cache: the slow download is a pure send
            conn = await Conn.open(port, rcvbuf=64 * 1024)
            try:
                await conn.send(
                    f"GET {URL} HTTP/1.1\r\nHost: m\r\nAuthorization: "
                    f"{AUTH['Authorization']}\r\n\r\n".encode()
                )
                started = time.monotonic()
                status, _, body = await asyncio.wait_for(
                    conn.response(chunk=64 * 1024, pause=0.03), 40
                )
                took = time.monotonic() - started
                assert status == 200
                assert len(body) == len(data) and body == data, "download cut"
                assert took > 2.5, f"download took only {took:.1f} s; not a slow reader"
            finally:
                conn.close()
            # (The connection itself may be closed by now: the server's last bytes went into
            # the socket buffers a while before this reader got them, and it idled since.)
            await good_304(port, etag)

    asyncio.run(scenario())


def test_defaults_bound_every_phase():
    import inspect

    params = inspect.signature(serve).parameters
    assert 0 < params["header_timeout"].default <= 30
    assert 0 < params["keepalive_timeout"].default <= 60
    assert 0 < params["max_connections"].default <= 10000
