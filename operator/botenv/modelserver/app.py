"""The HTTP side of the model server, shaped by how Rasa pulls models.

Rasa sends `GET <url>` with `If-None-Match: <last ETag>` every few seconds and reloads on every
200, so a matching ETag must get a 304. It discards a 200 without an ETag, shows the `filename`
header as `model_file`, and a model server that hangs blocks its start-up for minutes: every
answer here comes within `answer_within` seconds, whatever storage does (503 + Retry-After
while a download goes on in the background; Rasa keeps its current model meanwhile).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import PurePosixPath

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from botenv.modelserver.cache import ContentMismatch, DiskCache
from botenv.modelserver.catalog import Catalog, Resolution
from botenv.modelserver.revalidation import FastPath, Revalidation
from botenv.render.modelfile import served_file_name
from botenv.storage.base import AccessDenied, ObjectNotFound, StorageError, StorageUnavailable
from botenv.storage.policy import LocationNotAllowed

log = logging.getLogger(__name__)
# Method, path without query string, status, size, time: never headers or query strings,
# which is where credentials travel (Rasa's `token:` setting puts one in the query).
access_log = logging.getLogger("botenv.modelserver.access")

MODEL_ROUTE = "/models/{namespace}/tags/{tag}"
CONTENT_TYPE = "application/gzip"
CLIENT_CLOSED = 499  # status recorded when the client left before the answer was sent


class Metrics:
    """Prometheus metrics of one app, in a registry of its own (several apps per process,
    e.g. in tests, must not collide in the global one)."""

    def __init__(self, cache: DiskCache) -> None:
        self.registry = CollectorRegistry()
        # Requests answered per (code, route): plain integers on the event loop, read at
        # scrape time; a prometheus Counter would take a lock on every revalidation.
        self.requests: collections.Counter[tuple[int, str]] = collections.Counter()
        self.registry.register(_RequestsCollector(self.requests))
        self.bytes_served = Counter(
            "botenv_modelserver_served_bytes", "Model bytes sent to clients", registry=self.registry
        )
        self.fetch_seconds = Histogram(
            "botenv_modelserver_storage_fetch_seconds",
            "Time to download a model from storage into the cache",
            ["result"],
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        fills = Gauge(
            "botenv_modelserver_fills_in_flight",
            "Model downloads from storage in progress",
            registry=self.registry,
        )
        fills.set_function(lambda: cache.fills_in_flight)
        self.registry.register(_CacheCollector(cache))
        cache.add_fill_observer(
            lambda seconds, ok: self.fetch_seconds.labels("ok" if ok else "error").observe(seconds)
        )


class _RequestsCollector(Collector):
    """botenv_modelserver_requests_total{code, route}, from Metrics.requests."""

    def __init__(self, counts: collections.Counter[tuple[int, str]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "botenv_modelserver_requests", "HTTP requests answered", labels=["code", "route"]
        )
        for (code, route), value in sorted(self._counts.items()):
            family.add_metric([str(code), route], value)
        yield family


class _CacheCollector(Collector):
    """Reads the cache's own counters at scrape time (the cache knows nothing of Prometheus)."""

    def __init__(self, cache: DiskCache) -> None:
        self._cache = cache

    def collect(self) -> Iterable[Metric]:
        stats = self._cache.stats
        prefix = "botenv_modelserver_cache"
        yield CounterMetricFamily(
            f"{prefix}_hits", "Requests answered from the cache", value=stats.hits
        )
        yield CounterMetricFamily(
            f"{prefix}_misses", "Requests that waited for a download", value=stats.misses
        )
        yield CounterMetricFamily(
            f"{prefix}_fills", "Downloads from storage started", value=stats.fills
        )
        yield CounterMetricFamily(
            f"{prefix}_fill_failures",
            "Downloads from storage that failed",
            value=stats.fill_failures,
        )
        yield CounterMetricFamily(
            f"{prefix}_evictions", "Models evicted from the cache", value=stats.evictions
        )
        yield GaugeMetricFamily(
            f"{prefix}_bytes", "Bytes of models in the cache", value=self._cache.bytes_used
        )
        yield GaugeMetricFamily(
            f"{prefix}_max_bytes", "Size bound of the cache", value=self._cache.max_bytes
        )


