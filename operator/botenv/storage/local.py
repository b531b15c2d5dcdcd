"""A directory the model server mounts (a PVC, hostPath, NFS share)."""

from __future__ import annotations

import collections
import errno
import hashlib
import os
import stat as statmod
import threading
from collections.abc import Iterator
from typing import BinaryIO

from botenv.storage.base import (
    CHUNK,
    AccessDenied,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
)

# Hashing a model reads it whole; a file is re-hashed only when its identity changes.
# Shared by all instances: several tags (prefixes) may point into one directory.
CACHE_ENTRIES = 1024
_CacheKey = tuple[str, int, int, int]  # (path, inode, size, mtime_ns)
_md5_cache: collections.OrderedDict[_CacheKey, str] = collections.OrderedDict()
_md5_lock = threading.Lock()


class LocalStorage:
    """Files under root. Keys are paths relative to root, or absolute paths inside it."""

    def __init__(self, root: str) -> None:
        self.root = os.path.normpath(root)

    def path_for(self, key: str) -> str:
        """The file for key; ObjectNotFound for keys that would leave root."""
        if "\0" in key or ".." in key.replace("\\", "/").split("/"):
            raise ObjectNotFound(f"local {self.root}: key {key!r} escapes the directory")
        if os.path.isabs(key):
            # factory.key_for gives absolute paths: accept those inside root only.
            path = os.path.normpath(key)
            if os.path.commonpath([path, self.root]) != self.root:
                raise ObjectNotFound(f"local {self.root}: key {key!r} is outside the directory")
            return path
        return os.path.join(self.root, os.path.normpath(key))

    def _error(self, path: str, exc: OSError) -> StorageError:
        where = f"local directory {self.root}, key {os.path.relpath(path, self.root)!r}"
        if not os.path.isdir(self.root):
            # The mount itself is missing: not the tag's fault, try again later.
            return StorageUnavailable(f"{where}: the directory is not there")
        if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
            return ObjectNotFound(f"{where}: not found")
        if isinstance(exc, PermissionError):
            return AccessDenied(f"{where}: permission denied")
        if exc.errno == errno.ELOOP:
            return ObjectNotFound(f"{where}: symlink loop")
        return StorageUnavailable(f"{where}: {exc.strerror or type(exc).__name__}")

    def stat(self, key: str) -> ObjectInfo:
        path = self.path_for(key)
        try:
            st = os.stat(path)
            if not _is_file(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
            cache_key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
            with _md5_lock:
                md5 = _md5_cache.get(cache_key)
                if md5 is not None:
                    _md5_cache.move_to_end(cache_key)
            if md5 is None:
                md5 = self._hash(path)
                # A file that changed while being hashed is hashed again at the next stat.
                after = os.stat(path)
                if (after.st_ino, after.st_size, after.st_mtime_ns) == cache_key[1:]:
                    with _md5_lock:
                        _md5_cache[cache_key] = md5
                        while len(_md5_cache) > CACHE_ENTRIES:
                            _md5_cache.popitem(last=False)
        except OSError as exc:
            raise self._error(path, exc) from None
        return ObjectInfo(key=path, digest=md5, size=st.st_size, md5=md5)

    @staticmethod
    def _hash(path: str) -> str:
        h = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def open(self, key: str) -> Iterator[bytes]:
        path = self.path_for(key)
        try:
            # Checked before opening: opening a FIFO or device could block or never end.
            if not _is_file(os.stat(path).st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
            f = open(path, "rb")  # closed by the generator
        except OSError as exc:
            raise self._error(path, exc) from None
        return self._chunks(path, f)

    def _chunks(self, path: str, f: BinaryIO) -> Iterator[bytes]:
        try:
            while chunk := f.read(CHUNK):
                yield chunk
        except OSError as exc:
            raise self._error(path, exc) from None
        finally:
            f.close()


def _is_file(mode: int) -> bool:
    return statmod.S_ISREG(mode)
