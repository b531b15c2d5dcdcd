"""botenv's model server: serves each tag's model to Rasa's HTTP model pulling.

catalog (which model a tag points at, who may pull it) -> cache (one storage download per
digest, on disk, size-bounded) -> app (aiohttp: ETag/304, token auth, bounded answer time).
"""

from botenv.modelserver.app import make_app
from botenv.modelserver.cache import ContentMismatch, DiskCache
from botenv.modelserver.catalog import Catalog, Resolution, StaticCatalog
from botenv.modelserver.server import run, serve

__all__ = [
    "Catalog",
    "ContentMismatch",
    "DiskCache",
    "Resolution",
    "StaticCatalog",
    "make_app",
    "run",
    "serve",
]
