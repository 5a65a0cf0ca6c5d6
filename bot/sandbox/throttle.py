"""Scripted 429s and Microsoft's documented quotas, on an injectable clock."""

from __future__ import annotations

import math
import time
from collections import deque

from bot.sandbox.config import ThrottleConfig


class _Window:
    """Admits at most `limit` events per `seconds`, sliding."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.events: deque[float] = deque()

    def wait(self, now: float) -> float:
        """Seconds until one more event fits (0 when it fits now)."""
        while self.events and self.events[0] <= now - self.seconds:
            self.events.popleft()
        if len(self.events) < self.limit:
            return 0.0
        return self.events[0] + self.seconds - now

    def add(self, now: float) -> None:
        self.events.append(now)


class Throttler:
    def __init__(self, config: ThrottleConfig | None) -> None:
        self.config = config
        self.counted = 0
        if config is None:
            return
        self._on = frozenset(config.on_requests)
        self._clock = config.clock or time.monotonic
        self._intune_all = _Window(config.intune_requests_per_window, config.intune_window_seconds)
        self._intune_writes = _Window(config.intune_writes_per_window, config.intune_window_seconds)
        self._defender_minute = _Window(config.defender_per_minute, 60.0)
        self._defender_hour = _Window(config.defender_per_hour, 3600.0)

    def check(self, area: str, is_write: bool) -> int | None:
        """Retry-After seconds when this request must be answered 429, else None (and it is counted)."""
        config = self.config
        if config is None:
            return None
        service = "defender" if area == "defender" else "graph"
        if config.scope not in ("all", service):
            return None
        self.counted += 1
        number = self.counted
        if number in self._on or (config.every and number % config.every == 0):
            return max(1, config.retry_after)
        if not config.enforce_quotas:
            return None
        now = self._clock()
        if area == "intune":
            windows = [self._intune_all] + ([self._intune_writes] if is_write else [])
        elif area == "defender":
            windows = [self._defender_minute, self._defender_hour]
        else:
            return None
        wait = max(w.wait(now) for w in windows)
        if wait > 0:
            return max(1, math.ceil(wait))
        for window in windows:
            window.add(now)
        return None
