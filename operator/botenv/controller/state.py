"""What the reconcilers share: the live kopf indexes, the API facade, settings, the queue."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from botenv.kube.client import Kube
from botenv.kube.discovery import Discovery
from botenv.settings import Settings

if TYPE_CHECKING:
    from botenv.controller.resolve import Resolver

ENV, TAG, TRAIN = "env", "tag", "train"
# A kopf index (or a plain dict in tests): key -> the objects stored under it.
Index = Mapping[Any, Iterable[dict[str, Any]]]


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, ValueError):
        return -1


def _without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """A write's answer as the indexes keep objects: managedFields (large) are never read."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


class TagUsers(Protocol):
    """Who names a tag (controller/fanout.py keeps it from the watch events)."""

    def users(self, namespace: str, tag: str) -> list[str]: ...


def only(index: Index | None, key: object) -> dict[str, Any] | None:
    """The single object stored under a key of a kopf index, if any."""
    if index is None or key not in index:
        return None
    return next(iter(index[key]), None)


@dataclasses.dataclass
class State:
    kube: Kube
    settings: Settings
    # kopf indexes (live views, filled from watches before any reconcile runs):
    environments: Index  # (ns, name) -> BotEnvironment snapshot
    tags: Index  # (ns, name) -> ModelTag snapshot
    children: Mapping[str, Index]  # kind -> (ns, name) -> owned child snapshot
    resolver: Resolver | None = None  # set at start-up; tags are resolved through it
    pods: Index | None = None  # (ns, environment) -> views of its Rasa pods
    trainings: Index | None = None  # (ns, name) -> ModelTraining snapshot
    # Objects as the API server returned them from botenv's own writes, until the watch
    # delivers that version (or a newer one): without this, a reconcile that runs before
    # the watch event arrives would see the old object and write the same change again.
    written: dict[tuple[str, str, str], dict[str, Any]] = dataclasses.field(default_factory=dict)
    # Who names which tag, from the watch events (runtime/operator.py sets it): a tag's users
    # without a scan of every environment. None: scanned (tests without one).
    tag_users: TagUsers | None = None
    # Optional APIs the cluster serves (HTTPRoute); forgotten at each resync.
    discovery: Discovery = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.discovery = Discovery(self.kube)
        self._written_lock = threading.Lock()  # reconciles write it from threads

    def remember(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        if obj.get("kind") and meta.get("name"):
            key = (obj["kind"], meta.get("namespace", ""), meta["name"])
            with self._written_lock:
                self.written[key] = _without_managed_fields(obj)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._written_lock:
            self.written.pop((kind, namespace, name), None)

    def _caught_up(self, key: tuple[str, str, str], version: int) -> dict[str, Any] | None:
        """Forget botenv's own copy of an object once the watch shows `version` of it (or a
        newer one); the copy forgotten, else None."""
        with self._written_lock:
            mine = self.written.get(key)
            if mine is None or version < _rv(mine):
                return None
            return self.written.pop(key)

    def echo(self, kind: str, namespace: str, name: str, resource_version: str) -> bool:
        """The watch delivered `resource_version` of an object (the index holds it now).
        True when it is the very version botenv wrote: the reconcile that wrote it has seen
        it already, and need not run again for it."""
        try:
            version = int(resource_version)
        except ValueError:
            return False
        mine = self._caught_up((kind, namespace, name), version)
        return mine is not None and _rv(mine) == version

    def _fresher(
        self, kind: str, namespace: str, name: str, indexed: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        key = (kind, namespace, name)
        mine = self.written.get(key)
        if mine is None:
            return indexed
        if indexed is not None and _rv(indexed) >= _rv(mine):
            if _rv(indexed) > _rv(mine):
                # The watch has gone past it. (The very version is left to the event
                # handler that follows its indexing: echo() tells it apart.)
                self._caught_up(key, _rv(indexed))
            return indexed
        return mine

    def environment(self, namespace: str, name: str) -> dict[str, Any] | None:
        indexed = only(self.environments, (namespace, name))
        if indexed is None:
            return None  # deleted: never resurrect it from what botenv wrote
        return self._fresher("BotEnvironment", namespace, name, indexed)

    def tag(self, namespace: str, name: str) -> dict[str, Any] | None:
        indexed = only(self.tags, (namespace, name))
        if indexed is None:
            return None
        return self._fresher("ModelTag", namespace, name, indexed)

    def training(self, namespace: str, name: str) -> dict[str, Any] | None:
        indexed = only(self.trainings, (namespace, name))
        if indexed is None:
            return None
        return self._fresher("ModelTraining", namespace, name, indexed)

    def child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._fresher(
            kind, namespace, name, only(self.children.get(kind), (namespace, name))
        )

    def pods_of(self, namespace: str, environment: str) -> list[dict[str, Any]]:
        if self.pods is None or (namespace, environment) not in self.pods:
            return []
        return list(self.pods[(namespace, environment)])

    def all_environments(self) -> Iterator[dict[str, Any]]:
        for key in list(self.environments):
            body = only(self.environments, key)
            if body is not None:
                yield body


def tag_of(body: dict[str, Any]) -> str:
    """The ModelTag an environment uses: spec.modelTag, or its own name."""
    return str((body.get("spec") or {}).get("modelTag") or body["metadata"]["name"])
