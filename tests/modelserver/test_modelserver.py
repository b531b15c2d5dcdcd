"""The model server over real HTTP (127.0.0.1) and real files, with storage test doubles."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from botenv.modelserver.app import make_app
from botenv.modelserver.cache import TEMP_PREFIX, DiskCache, file_name
from botenv.modelserver.catalog import Resolution, StaticCatalog
from botenv.render.modelfile import served_file_name
from botenv.storage.base import AccessDenied, ObjectNotFound, StorageUnavailable
from tests.modelserver.doubles import BrokenStorage, DirStorage, FlakyStorage, resolution

pytestmark = [pytest.mark.modelserver, pytest.mark.timeout(60)]

NS, TAG, OTHER_TAG = "bots", "production", "experimental"
TOKEN, OTHER_TOKEN = "pull-token-production", "pull-token-experimental"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
URL = f"/models/{NS}/tags/{TAG}"
MODEL = "20190506-100418.tar.gz"


def model_bytes(size: int = 3 * 1024 * 1024 + 17, seed: bytes = b"a") -> bytes:
    # Several storage chunks, deterministic, not all zeros.
    block = hashlib.sha256(seed).digest() * 2048
    return (block * (size // len(block) + 1))[:size]


class World:
    """A model directory behind a storage double, a cache directory and a catalog."""

    def __init__(self, tmp_path: Path, storage: DirStorage | None = None) -> None:
        self.models = tmp_path / "models"
        self.models.mkdir(exist_ok=True)
        self.cache_dir = tmp_path / "cache"
        self.storage = storage or DirStorage(self.models)
        self.catalog = StaticCatalog()
        self.catalog.add_token(NS, TAG, TOKEN)
        self.catalog.add_token(NS, OTHER_TAG, OTHER_TOKEN)

    def add(
        self, name: str = MODEL, data: bytes | None = None, *, tag: str = TAG, md5: bool = True
    ) -> Resolution:
        (self.models / name).write_bytes(model_bytes() if data is None else data)
        res = resolution(self.storage, NS, tag, name, md5=md5)
        self.catalog.set(res)
        return res

    def cached_files(self) -> list[str]:
        return sorted(p.name for p in self.cache_dir.iterdir()) if self.cache_dir.exists() else []


@contextlib.asynccontextmanager
async def serving(
    world: World, *, max_bytes: int = 1 << 30, **options: float
) -> AsyncIterator[tuple[TestClient, DiskCache]]:
    cache = DiskCache(world.cache_dir, max_bytes)
    app = make_app(world.catalog, cache, **options)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log=None)  # as server.run does: the app logs requests
    client = TestClient(server)
    await client.start_server()
    try:
        yield client, cache
    finally:
        await client.close()
        await cache.close()


async def wait_for_fills(cache: DiskCache, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while cache.fills_in_flight:
        assert time.monotonic() < deadline, "background fill did not finish"
        await asyncio.sleep(0.05)


def test_get_streams_model_with_rasa_headers(tmp_path):
    world = World(tmp_path)
    res = world.add()

    async def scenario():
        async with serving(world) as (client, _):
            resp = await client.get(URL, headers=AUTH)
            body = await resp.read()
            assert resp.status == 200
            assert resp.headers["ETag"] == f'"{res.digest}"'
            # The digest in the name: Rasa's /status then says which content it loaded.
            assert resp.headers["filename"] == f"20190506-100418@{res.digest}.tar.gz"
            assert resp.headers["Content-Length"] == str(res.size)
            assert resp.headers["Content-Type"] == "application/gzip"
            assert "Content-Encoding" not in resp.headers  # the client must not gunzip it
            assert body == (world.models / MODEL).read_bytes()

    asyncio.run(scenario())


def test_304_on_matching_etag_and_200_after_the_tag_moves(tmp_path):
    world = World(tmp_path)
    first = world.add()

    async def scenario():
        async with serving(world) as (client, _):
            resp = await client.get(URL, headers=AUTH)
            await resp.read()
            etag = resp.headers["ETag"]  # Rasa sends it back verbatim, quotes included

            for if_none_match in (etag, first.digest, f'"other", W/{etag}', "*"):
                resp = await client.get(URL, headers={**AUTH, "If-None-Match": if_none_match})
                assert resp.status == 304, if_none_match
                assert resp.headers["ETag"] == etag
                assert await resp.read() == b""

            second = world.add("20190601-120000.tar.gz", model_bytes(seed=b"b"))  # move tag
            assert second.digest != first.digest
            resp = await client.get(URL, headers={**AUTH, "If-None-Match": etag})
            assert resp.status == 200
            assert resp.headers["ETag"] == f'"{second.digest}"'
            assert resp.headers["filename"] == f"20190601-120000@{second.digest}.tar.gz"
            assert await resp.read() == model_bytes(seed=b"b")

            resp = await client.get(URL, headers={**AUTH, "If-None-Match": resp.headers["ETag"]})
            assert resp.status == 304

    asyncio.run(scenario())


def test_head_answers_headers_without_downloading(tmp_path):
    world = World(tmp_path)
    res = world.add()

    async def scenario():
        async with serving(world) as (client, _):
            for _ in range(2):  # not cached yet, then cached
                resp = await client.head(URL, headers=AUTH)
                assert resp.status == 200
                assert resp.headers["ETag"] == f'"{res.digest}"'
                assert resp.headers["filename"] == served_file_name(MODEL, res.digest)
                assert resp.headers["Content-Length"] == str(res.size)
                assert await resp.read() == b""
                opens = world.storage.opens
                resp = await client.get(URL, headers=AUTH)
                await resp.read()
            assert opens == 1 and world.storage.opens == 1  # only the first GET downloaded

            resp = await client.head(URL, headers={**AUTH, "If-None-Match": f'"{res.digest}"'})
            assert resp.status == 304

    asyncio.run(scenario())


def test_auth_is_per_namespace_and_tag(tmp_path):
    world = World(tmp_path)
    world.add()
    world.add("other.tar.gz", tag=OTHER_TAG)

    async def scenario():
        async with serving(world) as (client, _):
            cases = {
                "missing": {},
                "wrong": {"Authorization": "Bearer not-a-token"},
                "other tag's token": {"Authorization": f"Bearer {OTHER_TOKEN}"},
                "basic scheme": {"Authorization": f"Basic {TOKEN}"},
                "empty bearer": {"Authorization": "Bearer "},
            }
            for case, headers in cases.items():
                resp = await client.get(URL, headers=headers)
                assert resp.status == 401, case
                assert resp.headers["WWW-Authenticate"].startswith("Bearer"), case
            # Query tokens end up in access logs: refused even when valid.
            resp = await client.get(URL, params={"token": TOKEN})
            assert resp.status == 401
            # An unknown tag looks the same as a known one to a caller without its token.
            resp = await client.get(f"/models/{NS}/tags/nonexistent", headers=AUTH)
            assert resp.status == 401
            resp = await client.get(
                f"/models/{NS}/tags/{OTHER_TAG}", headers={"Authorization": f"bearer {OTHER_TOKEN}"}
            )
            assert resp.status == 200
            assert world.storage.opens == 1

    asyncio.run(scenario())


def test_unknown_or_unresolved_tag_is_404(tmp_path):
    world = World(tmp_path)  # tokens exist, no resolution

    async def scenario():
        async with serving(world) as (client, _):
            resp = await client.get(URL, headers=AUTH)
            assert resp.status == 404

    asyncio.run(scenario())


def test_simultaneous_pulls_download_once(tmp_path):
    world = World(tmp_path)
    world.storage = DirStorage(world.models, delay=0.3)  # all 20 arrive during the fill
    world.add()

    async def scenario():
        async with serving(world) as (client, cache):

            async def pull() -> tuple[int, bytes]:
                resp = await client.get(URL, headers=AUTH)
                return resp.status, await resp.read()

            results = await asyncio.gather(*(pull() for _ in range(20)))
            assert [status for status, _ in results] == [200] * 20
            assert {body for _, body in results} == {(world.models / MODEL).read_bytes()}
            assert world.storage.opens == 1
            assert cache.stats.fills == 1 and cache.stats.misses == 20

    asyncio.run(scenario())


@pytest.mark.parametrize("truncate", [False, True], ids=["error-mid-stream", "short-stream"])
def test_partial_download_is_never_served(tmp_path, truncate):
    world = World(tmp_path)
    world.storage = FlakyStorage(world.models, failures=1, good_chunks=3, truncate=truncate)
    world.add()

    async def scenario():
        async with serving(world) as (client, cache):
            resp = await client.get(URL, headers=AUTH)
            assert resp.status == 503
            assert "Retry-After" in resp.headers
            assert world.cached_files() == []  # no temp file left, nothing indexed
            resp = await client.get(URL, headers=AUTH)
            assert resp.status == 200
            assert await resp.read() == (world.models / MODEL).read_bytes()
            assert world.storage.opens == 2
            assert cache.stats.fill_failures == 1

    asyncio.run(scenario())


def test_md5_mismatch_is_503_and_nothing_is_cached(tmp_path):
    world = World(tmp_path)
    res = world.add()
    world.catalog.set(Resolution(**{**res.__dict__, "md5": "0" * 32}))

    async def scenario():
        async with serving(world) as (client, _):
            for attempt in (1, 2):  # a failed fill does not poison the digest
                resp = await client.get(URL, headers=AUTH)
                assert resp.status == 503
                assert resp.headers["Retry-After"] == "10"
                assert "does not match its digest" in await resp.text()
                assert world.cached_files() == []
                assert world.storage.opens == attempt

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "error",
    [
        StorageUnavailable("s3 endpoint timed out (secret=s3cr3t)"),
        AccessDenied("s3 refused key AKIAs3cr3t"),
        ObjectNotFound("models/20190506-100418.tar.gz not found (s3cr3t)"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_storage_errors_are_503_with_retry_after(tmp_path, error):
    world = World(tmp_path)
    world.storage = BrokenStorage(world.models, error)
    world.add()

    async def scenario():
        async with serving(world, retry_after=7) as (client, _):
            resp = await client.get(URL, headers=AUTH)
            text = await resp.text()
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "7"
            assert resp.headers["Content-Type"].startswith("text/plain")
            assert "s3cr3t" not in text and len(text) < 200
            assert world.cached_files() == []

    asyncio.run(scenario())


def test_slow_storage_answers_503_in_time_and_fill_continues(tmp_path):
    world = World(tmp_path)
    world.storage = DirStorage(world.models, delay=1.5)
    world.add()
    answer_within = 0.5

    async def scenario():
        async with serving(world, answer_within=answer_within, retry_after=2) as (client, cache):
            started = time.monotonic()
            resp = await client.get(URL, headers=AUTH)
            elapsed = time.monotonic() - started
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "2"
            assert "being fetched" in await resp.text()
            assert elapsed < answer_within + 1  # a hang guard, not a benchmark
            assert cache.fills_in_flight == 1  # the client gave up; the fill did not

            await wait_for_fills(cache)
            resp = await client.get(URL, headers=AUTH)
            assert resp.status == 200
            assert await resp.read() == (world.models / MODEL).read_bytes()
            assert world.storage.opens == 1

    asyncio.run(scenario())


def test_lru_eviction_keeps_cache_under_its_bound(tmp_path):
    world = World(tmp_path)
    a, b, c = (world.add(f"{n}.tar.gz", model_bytes(100, n.encode()), tag=n) for n in "abc")

    async def scenario():
        cache = DiskCache(world.cache_dir, max_bytes=250)
        try:
            for res in (a, b, a, c):  # a is used again, so b is the least recently used
                path = await cache.path_for(res)
                assert path.read_bytes() == (world.models / res.key).read_bytes()
                on_disk = sum(p.stat().st_size for p in world.cache_dir.iterdir())
                assert cache.bytes_used == on_disk <= 250
            assert cache.cached(b) is None
            assert cache.cached(a) is not None and cache.cached(c) is not None
            assert cache.stats.evictions == 1
            assert (cache.stats.hits, cache.stats.misses) == (1, 3)

            # A pinned file (a response is opening it) is skipped by eviction.
            with cache.pinned(cache.cached(c)) as present:
                assert present
                await cache.path_for(b)  # evicts a, the least recently used
                await cache.path_for(a)  # c is least recently used now, but pinned: b goes
                assert cache.cached(c) is not None and cache.cached(b) is None
                assert cache.bytes_used <= 250
        finally:
            await cache.close()

    asyncio.run(scenario())


def test_restart_indexes_existing_files_by_mtime(tmp_path):
    world = World(tmp_path)
    resolutions = [world.add(f"{n}.tar.gz", model_bytes(100, n.encode()), tag=n) for n in "abc"]
    world.cache_dir.mkdir()
    now = time.time()
    for age, res in zip((300, 100, 200), resolutions, strict=True):
        path = world.cache_dir / file_name(res.digest)
        path.write_bytes((world.models / res.key).read_bytes())
        os.utime(path, (now - age, now - age))
    (world.cache_dir / f"{TEMP_PREFIX}crashed").write_bytes(b"partial")

    async def scenario():
        cache = DiskCache(world.cache_dir, max_bytes=250)  # oldest (a) must go
        try:
            assert [cache.cached(r) is not None for r in resolutions] == [False, True, True]
            assert cache.bytes_used == 200
            assert not (world.cache_dir / f"{TEMP_PREFIX}crashed").exists()
            await cache.path_for(resolutions[1])
            assert world.storage.opens == 0  # served from what was on disk
        finally:
            await cache.close()

    asyncio.run(scenario())


def test_digest_becomes_a_safe_file_name(tmp_path):
    assert file_name("../../etc/passwd").startswith("______etc_passwd-")
    assert "/" not in file_name("a/b+c==") and "." not in file_name('"W/x".gz')
    assert file_name("a/b") != file_name("a_b")  # sanitized alike, still distinct
    with pytest.raises(ValueError):
        file_name("")


def test_metrics_count_requests_bytes_and_cache(tmp_path):
    world = World(tmp_path)
    res = world.add()

    async def scenario():
        async with serving(world) as (client, _):
            for headers in (AUTH, AUTH, {**AUTH, "If-None-Match": f'"{res.digest}"'}, {}):
                await (await client.get(URL, headers=headers)).read()
            resp = await client.get("/metrics")
            samples = {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(await resp.text())
                for sample in family.samples
            }
            expected = {
                ("botenv_modelserver_requests_total", (("code", "200"), ("route", "model"))): 2,
                ("botenv_modelserver_requests_total", (("code", "304"), ("route", "model"))): 1,
                ("botenv_modelserver_requests_total", (("code", "401"), ("route", "model"))): 1,
                ("botenv_modelserver_served_bytes_total", ()): 2 * res.size,
                ("botenv_modelserver_cache_hits_total", ()): 1,
                ("botenv_modelserver_cache_misses_total", ()): 1,
                ("botenv_modelserver_cache_fills_total", ()): 1,
                ("botenv_modelserver_storage_fetch_seconds_count", (("result", "ok"),)): 1,
                ("botenv_modelserver_fills_in_flight", ()): 0,
                ("botenv_modelserver_cache_bytes", ()): res.size,
            }
            assert {key: samples.get(key) for key in expected} == expected

    asyncio.run(scenario())


def test_readyz_and_model_routes_wait_for_the_catalog(tmp_path):
    world = World(tmp_path)
    world.add()
    world.catalog.set_ready(False)

    async def scenario():
        async with serving(world) as (client, _):
            assert (await client.get("/healthz")).status == 200
            assert (await client.get("/readyz")).status == 503
            resp = await client.get(URL, headers=AUTH)
            assert resp.status == 503 and "Retry-After" in resp.headers
            world.catalog.set_ready(True)
            assert (await client.get("/readyz")).status == 200
            assert (await client.get(URL, headers=AUTH)).status == 200

    asyncio.run(scenario())


def test_access_log_has_no_tokens(tmp_path, caplog):
    world = World(tmp_path)
    world.add()

    async def scenario():
        async with serving(world) as (client, _):
            await (await client.get(URL, headers=AUTH)).read()
            await (await client.get(URL, params={"token": "query-s3cr3t"})).read()

    with caplog.at_level(logging.INFO, logger="botenv.modelserver.access"):
        asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == "botenv.modelserver.access"]
    assert len(lines) == 2
    assert f'"GET {URL}" 200' in lines[0] and f'"GET {URL}" 401' in lines[1]
    assert not any(TOKEN in line or "s3cr3t" in line for line in caplog.messages)


def test_filename_is_the_bare_file_name_of_a_model_stored_in_folders(tmp_path):
    # Rasa writes the download to a path built from `filename`: no folders in it.
    world = World(tmp_path)
    (world.models / "2024" / "05").mkdir(parents=True)
    res = world.add("2024/05/model.tar.gz")

    async def scenario():
        async with serving(world) as (client, _):
            resp = await client.get(URL, headers=AUTH)
            assert resp.status == 200
            assert resp.headers["filename"] == f"model@{res.digest}.tar.gz"
            assert await resp.read() == (world.models / res.key).read_bytes()

    asyncio.run(scenario())


def test_a_model_uploaded_again_under_its_name_is_served_under_another_file_name(tmp_path):
    world = World(tmp_path)
    first = world.add(MODEL, model_bytes(seed=b"a"))

    async def scenario():
        async with serving(world) as (client, _):
            resp = await client.get(URL, headers=AUTH)
            old_name = resp.headers["filename"]
            await resp.read()
            again = world.add(MODEL, model_bytes(seed=b"b"))  # same name, new content
            assert again.digest != first.digest
            resp = await client.get(URL, headers={**AUTH, "If-None-Match": f'"{first.digest}"'})
            assert resp.status == 200
            assert resp.headers["filename"] != old_name
            assert resp.headers["filename"] == f"20190506-100418@{again.digest}.tar.gz"
            await resp.read()

    asyncio.run(scenario())


def test_a_token_held_on_an_earlier_digest_gets_that_model_not_the_tags(tmp_path):
    # An environment whose Rasa refused the tag's model (HotSwap) stays on its own.
    world = World(tmp_path)
    old = world.add(MODEL, model_bytes(seed=b"a"))
    new = world.add("20190601-120000.tar.gz", model_bytes(seed=b"b"))

    class Pinned(StaticCatalog):
        def resolve(self, namespace, tag, digest=""):
            return old if digest == old.digest else super().resolve(namespace, tag, digest)

    catalog = Pinned([new])
    catalog.add_token(NS, TAG, TOKEN)
    catalog.add_token(NS, TAG, OTHER_TOKEN)
    catalog.pin_token(TOKEN, old.digest)
    world.catalog = catalog

    async def scenario():
        async with serving(world) as (client, _):
            resp = await client.get(URL, headers={**AUTH, "If-None-Match": f'"{old.digest}"'})
            assert (resp.status, resp.headers["ETag"]) == (304, f'"{old.digest}"')
            other = {"Authorization": f"Bearer {OTHER_TOKEN}"}
            resp = await client.get(URL, headers={**other, "If-None-Match": f'"{old.digest}"'})
            assert (resp.status, resp.headers["ETag"]) == (200, f'"{new.digest}"')
            await resp.read()
            catalog.pin_token(TOKEN, "")  # released: the tag's model again
            resp = await client.get(URL, headers={**AUTH, "If-None-Match": f'"{old.digest}"'})
            assert (resp.status, resp.headers["ETag"]) == (200, f'"{new.digest}"')
            await resp.read()

    asyncio.run(scenario())
