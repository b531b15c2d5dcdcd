"""Azure Blob Storage (and Azurite / sovereign clouds) through azure-storage-blob."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from typing import Any

from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, LinearRetry

from botenv.storage.base import (
    CHUNK,
    AccessDenied,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
)

CONNECT_TIMEOUT = 3
READ_TIMEOUT = 5
# The SDK's default retry waits 15 s and more between attempts: a dead store would
# hang a stat for a minute. One quick retry rides over a blip.
RETRY_TOTAL = 1
RETRY_BACKOFF = 1
# Bytes per ranged GET (the first one included): bounded memory, few round trips.
RANGE = 4 * CHUNK


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


def _code(exc: Exception) -> str:
    # HttpResponseError's text embeds the whole response (and Azurite's echo of the
    # request signature): keep the error code and status only.
    if isinstance(exc, HttpResponseError):
        code = getattr(exc, "error_code", None) or (exc.reason or "")
        return f"{code}, HTTP {exc.status_code}" if exc.status_code else str(code)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__
