"""The threat sweep on a sandbox tenant of 100,000 Android devices and 250,000 registrations: print the figures.

    .venv/bin/python -m benchmarks.sweep                 # the full benchmark (about eight minutes)
    .venv/bin/python -m benchmarks.sweep --quick         # 10,000 devices, 30 ms, 5 s export: under a minute
    .venv/bin/python -m benchmarks.sweep [--devices N] [--registrations N] [--latency-ms 300] [--jitter-ms 100]
        [--export-seconds 60] [--no-quotas] [--skip-fallback] [--skip-licences]

The sandbox runs in a child process (benchmarks.sweep_child) and is served over a real local port, so the bot's
whole HTTP path is measured, every Graph and Defender request waits `--latency-ms` ± `--jitter-ms`, an export job
takes `--export-seconds` to be ready, Microsoft's quotas are enforced (Intune 1,000 requests / 20 s; Defender
100 / minute, 1,500 / hour) and the bot uses its production request budget (bot.microsoft.budget.default_budget).
The bot is built as in production (bot.compose.build_deps, SQLite) and runs its real jobs (bot.jobs.sweep_job,
licence_job); its cards are queued in the outbox, never sent. Peak RSS is the bot process's alone.

What it measures (figures are printed, never asserted; a table at the end says which targets were met):

1. Cold cycle: no index yet, so the sweep reads the connector, the policies and Defender's machines, then builds
   the registrations index (Intune's report export: created, polled, downloaded; its CSV streamed and joined to
   Entra users) and joins it with Defender. Wall time (< 3 min), Intune requests (≤ 30), directory and Defender
   requests, throttled (0), the bot's peak RSS (< 300 MB).
2. Warm cycle: the index is there: connector, policies and Defender only. Wall time (< 30 s), Defender requests
   (≤ 12), Intune requests.
3. Risk change → card: one device raised to High in the sandbox, a sweep run at once; the time from the change
   to the card queued in the outbox, and the worst case on the default schedule: a change just after a sweep
   read Defender waits for the next one, so 5 min + the sweep (< 6 min).
4. The paged fallback (export forbidden: registrations read 50 a page) on a tenant a tenth the size, with the
   same latency and quotas, and its figures x10.
5. The licence refresh (licence_job: the users holding each default Intune and Defender plan) on the full tenant.

Requests are counted by the sandbox by area as its quotas count them (each request inside a `$batch` counts;
the envelope doesn't): Intune is every route under deviceManagement/ or deviceAppManagement/; the directory is
users and groups; Defender is /api/. Export downloads are outside Graph and counted apart.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import multiprocessing
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.sweep_child import EXPORT_JOBS, Shape, serve

ALERTS = "C0ALERTS"
FULL = {"devices": 100_000, "registrations": 250_000, "latency_ms": 300.0, "jitter_ms": 100.0,
        "export_seconds": 60.0}
QUICK = {"devices": 10_000, "registrations": 25_000, "latency_ms": 30.0, "jitter_ms": 10.0, "export_seconds": 5.0}
PAGE = 50  # registrations a page in the paged fallback (the sandbox's, and Graph's)


# ---- memory ---------------------------------------------------------------------------------------------------


def _status_mb(name: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mb() -> float:
    now = _status_mb("VmRSS")
    return now if now is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Start measuring the peak afresh (Linux: VmHWM back to the current RSS); False where that isn't possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_mb("VmHWM") is not None


def peak_mb(reset: bool) -> float:
    """The bot process's peak RSS since reset_peak() (else since it started)."""
    peak = _status_mb("VmHWM") if reset else None
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- the sandbox child ------------------------------------------------------------------------------------------


class Sandbox:
    """A tenant served by a child process over a local port."""

    def __init__(self, shape: Shape) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=serve, args=(theirs, shape), daemon=True, name="sandbox")
        self.process.start()
        theirs.close()
        if not self.conn.poll(600):
            raise RuntimeError("the sandbox child didn't start within 10 minutes")
        self.hello: dict[str, Any] = self.conn.recv()
        self.url: str = self.hello["url"]

    def ask(self, command: str, payload: Any = None) -> Any:
        self.conn.send((command, payload))
        return self.conn.recv()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("stop", None))
        self.process.join(15)
        if self.process.is_alive():
            self.process.terminate()  # our own child, by its handle
            self.process.join(5)
        self.conn.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- the bot side -------------------------------------------------------------------------------------------------

