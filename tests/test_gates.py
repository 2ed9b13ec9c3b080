"""``TurnGate``: sessions take the cores in the order they asked, none barges in."""

from __future__ import annotations

import threading
import time

import pytest

from server.gates import TurnGate


def waiters(gate: TurnGate, names: list[str], order: list[str], hold_s: float = 0.01
            ) -> list[threading.Thread]:
    """A thread per name, each started once the one before is queued at the gate (the
    gate is held), so they queue in this order however loaded the machine is."""
    threads = []
    for name in names:
        def run(name: str = name) -> None:
            with gate:
                order.append(name)
                time.sleep(hold_s)
        queued = gate.waiting
        threads.append(threading.Thread(target=run))
        threads[-1].start()
        deadline = time.monotonic() + 10
        while gate.waiting == queued and time.monotonic() < deadline:
            time.sleep(0.001)
        assert gate.waiting == queued + 1
    return threads


def test_waiters_get_their_turn_first_come_first_served() -> None:
    gate, order = TurnGate(1), []
    gate.acquire()  # held while the others queue up
    threads = waiters(gate, ["a", "b", "c", "d", "e"], order)
    gate.release()
    for t in threads:
        t.join(5)
    assert order == ["a", "b", "c", "d", "e"]


def test_a_thread_that_comes_back_at_once_waits_behind_the_others() -> None:
    """What threading.Semaphore allows: a releasing thread taking the slot again before
    the woken waiter runs. Here the slot passes on at release."""
    gate, order = TurnGate(1), []
    gate.acquire()
    threads = waiters(gate, ["a", "b"], order)
    gate.release()  # hands the slot to "a"
    gate.acquire()  # behind "b"
    order.append("again")
    gate.release()
    for t in threads:
        t.join(5)
    assert order == ["a", "b", "again"]


def test_several_slots_and_bad_use() -> None:
    gate = TurnGate(2)
    gate.acquire()
    gate.acquire()  # two at once, no wait
    got = threading.Event()
    t = threading.Thread(target=lambda: (gate.acquire(), got.set()))
    t.start()
    assert not got.wait(0.1)  # the third waits
    assert gate.acquire(blocking=False) is False
    gate.release()
    assert got.wait(5)
    t.join(5)
    gate.release()
    gate.release()
    with pytest.raises(ValueError, match="more often"):
        gate.release()
    with pytest.raises(ValueError):
        TurnGate(0)
