"""The revalidation fast path (botenv.modelserver.revalidation) over real sockets: it answers
exactly what aiohttp would, byte for byte, for Rasa's pulls and for every request an attacker
could shape to look like one; it counts its answers; and it is the path Rasa's revalidations
take. Two servers run side by side on the same catalog, one with it and one without."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from botenv.modelserver import app as app_module
from botenv.modelserver.revalidation import parse
from tests.modelserver.test_modelserver import (
    AUTH,
    MODEL,
    NS,
    OTHER_TOKEN,
    TAG,
    TOKEN,
    URL,
    World,
    model_bytes,
)
from tests.modelserver.test_slow_clients import Conn, running

pytestmark = [pytest.mark.modelserver, pytest.mark.timeout(120)]

# What Rasa 3.6's aiohttp client sends for a pull (EndpointConfig headers carry the token).
RASA_HEADERS = (
    "Host: model-server:8080\r\nUser-Agent: Python/3.10 aiohttp/3.8.6\r\nAccept: */*\r\n"
    "Accept-Encoding: gzip, deflate\r\nIf-None-Match: {etag}\r\n"
    f"Authorization: Bearer {TOKEN}\r\n"
)


def rasa_pull(etag: str, path: str = URL) -> bytes:
    return f"GET {path} HTTP/1.1\r\n{RASA_HEADERS.format(etag=etag)}\r\n".encode()


def test_rasas_revalidation_is_recognised_and_lookalikes_are_not():
    request = parse(rasa_pull('"abc"'))
    assert request is not None
    assert (request.namespace, request.tag, request.token, request.if_none_match) == (
        NS,
        TAG,
        TOKEN,
        '"abc"',
    )
    good = rasa_pull('"abc"')
    lookalikes = {
        "query string": rasa_pull('"abc"', URL + "?digest=x"),
        "escaped path": rasa_pull('"abc"', URL.replace("production", "produc%74ion")),
        "upper-case namespace": rasa_pull('"abc"', URL.replace(NS, "Bots")),
        "dot segment": rasa_pull('"abc"', f"/models/{NS}/tags/../tags/{TAG}"),
        "absolute form": rasa_pull('"abc"', f"http://model-server{URL}"),
        "HEAD": good.replace(b"GET", b"HEAD", 1),
        "HTTP/1.0": good.replace(b"HTTP/1.1", b"HTTP/1.0", 1),
        "partial": good[:-2],
        "pipelined": good + good,
        "bytes after the head": good + b"x",
        "Content-Length": good[:-2] + b"Content-Length: 0\r\n\r\n",
        "Transfer-Encoding": good[:-2] + b"Transfer-Encoding: chunked\r\n\r\n",
        "Connection": good[:-2] + b"Connection: close\r\n\r\n",
        "Expect": good[:-2] + b"Expect: 100-continue\r\n\r\n",
        "Upgrade": good[:-2] + b"Upgrade: h2c\r\n\r\n",
        "second If-None-Match": good[:-2] + b'If-None-Match: "other"\r\n\r\n',
        "second Authorization": good[:-2] + b"Authorization: Bearer other\r\n\r\n",
        "folded header": good[:-2] + b"X-Folded: a\r\n b\r\n\r\n",
        "space before colon": good[:-2] + b"X-Odd : a\r\n\r\n",
        "non-ASCII value": good[:-2] + "X-Name: é\r\n\r\n".encode(),
        "control character": good[:-2] + b"X-Name: a\x00b\r\n\r\n",
        "bare LF": good.replace(b"\r\nAccept:", b"\nAccept:"),
        "no token": good.replace(f"Bearer {TOKEN}".encode(), b"Bearer "),
        "Basic": good.replace(b"Bearer", b"Basic"),
        "empty If-None-Match": good.replace(b'"abc"', b""),
        "over the line limit": good[:-2] + b"X-Pad: " + b"a" * 8200 + b"\r\n\r\n",
    }
    taken = [name for name, data in lookalikes.items() if parse(data) is not None]
    assert taken == []


@contextlib.asynccontextmanager
async def both(world: World, **options: float) -> AsyncIterator[tuple[int, int]]:
    """The model server with the fast path and without it, on the same catalog."""
    plain = copy.copy(world)
    plain.cache_dir = world.cache_dir.with_name("cache-plain")
    async with (
        running(world, **options) as fast,
        running(plain, fast_revalidation=False, **options) as slow,
    ):
        yield fast, slow


DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")


async def exchange(port: int, sends: list[bytes]) -> list[bytes]:
    """What the server wrote back after each of `sends` on one connection (until it was
    quiet for a moment or closed), with the Date header's value blanked."""
    conn = await Conn.open(port)
    answers = []
    try:
        for data in sends:
            with contextlib.suppress(ConnectionError):
                await conn.send(data)
            got = b""
            with contextlib.suppress(TimeoutError, ConnectionError):
                while part := await asyncio.wait_for(conn.reader.read(1 << 20), 0.3):
                    got += part
            answers.append(DATE.sub(b"\r\nDate: -\r\n", got))
    finally:
        conn.close()
    return answers


