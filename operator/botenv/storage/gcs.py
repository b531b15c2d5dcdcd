"""Google Cloud Storage (and GCS emulators / private endpoints) through google-cloud-storage."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from typing import Any

import google.auth.exceptions
import requests.exceptions
from google.api_core import exceptions as api_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption
from google.cloud.storage.retry import DEFAULT_RETRY
from google.oauth2 import service_account

from botenv.storage.base import (
    CHUNK,
    AccessDenied,
    DigestMismatch,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    check_stored,
    hash_file,
    read_back_md5,
)

CREDENTIALS_KEY = "credentials.json"
READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
# put() only: a service-account key is asked for a write token when something is uploaded.
READ_WRITE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
# (connect, read) seconds per HTTP request, and the whole retry budget of one call.
TIMEOUT = (3.0, 5.0)
RETRY = DEFAULT_RETRY.with_timeout(4.0)
# Bytes per ranged GET: few round trips for large models, bounded memory per download.
RANGE = 8 * CHUNK
# put(): files above 8 MiB go up as resumable uploads in requests of this size (bounded
# memory; a multiple of 256 KiB), each retried within UPLOAD_RETRY's budget.
UPLOAD_CHUNK = 16 * CHUNK
UPLOAD_RETRY = DEFAULT_RETRY.with_timeout(10.0)

_DENIED = (
    api_exceptions.Forbidden,
    api_exceptions.Unauthorized,
    google.auth.exceptions.RefreshError,  # the token endpoint rejected the key
)
_UNREACHABLE = (
    api_exceptions.GoogleAPIError,  # 5xx, 429, RetryError after the retry budget
    google.auth.exceptions.TransportError,
    requests.exceptions.RequestException,
    OSError,
)


class GCSStorage:
    """One bucket. Keys are full object names (prefix included, see factory.key_for)."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str = "",
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        creds: Any = None
        project: str | None = None
        key_json = (credentials or {}).get(CREDENTIALS_KEY, "")
        if key_json:
            try:
                info = json.loads(key_json)
                creds = service_account.Credentials.from_service_account_info(
                    info, scopes=[READ_ONLY_SCOPE]
                )
            except (ValueError, KeyError, TypeError) as exc:
                # Say which key is wrong, never what it holds.
                raise AccessDenied(
                    f"{self._where('')}: Secret key {CREDENTIALS_KEY!r} is not a valid "
                    f"service-account key ({type(exc).__name__})"
                ) from None
            project = info.get("project_id")
        elif endpoint.startswith("http://"):
            # A plain-HTTP endpoint is an emulator (fake-gcs-server): it takes no credentials.
            creds = AnonymousCredentials()
        # Otherwise Application Default Credentials (workload identity, GCE metadata).
        options = {"api_endpoint": endpoint.rstrip("/")} if endpoint else None
        self._client_args: dict[str, Any] = {"project": project, "client_options": options}
        self._credentials = creds
        self._client = self._new_client(creds)
        self._bucket = self._client.bucket(bucket)
        self._write_bucket: Any = None

    def _new_client(self, creds: Any) -> storage.Client:
        try:
            # project=None (not omitted) skips project discovery: reading objects needs none.
            return storage.Client(credentials=creds, **self._client_args)
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise AccessDenied(
                f"{self._where('')}: no credentials: give {CREDENTIALS_KEY!r} in the Secret "
                f"or run with workload identity ({type(exc).__name__})"
            ) from None

    def _writable(self) -> Any:
        """The bucket through a client that may write: a service-account key reads with a
        read-only token, so uploads get their own client with a read-write one. (Default
        credentials and the emulator's anonymous ones already carry the write scope.)"""
        if self._write_bucket is None:
            if isinstance(self._credentials, service_account.Credentials):
                client = self._new_client(self._credentials.with_scopes([READ_WRITE_SCOPE]))
                self._write_bucket = client.bucket(self.bucket)
            else:
                self._write_bucket = self._bucket
        return self._write_bucket

    def _where(self, key: str) -> str:
        at = f" at {self.endpoint}" if self.endpoint else ""
        return f"gcs bucket {self.bucket!r}{at}" + (f", key {key!r}" if key else "")

    def _error(self, key: str, exc: Exception) -> StorageError:
        where = self._where(key)
        if isinstance(exc, api_exceptions.NotFound):
            return ObjectNotFound(f"{where}: not found")
        if isinstance(exc, _DENIED):
            return AccessDenied(f"{where}: access denied ({_brief(exc)})")
        return StorageUnavailable(f"{where}: unreachable ({_brief(exc)})")

    def _reload(self, key: str) -> Any:
        blob = self._bucket.blob(key)
        try:
            blob.reload(timeout=TIMEOUT, retry=RETRY)
        except (*_DENIED, *_UNREACHABLE) as exc:
            raise self._error(key, exc) from None
        return blob

    def stat(self, key: str) -> ObjectInfo:
        blob = self._reload(key)
        md5 = None
        if blob.md5_hash:
            try:
                md5 = base64.b64decode(blob.md5_hash).hex()
            except (binascii.Error, ValueError):
                md5 = None
        # Composite objects have no MD5; the generation changes exactly when the content does.
        digest = md5 or (f"gen-{blob.generation}" if blob.generation else (blob.etag or ""))
        if not digest:
            raise StorageUnavailable(f"{self._where(key)}: the store returned no digest")
        return ObjectInfo(key=key, digest=digest, size=int(blob.size or 0), md5=md5)

    def put(self, key: str, path: str) -> ObjectInfo:
        local = hash_file(path)
        blob = self._writable().blob(key, chunk_size=UPLOAD_CHUNK)
        try:
            blob.upload_from_filename(
                path,
                content_type="application/octet-stream",  # stored as is: no transcoding
                # The library checks the store's MD5 of what arrived against what it sent.
                checksum="md5",
                timeout=TIMEOUT,
                retry=UPLOAD_RETRY,  # also unconditional uploads: a model is written whole
            )
        except DataCorruption as exc:
            raise DigestMismatch(
                f"{self._where(key)}: the store's MD5 of the upload does not match what was "
                f"sent ({_brief(exc)})"
            ) from None
        except (*_DENIED, *_UNREACHABLE) as exc:
            raise self._error(key, exc) from None
        info = self.stat(key)
        if info.md5 is None:
            # Not expected for a plain upload; read the object back rather than trust it.
            check_stored(
                self._where(key),
                local,
                info,
                found=read_back_md5(self, key),
                what="MD5 of the content read back",
            )
        else:
            check_stored(self._where(key), local, info, found=info.md5, what="stored MD5")
        return info

    def open(self, key: str) -> Iterator[bytes]:
        blob = self._reload(key)  # fails here, not at first read, when the object is missing
        return self._chunks(key, blob.generation, int(blob.size or 0))

    def _chunks(self, key: str, generation: int | None, size: int) -> Iterator[bytes]:
        # Pinned to the generation stat saw, so a concurrent overwrite cannot mix contents.
        pinned = self._bucket.blob(key, generation=generation)
        pos = 0
        while pos < size:
            end = min(pos + RANGE, size) - 1
            try:
                data = pinned.download_as_bytes(
                    start=pos,
                    end=end,
                    # The stored bytes (no gzip transcoding): they match size and MD5.
                    raw_download=True,
                    checksum=None,  # ranges carry no whole-object checksum to verify
                    timeout=TIMEOUT,
                    retry=RETRY,
                )
            except (*_DENIED, *_UNREACHABLE) as exc:
                raise self._error(key, exc) from None
            if not data:
                raise StorageUnavailable(
                    f"{self._where(key)}: download ended at byte {pos} of {size}"
                )
            for i in range(0, len(data), CHUNK):
                yield data[i : i + CHUNK]
            pos += len(data)


def _brief(exc: Exception) -> str:
    # google errors can embed whole response bodies: keep the first line.
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