METRICS_KEY = web.AppKey("botenv_modelserver_metrics", Metrics)
# Answers revalidations before aiohttp parses them (server.serve hands it to the runner).
FAST_PATH_KEY = web.AppKey("botenv_modelserver_fast_path", FastPath)


class Lifecycle:
    """Whether the server is stopping (set by server.serve): /readyz then fails, so that
    the replica leaves its Service, while requests that still come are answered."""

    draining = False


LIFECYCLE_KEY = web.AppKey("botenv_modelserver_lifecycle", Lifecycle)


class _ModelFileResponse(web.FileResponse):
    """sendfile() streaming (memory flat in model size) with the model's digest as ETag.

    aiohttp would set ETag and Last-Modified from the cache file's mtime and size, which
    change with every fill and mean nothing to Rasa; those two setters are disabled so the
    headers given at construction stay.
    """

    etag = property(web.StreamResponse.etag.fget, lambda self, value: None)  # type: ignore
    last_modified = property(
        web.StreamResponse.last_modified.fget,  # type: ignore
        lambda self, value: None,
    )

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        # The handler sends the file itself (while the cache file is pinned); aiohttp then
        # calls prepare() again on the returned response, which FileResponse would redo.
        if self.prepared:
            return await web.StreamResponse.prepare(self, request)
        return await super().prepare(request)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _etag_values(header_values: Iterable[str]) -> Iterator[str]:
    """The opaque values in If-None-Match headers: lists, W/ prefixes and quotes removed."""
    for header in header_values:
        for item in header.split(","):
            item = item.strip()
            if item[:2].upper() == "W/":
                item = item[2:]
            yield item.strip('"')


def etag_matches(header_values: Iterable[str], digest: str) -> bool:
    return any(value in ("*", digest) for value in _etag_values(header_values))


def _unchanged(etag: str, digest: str, seen: str, every: Callable[[], list[str]]) -> bool:
    """Whether If-None-Match (`seen`, the first; `every` value) names the served model.
    Rasa sends back exactly the ETag it got: compared as is before any parsing."""
    return seen == etag or etag_matches(every(), digest)


@functools.lru_cache(maxsize=1024)
def _answer_headers(model: str, digest: str) -> tuple[str, str]:
    """ETag and `filename` of a model: the same for every request, so made once.

    Rasa uses `filename` as a path inside its temp dir: the bare file name of a model
    stored under folders (spec.model may be "2024/05/model.tar.gz"), with the digest in
    it, so that what Rasa reports as its model names the content it loaded."""
    return f'"{digest}"', served_file_name(PurePosixPath(model).name, digest)


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=headers)


def _storage_reason(error: Exception, resolution: Resolution) -> str:
    # Fixed phrases per failure kind: a backend's own message stays in the server log.
    if isinstance(error, StorageUnavailable):
        return "model storage is unavailable"
    if isinstance(error, AccessDenied):
        return "model storage refused the model server's credentials"
    if isinstance(error, ObjectNotFound):
        return f"model {resolution.model} was not found in storage"
    if isinstance(error, ContentMismatch):
        return f"model {resolution.model} as downloaded does not match its digest"
    if isinstance(error, StorageError):
        return "model storage failed"
    return "the model cache could not store the model"


