"""The sandbox side of benchmarks.sweep: a tenant served on a local port, in a process of its own.

`serve(conn, shape)` is the child's entry point (multiprocessing "spawn"). It builds the tenant, sends a
hello (the URL and the tenant's sizes), then answers commands on the pipe until told to stop:

    ("stats", None)          → what the tenant was asked since the last "stats" (then reset), by area
    ("risk", [device ids])   → raise the first listed, onboarded, low-risk device among them to High
                               (SandboxTenant.set_risk) and say which, with the monotonic time it changed
    ("stop", None)           → return

Everything is timed on time.monotonic (CLOCK_MONOTONIC: one clock for every process on the machine), so
the bot can subtract the moment of a risk change here from the moment its card was queued there; export
jobs are created and polled here, so `export_seconds` runs on this process's clock alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

# Areas as the sandbox's quotas see them: "intune" (deviceManagement/, deviceAppManagement/), "directory"
# (users, groups), "defender" (/api/); "batch" envelopes are not requests to any quota (their parts are).
AREAS = ("intune", "directory", "defender", "batch", "other")
EXPORT_JOBS = "POST /deviceManagement/reports/exportJobs"


@dataclass(frozen=True)
class Shape:
    """The tenant one child serves."""

    devices: int
    registrations: int
    latency_ms: float
    jitter_ms: float
    export_seconds: float
    quotas: bool
    forbid: frozenset[str] = field(default_factory=frozenset)


def serve(conn: Connection, shape: Shape) -> None:
    from bot.sandbox import SEED_POLICY_ID, ConnectorConfig, SandboxConfig, SandboxTenant, ThrottleConfig, serve_sandbox

    throttle = ThrottleConfig(enforce_quotas=True) if shape.quotas else None
    config = SandboxConfig.large(devices=shape.devices, registrations=shape.registrations, throttle=throttle,
                                 latency_ms=shape.latency_ms, latency_jitter_ms=shape.jitter_ms,
                                 export_seconds=shape.export_seconds, forbid=set(shape.forbid),
                                 # Intune evaluates Defender's level for Android app protection: blocks are real
                                 connector=ConnectorConfig(android_mam_enabled=True))
    tenant = SandboxTenant(config)
    # The seeded policy watches threats: maximum `low`, action `block` (assigned to All Android Users less
    # the Executives group), so Medium and High devices block and a device raised to High opens a card.
    tenant.policies_store.update(SEED_POLICY_ID, {"maximumAllowedDeviceThreatLevel": "low",
                                                  "mobileThreatDefenseRemediationAction": "block"}, True)
    world = tenant.world
    routes = _route_areas()
    with tenant, serve_sandbox(tenant) as server:
        conn.send({"url": server.url, "users": world.user_count, "registrations": world.registration_count,
                   "devices": world.machine_raw_count, "registrations_page": config.registrations_page_size,
                   "graph_page": config.graph_page_size, "policy_id": SEED_POLICY_ID.lower()})
        while True:
            command, payload = conn.recv()
            if command == "stats":
                conn.send(_stats(tenant, routes))
            elif command == "risk":
                conn.send(_raise_risk(tenant, payload))
            else:
                return


def _route_areas() -> dict[str, str]:
    from bot.sandbox import graph

    areas = {f"/{version}/{route.template}": route.area for route in graph.ROUTES for version in ("beta", "v1.0")}
    return {route: ("other" if area not in AREAS else area) for route, area in areas.items()}


def _stats(tenant: Any, routes: dict[str, str]) -> dict[str, Any]:
    stats = tenant.stats
    with tenant._lock:  # the server's threads count under this lock
        by_route: Counter[str] = Counter()
        areas: Counter[str] = Counter({area: 0 for area in AREAS})
        for (method, route), n in stats.requests.items():
            by_route[f"{method} {route}"] += n
            areas["defender" if route.startswith("/api/") else routes.get(route, "other")] += n
        answer = {"areas": dict(areas), "by_route": dict(by_route), "throttled": stats.throttled,
                  "downloads": stats.downloads, "statuses": {str(k): v for k, v in stats.statuses.items()}}
        stats.reset()
    return answer


def _raise_risk(tenant: Any, candidates: list[str]) -> dict[str, Any]:
    """The first candidate Defender lists as onboarded at None/Informational/Low risk, raised to High."""
    for device in candidates:
        machine = tenant.machine(device)
        if machine is None or machine.get("onboardingStatus") != "Onboarded":
            continue
        if machine.get("riskScore") not in ("None", "Informational", "Low"):
            continue
        change = tenant.set_risk(device, "High")
        return {"device": device.lower(), "machine_id": change.machine_id, "previous": change.previous,
                "level": change.level, "monotonic": change.monotonic}
    return {"device": None}
