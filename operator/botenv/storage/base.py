"""The one interface every model storage backend implements.

Backends are synchronous (boto3, google-cloud-storage and azure-storage-blob are); async
callers run them in a thread. Every call is bounded by the backend's timeouts so a slow
or dead store turns into StorageUnavailable within seconds, never a hang.
"""

from __future__ import annotations

import dataclasses
import hashlib
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


class ReadOnlyStorage(StorageError):
    """The provider cannot store models (http): put() is not supported."""


class DigestMismatch(StorageError):
    """What the store holds after put() is not the file that was uploaded (size or MD5)."""


class Storage(Protocol):
    def stat(self, key: str) -> ObjectInfo:
        """Digest and size of `key`, without reading its content."""

    def open(self, key: str) -> Iterator[bytes]:
        """The content of `key` as chunks of about CHUNK bytes, streamed (never the whole
        object in memory). Raises the errors above, also mid-stream."""

    def put(self, key: str, path: str) -> ObjectInfo:
        """Store the local file `path` as `key` (replacing it), then stat it and verify that
        the store holds exactly that file: the same size and the same MD5 (the store's own
        MD5, or an S3 ETag built from it). Returns the stat. Raises the errors above,
        DigestMismatch when the stored object differs, ReadOnlyStorage for http."""


@dataclasses.dataclass(frozen=True)
class LocalFile:
    """A file to upload, hashed before it is sent."""

    path: str
    size: int
    md5: str  # hex MD5 of the whole file
    part_md5s: tuple[bytes, ...] = ()  # raw MD5 of each part_size piece, when asked for


def hash_file(path: str, part_size: int | None = None) -> LocalFile:
    """Size and MD5 of a local file in one read (and the MD5 of every part_size piece, for
    S3's multipart ETag). An unreadable file is a StorageError naming the file."""
    whole = hashlib.md5(usedforsecurity=False)
    parts: list[bytes] = []
    part = hashlib.md5(usedforsecurity=False)
    in_part = 0
    size = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                whole.update(chunk)
                size += len(chunk)
                while part_size and chunk:
                    take = chunk[: part_size - in_part]
                    part.update(take)
                    in_part += len(take)
                    chunk = chunk[len(take) :]
                    if in_part == part_size:
                        parts.append(part.digest())
                        part = hashlib.md5(usedforsecurity=False)
                        in_part = 0
    except OSError as exc:
        raise StorageError(
            f"model file {path!r}: cannot read it ({exc.strerror or type(exc).__name__})"
        ) from None
    if part_size and in_part:
        parts.append(part.digest())
    return LocalFile(path=path, size=size, md5=whole.hexdigest(), part_md5s=tuple(parts))


def read_back_md5(storage: Storage, key: str) -> str:
    """The MD5 of what the store serves for key (for stores that state no usable MD5)."""
    h = hashlib.md5(usedforsecurity=False)
    for chunk in storage.open(key):
        h.update(chunk)
    return h.hexdigest()


def check_stored(
    where: str,
    local: LocalFile,
    info: ObjectInfo,
    *,
    found: str | None,
    expected: str | None = None,
    what: str = "MD5",
) -> None:
    """DigestMismatch unless the stored object has local's size and `found` equals
    `expected` (local's MD5 unless given). `where` names the store and key."""
    expected = local.md5 if expected is None else expected
    problems = []
    if info.size != local.size:
        problems.append(f"size: expected {local.size} bytes, found {info.size}")
    if found != expected:
        problems.append(f"{what}: expected {expected}, found {found or 'none'}")
    if problems:
        raise DigestMismatch(
            f"{where}: the stored object is not the uploaded file {local.path!r} "
            f"({'; '.join(problems)})"
        )
