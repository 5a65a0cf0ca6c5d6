"""How a sandbox tenant is shaped: sizes, paging, throttling, scripted failures, connector state."""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

PartnerState = Literal["unavailable", "available", "enabled", "unresponsive", "notSetUp", "error"]

# Sizes of the hand-written seed (see seed.py); a config below them truncates that seed.
CURATED_USERS = 10
CURATED_ANDROID_DEVICES = 12


@dataclass(frozen=True)
class ThrottleConfig:
    """When to answer 429 with Retry-After.

    Scripted: `every` (every Nth counted request) and `on_requests` (1-based request numbers).
    Counted requests are all Graph and Defender calls including each request inside a `$batch`,
    but not the `$batch` envelope itself, restricted to `scope`.

    Quotas (`enforce_quotas`): sliding windows on the injectable `clock` (seconds, monotonic):
    Intune (deviceAppManagement/deviceManagement) 1,000 requests and 100 writes per 20 s;
    Defender 100 calls per minute and 1,500 per hour. One app per tenant is assumed.
    Directory calls (users, groups) have no enforced quota.
    """

    every: int | None = None
    on_requests: Collection[int] = ()
    retry_after: int = 1
    scope: Literal["all", "graph", "defender"] = "all"
    enforce_quotas: bool = False
    clock: Callable[[], float] | None = None
    intune_requests_per_window: int = 1000
    intune_writes_per_window: int = 100
    intune_window_seconds: float = 20.0
    defender_per_minute: int = 100
    defender_per_hour: int = 1500


@dataclass(frozen=True)
class ConnectorConfig:
    """The seeded MDE connector. `heartbeat_age=None` picks one that fits the state."""

    partner_state: PartnerState = "enabled"
    heartbeat_age: timedelta | None = None
    android_mam_enabled: bool = False
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class SandboxConfig:
    """A sandbox tenant's shape. Everything not given is derived from `seed`, deterministically.

    `users`/`registrations` None: the hand-written seed plus one user and two registrations per
    Android device beyond it. Sizes beyond the hand-written seed are generated lazily by index.
    `fail` maps a route prefix (optionally "METHOD /prefix") to statuses answered by successive
    matching requests (a status below 400 lets that request through); `forbid` holds prefixes
    answered 403. A prefix without /beta, /v1.0 or /api matches Graph paths of either version.
    Report export jobs (`POST /deviceManagement/reports/exportJobs`) answer 403 with
    `forbid={"POST /deviceManagement/reports/exportJobs"}` (or the versioned "/beta/..." form) and fail
    with `fail={"POST /deviceManagement/reports/exportJobs": [500]}`; their GET is "GET /deviceManagement/
    reports/exportJobs". Downloads (`/sandbox-downloads/...`) honour only rules whose prefix starts with
    "/sandbox-downloads", e.g. `fail={"GET /sandbox-downloads": [503]}`.
    `connector` None means no MDE connector; a string is a partnerState.

    `audit_delay`: how long after a write its audit event becomes visible in `GET deviceManagement/auditEvents`
    (Intune's arrive late; `SandboxTenant.deliver_late_audit_events()` makes them visible at once);
    `audit_page_size`: events per page of that list.

    `export_seconds`: how long an export job stays inProgress after it was created, on the `monotonic`
    clock (default: the throttle's clock, else time.monotonic); `export_fail` makes every job end
    `failed`. `latency_ms` ± `latency_jitter_ms` (uniform, seeded) is slept before answering each Graph
    and Defender request (a `$batch` once; downloads never); see `latency_from_env`.
    """

    seed: int = 7
    android_devices: int = CURATED_ANDROID_DEVICES
    windows_devices: int = 3
    users: int | None = None
    registrations: int | None = None
    graph_page_size: int = 100
    graph_max_top: int = 999
    registrations_page_size: int = 50
    defender_max_top: int = 10_000
    throttle: ThrottleConfig | None = None
    fail: dict[str, list[int]] = field(default_factory=dict)
    forbid: set[str] = field(default_factory=set)
    connector: ConnectorConfig | PartnerState | None = field(default_factory=ConnectorConfig)
    now: datetime | None = None
    clock: Callable[[], datetime] | None = None
    require_auth: bool = True
    policy_patch_status: Literal[200, 204] = 200
    export_seconds: float = 0.0
    export_fail: bool = False
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    monotonic: Callable[[], float] | None = None
    audit_delay: timedelta = timedelta(0)
    audit_page_size: int = 50

    @classmethod
    def large(cls, devices: int = 100_000, registrations: int = 250_000, **overrides: Any) -> SandboxConfig:
        """A benchmark-sized tenant; rows are generated on demand, never all held in memory."""
        return cls(android_devices=devices, registrations=registrations, **overrides)

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.latency_jitter_ms < 0:
            raise ValueError("latency_ms and latency_jitter_ms must not be negative")
        if self.export_seconds < 0:
            raise ValueError("export_seconds must not be negative")
        if self.audit_delay < timedelta(0) or self.audit_page_size < 1:
            raise ValueError("audit_delay must not be negative and audit_page_size must be at least 1")

    def replace(self, **changes: Any) -> SandboxConfig:
        return dataclasses.replace(self, **changes)

    def with_latency(self, text: str | None) -> SandboxConfig:
        """This config with the latency a `MAM_SANDBOX_LATENCY_MS` value asks for (see latency_from_env)."""
        latency, jitter = latency_from_env(text)
        return self.replace(latency_ms=latency, latency_jitter_ms=jitter)

    def monotonic_clock(self) -> Callable[[], float]:
        if self.monotonic is not None:
            return self.monotonic
        if self.throttle is not None and self.throttle.clock is not None:
            return self.throttle.clock
        return time.monotonic

    def connector_config(self) -> ConnectorConfig | None:
        if self.connector is None or isinstance(self.connector, ConnectorConfig):
            return self.connector
        return ConnectorConfig(partner_state=self.connector)


LATENCY_ENV = "MAM_SANDBOX_LATENCY_MS"
_NUMBER = r"[0-9]+(?:\.[0-9]*)?"
_LATENCY = re.compile(rf"^\s*(?P<latency>{_NUMBER})\s*(?:(?::|±|\+/?-)\s*(?P<jitter>{_NUMBER})\s*)?$")


def latency_from_env(text: str | None) -> tuple[float, float]:
    """(latency_ms, jitter_ms) from a `MAM_SANDBOX_LATENCY_MS` value: "300", "300:100" or "300±100"
    ("300+-100" too). None or blank means no latency. Anything else raises ValueError saying what is
    accepted."""
    if text is None or not text.strip():
        return 0.0, 0.0
    found = _LATENCY.match(text)
    if found is None:
        raise ValueError(f"{LATENCY_ENV}={text!r} is not a latency: give milliseconds as LATENCY, "
                         "LATENCY:JITTER or LATENCY±JITTER, e.g. 300, 300:100 or 300±100")
    latency = float(found.group("latency"))
    jitter = float(found.group("jitter") or 0.0)
    if not (math.isfinite(latency) and math.isfinite(jitter)):
        raise ValueError(f"{LATENCY_ENV}={text!r}: latency and jitter must be finite")
    return latency, jitter
