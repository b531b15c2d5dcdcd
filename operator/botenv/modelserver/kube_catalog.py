"""The model server's catalog from the cluster: ModelTags (as the operator resolved them)
and the environments' pull tokens (as the operator published them in each BotEnvironment's
`status.pullToken`: the token's SHA-256 and the one tag it opens), watched with kopf in the
server's own loop.

Only what the operator wrote into a tag's status is served: its model and digest. The
server lists and watches no Secret: storage credentials are read by name from the tag's
Secret when a download starts (in the download thread), after the storage policy has
allowed the tag's location."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Iterator

import kopf

from botenv import GROUP, VERSION
from botenv.api import SpecError, parse_tag
from botenv.api.tag import StorageSpec
from botenv.kube.client import Kube
from botenv.modelserver.catalog import Resolution
from botenv.render.pulltoken import MIN_TOKEN_BYTES, sha256
from botenv.storage.base import ObjectInfo, StorageUnavailable
from botenv.storage.factory import key_for, storage_for
from botenv.storage.policy import StoragePolicy

log = logging.getLogger(__name__)


class _StorageWithSecret:
    """A Storage whose credentials are read from the Secret when it is first used."""

    def __init__(
        self, kube: Kube, namespace: str, spec: StorageSpec, policy: StoragePolicy
    ) -> None:
        self.kube, self.namespace, self.spec, self.policy = kube, namespace, spec, policy

    def _backend(self):  # noqa: ANN202 -- a botenv.storage.Storage
        # Before the Secret is read: a location the admin does not allow is not touched.
        self.policy.check(self.spec)
        credentials: dict[str, str] | None = {}
        if self.spec.secret_name:
            try:
                credentials = self.kube.get_secret_text(self.namespace, self.spec.secret_name)
            except Exception as exc:  # noqa: BLE001 -- any API failure: try again later
                raise StorageUnavailable(
                    f"cannot read Secret {self.spec.secret_name!r}: {type(exc).__name__}"
                ) from exc
            if credentials is None:
                raise StorageUnavailable(f"Secret {self.spec.secret_name!r} not found")
        return storage_for(self.spec, credentials, policy=self.policy)

    def stat(self, key: str) -> ObjectInfo:
        return self._backend().stat(key)

    def open(self, key: str) -> Iterator[bytes]:
        return self._backend().open(key)


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Resolutions remembered (per tag and pinned digest); far above what a cluster asks for.
_MAX_RESOLVED = 4096


class KubeCatalog:
    def __init__(self, kube: Kube, policy: StoragePolicy) -> None:
        self.kube = kube
        self.policy = policy
        self.registry = kopf.OperatorRegistry()
        self._tags: kopf.Index | None = None
        self._tokens: kopf.Index | None = None
        self._ready = asyncio.Event()
        # (namespace, tag, digest) -> (the index entry it was resolved from, the answer)
        self._resolved: dict[tuple[str, str, str], tuple[object, Resolution | None]] = {}
        self._register()

    def _register(self) -> None:
        @kopf.index(GROUP, VERSION, "modeltags", registry=self.registry, id="modeltags")
        def modeltags(
            namespace: str, name: str, spec: kopf.Spec, status: kopf.Status, **_: object
        ) -> dict:
            return {(namespace, name): {"spec": dict(spec), "status": dict(status)}}

        # An environment's entry is replaced by whatever its newest version says, and
        # removed with it: a token whose environment is gone, or whose status no longer
        # names it (revoked by the operator), opens nothing. Always a mapping, {} for no
        # token: kopf keeps an object's previous entry when an indexer returns None.
        @kopf.index(GROUP, VERSION, "botenvironments", registry=self.registry, id="pull_tokens")
        def pull_tokens(namespace: str, meta: kopf.Meta, status: kopf.Status, **_: object) -> dict:
            entry = status.get("pullToken")
            if not isinstance(entry, dict) or meta.get("deletionTimestamp"):
                return {}
            digest, tag, pin = entry.get("sha256"), entry.get("tag"), entry.get("digest")
            if (
                not isinstance(digest, str)
                or not _SHA256.match(digest)
                or not tag
                or not isinstance(tag, str)
            ):
                return {}
            return {digest: (namespace, tag, pin if isinstance(pin, str) else "")}

        @kopf.on.startup(registry=self.registry, id="startup")
        def startup(
            settings: kopf.OperatorSettings,
            modeltags: kopf.Index,
            pull_tokens: kopf.Index,
            **_: object,
        ) -> None:
            settings.posting.enabled = False
            self._tags, self._tokens = modeltags, pull_tokens

        @kopf.on.login(registry=self.registry, id="login")
        def login(**kwargs: object) -> kopf.ConnectionInfo | None:
            return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    async def run(self, stop: asyncio.Event, namespaces: list[str]) -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(
            kopf.operator(
                registry=self.registry,
                standalone=True,
                clusterwide=not namespaces,
                namespaces=namespaces,
                stop_flag=stop,
                ready_flag=ready,
            )
        )
        try:
            await asyncio.wait(
                {task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
            self._ready.set()
            await task
        finally:
            stop.set()  # kopf handles SIGTERM itself: when it stops, the server stops too

    def ready(self) -> bool:
        return self._ready.is_set() and self._tags is not None

    def resolve(self, namespace: str, tag: str, digest: str = "") -> Resolution | None:
        if self._tags is None or (namespace, tag) not in self._tags:
            return None
        body = next(iter(self._tags[(namespace, tag)]), None)
        # Every revalidation asks this: the answer is kept while the index holds the same
        # entry (kopf replaces an object's entry on each of its events), so a request
        # parses no spec and builds no storage client.
        key = (namespace, tag, digest)
        memo = self._resolved.get(key)
        if memo is not None and memo[0] is body:
            return memo[1]
        resolution = self._resolve(namespace, tag, digest, body)
        if len(self._resolved) >= _MAX_RESOLVED:
            self._resolved.clear()  # stale entries of moved or deleted tags go with it
        self._resolved[key] = (body, resolution)
        return resolution

    def _resolve(
        self, namespace: str, tag: str, digest: str, body: dict | None
    ) -> Resolution | None:
        status = (body or {}).get("status") or {}
        if not status.get("model") or not status.get("digest"):
            return None  # not resolved by the operator (yet): nothing to serve
        entry = status
        if digest and digest != status["digest"]:
            entry = next(
                (
                    h
                    for h in status.get("history") or []
                    if h.get("digest") == digest and h.get("model") and h.get("size")
                ),
                None,
            )
            if entry is None:
                return None
        try:
            spec = parse_tag({"spec": (body or {}).get("spec") or {}})
        except SpecError:
            return None
        found = entry["digest"]
        md5 = found if len(found) == 32 and all(c in "0123456789abcdef" for c in found) else None
        return Resolution(
            namespace=namespace,
            tag=tag,
            model=entry["model"],
            key=key_for(spec.storage, entry["model"]),
            digest=found,
            size=int(entry.get("size") or 0),
            md5=md5,
            storage=_StorageWithSecret(self.kube, namespace, spec.storage, self.policy),
        )

    def grant(self, namespace: str, tag: str, token: str) -> str | None:
        if len(token.encode()) < MIN_TOKEN_BYTES or self._tokens is None:
            return None
        digest = sha256(token)
        if digest not in self._tokens:
            return None
        # Exactly this namespace and tag: no shortened form of either.
        wanted = f"{namespace}\0{tag}"
        pins = [
            p
            for ns, name, p in self._tokens[digest]
            if hmac.compare_digest(f"{ns}\0{name}", wanted)
        ]
        if not pins:
            return None
        return next((p for p in pins if p), "")
