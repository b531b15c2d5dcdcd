"""A size-bounded disk cache of models, keyed by digest, filled once per digest.

However many Rasa pods pull a new model at once, storage is read once: concurrent callers
await the same fill (single flight). A fill writes a temp file in the cache directory, checks
size and MD5, fsyncs and renames it into place, so a partial or corrupt download is never
served. A failed fill leaves nothing behind, and the next request simply tries again.

All bookkeeping happens on the event loop thread; only the download itself runs in a worker
thread, from a small pool of its own so that hanging storage calls cannot starve the default
executor that aiohttp's FileResponse uses to open files.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from botenv.modelserver.catalog import Resolution
from botenv.storage.base import StorageError

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"  # in-progress downloads; never indexed, removed on start

FillObserver = Callable[[float, bool], None]  # (seconds, succeeded)


class ContentMismatch(StorageError):
    """The downloaded bytes do not match the size or MD5 the tag was resolved with."""


class CacheClosed(Exception):
    """The cache was closed while a fill was running."""


@dataclasses.dataclass
class CacheStats:
    hits: int = 0  # requests answered from a cached file
    misses: int = 0  # requests that had to wait for a fill (started or joined)
    fills: int = 0  # storage downloads started
    fill_failures: int = 0
    evictions: int = 0
    bytes_fetched: int = 0  # bytes read from storage into the cache


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def file_name(digest: str) -> str:
    """A safe, unique file name for `digest` (ETags may hold `/`, `+`, `=`, quotes, ...).

    A readable prefix plus a hash of the full digest, so two digests that sanitize alike
    never share a file. No dots: aiohttp's FileResponse looks for `<name>.gz` siblings, and
    temp files start with a dot.
    """
    if not digest:
        raise ValueError("a model digest must not be empty")
    readable = _UNSAFE.sub("_", digest)[:64]
    return f"{readable}-{hashlib.sha256(digest.encode()).hexdigest()[:16]}"


class DiskCache:
    def __init__(
        self, directory: str | os.PathLike[str], max_bytes: int, *, fill_workers: int = 4
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._entries: OrderedDict[str, int] = OrderedDict()  # name -> size, LRU first
        self._bytes = 0
        self._reserved = 0  # room promised to running fills
        self._fills: dict[str, asyncio.Task[Path]] = {}
        self._pins: dict[str, int] = {}
        self._observers: list[FillObserver] = []
        self._executor = ThreadPoolExecutor(
            max_workers=fill_workers, thread_name_prefix="botenv-cache-fill"
        )
        self._closing = threading.Event()
        self._load()

    # -- what the server and metrics read ------------------------------------------------

    @property
    def bytes_used(self) -> int:
        return self._bytes

    @property
    def fills_in_flight(self) -> int:
        return len(self._fills)

    def add_fill_observer(self, observer: FillObserver) -> None:
        """Call `observer(seconds, succeeded)` after every storage download."""
        self._observers.append(observer)

    def cached(self, resolution: Resolution) -> Path | None:
        """The cached file for `resolution`, without filling or counting a hit."""
        name = file_name(resolution.digest)
        return self.directory / name if self._present(name, resolution.size) else None

    async def path_for(self, resolution: Resolution) -> Path:
        """The cached file for `resolution`, downloading it first when missing.

        Raises StorageError (including ContentMismatch) or OSError when the fill fails.
        Cancelling the caller (a timeout, a client that left) does not stop the fill.
        """
        name = file_name(resolution.digest)
        path = self.directory / name
        if self._present(name, resolution.size):
            self._touch(name, path)
            self.stats.hits += 1
            return path
        self.stats.misses += 1
        task = self._fills.get(name)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fill(resolution, name))
            self._fills[name] = task
            task.add_done_callback(functools.partial(self._fill_done, resolution))
        return await asyncio.shield(task)

    @contextlib.contextmanager
    def pinned(self, path: Path) -> Iterator[bool]:
        """Keep `path` from being evicted while it is being opened and sent.

        Yields whether the file is still there (it may have been evicted between
        `path_for` returning and this call; the caller then asks again).
        """
        name = path.name
        self._pins[name] = self._pins.get(name, 0) + 1
        try:
            yield name in self._entries and path.exists()
        finally:
            self._pins[name] -= 1
            if not self._pins[name]:
                del self._pins[name]
                self._evict()  # what was skipped while pinned

    async def close(self) -> None:
        """Abort running fills (at their next chunk) and stop the worker threads."""
        self._closing.set()
        tasks = list(self._fills.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- internals -----------------------------------------------------------------------

    def _load(self) -> None:
        found: list[tuple[float, str, int]] = []
        for entry in os.scandir(self.directory):
            if not entry.is_file(follow_symlinks=False):
                continue
            if entry.name.startswith(TEMP_PREFIX):
                # Left by a crash mid-download: incomplete by definition.
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                continue
            if entry.name.startswith("."):
                continue
            st = entry.stat(follow_symlinks=False)
            found.append((st.st_mtime, entry.name, st.st_size))
        for _, name, size in sorted(found):  # hits touch mtime, so oldest = least used
            self._entries[name] = size
            self._bytes += size
        self._evict()

    def _present(self, name: str, size: int) -> bool:
        if self._entries.get(name) != size:
            return False
        try:
            return os.stat(self.directory / name).st_size == size
        except FileNotFoundError:  # removed behind our back
            self._bytes -= self._entries.pop(name)
            return False

    def _touch(self, name: str, path: Path) -> None:
        self._entries.move_to_end(name)
        with contextlib.suppress(OSError):
            os.utime(path)  # so a restart's mtime order matches use

    async def _fill(self, resolution: Resolution, name: str) -> Path:
        loop = asyncio.get_running_loop()
        self.stats.fills += 1
        self._evict(incoming=resolution.size)
        self._reserved += resolution.size
        started = time.monotonic()
        ok = False
        try:
            size = await loop.run_in_executor(self._executor, self._download, resolution, name)
            ok = True
        finally:
            self._reserved -= resolution.size
            if self._fills.get(name) is asyncio.current_task():
                del self._fills[name]  # here, not in a callback: no window for stale tasks
            if not ok:
                self.stats.fill_failures += 1
            elapsed = time.monotonic() - started
            for observer in self._observers:
                try:
                    observer(elapsed, ok)
                except Exception:
                    log.exception("cache fill observer failed")
        old = self._entries.pop(name, None)
        if old is not None:
            self._bytes -= old
        self._entries[name] = size
        self._bytes += size
        self.stats.bytes_fetched += size
        self._evict(keep=name)
        return self.directory / name

    @staticmethod
    def _fill_done(resolution: Resolution, task: asyncio.Task[Path]) -> None:
        # Retrieve the outcome even when every waiter gave up, so nothing goes unreported.
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.warning(
                "download of model %s (key %s, digest %s) failed: %s: %s",
                resolution.model,
                resolution.key,
                resolution.digest,
                type(error).__name__,
                error,
            )

    def _download(self, resolution: Resolution, name: str) -> int:
        """Runs in a worker thread: storage -> temp file -> checks -> fsync -> rename."""
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.directory)
        chunks = None
        try:
            md5 = hashlib.md5(usedforsecurity=False) if resolution.md5 else None
            size = 0
            with os.fdopen(fd, "wb") as out:
                chunks = resolution.storage.open(resolution.key)
                for chunk in chunks:
                    if self._closing.is_set():
                        raise CacheClosed("model cache closed during download")
                    out.write(chunk)
                    size += len(chunk)
                    if md5 is not None:
                        md5.update(chunk)
                    if size > resolution.size:  # stop early rather than fill the disk
                        break
                out.flush()
                os.fsync(out.fileno())
            where = resolution.key
            if size != resolution.size:
                read = f"more than {resolution.size}" if size > resolution.size else str(size)
                raise ContentMismatch(f"{where}: read {read} bytes, expected {resolution.size}")
            if (
                md5 is not None
                and resolution.md5 is not None
                and md5.hexdigest() != resolution.md5.lower()
            ):
                raise ContentMismatch(
                    f"{where}: MD5 {md5.hexdigest()} does not match the resolved {resolution.md5}"
                )
            os.replace(temp, self.directory / name)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:  # release the backend's connection on errors too
                with contextlib.suppress(Exception):
                    close()
        self._fsync_directory()
        return size

    def _fsync_directory(self) -> None:
        # Makes the rename durable, so a crash cannot leave a name without its content.
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _evict(self, *, incoming: int = 0, keep: str | None = None) -> None:
        budget = self.max_bytes - self._reserved - incoming
        if self._bytes <= budget:
            return
        for name in list(self._entries):  # least recently used first
            if self._bytes <= budget:
                break
            if name == keep or name in self._pins:
                continue
            self._bytes -= self._entries.pop(name)
            # An open descriptor (a response in progress) keeps the content readable.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.directory / name)
            self.stats.evictions += 1
        if self._bytes > budget and keep is not None and self._entries.get(keep, 0) > budget:
            log.warning(
                "model %s (%d bytes) is larger than the cache (%d bytes); keeping it "
                "until the next model arrives",
                keep,
                self._entries[keep],
                self.max_bytes,
            )
