"""SIGTERM to real `mam-bot serve` and `mam-bot run` processes in the middle of their work, many times over.

    .venv/bin/python -m benchmarks.sigterm [--stops 20] [--transport http|socket|both]
                                           [--database sqlite|postgres] [--replicas 1|2]
                                           [--drain 5] [--grace 20] [--posts-per-second 20]
                                           [--write-seconds 1]

Each stop (tests/scenario/shutdown.py, the driver tests/scenario/test_shutdown.py runs 3 times per case):
a change request is filed and approved through a running bot while the sandbox tenant holds its write
(an execution in flight), 200 DMs are queued in the outbox and going out, and the process that runs the
change gets SIGTERM. The held write is let go `--write-seconds` after that process has stopped taking work
(HTTP: its server closed after the drain; Socket Mode: its connection closed). After its exit `mam-bot jobs run
threat-sweep` runs, then a new process replaces the stopped one (with `--replicas 2` on PostgreSQL the
other replica serves meanwhile: a rolling restart). At the end every queued DM must have reached Slack
exactly once.

Defaults are production's (`MAM_SHUTDOWN_DRAIN_SECONDS=5`, `MAM_SHUTDOWN_GRACE_SECONDS=20`), SQLite and
one process. `--database postgres` makes a throw-away database on 127.0.0.1:5432 (MAM_TEST_POSTGRES_URL).

Prints one line per stop (exit status, SIGTERM to exit, DMs sent before the exit, rows left claimed,
the change's state, `jobs run` from the exit until done), then per transport: stops with exit status
0, executions finished, DMs lost and doubled, and the timings' median and maximum.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.console.fake_slack import FakeSlack
from bot.sandbox import SandboxTenant, serve_sandbox
from tests.databases import postgres_database
from tests.scenario.live import Transport
from tests.scenario.shutdown import Rig, StopReport

JOBS_TARGET_S = 2.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sigterm", description=__doc__.splitlines()[0])
    parser.add_argument("--stops", type=int, default=20, help="SIGTERMs per transport (default 20)")
    parser.add_argument("--transport", choices=["http", "socket", "both"], default="both")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--replicas", type=int, choices=[1, 2], default=1, help="2: a rolling restart (PostgreSQL)")
    parser.add_argument("--drain", type=float, default=5.0, help="MAM_SHUTDOWN_DRAIN_SECONDS (default 5)")
    parser.add_argument("--grace", type=float, default=20.0, help="MAM_SHUTDOWN_GRACE_SECONDS (default 20)")
    parser.add_argument("--posts-per-second", type=float, default=20.0,
                        help="MAM_SLACK_POSTS_PER_SECOND (default 20: a stop comes while DMs are still queued)")
    parser.add_argument("--write-seconds", type=float, default=1.0,
                        help="how long the change's write stays held after the process stopped taking work")
    opts = parser.parse_args(argv)
    if opts.replicas > 1 and opts.database != "postgres":
        parser.error("--replicas 2 needs --database postgres (SQLite is one process)")
    transports: list[Transport] = ["http", "socket"] if opts.transport == "both" else [opts.transport]
    clean = True
    for transport in transports:
        try:
            clean &= run(transport, opts)
        except pytest.skip.Exception as skipped:
            print(f"{transport}: not run: {skipped}")
            return 2
    return 0 if clean else 1


def run(transport: Transport, opts: argparse.Namespace) -> bool:
    where = f"{opts.database}, {opts.replicas} process{'es' if opts.replicas > 1 else ''}"
    print(f"\n{transport} ({'mam-bot serve' if transport == 'http' else 'mam-bot run'}): {opts.stops} SIGTERMs, "
          f"{where}, drain {opts.drain:g} s, grace {opts.grace:g} s, {opts.posts_per_second:g} posts/s, "
          f"the change's write held {opts.write_seconds:g} s past the transport's stop")
    with tempfile.TemporaryDirectory(prefix="mam-sigterm-") as tmp, FakeSlack() as slack, \
            database(opts.database, Path(tmp)) as url:
        sandbox = serve_sandbox(SandboxTenant())
        rig = Rig(transport, Path(tmp), slack, sandbox, url, drain_seconds=opts.drain, grace_seconds=opts.grace,
                  posts_per_second=opts.posts_per_second, write_seconds=opts.write_seconds)
        reports: list[StopReport] = []
        try:
            baseline = jobs_run_seconds(rig)
            print(f"  `mam-bot jobs run threat-sweep` with no bot running: {baseline:.2f} s (process start included)")
            for _ in range(opts.replicas):
                rig.start()
            print(f"  {'stop':>4} {'exit':>4} {'to exit':>8} {'sent':>8} {'claimed':>7} {'change':>9} "
                  f"{'jobs run':>8}  problems")
            for number in range(opts.stops):
                report = rig.stop_one(number, then=rig.start, jobs_alongside=False)
                reports.append(report)
                print(f"  {number + 1:>4} {report.code!s:>4} {report.seconds_to_exit:>7.2f}s "
                      f"{report.sent_before_exit:>4}/{len(report.queued):<3} {report.left_claimed:>7} "
                      f"{report.request_state:>9} {report.seconds_exit_to_jobs_done:>7.2f}s  "
                      f"{'; '.join(report.problems()) or '-'}", flush=True)
            delivered = rig.wait_delivered(timeout=120)
        finally:
            rig.close()
            sandbox.shutdown()
    return summary(reports, rig.queued, delivered, baseline)


def jobs_run_seconds(rig: Rig) -> float:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "bot.cli", "jobs", "run", "threat-sweep"], cwd=rig.tmp_path,
                          env=rig.jobs_env(), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"`mam-bot jobs run threat-sweep` failed with no bot running: {done.stdout}{done.stderr}")
    return time.monotonic() - started


def summary(reports: list[StopReport], queued: list[str], delivered: dict[str, int], baseline: float) -> bool:
    lost = [key for key in queued if delivered.get(key, 0) == 0]
    doubled = {key: n for key, n in delivered.items() if n > 1}
    exits = [r.seconds_to_exit for r in reports]
    jobs = [r.seconds_exit_to_jobs_done for r in reports]
    clean = [r for r in reports if not r.problems()]
    print(f"  stops clean          {len(clean)} of {len(reports)} (exit 0 {sum(r.code == 0 for r in reports)}, "
          f"change finished {sum(r.request_state == 'succeeded' and r.executed for r in reports)}, "
          f"lease handed back {sum(not r.lease_left_held for r in reports)}, "
          f"rows left claimed {sum(r.left_claimed for r in reports)})")
    print(f"  DMs                  {len(queued):,} queued, {sum(r.sent_before_exit for r in reports):,} sent by the "
          f"stopped processes before they exited, lost {len(lost)}, doubled {len(doubled)}")
    print(f"  SIGTERM to exit      median {statistics.median(exits):.2f} s, max {max(exits):.2f} s")
    print(f"  exit to jobs run ok  median {statistics.median(jobs):.2f} s, max {max(jobs):.2f} s "
          f"(target < {JOBS_TARGET_S:g} s: {'met' if max(jobs) < JOBS_TARGET_S else 'NOT met'}; the same "
          f"command takes {baseline:.2f} s with no bot running)")
    return len(clean) == len(reports) and not lost and not doubled


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "postgres":
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite:///{tmp / 'bot.db'}"


if __name__ == "__main__":
    sys.exit(main())
