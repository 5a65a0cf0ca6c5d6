"""The scheduler lease: one leader at a time, takeover when it dies, `jobs run` that says who leads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.scheduler import LEASE_SECONDS, Job, JobHeldElsewhere, LeaderLease, Scheduler, interval, last_runs
from bot.store import create_store
from bot.store.models import JobRun
from tests.databases import database_url  # noqa: F401  (fixture)


class Clock:
    def __init__(self) -> None:
        self.value = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.value


def test_one_holder_at_a_time_and_takeover_after_expiry(database_url: str):  # noqa: F811
    clock = Clock()
    a = LeaderLease(create_store(database_url), "a", now=clock)
    b = LeaderLease(create_store(database_url), "b", now=clock)
    assert a.acquire() and not b.acquire()
    clock.value += timedelta(seconds=LEASE_SECONDS / 2)
    assert a.acquire() and not b.acquire()  # renewed by its holder
    clock.value += timedelta(seconds=LEASE_SECONDS + 1)  # a stopped renewing: it died
    assert b.acquire() and not a.acquire()
    assert b.held_by_me() and not a.held_by_me()
    b.release()
    assert a.acquire()


def test_run_now_records_the_run_and_refuses_while_another_leads(tmp_path):
    clock = Clock()
    url = f"sqlite:///{tmp_path}/jobs.db"

    calls = 0

    def count() -> str:
        nonlocal calls
        calls += 1
        return f"call {calls}"

    job = Job("count", "counts", interval(minutes=5), count)
    leader = Scheduler(create_store(url), [job], now=clock, holder="leader")
    other = Scheduler(create_store(url), [job], now=clock, holder="other")
    assert leader.lease.acquire()
    with pytest.raises(JobHeldElsewhere, match="held by leader"):
        other.run_now("count")
    run = leader.run_now("count")
    assert run.outcome == "ok" and run.summary == "call 1"
    assert last_runs(leader.store)["count"].summary == "call 1"


def test_a_failing_job_is_recorded_not_raised(tmp_path):
    def boom() -> None:
        raise RuntimeError("Graph is down")

    scheduler = Scheduler(create_store(f"sqlite:///{tmp_path}/jobs.db"),
                          [Job("boom", "fails", interval(minutes=1), boom)], now=Clock(), holder="x")
    run = scheduler.run_now("boom")
    assert run.outcome == "failed" and "Graph is down" in run.summary


def test_followers_skip_their_jobs(tmp_path):
    clock = Clock()
    url = f"sqlite:///{tmp_path}/jobs.db"
    ran: list[str] = []
    job = Job("j", "j", interval(minutes=1), lambda: ran.append("ran"))
    leader = Scheduler(create_store(url), [job], now=clock, holder="leader")
    follower = Scheduler(create_store(url), [job], now=clock, holder="follower")
    leader._keep_lease()
    follower._keep_lease()
    follower._run_if_leader("j")
    assert ran == []
    leader._run_if_leader("j")
    assert ran == ["ran"]


def test_a_new_leader_marks_the_dead_leaders_unfinished_run_interrupted(tmp_path):
    clock = Clock()
    url = f"sqlite:///{tmp_path}/jobs.db"
    job = Job("j", "j", interval(minutes=1), lambda: "done")
    dead = Scheduler(create_store(url), [job], now=clock, holder="dead")
    heir = Scheduler(create_store(url), [job], now=clock, holder="heir")
    dead._keep_lease()
    # the leader records its run as running, then dies inside it (its record stays running)
    with dead.store.session() as session:
        session.add(JobRun(job="j", holder="dead", started_at=clock()))
        session.commit()

    heir._keep_lease()
    assert last_runs(heir.store)["j"].outcome == "running"  # still dead's lease: nothing to say yet
    clock.value += timedelta(seconds=LEASE_SECONDS + 1)
    heir._keep_lease()
    run = last_runs(heir.store)["j"]
    assert run.holder == "dead" and run.outcome == "interrupted" and run.finished_at is None
    assert heir.run_now("j").outcome == "ok"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the crash is the point
def test_alive_until_apschedulers_thread_dies(tmp_path, monkeypatch):
    """/livez asks this: a started scheduler whose thread has gone runs nothing again, whatever the database says."""
    store = create_store(f"sqlite:///{tmp_path}/alive.db")
    scheduler = Scheduler(store, [Job("noop", "does nothing", interval(minutes=5), lambda: "ok")], holder="me")
    assert scheduler.alive  # not started: nothing has died
    scheduler.start()
    try:
        assert scheduler.alive
        inner = scheduler._scheduler
        assert inner is not None

        def crash() -> float:
            raise SystemExit  # ends APScheduler's loop as a bug in it would, leaving it "running"

        monkeypatch.setattr(inner, "_process_jobs", crash)
        inner.wakeup()
        inner._thread.join(5)
        assert not scheduler.alive
    finally:
        monkeypatch.undo()
        scheduler.stop(timeout=1)
        store.close()
    assert scheduler.alive  # stopped on purpose: not a death
