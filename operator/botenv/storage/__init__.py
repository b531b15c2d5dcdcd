"""Model storage backends behind one small interface (see base.py)."""

from botenv.storage.base import (
    AccessDenied,
    DigestMismatch,
    ObjectInfo,
    ObjectNotFound,
    ReadOnlyStorage,
    Storage,
    StorageError,
    StorageUnavailable,
)

__all__ = [
    "AccessDenied",
    "DigestMismatch",
    "ObjectInfo",
    "ObjectNotFound",
    "ReadOnlyStorage",
    "Storage",
    "StorageError",
    "StorageUnavailable",
]
