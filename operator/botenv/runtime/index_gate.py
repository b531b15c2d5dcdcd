"""kopf's index gate, woken once per change of its state instead of once per object.

kopf holds every handler back until all indexes are filled: each object of an indexed kind
gets a toggle in one `ToggleSet` when it is first seen, and drops it once indexed; then its
worker waits on the set. kopf's ToggleSet wakes every waiter at each toggle made or dropped,
and each waiter then scans the set again. At a restart every object arrives at once, so that
is a wake-up of every object's worker for every object: a fleet's warm start grew with the
square of its size (800 environments: 18.5 s, most of it in these wake-ups).

`QuietToggleSet` wakes the waiters only when making or dropping a toggle changed the set's
state (what they all wait for); a toggle turned on or off wakes them as before. Installed
in kopf's module before the operator starts (`install`), as of kopf 1.45 (constraints.txt):
tests/unit/test_index_gate.py runs it against kopf's own ToggleSet.
"""

from __future__ import annotations

from collections.abc import Iterable

from kopf._cogs.aiokits import aiotoggles


class QuietToggleSet(aiotoggles.ToggleSet):
    async def make_toggle(
        self, __val: bool = False, *, name: str | None = None
    ) -> aiotoggles.Toggle:
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
        async with self._condition:
            before = self.is_on()
            self._toggles.add(toggle)
            if self.is_on() != before:
                self._condition.notify_all()
        return toggle

    async def drop_toggle(self, toggle: aiotoggles.Toggle) -> None:
        await self.drop_toggles([toggle])

    async def drop_toggles(self, toggles: Iterable[aiotoggles.Toggle]) -> None:
        async with self._condition:
            before = self.is_on()
            self._toggles.difference_update(toggles)
            if self.is_on() != before:
                self._condition.notify_all()


def install() -> None:
    """kopf makes its ToggleSets (the index gate, the pause set) through this name."""
    aiotoggles.ToggleSet = QuietToggleSet  # type: ignore[misc]