_PARENS = re.compile(r"\('[^']*'\)")
_ID = re.compile(r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-f]{40})$")


def route_of(method: str, path: str) -> str:
    """"GET /beta/deviceManagement/reports/exportJobs('…')" → "GET deviceManagement/reports/exportJobs/{id}"."""
    parts = [p for p in _PARENS.sub("/{id}", path).split("/") if p]
    if parts and parts[0] in ("beta", "v1.0", "api"):
        parts = parts[1:] if parts[0] != "api" else ["api", *parts[1:]]
    return f"{method} " + "/".join("{id}" if _ID.match(p) else p for p in parts)


@dataclass
class Call:
    start: float
    end: float
    route: str

    @property
    def seconds(self) -> float:
        return self.end - self.start


class Timeline:
    """Each HTTP request the bot's Graph/Defender client sends: route, and the time to its response's headers."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._open: dict[int, float] = {}

    def started(self, request: Any) -> None:
        self._open[id(request)] = time.monotonic()

    def answered(self, response: Any) -> None:
        request = response.request
        start = self._open.pop(id(request), None)
        if start is not None:
            self.calls.append(Call(start, time.monotonic(), route_of(request.method, request.url.path)))


@dataclass
class Cycle:
    label: str
    started: float  # monotonic
    wall: float
    result: Any
    served: dict[str, Any]
    calls: list[Call]
    peak: float
    rss_before: float
    index: Any = None  # the IndexRun this cycle built, if it built one

    def area(self, name: str) -> int:
        return int(self.served["areas"].get(name, 0))

    @property
    def throttled(self) -> int:
        return int(self.served["throttled"])


class Bot:
    """The bot as production builds it (bot.compose.build_deps on SQLite), on the sandbox's URL."""

    def __init__(self, sandbox: Sandbox, folder: Path, *, quotas: bool) -> None:
        from slack_sdk import WebClient

        from bot.compose import build_deps
        from bot.microsoft import build_clients
        from bot.microsoft.budget import UnlimitedBudget, default_budget
        from bot.settings import load_settings

        self.sandbox = sandbox
        self.settings = load_settings(mam_cloud="sandbox", mam_graph_url=sandbox.url, mam_defender_url=sandbox.url,
                                      database_url=f"sqlite:///{folder / 'bot.db'}", mam_alert_channel=ALERTS)
        self.deps = build_deps(self.settings, slack_client=WebClient(token="xoxb-benchmark"))  # outbox never started
        # build_deps gives a served sandbox's static token no budget (build_clients: "the sandbox has no quotas to
        # protect"); this one has them, and a real tenant on SQLite gets the in-process default_budget: use that.
        self.deps.microsoft.close()
        budget = default_budget(time.monotonic) if quotas else UnlimitedBudget()
        self.deps.microsoft = build_clients(self.settings, budget=budget)
        self.timeline = Timeline()
        hooks = self.deps.microsoft._http.event_hooks
        hooks["request"].append(self.timeline.started)
        hooks["response"].append(self.timeline.answered)
        self.posted: list[tuple[float, str]] = []  # (monotonic, key) of each chat.postMessage queued
        outbox = self.deps.outbox
        queue_post = outbox.post

        def post(key: str, **kwargs: Any) -> Any:
            message = queue_post(key, **kwargs)
            self.posted.append((time.monotonic(), key))
            return message

        outbox.post = post  # type: ignore[method-assign]

    def run(self, label: str, job: Callable[[], Any]) -> Cycle:
        from workflows.index_store import current_run

        self.sandbox.ask("stats")  # forget whatever came before
        before_index = current_run(self.deps.store)
        first_call = len(self.timeline.calls)
        rss_before = rss_mb()
        resettable = reset_peak()
        started = time.monotonic()
        result = job()
        wall = time.monotonic() - started
        peak = peak_mb(resettable)
        served = self.sandbox.ask("stats")
        index = current_run(self.deps.store)
        built = index if index is not None and (before_index is None or index.id != before_index.id) else None
        return Cycle(label, started, wall, result, served, self.timeline.calls[first_call:], peak, rss_before, built)

    def sweep(self, label: str) -> Cycle:
        from bot.jobs import sweep_job

        return self.run(label, lambda: sweep_job(self.deps))

    def licences(self) -> Cycle:
        from bot.jobs import licence_job

        return self.run("licences", lambda: licence_job(self.deps))

    def unblocked_devices(self, policy_id: str, limit: int = 500) -> list[str]:
        """Entra device ids the index says the watching policy applies to, with no open episode."""
        from sqlalchemy import select

        from bot.store.index import IndexRow
        from bot.store.watch import OPEN, Episode
        from workflows.index_store import current_run

        run = current_run(self.deps.store)
        if run is None:
            return []
        rows = IndexRow.__table__  # type: ignore[attr-defined]
        episodes = Episode.__table__  # type: ignore[attr-defined]
        found: dict[str, None] = {}
        with self.deps.store.engine.connect() as conn:
            blocked = {str(d).lower() for (d,) in conn.execute(
                select(episodes.c.device_id).where(episodes.c.state == OPEN))}
            query = (select(rows.c.device_id).where(rows.c.generation == run.id, rows.c.device_id != "",
                                                    rows.c.policies.like(f"%{policy_id}%"))
                     .order_by(rows.c.id.desc()).limit(50_000))
            for (device,) in conn.execute(query):
                device = str(device).lower()
                if device not in blocked:
                    found[device] = None
                    if len(found) >= limit:
                        break
        return list(found)

    def close(self) -> None:
        self.deps.close(job_seconds=0)


