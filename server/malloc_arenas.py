"""Few malloc arenas for a server whose calls each start threads.

glibc gives each new thread its own malloc arena (up to 8 per core). Every call starts a
tracker thread and a render thread, so its allocations land in fresh arenas, and what is
freed stays spread over them: in a 10-minute soak (8 sessions, a call a minute each) the
server's RSS grew +11.5 % in the second half (1977 -> 2204 MB) although threads and
descriptors came back. Capped at 2 from the server's start it grew +4.5 % (1587 -> 1659
MB; +1.4 % with ``MALLOC_ARENA_MAX=2`` set before the process started, which also covers
the threads the libraries start at import; docs/PERFORMANCE.md). Set in the environment,
``MALLOC_ARENA_MAX`` wins over this.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter
ARENAS = 2


def cap_malloc_arenas(n: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``n`` for threads started from now on; False where it
    does not apply (not glibc) or ``MALLOC_ARENA_MAX`` is set by the user."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_ARENA_MAX, n))
