"""What the model server needs to know: which model a tag points at, and who may pull it.

The server only asks a `Catalog`; the Kubernetes-backed one (fed from the operator's view of
ModelTags and pull-token Secrets) and `StaticCatalog` (tests, running without a cluster) plug in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterable
from typing import Protocol

from botenv.storage.base import Storage


@dataclasses.dataclass(frozen=True)
class Resolution:
    """One tag resolved to one stored model, as the operator recorded it."""

    namespace: str
    tag: str
    model: str  # file name, e.g. 20190506-100418.tar.gz; sent as the `filename` header
    key: str  # object key in `storage`
    digest: str  # the ETag (no quotes); also names the cached file
    size: int  # bytes
    md5: str | None  # hex MD5 of the content when known, verified after download
    storage: Storage


class Catalog(Protocol):
    def resolve(self, namespace: str, tag: str, digest: str = "") -> Resolution | None:
        """The tag's current resolution; None for an unknown or not yet resolved tag. With
        `digest`, the tag's model of that digest: the current one or one in its history
        (pods of a `Restart` environment pin the model they were started with)."""

    def grant(self, namespace: str, tag: str, token: str) -> str | None:
        """None when `token` is not a pull credential for exactly this namespace/tag; else
        the digest it is held on instead of the tag's current model ("" for none: its
        environment's Rasa refused the current model). One look-up, every request."""

    def ready(self) -> bool:
        """Whether the catalog has loaded what it knows (False: answers may be incomplete)."""


def _token_key(token: str) -> str:
    # Tokens are held as hashes: the lookup then does not compare secrets byte by byte
    # (no timing signal) and a dump of the catalog does not show them.
    return hashlib.sha256(token.encode()).hexdigest()


class StaticCatalog:
    """An in-memory catalog that can be changed at runtime (e.g. to move a tag in a test)."""

    def __init__(self, resolutions: Iterable[Resolution] = (), *, ready: bool = True) -> None:
        self._lock = threading.Lock()
        self._resolutions: dict[tuple[str, str], Resolution] = {}
        self._tokens: dict[str, tuple[str, str]] = {}
        self._pins: dict[str, str] = {}
        self._ready = ready
        for resolution in resolutions:
            self.set(resolution)

    def set(self, resolution: Resolution) -> None:
        """Add the tag or move it to a new model."""
        with self._lock:
            self._resolutions[(resolution.namespace, resolution.tag)] = resolution

    def remove(self, namespace: str, tag: str) -> None:
        with self._lock:
            self._resolutions.pop((namespace, tag), None)

    def add_token(self, namespace: str, tag: str, token: str) -> None:
        """Let `token` pull this namespace/tag (and nothing else)."""
        if not token:
            raise ValueError("a pull token must not be empty")
        key = _token_key(token)
        with self._lock:
            owner = self._tokens.get(key)
            if owner is not None and owner != (namespace, tag):
                raise ValueError("this pull token already belongs to another tag")
            self._tokens[key] = (namespace, tag)

    def pin_token(self, token: str, digest: str) -> None:
        """Hold `token` on the tag's model of `digest` ("" releases it)."""
        with self._lock:
            self._pins[_token_key(token)] = digest

    def grant(self, namespace: str, tag: str, token: str) -> str | None:
        if not token:
            return None
        key = _token_key(token)
        with self._lock:
            if self._tokens.get(key) != (namespace, tag):
                return None
            return self._pins.get(key, "")

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(_token_key(token), None)

    def set_ready(self, ready: bool) -> None:
        self._ready = ready

    def resolve(self, namespace: str, tag: str, digest: str = "") -> Resolution | None:
        with self._lock:
            current = self._resolutions.get((namespace, tag))
        return current if current and digest in ("", current.digest) else None

    def ready(self) -> bool:
        return self._ready
