"""Which objects an event touches: pure bookkeeping, no kopf and no API.

It remembers, per environment, the tag it named and the event queue it asked for last,
and which environments wait for a queue another one holds; so an event touches the few
keys that depend on it, never a scan over every tag and environment."""

from __future__ import annotations

import threading
from typing import Any

from botenv.controller import broker_queues
from botenv.controller.state import ENV, TAG, tag_of
from botenv.render import conditions as cond

Key = tuple[str, str, str]  # (kind, namespace, name) as the work queue takes it
Claim = tuple[str, str]  # (broker identity, queue)


class Fanout:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # kopf runs sync handlers in threads
        self._tag: dict[tuple[str, str], str] = {}  # environment -> the tag it named
        self._users: dict[tuple[str, str], set[str]] = {}  # tag -> environments naming it
        self._claim: dict[tuple[str, str], Claim | None] = {}  # environment -> its queue
        self._waiting: dict[Claim, set[tuple[str, str]]] = {}  # queue -> who waits for it

    def environment(
        self, namespace: str, name: str, body: dict[str, Any], *, deleted: bool
    ) -> list[Key]:
        """An environment changed (or is gone): itself, the tags it names and named (they
        list their users), and the environments waiting for a queue it asks or asked for."""
        me = (namespace, name)
        tag, claim = tag_of(body), broker_queues.queue_of(body)
        with self._lock:
            old_tag, old_claim = self._tag.get(me), self._claim.get(me)
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
                self._remember(me, tag, claim, waiting=_in_queue_conflict(body))
        keys: list[Key] = [(ENV, namespace, name), (TAG, namespace, tag)]
        if old_tag is not None and old_tag != tag:
            keys.append((TAG, namespace, old_tag))
        keys += [(ENV, ns, n) for ns, n in waiters]
        return keys

    def tag(self, namespace: str, name: str) -> list[Key]:
        """A tag changed (or is gone): itself and the environments that name it."""
        with self._lock:
            users = sorted(self._users.get((namespace, name), ()))
        return [(TAG, namespace, name)] + [(ENV, namespace, user) for user in users]

    def _remember(
        self, me: tuple[str, str], tag: str, claim: Claim | None, *, waiting: bool
    ) -> None:
        self._tag[me] = tag
        self._users.setdefault((me[0], tag), set()).add(me[1])
        self._claim[me] = claim
        if waiting and claim is not None:
            self._waiting.setdefault(claim, set()).add(me)

    def _forget(self, me: tuple[str, str]) -> None:
        tag = self._tag.pop(me, None)
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


def _in_queue_conflict(body: dict[str, Any]) -> bool:
    degraded = cond.get((body.get("status") or {}).get("conditions"), cond.DEGRADED)
    return degraded.get("reason") == broker_queues.QUEUE_CONFLICT