class _Handlers:
    def __init__(
        self,
        catalog: Catalog,
        cache: DiskCache,
        metrics: Metrics,
        answer_within: float,
        retry_after: int,
        lifecycle: Lifecycle,
    ) -> None:
        self.catalog = catalog
        self.lifecycle = lifecycle
        self.cache = cache
        self.metrics = metrics
        self.answer_within = answer_within
        self.retry_after = retry_after

    def _unavailable(self, reason: str) -> web.Response:
        return _text(
            503, f"{reason}; retry in {self.retry_after} s", {"Retry-After": str(self.retry_after)}
        )

    async def model(self, request: web.Request) -> web.StreamResponse:
        # Rasa revalidates every pullIntervalSeconds from every pod, so most requests end
        # in the 304 below: nothing on their way reads the disk, calls the API or parses
        # JSON; the catalog answers from its watched indexes and remembered resolutions.
        match = request.match_info
        namespace, tag = match["namespace"], match["tag"]
        if not self.catalog.ready():
            return self._unavailable("the model catalog is still loading")

        # Authentication first: an unauthenticated caller must not learn whether a tag exists.
        token = _bearer(request)
        grant = None if token is None else self.catalog.grant(namespace, tag, token)
        if grant is None:
            challenge = 'Bearer realm="botenv"'
            if token is not None:
                challenge += ', error="invalid_token"'
            hint = (
                "; query-string tokens are not accepted, send Authorization: Bearer"
                if "token" in request.query
                else ""
            )
            return _text(
                401, f"a pull token for this tag is required{hint}", {"WWW-Authenticate": challenge}
            )

        # A pod's own pin (rollout Restart) first, else its environment's (a refused model).
        pinned = (request.query.get("digest", "") if request.query_string else "") or grant
        resolution = self.catalog.resolve(namespace, tag, pinned)
        if resolution is None and pinned and self.catalog.resolve(namespace, tag):
            return _text(
                404,
                f"tag {namespace}/{tag} has no model with digest {pinned} "
                "(neither its current model nor one in its history)",
            )
        if resolution is None:
            return _text(404, f"tag {namespace}/{tag} is unknown or not resolved yet")

        etag, filename = _answer_headers(resolution.model, resolution.digest)
        headers = {"ETag": etag, "filename": filename}
        seen = request.headers.get("If-None-Match")
        if seen is not None and _unchanged(
            etag, resolution.digest, seen, lambda: request.headers.getall("If-None-Match")
        ):
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = CONTENT_TYPE
        if request.method == "HEAD":
            # Never downloads: a verified cached file has exactly the resolved size anyway.
            headers["Content-Length"] = str(resolution.size)
            response = web.StreamResponse(status=200, headers=headers)
            await response.prepare(request)
            return response
        return await self._send(request, resolution, headers)

    def revalidated(self, request: Revalidation) -> tuple[str, str] | None:
        """ETag and filename of the 304 that `model` answers this revalidation with, or
        None when it answers anything else (the fast path then leaves it to `model`)."""
        if not self.catalog.ready():
            return None
        grant = self.catalog.grant(request.namespace, request.tag, request.token)
        if grant is None:
            return None
        resolution = self.catalog.resolve(request.namespace, request.tag, grant)
        if resolution is None:
            return None
        etag, filename = _answer_headers(resolution.model, resolution.digest)
        seen = request.if_none_match
        if not _unchanged(etag, resolution.digest, seen, lambda: [seen]):
            return None
        return etag, filename

    async def _send(
        self, request: web.Request, resolution: Resolution, headers: dict[str, str]
    ) -> web.StreamResponse:
        for _ in range(2):  # a second try only if eviction won a race with this request
            try:
                path = await asyncio.wait_for(self.cache.path_for(resolution), self.answer_within)
            except TimeoutError:
                # The fill goes on (path_for shields it); the next pull finds it done.
                return self._unavailable(f"model {resolution.model} is being fetched from storage")
            except LocationNotAllowed:
                # Not a passing failure: retrying would not help, and no 503 invites it.
                return _text(
                    403,
                    f"the storage location of tag {resolution.namespace}/"
                    f"{resolution.tag} is not allowed in this cluster",
                )
            except (StorageError, OSError) as error:
                # The cache logs the failure itself (also for fills nobody waits for).
                log.debug(
                    "cannot serve %s/%s: %s: %s",
                    resolution.namespace,
                    resolution.tag,
                    type(error).__name__,
                    error,
                )
                return self._unavailable(_storage_reason(error, resolution))
            with self.cache.pinned(path) as present:
                if not present:
                    continue
                response = _ModelFileResponse(path, headers=headers)
                await response.prepare(request)  # sends the whole file
                if response.status in (200, 206):
                    self.metrics.bytes_served.inc(response.content_length or 0)
                return response
        return self._unavailable("the model cache is under pressure")

    async def healthz(self, request: web.Request) -> web.Response:
        return _text(200, "ok")

    async def readyz(self, request: web.Request) -> web.Response:
        # Ready while it can serve: not before the catalog is loaded, not once it stops.
        if self.lifecycle.draining:
            return _text(503, "the model server is shutting down")
        if self.catalog.ready():
            return _text(200, "ready")
        return _text(503, "the model catalog is still loading")

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )


