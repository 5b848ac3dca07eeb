"""Give the heap that finished work freed back to the operating system.

glibc keeps what Python frees inside its arenas (one per thread that
allocated, up to eight per core), and returns it to the kernel only from the
top of the main heap. A worker child's gateway pool runs 64 threads, so its
RSS rose in steps whenever a batch left more freed memory behind than
before, and kept rising long after the Python objects it kept had stopped
growing (``bench.memcheck``). ``malloc_trim(0)`` hands every arena's free
pages back (glibc 2.8 and later); run at most every
``SURGE_MALLOC_TRIM_SECONDS``, it keeps RSS flat at no CPU cost that shows.
"""

import ctypes
import ctypes.util
import time
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None where the C library has none (musl, macOS)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (AttributeError, OSError):
        return None


class HeapTrimmer:
    """``maybe_trim()`` trims at most once every ``every`` seconds; 0 is off."""

    def __init__(
        self,
        every: float,
        *,
        trim: Callable[[int], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.every = every
        self._trim = trim or _malloc_trim()
        self._clock = clock
        self._last: float | None = None

    def maybe_trim(self) -> bool:
        if self.every <= 0 or self._trim is None:
            return False
        now = self._clock()
        if self._last is not None and now - self._last < self.every:
            return False
        self._last = now
        self._trim(0)
        return True
