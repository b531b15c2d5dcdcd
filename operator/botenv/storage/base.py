"""The one interface every model storage backend implements.

Backends are synchronous (boto3, google-cloud-storage and azure-storage-blob are); async
callers run them in a thread. Every call is bounded by the backend's timeouts so a slow
or dead store turns into StorageUnavailable within seconds, never a hang.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Protocol

CHUNK = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """What a stat tells about one stored model."""

    key: str  # the full object key / path the model was read from
    digest: str  # content identity used as the model's ETag (no quotes)
    size: int  # bytes
    md5: str | None = None  # hex MD5 of the content when the store states it, to verify


class StorageError(Exception):
    """Base of all storage failures. Messages name the store and key, never credentials."""


class ObjectNotFound(StorageError):
    """The store answered: no such object (a tag moved to a model that does not exist)."""


class AccessDenied(StorageError):
    """The store refused the credentials (wrong or missing keys)."""


class StorageUnavailable(StorageError):
    """The store could not be reached or did not answer in time: try again later."""


class Storage(Protocol):
    def stat(self, key: str) -> ObjectInfo:
        """Digest and size of `key`, without reading its content."""

    def open(self, key: str) -> Iterator[bytes]:
        """The content of `key` as chunks of about CHUNK bytes, streamed (never the whole
        object in memory). Raises the errors above, also mid-stream."""
