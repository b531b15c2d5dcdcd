"""One entry point from a ModelTag's storage spec to a backend, and to a model's key."""

from __future__ import annotations

import collections
import hashlib
import os
import threading
from collections.abc import Mapping

from botenv.api.tag import StorageSpec
from botenv.storage.base import Storage, StorageError
from botenv.storage.http import join_url
from botenv.storage.policy import StoragePolicy

# Backends are kept per (spec, credentials): a boto3 client costs ~90 ms of CPU to build,
# and a kept client keeps its connection pool. Rotated credentials make a new entry.
CACHE_ENTRIES = 64
_cache: collections.OrderedDict[tuple[StorageSpec, str, StoragePolicy], Storage] = (
    collections.OrderedDict()
)
_lock = threading.Lock()


def key_for(spec: StorageSpec, model: str) -> str:
    """The key to pass to the backend's stat/open for `model`: the object key (prefix
    included) for buckets, the full URL for http, the full path for local."""
    key = spec.object_key(model)
    if spec.provider == "http":
        return join_url(spec.url, key)
    if spec.provider == "local":
        return os.path.join(os.path.normpath(spec.path), key)
    return key


def storage_for(
    spec: StorageSpec, credentials: Mapping[str, str], *, policy: StoragePolicy
) -> Storage:
    """The backend for spec. credentials: the decoded data of spec's Secret (empty without
    one). Raises AccessDenied when the credentials cannot be used at all (malformed), and
    LocationNotAllowed, before anything is read, when `policy` refuses spec's location."""
    policy.check(spec)
    ident = (spec, _fingerprint(credentials), policy)
    with _lock:
        storage = _cache.get(ident)
        if storage is not None:
            _cache.move_to_end(ident)
            return storage
    storage = _build(spec, credentials, policy)
    with _lock:
        storage = _cache.setdefault(ident, storage)
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    return storage


def _fingerprint(credentials: Mapping[str, str]) -> str:
    # A hash, so the cache's keys hold no secret (the backends themselves must).
    h = hashlib.sha256()
    for name in sorted(credentials):
        h.update(f"{len(name)}:{name}{len(credentials[name])}:{credentials[name]}".encode())
    return h.hexdigest()


# The cloud SDKs come with the `server` extra; the people's CLI installs without them.
_SDK_MODULES = ("boto3", "botocore", "google", "azure")


def _build(spec: StorageSpec, credentials: Mapping[str, str], policy: StoragePolicy) -> Storage:
    try:
        return _construct(spec, credentials, policy)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in _SDK_MODULES:
            raise
        raise StorageError(
            f"storage provider {spec.provider} needs botenv[server] (the cloud storage SDKs; "
            f"{exc.name} is not installed): pip install 'botenv[server]'"
        ) from None


def _construct(spec: StorageSpec, credentials: Mapping[str, str], policy: StoragePolicy) -> Storage:
    # Imported on use: each cloud SDK costs tens of MB and up to a second of import time.
    provider = spec.provider
    if provider == "s3":
        from botenv.storage.s3 import S3Storage

        return S3Storage(
            spec.bucket, endpoint=spec.endpoint, region=spec.region, credentials=credentials
        )
    if provider == "gcs":
        from botenv.storage.gcs import GCSStorage

        return GCSStorage(spec.bucket, endpoint=spec.endpoint, credentials=credentials)
    if provider == "azure":
        from botenv.storage.azure import AzureStorage

        return AzureStorage(spec.bucket, endpoint=spec.endpoint, credentials=credentials)
    if provider == "http":
        from botenv.storage.http import HTTPStorage

        return HTTPStorage(spec.url, credentials=credentials, policy=policy)
    if provider == "local":
        from botenv.storage.local import LocalStorage

        return LocalStorage(spec.path)
    raise StorageError(f"unknown storage provider {provider!r}")