# ---- printing -----------------------------------------------------------------------------------------------------


def seconds(value: float) -> str:
    if value < 120:
        return f"{value:,.1f} s"
    minutes, rest = divmod(value, 60)
    return f"{int(minutes)} min {rest:04.1f} s"


def wall_of(calls: list[Call]) -> float:
    return max(c.end for c in calls) - min(c.start for c in calls) if calls else 0.0


def print_routes(calls: list[Call], indent: str = "      ", top: int = 12) -> None:
    count: Counter[str] = Counter()
    spent: dict[str, float] = {}
    for call in calls:
        count[call.route] += 1
        spent[call.route] = spent.get(call.route, 0.0) + call.seconds
    ranked = sorted(spent.items(), key=lambda kv: -kv[1])
    for route, took in ranked[:top]:
        print(f"{indent}{count[route]:>6,} x {route:<58} {took:8.1f} s  (mean {took / count[route] * 1000:,.0f} ms)")
    if len(spent) > top:
        rest = [r for r, _ in ranked[top:]]
        print(f"{indent}{sum(count[r] for r in rest):>6,} x {len(rest)} other routes"
              f"{'':<40} {sum(spent[r] for r in rest):8.1f} s")


def print_served(cycle: Cycle) -> None:
    areas = cycle.served["areas"]
    print(f"    requests (sandbox): Intune {areas['intune']:,}, directory {areas['directory']:,}, Defender "
          f"{areas['defender']:,}, $batch envelopes {areas['batch']:,}, other {areas['other']:,}; "
          f"export downloads {cycle.served['downloads']:,}; throttled (429) {cycle.throttled:,}")
    result = cycle.result
    made = getattr(result, "requests", None)
    if made is not None:
        print(f"    requests (bot): {made:,} HTTP requests sent, retries included ($batch = 1)")
    for key, n in sorted(cycle.served["by_route"].items(), key=lambda kv: -kv[1]):
        print(f"      {n:>7,}  {key}")


