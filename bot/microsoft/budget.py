"""A client-side request budget that keeps the bot under Microsoft's published limits.

Finding the limits by 429s costs a Slack user a wait of Retry-After seconds and, for Defender's
hourly limit, can lock the sweep out for the rest of the hour. So every call first takes from a
budget. `RequestBudget` is the seam: this in-process sliding window suits one replica; a shared
implementation (rows in the bot's database) can replace it without touching the clients.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.microsoft.errors import DEFENDER, GRAPH


@dataclass(frozen=True)
class RateLimit:
    calls: int
    per_seconds: float
    writes_only: bool = False


# Published limits (microsoft-graph.md §5, §6) less ~10% headroom for other tools using the same
# app registration and for clock skew between our window and Microsoft's.
# Graph: Intune allows 1,000 requests / 20 s per app per tenant, of which 100 writes.
# Defender: 100 calls / minute and 1,500 / hour.
GRAPH_LIMITS: tuple[RateLimit, ...] = (RateLimit(900, 20.0), RateLimit(90, 20.0, writes_only=True))
DEFENDER_LIMITS: tuple[RateLimit, ...] = (RateLimit(90, 60.0), RateLimit(1_400, 3_600.0))


class RequestBudget(Protocol):
    def reserve(self, api: str, *, count: int = 1, write: bool = False) -> float:
        """Take `count` calls for `api` and return 0, or take nothing and return seconds to wait."""


class UnlimitedBudget:
    """For the in-process sandbox and tests that are not about the budget."""

    def reserve(self, api: str, *, count: int = 1, write: bool = False) -> float:
        return 0.0


class LocalBudget:
    """Sliding-window log per limit, in this process only; thread-safe."""

    def __init__(self, limits: Mapping[str, Sequence[RateLimit]], *, clock: Callable[[], float]) -> None:
        self._limits = {api: tuple(rules) for api, rules in limits.items()}
        self._clock = clock
        self._log: dict[tuple[str, int], deque[float]] = {}
        self._lock = threading.Lock()

    def reserve(self, api: str, *, count: int = 1, write: bool = False) -> float:
        rules = [(i, r) for i, r in enumerate(self._limits.get(api, ())) if write or not r.writes_only]
        with self._lock:
            now = self._clock()
            wait = 0.0
            for index, rule in rules:
                log = self._window(api, index, rule, now)
                # A batch larger than a whole window still has to go some time: when the window is empty.
                need = min(count, rule.calls)
                if len(log) + need > rule.calls:
                    # The call fits once enough of the oldest entries have left the window.
                    oldest_needed = log[len(log) + need - rule.calls - 1]
                    wait = max(wait, oldest_needed + rule.per_seconds - now)
            if wait > 0:
                return wait
            for index, _ in rules:
                self._log[(api, index)].extend([now] * count)
            return 0.0

    def _window(self, api: str, index: int, rule: RateLimit, now: float) -> deque[float]:
        log = self._log.setdefault((api, index), deque())
        while log and log[0] <= now - rule.per_seconds:
            log.popleft()
        return log


def default_budget(clock: Callable[[], float]) -> LocalBudget:
    return LocalBudget({GRAPH: GRAPH_LIMITS, DEFENDER: DEFENDER_LIMITS}, clock=clock)
