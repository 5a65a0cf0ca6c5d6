"""Run requests when things fail (found by review): a database error while claiming, a leader that died mid-run."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import OperationalError

from bot.scheduler import LEASE_SECONDS, Job, Scheduler, interval
from bot.store import create_store


class Clock:
    def __init__(self) -> None:
        self.value = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.value


def test_one_database_error_while_claiming_does_not_wedge_the_job(tmp_path):
    url = f"sqlite:///{tmp_path}/jobs.db"
    ran = []
    job = Job("change-takeover", "t", interval(seconds=15), lambda: ran.append(1) or "0 run")
    leader = Scheduler(create_store(url), [job], holder="leader")
    leader._keep_lease()
    real = leader.requests.claim
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("UPDATE job_requests", {}, Exception("server closed the connection"))
        return real(*a, **k)

    leader.requests.claim = flaky
    with contextlib.suppress(OperationalError):  # APScheduler would log this and carry on
        leader._run_if_leader("change-takeover")
    for _ in range(5):  # the next five scheduled runs, and the request poll
        leader._run_if_leader("change-takeover")
        leader._serve_requests()
    assert ran, "the job never runs again on this leader"
    assert not leader._claimed


def test_jobs_run_joining_a_dead_leaders_run_ends_instead_of_waiting_forever(tmp_path):
    clock = Clock()
    url = f"sqlite:///{tmp_path}/jobs.db"
    job = Job("count", "counts", interval(minutes=60), lambda: "counted")
    dead = Scheduler(create_store(url), [job], now=clock, holder="dead")
    dead._keep_lease()
    request, _ = dead.requests.open("count", "schedule")
    assert dead.requests.claim(request.id or 0, "dead")  # the leader dies mid-run (kill -9)
    clock.value += timedelta(seconds=LEASE_SECONDS + 1)  # its lease runs out; no serve process is alive

    cli = Scheduler(create_store(url), [job], now=clock, holder="cli")  # what cmd_jobs_run builds
    asked = cli.request("count", "cli:host")
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("done", cli.wait(asked, poll_seconds=0.05)), daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "cmd_jobs_run would wait forever"


def test_a_long_sweep_does_not_hold_up_change_takeover(tmp_path):
    """Jobs lock one at a time each, not the whole process: crash recovery runs while a sweep is still going."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    release, takeovers = threading.Event(), []
    jobs = [Job("threat-sweep", "s", interval(seconds=0.3), lambda: release.wait(30) and "swept"),
            Job("change-takeover", "t", interval(seconds=0.2), lambda: takeovers.append(1) or "0 run")]
    scheduler = Scheduler(create_store(url), jobs, holder="leader", poll_seconds=0.1)
    scheduler.start()
    try:
        deadline = time.monotonic() + 20
        while len(takeovers) < 3 and time.monotonic() < deadline:  # while the sweep is still waiting
            time.sleep(0.05)
        assert len(takeovers) >= 3 and not release.is_set()
    finally:
        release.set()
        scheduler.stop()