Observed = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _observer(metrics: Metrics) -> Callable[[str, Observed], Observed]:
    """Wraps a route's handler: counts its answers per code and logs them (no request
    header, no query string). Not a middleware: any middleware makes aiohttp run its own
    per-request wrapper too, which cost a revalidation more than all of botenv's work."""

    def observe(route: str, handler: Observed) -> Observed:
        async def observed(request: web.Request) -> web.StreamResponse:
            started = time.monotonic()
            status = 500
            size: int | None = None
            try:
                response = await handler(request)
                status, size = response.status, response.content_length
                return response
            except web.HTTPException as error:  # 404/405 of unknown routes (`unmatched`)
                status = error.status
                raise
            except (ConnectionError, asyncio.CancelledError):
                status = CLIENT_CLOSED
                raise
            finally:
                metrics.requests[(status, route)] += 1
                # A 304 is Rasa's revalidation, every pull interval from every pod: the
                # metrics count them; the log shows them at DEBUG (--verbose), every other
                # answer at INFO.
                level = logging.DEBUG if status == 304 else logging.INFO
                if access_log.isEnabledFor(level):
                    access_log.log(
                        level,
                        '%s "%s %s" %s %s %.3fs',
                        request.remote,
                        request.method,
                        request.path,
                        status,
                        "-" if size is None else size,
                        time.monotonic() - started,
                    )

        return observed

    return observe


async def _unmatched(request: web.Request) -> web.StreamResponse:
    """What aiohttp answers a path or method no route takes (404, 405 with Allow), from a
    catch-all route so that the answer is observed like any other."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def make_app(
    catalog: Catalog, cache: DiskCache, *, answer_within: float = 4.0, retry_after: int = 10
) -> web.Application:
    """The model server app. The caller owns `cache` (and closes it)."""
    metrics = Metrics(cache)
    lifecycle = Lifecycle()
    handlers = _Handlers(catalog, cache, metrics, answer_within, retry_after, lifecycle)
    observe = _observer(metrics)
    app = web.Application()
    app[METRICS_KEY] = metrics
    app[LIFECYCLE_KEY] = lifecycle

    def answered(request: Revalidation, peer: str) -> None:  # as `observe` does for `model`
        metrics.requests[(304, "model")] += 1
        if access_log.isEnabledFor(logging.DEBUG):
            path = MODEL_ROUTE.format(namespace=request.namespace, tag=request.tag)
            access_log.debug('%s "GET %s" 304 - 0.000s', peer, path)

    app[FAST_PATH_KEY] = FastPath(handlers.revalidated, answered)
    # Pulls are counted apart from probes and scrapes. add_get also answers HEAD.
    app.router.add_get(MODEL_ROUTE, observe("model", handlers.model))
    app.router.add_get("/healthz", observe("other", handlers.healthz))
    app.router.add_get("/readyz", observe("other", handlers.readyz))
    app.router.add_get("/metrics", observe("other", handlers.metrics_page))
    app.router.add_route("*", "/{path:.*}", observe("other", _unmatched))  # the last one
    return app
