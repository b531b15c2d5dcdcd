"""Which objects an event touches: pure bookkeeping, no kopf and no API.

It remembers, per environment, the tag it named and the event queue it asked for last,
and which environments wait for a queue another one holds; so an event touches the few
keys that depend on it, never a scan over every tag and environment. It also remembers
what each side last showed the other (an environment's tag reads its name, image and
refused model; an environment reads its tag's resolution and storage): an event that
changes nothing the other side reads touches only its own object, so a status report of
one environment does not reconcile its tag, and a tag's list of users does not reconcile
every user."""

from __future__ import annotations

import threading
from typing import Any

from botenv.controller import broker_queues, serving
from botenv.controller.state import ENV, TAG, tag_of
from botenv.render import conditions as cond

Key = tuple[str, str, str]  # (kind, namespace, name) as the work queue takes it
Claim = tuple[str, str]  # (broker identity, queue)
# A tag's status fields no environment reads: its own bookkeeping of them.
TAG_BOOKKEEPING = ("environments", "refusedBy", "observedGeneration")


class Fanout:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # tag reconciles read the users from threads
        self._tag: dict[tuple[str, str], str] = {}  # environment -> the tag it named
        self._users: dict[tuple[str, str], set[str]] = {}  # tag -> environments naming it
        self._claim: dict[tuple[str, str], Claim | None] = {}  # environment -> its queue
        self._waiting: dict[Claim, set[tuple[str, str]]] = {}  # queue -> who waits for it
        self._shown: dict[tuple[str, str], tuple[Any, ...]] = {}  # environment -> user_view
        self._resolution: dict[tuple[str, str], tuple[Any, ...]] = {}  # tag -> tag_view

    def environment(
        self, namespace: str, name: str, body: dict[str, Any], *, deleted: bool
    ) -> list[Key]:
        """An environment changed (or is gone): itself, the tags it names and named (when
        it changed what they list of it), and the environments waiting for a queue it asks
        or asked for."""
        me = (namespace, name)
        tag, claim = tag_of(body), broker_queues.queue_of(body)
        shown = None if deleted else user_view(body)
        with self._lock:
            old_tag, old_claim = self._tag.get(me), self._claim.get(me)
            was_shown = self._shown.get(me)
            waiters = sorted(
                {
                    w
                    for c in (claim, old_claim)
                    if c is not None
                    for w in self._waiting.get(c, ())
                    if w != me
                }
            )
            self._forget(me)
            if not deleted:
                self._remember(me, tag, claim, shown, waiting=_in_queue_conflict(body))
        keys: list[Key] = [(ENV, namespace, name)]
        if shown is None or shown != was_shown:
            keys.append((TAG, namespace, tag))
            if old_tag is not None and old_tag != tag:
                keys.append((TAG, namespace, old_tag))
        keys += [(ENV, ns, n) for ns, n in waiters]
        return keys

    def tag(
        self,
        namespace: str,
        name: str,
        body: dict[str, Any] | None = None,
        *,
        deleted: bool = False,
    ) -> list[Key]:
        """A tag changed (or is gone): itself, and the environments that name it when it
        changed what they read of it (`body` None: taken as changed)."""
        key = (namespace, name)
        resolution = tag_view(body) if body is not None and not deleted else None
        with self._lock:
            before = self._resolution.pop(key, None)
            if resolution is not None:
                self._resolution[key] = resolution
            if resolution is not None and resolution == before:
                return [(TAG, namespace, name)]
            users = sorted(self._users.get(key, ()))
        return [(TAG, namespace, name)] + [(ENV, namespace, user) for user in users]

    def users(self, namespace: str, tag: str) -> list[str]:
        """The environments of `namespace` that name `tag` (and are not being deleted), by
        name: what a scan of every environment finds, from the events alone."""
        with self._lock:
            return sorted(self._users.get((namespace, tag), ()))

    def _remember(
        self,
        me: tuple[str, str],
        tag: str,
        claim: Claim | None,
        shown: tuple[Any, ...] | None,
        *,
        waiting: bool,
    ) -> None:
        self._tag[me] = tag
        if shown is not None:
            self._shown[me] = shown
            if not shown[1]:  # being deleted: no longer listed by its tag
                self._users.setdefault((me[0], tag), set()).add(me[1])
        self._claim[me] = claim
        if waiting and claim is not None:
            self._waiting.setdefault(claim, set()).add(me)

    def _forget(self, me: tuple[str, str]) -> None:
        tag = self._tag.pop(me, None)
        self._shown.pop(me, None)
        if tag is not None:
            users = self._users.get((me[0], tag), set())
            users.discard(me[1])
            if not users:
                self._users.pop((me[0], tag), None)
        claim = self._claim.pop(me, None)
        if claim is not None and claim in self._waiting:
            self._waiting[claim].discard(me)
            if not self._waiting[claim]:
                del self._waiting[claim]


def user_view(body: dict[str, Any]) -> tuple[Any, ...]:
    """What a tag's status reads of an environment naming it (controller/tag.py): the tag,
    whether it is being deleted, what it runs (spec.image, spec.rasaVersion), the model
    it refused (status.refusedModel) and whether it serves the tag's model."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    return (
        tag_of(body),
        bool(body["metadata"].get("deletionTimestamp")),
        spec.get("image"),
        spec.get("rasaVersion"),
        status.get("refusedModel"),
        # Whether it serves the tag's model: the tag's status.servedAt waits for the last one.
        serving.view(body),
    )


def tag_view(body: dict[str, Any]) -> tuple[Any, ...]:
    """What an environment's reconcile reads of its tag: the resolution and its history
    (the whole status but the tag's own bookkeeping) and spec.storage (remoteStorage
    delivery); spec.model is read only once it resolves (status.model)."""
    status = body.get("status") or {}
    return (
        (body.get("spec") or {}).get("storage"),
        {k: v for k, v in status.items() if k not in TAG_BOOKKEEPING},
    )


def _in_queue_conflict(body: dict[str, Any]) -> bool:
    degraded = cond.get((body.get("status") or {}).get("conditions"), cond.DEGRADED)
    return degraded.get("reason") == broker_queues.QUEUE_CONFLICT
