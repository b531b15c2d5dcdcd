"""Test doubles of botenv's Storage interface over real files in a directory.

The real backends (S3, GCS, Azure, HTTP, local) have their own tests; these exist to make
the model server's behaviour under slow, failing and concurrent storage reproducible.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from botenv.modelserver.catalog import Resolution
from botenv.storage.base import CHUNK, ObjectInfo, ObjectNotFound, StorageError


class DirStorage:
    """Serves the files of `root`; counts open() calls (the number of downloads)."""

    def __init__(self, root: Path, *, chunk: int = CHUNK, delay: float = 0.0) -> None:
        self.root = Path(root)
        self.chunk = chunk
        self.delay = delay  # seconds to wait before the first chunk, in the worker thread
        self.opens = 0
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        path = self.root / key
        if not path.is_file():
            raise ObjectNotFound(f"{key} not found in {self.root.name}")
        return path

    def stat(self, key: str) -> ObjectInfo:
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        with self._path(key).open("rb") as f:
            while chunk := f.read(CHUNK):
                md5.update(chunk)
                size += len(chunk)
        return ObjectInfo(key=key, digest=md5.hexdigest(), size=size, md5=md5.hexdigest())

    def open(self, key: str) -> Iterator[bytes]:
        # Not a generator itself: the call is counted when made, like a real request.
        with self._lock:
            self.opens += 1
            attempt = self.opens
        return self._chunks(self._path(key), attempt)

    def _chunks(self, path: Path, attempt: int) -> Iterator[bytes]:
        if self.delay:
            time.sleep(self.delay)
        with path.open("rb") as f:
            while chunk := f.read(self.chunk):
                yield chunk


class FlakyStorage(DirStorage):
    """The first `failures` downloads break after `good_chunks` chunks (a dropped connection)."""

    def __init__(
        self,
        root: Path,
        *,
        failures: int = 1,
        good_chunks: int = 1,
        error: StorageError | None = None,
        truncate: bool = False,
        chunk: int = 64 * 1024,
    ) -> None:
        super().__init__(root, chunk=chunk)
        self.failures = failures
        self.good_chunks = good_chunks
        self.error = error or StorageError("connection reset mid-stream")
        self.truncate = truncate  # end the stream early without an error instead

    def _chunks(self, path: Path, attempt: int) -> Iterator[bytes]:
        chunks = super()._chunks(path, attempt)
        if attempt > self.failures:
            yield from chunks
            return
        for _ in range(self.good_chunks):
            yield next(chunks)
        if not self.truncate:
            raise self.error


class BrokenStorage(DirStorage):
    """Every download fails with `error` right away."""

    def __init__(self, root: Path, error: StorageError) -> None:
        super().__init__(root)
        self.error = error

    def open(self, key: str) -> Iterator[bytes]:
        with self._lock:
            self.opens += 1
        raise self.error


def resolution(
    storage: DirStorage, namespace: str, tag: str, key: str, *, md5: bool = True
) -> Resolution:
    """What the operator would resolve `key` to."""
    info = DirStorage.stat(storage, key)
    return Resolution(
        namespace=namespace,
        tag=tag,
        model=key,
        key=key,
        digest=info.digest,
        size=info.size,
        md5=info.md5 if md5 else None,
        storage=storage,
    )
