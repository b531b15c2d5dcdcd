"""Model storage backends behind one small interface (see base.py)."""

from botenv.storage.base import (
    AccessDenied,
    ObjectInfo,
    ObjectNotFound,
    Storage,
    StorageError,
    StorageUnavailable,
)

__all__ = ["AccessDenied", "ObjectInfo", "ObjectNotFound", "Storage", "StorageError",
           "StorageUnavailable"]
