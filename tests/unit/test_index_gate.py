"""kopf's index gate with QuietToggleSet (botenv.runtime.index_gate): the same releases as
kopf's own ToggleSet, with one wake-up per waiter instead of one per object."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._core.reactor import orchestration, processing

from botenv.runtime.index_gate import QuietToggleSet

# kopf's own class (aiotoggles.ToggleSet is QuietToggleSet once the operator is imported).
KopfToggleSet = QuietToggleSet.__bases__[0]


class _Counting:
    """Counts how often waiters look at the set's state (once per wake-up)."""

    looks = 0

    def is_on(self) -> bool:
        type(self).looks += 1
        return super().is_on()  # type: ignore[misc]


class CountingKopf(_Counting, KopfToggleSet):
    looks = 0


class CountingQuiet(_Counting, QuietToggleSet):
    looks = 0


async def restart(gate: KopfToggleSet, objects: int) -> list[int]:
    """What kopf does at a restart: as the lists arrive, a toggle for each object and a
    worker that drops it once the object is indexed, then waits for all. Returns the order in
    which the workers were released (all of them, once the last object is indexed)."""
    listing = await gate.make_toggle(name="listing")
    released: list[int] = []

    async def worker(i: int, toggle: aiotoggles.Toggle) -> None:
        await asyncio.sleep(0)  # indexing
        await gate.drop_toggle(toggle)
        await gate.wait_for(True)
        released.append(i)

    workers = []
    for i in range(objects):  # the watcher: one object at a time, a worker for each
        toggle = await gate.make_toggle(name=f"object {i}")
        workers.append(asyncio.create_task(worker(i, toggle)))
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    assert released == []  # the listing is not over: nobody may run yet
    await gate.drop_toggle(listing)
    await asyncio.wait_for(asyncio.gather(*workers), 60)
    return released


@pytest.mark.parametrize("gate_class", [KopfToggleSet, QuietToggleSet])
def test_workers_are_released_once_everything_is_indexed(gate_class):
    released = asyncio.run(restart(gate_class(all), 50))
    assert sorted(released) == list(range(50))


def test_one_wake_up_per_worker_instead_of_one_per_object():
    objects = 300
    asyncio.run(restart(CountingKopf(all), objects))
    asyncio.run(restart(CountingQuiet(all), objects))
    # kopf's wakes every waiting worker at each toggle dropped: about objects² / 2 looks.
    assert CountingKopf.looks > objects * objects / 4
    assert CountingQuiet.looks < 10 * objects  # a few per object made or dropped


def test_states_and_toggles_wake_waiters_as_before():
    async def scenario():
        gate = QuietToggleSet(all)
        assert gate.is_on()
        off = asyncio.create_task(gate.wait_for(False))
        await asyncio.sleep(0)
        toggle = await gate.make_toggle(name="a")  # an off toggle: the set goes off
        await asyncio.wait_for(off, 1)

        on = asyncio.create_task(gate.wait_for(True))
        await asyncio.sleep(0.01)
        assert not on.done()
        await toggle.turn_to(True)  # a toggle turned on still wakes the waiters
        await asyncio.wait_for(on, 1)

        paused = QuietToggleSet(any)  # kopf's pause set uses the same class
        pause = await paused.make_toggle(name="peering")
        waiting = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        await pause.turn_to(True)
        await asyncio.wait_for(waiting, 1)
        await paused.drop_toggle(pause)
        assert paused.is_off()

    asyncio.run(scenario())


def test_installed_where_kopf_makes_its_gate():
    import botenv.runtime.operator  # noqa: F401 (installs it)

    assert aiotoggles.ToggleSet is QuietToggleSet
    # kopf makes the gate through the module's name, and its workers wait on it: if an
    # upgrade changes either, this says so (the restart would be quadratic again).
    assert "aiotoggles.ToggleSet(all)" in inspect.getsource(orchestration.orchestrator)
    assert "operator_indexed.wait_for(True)" in inspect.getsource(processing.process_resource_event)
