"""What tests and benchmarks turn and read on a sandbox tenant besides its API: request statistics,
held writes, scripted failures (`fail`/`forbid` rules) and the record of risk changes."""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class WriteRequest:
    """One write the tenant applied, as it arrived: method, path (as requested) and JSON body (None: none)."""

    method: str
    path: str
    body: Any


@dataclass(frozen=True)
class Answered:
    """One call the tenant answered (not the calls inside a `$batch`): the `client-request-id` the caller sent
    and the `request-id` it answered with, as Microsoft support would quote them."""

    method: str
    path: str
    status: int
    client_request_id: str
    request_id: str

    @property
    def write(self) -> bool:
        """A write as the bot's audit log counts them: not a read, and not a `$batch` of reads."""
        return self.method != "GET" and not self.path.endswith("$batch")


@dataclass
class SandboxStats:
    """What the tenant was asked: requests by (method, route), 429s answered, writes applied.

    `writes`/`write_log` count writes that change the tenant (not `$batch` envelopes, not export jobs,
    which are Intune writes for the quota only); `write_requests` holds the same writes with their path and
    body, so a test can hold what an approval card showed against what arrived; `downloads` counts export
    downloads, which are not Graph requests and appear nowhere else; `answers` holds every call answered,
    with its ids.
    """

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    throttled: int = 0
    writes: int = 0
    write_log: list[tuple[str, str]] = field(default_factory=list)
    write_requests: list[WriteRequest] = field(default_factory=list)
    answers: list[Answered] = field(default_factory=list)
    downloads: int = 0

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def count(self, method: str | None = None, route: str | None = None) -> int:
        """Requests matching a method and/or a substring of the route template."""
        return sum(n for (m, r), n in self.requests.items()
                   if (method is None or m == method.upper())
                   and (route is None or route.lower() in r.lower()))

    def reset(self) -> None:
        self.requests.clear()
        self.statuses.clear()
        self.throttled = 0
        self.writes = 0
        self.write_log.clear()
        self.write_requests.clear()
        self.answers.clear()
        self.downloads = 0


class WriteHold:
    """Writes wait here until `release()` (or `timeout` seconds pass): made by `SandboxTenant.hold_writes`.

    A write held is in flight for as long as a test needs: the caller's request is open, nothing is
    applied yet. Leaving a `with` block releases it.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._released = threading.Event()
        self._arrived = threading.Condition()
        self._waiting = 0
        self._held = 0

    @property
    def held(self) -> int:
        """Writes that have come to the hold so far (waiting or let through since)."""
        with self._arrived:
            return self._held

    def wait_for_writes(self, count: int = 1, timeout: float = 30.0) -> bool:
        """Until `count` writes are waiting at the hold; False if they were not within `timeout` seconds."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self._waiting >= count, timeout)

    def release(self) -> None:
        self._released.set()

    def wait_here(self) -> bool:
        """A write's turn: wait until released (or the timeout); False at once when already released."""
        if self._released.is_set():
            return False
        with self._arrived:
            self._waiting += 1
            self._held += 1
            self._arrived.notify_all()
        try:
            self._released.wait(self.timeout)
        finally:
            with self._arrived:
                self._waiting -= 1
        return True

    def __enter__(self) -> WriteHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class Rule:
    method: str | None
    prefix: str
    statuses: deque[int] = field(default_factory=deque)

    @classmethod
    def parse(cls, text: str, statuses: Sequence[int] = ()) -> Rule:
        parts = text.strip().split(None, 1)
        if len(parts) == 2 and parts[0].isalpha() and parts[0].isupper():
            return cls(parts[0], parts[1].strip().lower(), deque(statuses))
        return cls(None, text.strip().lower(), deque(statuses))

    def matches_download(self, method: str, path: str) -> bool:
        """Downloads heed only rules written for them: a prefix starting with /sandbox-downloads."""
        prefix = self.prefix if self.prefix.startswith("/") else "/" + self.prefix
        return (prefix.startswith("/sandbox-downloads") and path.lower().startswith(prefix)
                and self.method in (None, method))

    def matches(self, method: str, full_path: str, version_less: str | None) -> bool:
        if self.method is not None and self.method != method:
            return False
        prefix = self.prefix if self.prefix.startswith("/") else "/" + self.prefix
        if prefix.startswith(("/beta/", "/v1.0/", "/api/")) or prefix in ("/beta", "/v1.0", "/api"):
            return full_path.lower().startswith(prefix)
        return version_less is not None and version_less.lower().startswith(prefix)


@dataclass(frozen=True)
class RiskChange:
    """A riskScore set through SandboxTenant.set_risk: when (monotonic seconds and UTC), what, from what."""

    machine_id: str
    aad_device_id: str | None
    level: str
    previous: str | None
    monotonic: float
    at: datetime