def print_sweep(cycle: Cycle) -> None:
    r = cycle.result
    print(f"\n{cycle.label}: {seconds(cycle.wall)}{' — errors: ' + '; '.join(r.errors) if r.errors else ''}")
    print(f"    {r.summary()}")
    print(f"    found: {r.devices_scanned:,} Android devices in Defender, {r.android_registrations:,} Android "
          f"registrations ({r.source or '?'}), {r.active_blocks:,} blocked (new {r.new_episodes:,}, changed "
          f"{r.updated_episodes:,}, resolved {r.resolved_episodes:,}), {r.unmatched:,} without a device id, "
          f"digests {r.digests}")
    print(f"    bot RSS: {cycle.rss_before:,.0f} MB before, peak {cycle.peak:,.0f} MB during")
    print_served(cycle)
    print("    where the time went (HTTP: request sent → response headers; the rest is the bot's own work):")
    run = cycle.index
    if run is None:
        print_routes(cycle.calls)
        print(f"      HTTP in all {sum(c.seconds for c in cycle.calls):,.1f} s of {seconds(cycle.wall)}")
        return
    from bot.clock import as_utc

    offset = time.time() - time.monotonic()
    begin = as_utc(run.started_at).timestamp() - offset
    end = as_utc(run.finished_at).timestamp() - offset if run.finished_at else cycle.started + cycle.wall
    before = [c for c in cycle.calls if c.start < begin]
    during = [c for c in cycle.calls if begin <= c.start <= end]
    after = [c for c in cycle.calls if c.start > end]
    print(f"    - before the index (connector, policies, Defender's machines): {seconds(begin - cycle.started)}")
    print_routes(before, "        ")
    print(f"    - the index refresh ({run.source}{': ' + run.fallback_reason if run.fallback_reason else ''}): "
          f"{seconds(end - begin)}; {run.rows:,} rows read, {run.android_rows:,} Android, {run.kept:,} kept, "
          f"{run.unknown_users:,} unknown mails, {run.no_device_id:,} without a device id, {run.requests:,} requests")
    print_routes(during, "        ")
    jobs = [c for c in during if "exportJobs" in c.route]
    directory = sum(c.seconds for c in during if " users" in c.route or " groups" in c.route)
    if jobs and run.export_seconds:
        waited = jobs[-1].end - jobs[0].start
        download = max(0.0, run.export_seconds - (jobs[-1].end - begin))
        print(f"        export job: created, then polled {len(jobs) - 1} times: ready after {waited:,.1f} s; "
              f"download ≈ {download:,.1f} s; created → downloaded {run.export_seconds:,.1f} s")
        print(f"        directory (Entra users for the report's mails), HTTP: {directory:,.1f} s")
        rest = (end - begin) - run.export_seconds - directory
        print(f"        the bot's own work: CSV read twice, joined, {run.kept:,} rows into SQLite (and parsing "
              f"the directory's pages): ≈ {rest:,.1f} s")
    elif run.source == "paged":
        pages = [c for c in during if "managedAppRegistrations" in c.route]
        http = sum(c.seconds for c in pages)
        print(f"        {len(pages):,} registration pages one after another, {http:,.1f} s of HTTP "
              f"({http / max(1, len(pages)) * 1000:,.0f} ms a page); the rest "
              f"{(end - begin) - sum(c.seconds for c in during):,.1f} s")
    after_seconds = cycle.started + cycle.wall - end
    print(f"    - after the index (join, blocked users' names, episodes, outbox): {seconds(after_seconds)}")
    print_routes(after, "        ")


