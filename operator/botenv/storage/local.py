"""A directory the model server mounts (a PVC, hostPath, NFS share)."""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import os
import shutil
import stat as statmod
import tempfile
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
    check_stored,
    hash_file,
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
        """The file for key, symbolic links resolved; ObjectNotFound for keys that would
        leave root, also through a link (a link in the directory is no way out of it)."""
        if "\0" in key or ".." in key.replace("\\", "/").split("/"):
            raise ObjectNotFound(f"local {self.root}: key {key!r} escapes the directory")
        if os.path.isabs(key):
            # factory.key_for gives absolute paths: accept those inside root only.
            path = os.path.normpath(key)
            if os.path.commonpath([path, self.root]) != self.root:
                raise ObjectNotFound(f"local {self.root}: key {key!r} is outside the directory")
        else:
            path = os.path.join(self.root, os.path.normpath(key))
        real, real_root = os.path.realpath(path), os.path.realpath(self.root)
        if os.path.commonpath([real, real_root]) != real_root:
            raise ObjectNotFound(f"local {self.root}: key {key!r} links outside the directory")
        return real

    def _where(self, path: str) -> str:
        key = os.path.relpath(path, os.path.realpath(self.root))
        return f"local directory {self.root}, key {key!r}"

    def _error(self, path: str, exc: OSError) -> StorageError:
        where = self._where(path)
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

    def put(self, key: str, path: str) -> ObjectInfo:
        dest = self.path_for(key)
        where = self._where(dest)
        if not os.path.isdir(self.root):
            # Never create the root: a missing one is a volume that is not mounted.
            raise StorageUnavailable(f"{where}: the directory is not there")
        if os.path.isdir(dest):
            raise StorageError(f"{where}: a directory is in the way")
        local = hash_file(path)
        parent = os.path.dirname(dest)
        try:
            src = open(path, "rb")
        except OSError as exc:
            raise StorageError(f"model file {path!r}: {exc.strerror}") from None
        tmp = None
        try:
            with src:
                os.makedirs(parent, exist_ok=True)  # the prefix's directories
                # A temporary file next to the model, renamed over it when complete: a
                # reader sees the old file or the new one, never a partial copy.
                fd, tmp = tempfile.mkstemp(
                    dir=parent, prefix=f".{os.path.basename(dest)}.", suffix=".part"
                )
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                    os.fchmod(out.fileno(), 0o644)  # mkstemp makes 0600: readable by Rasa
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, dest)
            tmp = None
            _fsync_dir(parent)
        except OSError as exc:
            raise self._error(dest, exc) from None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        try:
            # Read back past the MD5 cache: the verification hashes what is stored now.
            size = os.stat(dest).st_size
            md5 = self._hash(dest)
        except OSError as exc:
            raise self._error(dest, exc) from None
        info = ObjectInfo(key=dest, digest=md5, size=size, md5=md5)
        check_stored(where, local, info, found=info.md5, what="MD5")
        return info

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


def _fsync_dir(path: str) -> None:
    # The rename is durable once the directory is synced; not every filesystem can.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_file(mode: int) -> bool:
    return statmod.S_ISREG(mode)
