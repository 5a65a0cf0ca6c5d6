"""Sweep a sandbox tenant of 100,000 Android devices and 250,000 app registrations; print the figures.

    .venv/bin/python -m benchmarks.sweep [--devices N] [--registrations N] [--sweeps N] [--no-quotas]

The sandbox runs in a child process and is served over a local port, so the bot's whole HTTP path
is measured and its peak memory is the bot's alone. The sandbox enforces Microsoft's published
quotas (Intune 1,000 requests / 20 s; Defender 100 calls / minute, 1,500 / hour) and the bot uses
its production request budget, so "none throttled" and the wall time mean something: the floor
printed is the least time those quotas allow for the requests made.

One policy watches threats: the seeded "Android BYOD App Protection" with its maximum set to `low`
and the action `block`, assigned to everyone with an Android app (less the Executives group).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import resource
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

INTUNE_PER_WINDOW, INTUNE_WINDOW = 1_000, 20.0
DEFENDER_PER_MINUTE = 100
USERS_PAGE = 999


@dataclass(frozen=True)
class Shape:
    devices: int
    registrations: int
    quotas: bool


def serve(conn: Connection, shape: Shape) -> None:
    """The child: build the tenant, serve it, answer 'stats' and 'stop'."""
    from bot.sandbox import SEED_POLICY_ID, SandboxConfig, SandboxTenant, ThrottleConfig, serve_sandbox

    throttle = ThrottleConfig(enforce_quotas=True) if shape.quotas else None
    config = SandboxConfig.large(devices=shape.devices, registrations=shape.registrations, throttle=throttle)
    tenant = SandboxTenant(config)
    tenant.policies_store.update(SEED_POLICY_ID, {"maximumAllowedDeviceThreatLevel": "low",
                                                  "mobileThreatDefenseRemediationAction": "block"}, True)
    world = tenant.world
    listed = sum(1 for raw in range(len(world._cast_devices)) if world.machine(raw) is not None)
    listed += world.devices_generated
    conn.send({"machines_listed": listed, "users": world.user_count,
               "registrations": world.registration_count, "registrations_page": config.registrations_page_size,
               "graph_page": config.graph_page_size, "policies": len(tenant.policies_store.items)})
    with serve_sandbox(tenant) as server:
        conn.send(server.url)
        while True:
            command = conn.recv()
            if command == "stats":
                stats = tenant.stats
                conn.send({"requests": dict(stats.requests), "throttled": stats.throttled, "total": stats.total})
                stats.reset()
            else:
                return


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--registrations", type=int, default=250_000)
    parser.add_argument("--sweeps", type=int, default=1, help="more than one shows a steady-state sweep")
    parser.add_argument("--no-quotas", action="store_true", help="no quotas in the sandbox, no client budget")
    args = parser.parse_args(argv)
    shape = Shape(args.devices, args.registrations, not args.no_quotas)

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=serve, args=(theirs, shape), daemon=True)
    child.start()
    print(f"building a sandbox tenant: {shape.devices:,} Android devices, {shape.registrations:,} registrations…",
          flush=True)
    tenant: dict[str, Any] = ours.recv()
    url: str = ours.recv()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for number in range(1, args.sweeps + 1):
                figures = sweep_once(url, Path(tmp), shape)
                ours.send("stats")
                served = ours.recv()
                report(number, shape, tenant, figures, served)
    finally:
        ours.send("stop")
        child.join(10)
    return 0


@dataclass
class Figures:
    wall: float
    rss_before: float
    rss_peak: float
    client_requests: int
    result: Any
    outbox: Counter[str]


_state: dict[str, Any] = {}


def sweep_once(url: str, tmp: Path, shape: Shape) -> Figures:
    """One sweep by the bot's real code: clients, budget, store, outbox (queued, not sent)."""
    from slack_sdk import WebClient
    from sqlalchemy import func, select

    from bot.microsoft import build_clients
    from bot.microsoft.budget import UnlimitedBudget, default_budget
    from bot.microsoft.transport import BACKGROUND
    from bot.outbox import Outbox
    from bot.outbox.table import outbox_table
    from bot.settings import load_settings
    from bot.store import create_store
    from commands.adapters import SlackAlerts
    from commands.alerts import portals_for
    from workflows.onboarding import WatchSettings
    from workflows.threat_sweep import run_threat_sweep

    if not _state:
        settings = load_settings(mam_cloud="sandbox", mam_graph_url=url, mam_defender_url=url,
                                 database_url=f"sqlite:///{tmp / 'bench.db'}")
        budget = default_budget(time.monotonic) if shape.quotas else UnlimitedBudget()
        clients = build_clients(settings, budget=budget, profile=BACKGROUND)
        store = create_store(settings.database_url)
        outbox = Outbox(store, WebClient(token="xoxb-benchmark"))  # never started: rows are only queued
        _state.update(clients=clients, store=store, outbox=outbox)
    clients, store, outbox = _state["clients"], _state["store"], _state["outbox"]
    def queued() -> Counter[str]:
        with store.engine.connect() as conn:
            return Counter({k: n for k, n in conn.execute(
                select(outbox_table.c.kind, func.count()).group_by(outbox_table.c.kind)).all()})

    already = queued()
    before = rss_mb()
    started = time.perf_counter()
    with clients.counting_requests() as requests:
        result = run_threat_sweep(graph=clients.graph, defender=clients.defender, store=store,
                                  notifier=SlackAlerts(outbox, portals_for("global")), settings=WatchSettings(),
                                  alert_channel="C0ALERTS", requests=requests)
    wall = time.perf_counter() - started
    return Figures(wall, before, rss_mb(), requests(), result, queued() - already)