# ---- the benchmark ---------------------------------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    value: str
    target: str = "—"
    met: bool | None = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, help=f"Android devices (default {FULL['devices']:,})")
    parser.add_argument("--registrations", type=int, help=f"app registrations (default {FULL['registrations']:,})")
    parser.add_argument("--latency-ms", type=float, help="each request's latency in ms (default 300)")
    parser.add_argument("--jitter-ms", type=float, help="± uniform jitter on it in ms (default 100)")
    parser.add_argument("--export-seconds", type=float, help="seconds an export job takes (default 60)")
    parser.add_argument("--no-quotas", action="store_true", help="no quotas in the sandbox, no budget in the bot")
    parser.add_argument("--skip-fallback", action="store_true", help="don't measure the paged fallback")
    parser.add_argument("--skip-licences", action="store_true", help="don't measure the licence refresh")
    parser.add_argument("--quick", action="store_true",
                        help="10,000 devices, 25,000 registrations, 30 ± 10 ms, 5 s export (explicit options win)")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    values = {name: getattr(args, name) if getattr(args, name) is not None else default
              for name, default in preset.items()}
    quotas = not args.no_quotas
    full = Shape(int(values["devices"]), int(values["registrations"]), float(values["latency_ms"]),
                 float(values["jitter_ms"]), float(values["export_seconds"]), quotas)
    logging.basicConfig(level=logging.WARNING, format="    [log] %(name)s: %(message)s")
    print(f"sweep benchmark: {full.devices:,} Android devices, {full.registrations:,} registrations, "
          f"{full.latency_ms:g} ± {full.jitter_ms:g} ms a request, export {full.export_seconds:g} s, quotas "
          f"{'enforced, production budget' if quotas else 'off, no budget'}", flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="mam-sweep-bench-") as tmp:
        measure_full(full, Path(tmp) / "full", rows, skip_licences=args.skip_licences)
        if not args.skip_fallback:
            tenth = Shape(max(1, full.devices // 10), max(1, full.registrations // 10), full.latency_ms,
                          full.jitter_ms, full.export_seconds, quotas, frozenset({EXPORT_JOBS}))
            measure_fallback(tenth, full, Path(tmp) / "tenth", rows)
    print_table(rows)
    return 0


def measure_full(shape: Shape, folder: Path, rows: list[Row], *, skip_licences: bool) -> None:
    folder.mkdir()
    print("building the sandbox tenant (child process)…", flush=True)
    with Sandbox(shape) as sandbox:
        hello = sandbox.hello
        print(f"  served at {sandbox.url}: {hello['devices']:,} devices, {hello['users']:,} users, "
              f"{hello['registrations']:,} registrations", flush=True)
        bot = Bot(sandbox, folder, quotas=shape.quotas)
        try:
            print("cold cycle (no index yet)…", flush=True)
            cold = bot.sweep("cold cycle (no index: export, CSV, join, Defender)")
            print_sweep(cold)
            rows += [
                Row("cold cycle: wall time", seconds(cold.wall), "< 3 min", cold.wall < 180 and cold.result.ok),
                Row("cold cycle: Intune requests", f"{cold.area('intune'):,}", "≤ 30", cold.area("intune") <= 30),
                Row("cold cycle: directory requests (Entra users)", f"{cold.area('directory'):,}"),
                Row("cold cycle: Defender requests", f"{cold.area('defender'):,}"),
                Row("cold cycle: throttled", f"{cold.throttled:,}", "0", cold.throttled == 0),
                Row("cold cycle: bot peak RSS", f"{cold.peak:,.0f} MB", "< 300 MB", cold.peak < 300),
            ]
            print("\nwarm cycle…", flush=True)
            warm = bot.sweep("warm cycle (index present: connector, policies, Defender)")
            print_sweep(warm)
            rows += [
                Row("warm cycle: wall time", seconds(warm.wall), "< 30 s", warm.wall < 30 and warm.result.ok),
                Row("warm cycle: Defender requests", f"{warm.area('defender'):,}", "≤ 12", warm.area("defender") <= 12),
                Row("warm cycle: Intune requests", f"{warm.area('intune'):,}"),
                Row("warm cycle: throttled", f"{warm.throttled:,}"),
            ]
            rows += risk_to_card(bot, sandbox)
            if not skip_licences:
                print("\nlicence refresh…", flush=True)
                licences = bot.licences()
                run = licences.result
                print(f"\nlicence refresh: {seconds(licences.wall)}; "
                      f"{'ok' if run.ok else 'FAILED: ' + run.error}: {run.intune_users:,} users with an Intune "
                      f"plan, {run.defender_users:,} with a Defender plan; bot peak RSS {licences.peak:,.0f} MB")
                print_served(licences)
                print("    where the time went:")
                print_routes(licences.calls)
                rows += [Row("licence refresh: wall time", seconds(licences.wall)),
                         Row("licence refresh: requests (directory + Intune)",
                             f"{licences.area('directory') + licences.area('intune'):,}")]
        finally:
            bot.close()


def risk_to_card(bot: Bot, sandbox: Sandbox) -> list[Row]:
    interval = bot.settings.mam_sweep_minutes * 60
    print("\nrisk change → card…", flush=True)
    candidates = bot.unblocked_devices(sandbox.hello["policy_id"])
    change = sandbox.ask("risk", candidates)
    if change["device"] is None:
        print(f"\nrisk change → card: none of {len(candidates)} devices could be raised (none listed at low risk)")
        return [Row("risk change → card, worst case", "not measured", "< 6 min", False)]
    mark = len(bot.posted)
    cycle = bot.sweep("sweep after the risk change")
    card = next(((at, key) for at, key in bot.posted[mark:] if change["device"] in key.lower()), None)
    print_sweep(cycle)
    print(f"\nrisk change → card: device {change['device']} (machine {change['machine_id']}) "
          f"{change['previous']} → {change['level']}")
    if card is None:
        print(f"    no card queued for it (queued: {[k for _, k in bot.posted[mark:]]})")
        return [Row("risk change → card, worst case", "no card", "< 6 min", False)]
    measured = card[0] - change["monotonic"]
    into_sweep = card[0] - cycle.started
    worst = interval + cycle.wall
    print(f"    sweep run right away: the card ({card[1]}) was queued {measured:,.1f} s after the change "
          f"({into_sweep:,.1f} s into a {cycle.wall:,.1f} s sweep)")
    print(f"    on the schedule (every {interval / 60:g} min, start to start): best case ≈ {into_sweep:,.1f} s "
          f"(changed just before a sweep read Defender), on average ≈ {seconds(interval / 2 + into_sweep)}")
    print(f"    worst case at the default interval = {interval / 60:g} min + warm sweep time ({cycle.wall:,.1f} s) "
          f"= {seconds(worst)}: {'under' if worst < 360 else 'NOT under'} 6 minutes")
    return [Row("risk change → card queued, sweep at once", seconds(measured)),
            Row(f"risk change → card, worst case ({interval / 60:g} min + sweep)", seconds(worst), "< 6 min",
                worst < 360)]


def measure_fallback(shape: Shape, full: Shape, folder: Path, rows: list[Row]) -> None:
    folder.mkdir()
    print(f"\npaged fallback on a tenth of the tenant ({shape.devices:,} devices, {shape.registrations:,} "
          "registrations; export jobs forbidden)…", flush=True)
    with Sandbox(shape) as sandbox:
        bot = Bot(sandbox, folder, quotas=shape.quotas)
        try:
            cold = bot.sweep("paged fallback: cold cycle on a tenth of the tenant")
        finally:
            bot.close()
    print_sweep(cold)
    scale = full.registrations / shape.registrations
    index = cold.index
    index_seconds = 0.0
    if index is not None and index.finished_at is not None:
        from bot.clock import as_utc

        index_seconds = (as_utc(index.finished_at) - as_utc(index.started_at)).total_seconds()
    pages = math.ceil(full.registrations / PAGE)
    print(f"\n    x{scale:g} to the full tenant: cycle ≈ {seconds(cold.wall * scale)}, the paged read ≈ "
          f"{seconds(index_seconds * scale)}; Intune requests ≈ {cold.area('intune') * scale:,.0f} (the directory's "
          "and Defender's pages grow with the tenant too, as in the cold cycle above: 999 and 10,000 a page)")
    print(f"    (~{pages:,} sequential pages of {PAGE} at {full.latency_ms:g} ms ≈ "
          f"{seconds(pages * full.latency_ms / 1000)} of latency alone)")
    rows += [
        Row(f"paged fallback, 1/{scale:g} tenant: wall time", seconds(cold.wall)),
        Row(f"paged fallback, 1/{scale:g} tenant: Intune / directory / Defender",
            f"{cold.area('intune'):,} / {cold.area('directory'):,} / {cold.area('defender'):,}"),
        Row(f"paged fallback x{scale:g} (extrapolated): wall time", seconds(cold.wall * scale),
            "(cold target < 3 min)"),
        Row(f"paged fallback x{scale:g} (extrapolated): Intune requests", f"{cold.area('intune') * scale:,.0f}",
            "(cold target ≤ 30)"),
    ]


def print_table(rows: list[Row]) -> None:
    width = max(len(r.figure) for r in rows) + 2
    value_width = max(len(r.value) for r in rows) + 2
    target_width = max(len(r.target) for r in rows) + 2
    print("\n" + "figure".ljust(width) + "measured".ljust(value_width) + "target".ljust(target_width) + "met")
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "NO")
        print(r.figure.ljust(width) + r.value.ljust(value_width) + r.target.ljust(target_width) + met)


if __name__ == "__main__":
    sys.exit(main())
