"""A plain HTTP(S) origin holding models as files under a base URL, through urllib3."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterator, Mapping
from typing import NoReturn
from urllib.parse import quote, urlsplit

import urllib3
import urllib3.connection
import urllib3.exceptions
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from botenv.storage.base import (
    CHUNK,
    AccessDenied,
    ObjectInfo,
    ObjectNotFound,
    ReadOnlyStorage,
    StorageError,
    StorageUnavailable,
)
from botenv.storage.policy import UNRESTRICTED, StoragePolicy

TIMEOUT = urllib3.Timeout(connect=3.0, read=10.0)
# One quick reconnect for a blip; never retry on a status (the origin said what it meant).
RETRIES = urllib3.Retry(
    total=3,
    connect=1,
    read=0,
    status=0,
    redirect=3,
    backoff_factor=0.2,
    raise_on_redirect=True,
    raise_on_status=False,
)
_TRANSIENT = {408, 425, 429, 500, 502, 503, 504}


def join_url(base: str, key: str) -> str:
    """base + '/' + key, the key percent-encoded ('/' kept), whatever slashes base ends with."""
    return base.rstrip("/") + "/" + quote(key.lstrip("/"), safe="/")


def _digest(etag: str | None, last_modified: str | None, length: int) -> str | None:
    """The origin's ETag without quotes (W/ kept: a weak tag stays distinct), else a hash of
    Last-Modified and Content-Length; None when the origin gives neither."""
    if etag:
        etag = etag.strip()
        if etag.startswith("W/"):
            return "W/" + etag[2:].strip('"')
        return etag.strip('"')
    if last_modified:
        seed = f"{last_modified}\n{length}".encode()
        return "lm-" + hashlib.sha256(seed).hexdigest()[:32]
    return None


def _guarded_pools(policy: StoragePolicy, field: str) -> dict[str, type[HTTPConnectionPool]]:
    """Connection pools whose connections go only to addresses `policy` allows: the host is
    resolved, every address checked, and the socket opened to the checked address (a DNS
    answer that changes between a check and the connection cannot slip through). This
    holds for redirects too. TLS still verifies the certificate against the host name."""

    def connect(conn: urllib3.connection.HTTPConnection, original):  # noqa: ANN001, ANN202
        infos = policy.addresses(field, conn._dns_host, conn.port)
        if not infos:
            return original()  # unresolvable: urllib3 reports it as such
        host = conn._dns_host
        conn._dns_host = infos[0][4][0]
        try:
            return original()
        finally:
            conn._dns_host = host

    class Conn(urllib3.connection.HTTPConnection):
        def _new_conn(self):  # noqa: ANN202
            return connect(self, super()._new_conn)

    class TLSConn(urllib3.connection.HTTPSConnection):
        def _new_conn(self):  # noqa: ANN202
            return connect(self, super()._new_conn)

    class Pool(HTTPConnectionPool):
        ConnectionCls = Conn

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = TLSConn

    return {"http": Pool, "https": TLSPool}


class HTTPStorage:
    """Models at base_url/<key>. Keys are relative keys or full URLs under base_url."""

    def __init__(
        self,
        base_url: str,
        *,
        credentials: Mapping[str, str] | None = None,
        policy: StoragePolicy = UNRESTRICTED,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.host = urlsplit(base_url).netloc
        creds = credentials or {}
        # Not a public Rasa setting: a token or basic-auth pair for a protected origin.
        self._headers = {"Accept-Encoding": "identity"}  # the stored bytes, no gzip
        if creds.get("token"):
            self._headers["Authorization"] = f"Bearer {creds['token']}"
        elif creds.get("username"):
            pair = f"{creds['username']}:{creds.get('password', '')}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        # Redirects to another host drop Authorization (urllib3's default Retry policy).
        self._pool = urllib3.PoolManager(timeout=TIMEOUT, retries=RETRIES, maxsize=8)
        if policy.enforced:
            self._pool.pool_classes_by_scheme = _guarded_pools(policy, "spec.storage.url")

    def url_for(self, key: str) -> str:
        if key.startswith(("http://", "https://")):
            if not key.startswith(self.base_url):
                raise ObjectNotFound(f"http {self.host}: {key!r} is not under {self.base_url}")
            return key
        return join_url(self.base_url, key)

    def _where(self, url: str) -> str:
        return f"http origin {self.host}, key {url[len(self.base_url) :]!r}"

    def _send(self, method: str, url: str) -> urllib3.BaseHTTPResponse:
        try:
            return self._pool.request(
                method, url, headers=self._headers, preload_content=False, redirect=True
            )
        except urllib3.exceptions.HTTPError as exc:
            raise StorageUnavailable(
                f"{self._where(url)}: unreachable ({type(exc).__name__})"
            ) from None

    def _request(self, method: str, url: str) -> urllib3.BaseHTTPResponse:
        """The response when 2xx (body unread), else the error its status means."""
        resp = self._send(method, url)
        if not 200 <= resp.status < 300:
            self._fail(resp, url, method)
        return resp

    def _fail(self, resp: urllib3.BaseHTTPResponse, url: str, method: str) -> NoReturn:
        resp.drain_conn()
        resp.release_conn()
        where = self._where(url)
        if resp.status in (404, 410):
            raise ObjectNotFound(f"{where}: not found (HTTP {resp.status})")
        if resp.status in (401, 403):
            raise AccessDenied(f"{where}: access denied (HTTP {resp.status})")
        if resp.status in _TRANSIENT or resp.status >= 500:
            raise StorageUnavailable(f"{where}: origin error (HTTP {resp.status})")
        raise StorageError(f"{where}: unexpected HTTP {resp.status} for {method}")

    def stat(self, key: str) -> ObjectInfo:
        url = self.url_for(key)
        resp = self._send("HEAD", url)
        if resp.status in (405, 501):
            resp.release_conn()
            # An origin without HEAD: GET, keep the headers, drop the connection unread.
            resp = self._request("GET", url)
            resp.close()
        elif not 200 <= resp.status < 300:
            self._fail(resp, url, "HEAD")
        resp.release_conn()
        headers = resp.headers
        length = headers.get("Content-Length")
        md5 = _content_md5(headers.get("Content-MD5"))
        digest = _digest(headers.get("ETag"), headers.get("Last-Modified"), int(length or -1))
        if digest is None or length is None:
            # No identity or size in the headers: read the content once to get both.
            return self._hash_content(url)
        return ObjectInfo(key=url, digest=digest, size=int(length), md5=md5)

    def _hash_content(self, url: str) -> ObjectInfo:
        h = hashlib.md5(usedforsecurity=False)
        size = 0
        for chunk in self._stream(url, self._request("GET", url)):
            h.update(chunk)
            size += len(chunk)
        return ObjectInfo(key=url, digest=h.hexdigest(), size=size, md5=h.hexdigest())

    def put(self, key: str, path: str) -> ObjectInfo:
        # An origin has no upload API botenv could rely on (PUT and WebDAV vary too much).
        raise ReadOnlyStorage(
            "storage provider http is read-only: use s3, gcs, azure or local for training output"
        )

    def open(self, key: str) -> Iterator[bytes]:
        url = self.url_for(key)
        return self._stream(url, self._request("GET", url))

    def _stream(self, url: str, resp: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        try:
            # urllib3 enforces Content-Length: a cut connection raises, never a short model.
            yield from resp.stream(CHUNK)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageUnavailable(
                f"{self._where(url)}: download interrupted ({type(exc).__name__})"
            ) from None
        finally:
            resp.release_conn()


def _content_md5(value: str | None) -> str | None:
    if not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 16 else None
