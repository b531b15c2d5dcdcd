"""Azure Blob Storage (and Azurite / sovereign clouds) through azure-storage-blob."""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import hashlib
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.storage.blob import (
    BlobClient,
    BlobServiceClient,
    ContainerClient,
    ContentSettings,
    LinearRetry,
)

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
)

CONNECT_TIMEOUT = 3
READ_TIMEOUT = 5
# The SDK's default retry waits 15 s and more between attempts: a dead store would
# hang a stat for a minute. One quick retry rides over a blip.
RETRY_TOTAL = 1
RETRY_BACKOFF = 1
# Bytes per ranged GET (the first one included): bounded memory, few round trips.
RANGE = 4 * CHUNK
# put(): up to SINGLE_PUT_MAX one Put Blob (read into memory); above it blocks of BLOCK,
# UPLOAD_CONCURRENCY in flight. Every request carries its Content-MD5, which the service
# checks; the blob's MD5 property is the MD5 of exactly the bytes sent (see put()).
SINGLE_PUT_MAX = 32 * CHUNK
BLOCK = 8 * CHUNK
UPLOAD_CONCURRENCY = 4


def _parse_connection_string(text: str) -> dict[str, str]:
    # "Key=Value;Key=Value": values (keys in base64) may contain '=' themselves.
    parts = (p.split("=", 1) for p in text.split(";") if "=" in p)
    return {k.strip(): v.strip() for k, v in parts}


