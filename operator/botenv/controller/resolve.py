"""Resolving a ModelTag against its storage: does the model exist, and what is its digest.

A stat is a network call to the store, so results are kept for a while per tag (keyed by
what was asked); the periodic resync then re-checks, which is how a model re-uploaded
under the same name is noticed."""

from __future__ import annotations

import collections
import threading
import time

from kubernetes.client.exceptions import ApiException

from botenv.api.tag import TagSpec
from botenv.kube.client import Kube
from botenv.render.problem import Problem
from botenv.storage import AccessDenied, ObjectInfo, ObjectNotFound, StorageError
from botenv.storage.factory import key_for, storage_for
from botenv.storage.modelmeta import MetadataError, ModelMetadata, read_metadata
from botenv.storage.policy import LocationNotAllowed, StoragePolicy


class Unresolved(Exception):  # noqa: N818 (the outcome of a resolve, not a fault)
    """Why a tag's model could not be resolved (its Problem); `retry` for transient causes."""

    def __init__(self, reason: str, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.problem = Problem(reason, message, retry=retry)


def _where(spec: TagSpec) -> str:
    storage = spec.storage
    place = {"http": storage.url, "local": storage.path}.get(
        storage.provider, f"{storage.provider}://{storage.bucket}"
    )
    return f"{place} ({key_for(storage, spec.model)})"


# How many models' metadata are remembered (by digest: a digest's content never changes).
METADATA_ENTRIES = 512


class Resolver:
    def __init__(self, kube: Kube, ttl_seconds: float, policy: StoragePolicy) -> None:
        self.kube = kube
        self.ttl = ttl_seconds
        self.policy = policy
        self._cache: dict[tuple[str, str], tuple[object, float, ObjectInfo]] = {}
        self._metadata: collections.OrderedDict[tuple[object, ...], ModelMetadata | str] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def _credentials(self, namespace: str, spec: TagSpec) -> dict[str, str]:
        name = spec.storage.secret_name
        if not name:
            return {}
        try:
            credentials = self.kube.get_secret_text(namespace, name)
        except ApiException as exc:
            raise Unresolved(
                "SecretUnreadable", f"could not read Secret {name!r} ({exc.status})", retry=True
            ) from exc
        if credentials is None:
            raise Unresolved(
                "SecretMissing", f"Secret {name!r} not found (named by spec.storage.secretRef)"
            )
        return credentials

    def resolve(self, namespace: str, name: str, spec: TagSpec) -> ObjectInfo:
        """Stat the tag's model (blocking: run in a thread). Raises Unresolved."""
        asked = (spec.model, spec.storage)
        with self._lock:
            cached = self._cache.get((namespace, name))
        if cached and cached[0] == asked and time.monotonic() - cached[1] < self.ttl:
            return cached[2]
        try:
            # Before the Secret is read: a location the admin does not allow is not touched.
            self.policy.check(spec.storage)
            credentials = self._credentials(namespace, spec)
            storage = storage_for(spec.storage, credentials, policy=self.policy)
            info = storage.stat(key_for(spec.storage, spec.model))
        except LocationNotAllowed as exc:
            raise Unresolved("StorageNotAllowed", f"{exc}; {self.policy.describe()}") from exc
        except ObjectNotFound as exc:
            raise Unresolved(
                "ModelNotFound", f"model {spec.model!r} not found at {_where(spec)}"
            ) from exc
        except AccessDenied as exc:
            raise Unresolved(
                "StorageAccessDenied",
                f"{_where(spec)}: access denied: check the credentials in spec.storage.secretRef",
            ) from exc
        except StorageError as exc:
            raise Unresolved("StorageUnavailable", f"{_where(spec)}: {exc}", retry=True) from exc
        with self._lock:
            self._cache[(namespace, name)] = (asked, time.monotonic(), info)
        return info

    def metadata(self, namespace: str, spec: TagSpec, info: ObjectInfo) -> ModelMetadata | str:
        """The metadata of the model `resolve` found (blocking), or why it cannot be read.
        Read once per digest: the archive is streamed up to its metadata.json. A store that
        fails meanwhile raises Unresolved (retried): the version gate needs the answer."""
        asked = (spec.storage, spec.model, info.digest)
        with self._lock:
            known = self._metadata.get(asked)
            if known is not None:
                self._metadata.move_to_end(asked)
                return known
        try:
            credentials = self._credentials(namespace, spec)
            storage = storage_for(spec.storage, credentials, policy=self.policy)
            key = key_for(spec.storage, spec.model)
            found: ModelMetadata | str = read_metadata(storage.open(key))
        except MetadataError as exc:
            found = str(exc)
        except LocationNotAllowed as exc:
            raise Unresolved("StorageNotAllowed", f"{exc}; {self.policy.describe()}") from exc
        except StorageError as exc:
            raise Unresolved(
                "StorageUnavailable",
                f"{_where(spec)}: reading the model's metadata: {exc}",
                retry=True,
            ) from exc
        with self._lock:
            self._metadata[asked] = found
            while len(self._metadata) > METADATA_ENTRIES:
                self._metadata.popitem(last=False)
        return found

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._cache.pop((namespace, name), None)