def report(number: int, shape: Shape, tenant: dict[str, Any], f: Figures, served: dict[str, Any]) -> None:
    r = f.result
    by_route: Counter[str] = Counter()
    for (method, route), n in served["requests"].items():
        by_route[f"{method} {route}"] += n
    intune = sum(n for k, n in by_route.items() if "deviceAppManagement" in k)
    defender = sum(n for k, n in by_route.items() if "/api/" in k)
    directory = served["total"] - intune - defender

    minimum = minimum_requests(tenant, r, first=number == 1)
    floor = floor_seconds(intune, defender)
    ok = lambda good: "ok" if good else "MISSED"  # noqa: E731
    print(f"\nsweep {number}: {'errors: ' + '; '.join(r.errors) if r.errors else 'ok'}")
    print(f"  tenant             {tenant['machines_listed']:,} machines in Defender, {tenant['registrations']:,} "
          f"registrations ({tenant['registrations_page']} a page), {tenant['users']:,} users")
    print(f"  found              {r.devices_scanned:,} Android devices, {r.android_registrations:,} Android "
          f"registrations, {r.active_blocks:,} blocked (new {r.new_episodes:,}, changed {r.updated_episodes:,}, "
          f"resolved {r.resolved_episodes:,}), {r.pending_onboarding:,} users pending onboarding, "
          f"{r.unmatched:,} without a device id")
    print(f"  slack (queued)     {dict(f.outbox) or 'nothing new'} (digests: {r.digests})")
    print(f"  wall time          {f.wall:,.1f} s")
    print(f"  quota floor        {floor:,.1f} s (Intune {INTUNE_PER_WINDOW:,}/{INTUNE_WINDOW:g} s for {intune:,}; "
          f"Defender {DEFENDER_PER_MINUTE}/min for {defender:,})"
          + (f"  → {f.wall / floor:.2f}x [{ok(f.wall <= 1.2 * floor)}: ≤ 1.2x]" if floor and shape.quotas else ""))
    print(f"  peak RSS           {f.rss_peak:,.0f} MB (at start of sweep {f.rss_before:,.0f} MB) "
          f"[{ok(f.rss_peak < 300)}: < 300 MB]")
    made = f.client_requests
    print(f"  requests made      {made:,} HTTP requests; {served['total']:,} as quotas count them (each "
          f"request in a $batch counts): Intune {intune:,}, Defender {defender:,}, directory {directory:,}; "
          f"throttled {served['throttled']} [{ok(served['throttled'] == 0)}: none]")
    total_min = sum(minimum.values())
    print(f"  minimum requests   {total_min:,} for these page sizes: " + ", ".join(
        f"{k} {v:,}" for k, v in minimum.items())
        + f"  → {made / total_min:.3f}x [{ok(made <= 1.05 * total_min)}: ≤ 1.05x]")
    for route, n in by_route.most_common():
        print(f"      {n:>7,}  {route}")


def minimum_requests(tenant: dict[str, Any], r: Any, *, first: bool) -> dict[str, int]:
    """The fewest requests that read everything once at the page sizes used (Defender $top 10,000)."""
    minimum = {
        "policies": math.ceil(tenant["policies"] / tenant["graph_page"]),
        "machines": math.ceil(tenant["machines_listed"] / 10_000),
        "registrations": math.ceil(tenant["registrations"] / tenant["registrations_page"]),
    }
    blocked_users = r.new_episodes if first else 0  # names are read once, when an episode opens
    if blocked_users:
        minimum["users"] = min(math.ceil(blocked_users / 20), math.ceil(tenant["users"] / USERS_PAGE))
    return minimum


def floor_seconds(intune: int, defender: int) -> float:
    """Least wall time the quotas allow: the n-th request can't go before window ⌊(n-1)/limit⌋ opens."""
    intune_floor = ((intune - 1) // INTUNE_PER_WINDOW) * INTUNE_WINDOW if intune else 0.0
    defender_floor = ((defender - 1) // DEFENDER_PER_MINUTE) * 60.0 if defender else 0.0
    return max(intune_floor, defender_floor)


if __name__ == "__main__":
    sys.exit(main())