def test_every_answer_is_aiohttps_own_for_pulls_and_lookalikes(tmp_path):
    world = World(tmp_path)
    res = world.add()
    etag = f'"{res.digest}"'
    pull = rasa_pull(etag)
    smuggled = pull[:-2] + f"Content-Length: {len(pull)}\r\n\r\n".encode() + pull
    scenarios = {
        "Rasa's revalidation, three times": [pull, pull, pull],
        "lower-case names and a weak ETag": [
            pull.replace(b"If-None-Match", b"if-none-match").replace(
                etag.encode(), b"W/" + etag.encode()
            )
        ],
        "an ETag list and a star": [
            pull.replace(etag.encode(), b'"x", ' + etag.encode()),
            pull.replace(etag.encode(), b"*"),
        ],
        "a stale ETag (a download)": [pull.replace(etag.encode(), b'"stale"'), pull],
        "another tag's token": [pull.replace(TOKEN.encode(), OTHER_TOKEN.encode()), pull],
        "an unknown token": [pull.replace(TOKEN.encode(), b"nope-nope-nope-nope"), pull],
        "an unknown tag": [rasa_pull(etag, f"/models/{NS}/tags/missing"), pull],
        "a pull then a HEAD": [pull, pull.replace(b"GET", b"HEAD", 1)],
        "a body that is a second request": [smuggled, pull],
        "chunked": [pull[:-2] + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", pull],
        "pipelined": [pull + pull + pull],
        "split in two": [pull[:20], pull[20:], pull],
        "a pull, then garbage": [pull, b"\x16\x03\x01\x00garbage\r\n\r\n"],
        "a body in a later packet": [pull[:-2] + b"Content-Length: 5\r\n\r\n", b"hello", pull],
        "two tokens, the first not this tag's": [
            pull.replace(b"Authorization:", b"Authorization: Bearer nope-nope\r\nAuthorization:"),
            pull,
        ],
        "two ETags headers": [
            pull.replace(b"If-None-Match:", b'If-None-Match: "x"\r\nIf-None-Match:')
        ],
        "a control character": [pull[:-2] + b"X-Name: a\x01b\r\n\r\n", pull],
        "HTTP/1.0": [pull.replace(b"HTTP/1.1", b"HTTP/1.0", 1)],
        "Connection: close": [pull[:-2] + b"Connection: close\r\n\r\n", pull],
    }

    async def scenario():
        async with both(world, header_timeout=5.0, keepalive_timeout=5.0) as (fast, slow):
            for name, sends in scenarios.items():
                with_fast, without = await asyncio.gather(
                    exchange(fast, sends), exchange(slow, sends)
                )
                assert with_fast == without, name
                assert any(without), name  # something was answered

            # What the catalog says at the moment of the request: a revoked token, a moved
            # tag, a catalog that is loading again.
            world.catalog.revoke_token(TOKEN)
            assert await exchange(fast, [pull]) == await exchange(slow, [pull])
            assert b" 401 " in (await exchange(fast, [pull]))[0]
            world.catalog.add_token(NS, TAG, TOKEN)
            world.add("moved.tar.gz", model_bytes(seed=b"moved"))
            moved = await exchange(fast, [pull])
            assert moved == await exchange(slow, [pull])
            assert moved[0].startswith(b"HTTP/1.1 200 ")
            world.catalog.set_ready(False)
            assert await exchange(fast, [pull]) == await exchange(slow, [pull])
            assert b" 503 " in (await exchange(fast, [pull]))[0]

    asyncio.run(scenario())


def test_rasas_revalidations_take_the_fast_path_and_are_counted(tmp_path, monkeypatch):
    """Counted by the app's `model` handler: the fast path leaves it nothing to do."""
    world = World(tmp_path)
    res = world.add()
    pull = rasa_pull(f'"{res.digest}"')
    handled = []
    model = app_module._Handlers.model

    async def counting(self, request):
        handled.append(request.method)
        return await model(self, request)

    monkeypatch.setattr(app_module._Handlers, "model", counting)

    async def pulls(port: int) -> tuple[int, float]:
        handled.clear()
        kept = await Conn.open(port)
        try:
            for _ in range(20):  # on one kept-alive connection
                await kept.send(pull)
                status, headers, _ = await kept.response()
                assert status == 304, headers
        finally:
            kept.close()
        for _ in range(20):  # a connection each, as Rasa pulls
            assert (await exchange(port, [pull]))[0].startswith(b"HTTP/1.1 304 ")
        metrics = await exchange(port, [b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"])
        text = metrics[0].partition(b"\r\n\r\n")[2].decode()
        counted = next(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "botenv_modelserver_requests_total"
            and sample.labels == {"code": "304", "route": "model"}
        )
        return len(handled), counted

    async def scenario():
        async with both(world) as (fast, slow):
            assert await pulls(slow) == (40, 40.0)
            assert await pulls(fast) == (0, 40.0)

    asyncio.run(scenario())


def test_a_client_that_stops_reading_is_left_to_aiohttps_flow_control(tmp_path):
    """Revalidations sent without reading the answers: the fast path stops writing once the
    socket's buffer is full, and the answers that come are still complete and in order."""
    world = World(tmp_path)
    res = world.add()
    pull = rasa_pull(f'"{res.digest}"')

    async def scenario():
        async with running(world, header_timeout=5.0, keepalive_timeout=5.0) as port:
            conn = await Conn.open(port, rcvbuf=4096)
            try:
                for _ in range(3000):  # ~600 kB of answers nobody reads yet
                    await conn.send(pull)
                await asyncio.sleep(0.5)
                answers = 0
                with contextlib.suppress(TimeoutError):
                    while True:
                        status, _, _ = await asyncio.wait_for(conn.response(), 2)
                        assert status == 304
                        answers += 1
                        if answers == 3000:
                            break
                assert answers == 3000
            finally:
                conn.close()
            assert (await exchange(port, [pull]))[0].startswith(b"HTTP/1.1 304 ")

    asyncio.run(scenario())


def test_the_model_route_still_serves_downloads_with_the_fast_path_on(tmp_path):
    world = World(tmp_path)
    res = world.add()

    async def scenario():
        async with running(world) as port:
            conn = await Conn.open(port)
            try:
                status, headers, body = await conn.request(AUTH)
                assert status == 200 and headers["etag"] == f'"{res.digest}"'
                assert body == model_bytes() and headers["filename"].endswith(".tar.gz")
                assert MODEL.removesuffix(".tar.gz") in headers["filename"]
                status, _, _ = await conn.request({**AUTH, "If-None-Match": headers["etag"]})
                assert status == 304
            finally:
                conn.close()

    asyncio.run(scenario())
