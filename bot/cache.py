"""A short-lived cache of one expensive read (e.g. the tenant's policy names)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

CACHE_SECONDS = 60.0


class TimedCache:
    """A short-lived cache of one expensive read, refreshed in the background when asked."""

    def __init__(self, load: Callable[[], list[tuple[str, str]]], seconds: float = CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._load, self._seconds, self._clock = load, seconds, clock
        self._items: list[tuple[str, str]] | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def get(self) -> list[tuple[str, str]] | None:
        """(id, name) pairs if fresh enough, else None: callers never wait for a reload."""
        with self._lock:
            if self._items is None or self._clock() - self._at > self._seconds:
                return None
            return list(self._items)

    def refresh(self) -> list[tuple[str, str]]:
        items = self._load()
        with self._lock:
            self._items, self._at = items, self._clock()
        return items

    def invalidate(self) -> None:
        with self._lock:
            self._items = None