class AzureStorage:
    """One container. Keys are full blob names (prefix included, see factory.key_for)."""

    def __init__(
        self,
        container: str,
        *,
        endpoint: str = "",
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self.container = container
        self.endpoint = endpoint.rstrip("/")
        creds = credentials or {}
        options: dict[str, Any] = {
            "connection_timeout": CONNECT_TIMEOUT,
            "read_timeout": READ_TIMEOUT,
            "retry_policy": LinearRetry(
                backoff=RETRY_BACKOFF, retry_total=RETRY_TOTAL, random_jitter_range=0
            ),
            "max_single_get_size": RANGE,
            "max_chunk_get_size": RANGE,
            "max_single_put_size": SINGLE_PUT_MAX,
            "max_block_size": BLOCK,
        }
        conn = creds.get("AZURE_STORAGE_CONNECTION_STRING", "")
        name = creds.get("AZURE_ACCOUNT_NAME", "")
        key = creds.get("AZURE_ACCOUNT_KEY", "")
        credential: Any = None  # anonymous: a public container
        if conn and not self.endpoint:
            # The connection string knows its endpoint (BlobEndpoint / EndpointSuffix).
            try:
                service = BlobServiceClient.from_connection_string(conn, **options)
            except ValueError as exc:
                raise AccessDenied(
                    f"{self._where('')}: AZURE_STORAGE_CONNECTION_STRING is not valid "
                    f"({type(exc).__name__})"
                ) from None
            self.endpoint = service.url.rstrip("/")
        else:
            if conn:
                # spec.endpoint wins over the endpoint in the string; take its credentials.
                parsed = _parse_connection_string(conn)
                name = parsed.get("AccountName", name)
                key = parsed.get("AccountKey", key)
                credential = parsed.get("SharedAccessSignature") or None
            if name and key:
                try:
                    base64.b64decode(key, validate=True)
                except (binascii.Error, ValueError):
                    raise AccessDenied(
                        f"{self._where('')}: the account key is not base64"
                    ) from None
                credential = AzureNamedKeyCredential(name, key)
            if not self.endpoint:
                if not name:
                    raise AccessDenied(
                        f"{self._where('')}: no account: give AZURE_ACCOUNT_NAME (and "
                        "AZURE_ACCOUNT_KEY) or AZURE_STORAGE_CONNECTION_STRING in the "
                        "Secret, or storage.endpoint"
                    )
                self.endpoint = f"https://{name}.blob.core.windows.net"
            service = BlobServiceClient(self.endpoint, credential=credential, **options)
        self._container: ContainerClient = service.get_container_client(container)

    def _where(self, key: str) -> str:
        at = f" at {self.endpoint}" if self.endpoint else ""
        return f"azure container {self.container!r}{at}" + (f", blob {key!r}" if key else "")

    def _error(self, key: str, exc: Exception) -> StorageError:
        where = self._where(key)
        if isinstance(exc, ResourceNotFoundError):
            return ObjectNotFound(f"{where}: not found ({_code(exc)})")
        status = getattr(exc, "status_code", None)
        if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
            return AccessDenied(f"{where}: access denied ({_code(exc)})")
        return StorageUnavailable(f"{where}: unreachable ({_code(exc)})")

    def stat(self, key: str) -> ObjectInfo:
        try:
            props = self._container.get_blob_client(key).get_blob_properties()
        except (AzureError, OSError) as exc:
            raise self._error(key, exc) from None
        digest = str(props.etag or "").strip('"')
        if not digest:
            raise StorageUnavailable(f"{self._where(key)}: the store returned no ETag")
        raw_md5 = props.content_settings.content_md5 if props.content_settings else None
        # Set by single-shot uploads (and by clients that send it); absent on block lists.
        md5 = bytes(raw_md5).hex() if raw_md5 else None
        return ObjectInfo(key=key, digest=digest, size=int(props.size), md5=md5)

    def put(self, key: str, path: str) -> ObjectInfo:
        local = hash_file(path)
        blob = self._container.get_blob_client(key)
        where = self._where(key)
        try:
            f = open(path, "rb")
        except OSError as exc:
            raise StorageError(f"model file {path!r}: {exc.strerror}") from None
        try:
            with f:
                if local.size <= SINGLE_PUT_MAX:
                    data = _read(f, path, SINGLE_PUT_MAX + 1)
                    blob.upload_blob(
                        data,
                        overwrite=True,
                        content_settings=_md5_settings(hashlib.md5(data, usedforsecurity=False)),
                        validate_content=True,
                    )
                else:
                    self._put_blocks(blob, f, path)
        except HttpResponseError as exc:
            if getattr(exc, "error_code", None) == "Md5Mismatch":
                raise DigestMismatch(
                    f"{where}: the service's MD5 of the upload does not match what was sent"
                ) from None
            raise self._error(key, exc) from None
        except (AzureError, OSError) as exc:
            raise self._error(key, exc) from None
        info = self.stat(key)
        check_stored(where, local, info, found=info.md5, what="stored MD5")
        return info

    @staticmethod
    def _put_blocks(blob: BlobClient, f: BinaryIO, path: str) -> None:
        # A block list's MD5 property is whatever the client states (the service checks
        # each block's Content-MD5, not the whole): state the MD5 of the blocks as read and
        # sent, never the earlier hash of the file, so the verification after means it.
        sent = hashlib.md5(usedforsecurity=False)
        ids: list[str] = []
        pool = concurrent.futures.ThreadPoolExecutor(UPLOAD_CONCURRENCY)
        pending: set[concurrent.futures.Future[Any]] = set()
        try:
            while data := _read(f, path, BLOCK):
                sent.update(data)
                ids.append(f"{len(ids):08d}")  # the SDK base64-encodes the ids
                pending.add(pool.submit(blob.stage_block, ids[-1], data, validate_content=True))
                if len(pending) >= UPLOAD_CONCURRENCY:
                    done, pending = concurrent.futures.wait(
                        pending, return_when=concurrent.futures.FIRST_COMPLETED
                    )
                    for future in done:
                        future.result()
            for future in concurrent.futures.as_completed(pending):
                future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        blob.commit_block_list(ids, content_settings=_md5_settings(sent))

    def open(self, key: str) -> Iterator[bytes]:
        try:
            # The first range is fetched here: a missing blob fails at open().
            downloader = self._container.get_blob_client(key).download_blob(max_concurrency=1)
        except (AzureError, OSError) as exc:
            raise self._error(key, exc) from None
        return self._chunks(key, downloader)

    def _chunks(self, key: str, downloader: Any) -> Iterator[bytes]:
        # Later ranges are pinned by the SDK to the first response's ETag.
        try:
            for data in downloader.chunks():
                for i in range(0, len(data), CHUNK):
                    yield data[i : i + CHUNK]
        except (AzureError, OSError) as exc:
            raise self._error(key, exc) from None


def _md5_settings(md5: Any) -> ContentSettings:
    return ContentSettings(
        content_type="application/octet-stream", content_md5=bytearray(md5.digest())
    )


def _read(f: BinaryIO, path: str, size: int) -> bytes:
    try:
        return f.read(size)
    except OSError as exc:
        raise StorageError(f"model file {path!r}: cannot read it ({exc.strerror})") from None


def _code(exc: Exception) -> str:
    # HttpResponseError's text embeds the whole response (and Azurite's echo of the
    # request signature): keep the error code and status only.
    if isinstance(exc, HttpResponseError):
        code = getattr(exc, "error_code", None) or (exc.reason or "")
        return f"{code}, HTTP {exc.status_code}" if exc.status_code else str(code)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__
