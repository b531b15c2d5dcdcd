"""What the reconcilers share: the live kopf indexes, the API facade, settings, the queue."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

from botenv.kube.client import Kube
from botenv.settings import Settings

ENV, TAG = "env", "tag"


def only(index: Mapping | None, key: object) -> dict | None:
    """The single object stored under a key of a kopf index, if any."""
    if index is None or key not in index:
        return None
    return next(iter(index[key]), None)


@dataclasses.dataclass
class State:
    kube: Kube
    settings: Settings
    # kopf indexes (live views, filled from watches before any reconcile runs):
    environments: Mapping  # (ns, name) -> BotEnvironment snapshot
    tags: Mapping  # (ns, name) -> ModelTag snapshot
    children: Mapping[str, Mapping]  # kind -> (ns, name) -> owned child snapshot
    enqueue: object = None  # callable(key), set when the work queue starts

    def environment(self, namespace: str, name: str) -> dict | None:
        return only(self.environments, (namespace, name))

    def tag(self, namespace: str, name: str) -> dict | None:
        return only(self.tags, (namespace, name))

    def child(self, kind: str, namespace: str, name: str) -> dict | None:
        return only(self.children.get(kind), (namespace, name))

    def all_environments(self) -> Iterator[dict]:
        for key in list(self.environments):
            body = only(self.environments, key)
            if body is not None:
                yield body


def tag_of(body: dict) -> str:
    """The ModelTag an environment uses: spec.modelTag, or its own name."""
    return (body.get("spec") or {}).get("modelTag") or body["metadata"]["name"]
