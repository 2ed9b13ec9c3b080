"""``TurnGate``: a counting semaphore that serves its waiters in the order they came.

The render and track gates (:mod:`server.retarget_track`) let one session at a time use
the cores. ``threading.Semaphore`` wakes a waiter on release but lets any thread take the
slot first, so on a loaded server some sessions got their turn far more often than others
(5 frames a second for two of eight sessions, under 3 for the rest). Here a release hands
the slot straight to the longest-waiting thread.
"""

from __future__ import annotations

import threading
from collections import deque


class TurnGate:
    """At most ``slots`` holders at once; waiters get their turn first come, first served."""

    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError("a gate needs at least one slot")
        self._lock = threading.Lock()
        self._free = slots
        self._slots = slots
        self._waiting: deque[threading.Event] = deque()

    def acquire(self, blocking: bool = True) -> bool:
        """Take a slot, waiting for this thread's turn; ``blocking=False``: only if one is
        free now (True if taken)."""
        with self._lock:
            if self._free > 0 and not self._waiting:
                self._free -= 1
                return True
            if not blocking:
                return False
            turn = threading.Event()
            self._waiting.append(turn)
        turn.wait()  # set by release(), which handed this thread the slot
        return True

    def release(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()  # the slot passes on, never freed between
                return
            if self._free >= self._slots:
                raise ValueError("TurnGate released more often than acquired")
            self._free += 1

    @property
    def waiting(self) -> int:
        """Threads waiting for their turn now."""
        with self._lock:
            return len(self._waiting)

    def __enter__(self) -> TurnGate:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
