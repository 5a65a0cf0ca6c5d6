"""Run requests: one open request per job however many ask at once, the leader runs it, the asker gets its
outcome, a run in progress (the schedule's included) is joined, and with no leader the asker runs it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from bot.scheduler import LEASE_SECONDS, Job, NotPickedUp, Requested, Scheduler, interval
from bot.store import Store, create_store
from bot.store.job_requests import DONE, INTERRUPTED, QUEUED, RUNNING, SCHEDULE, JobRequest, JobRequests
from bot.store.models import JobRun
from tests.databases import database_url  # noqa: F401  (fixture)


class Clock:
    def __init__(self) -> None:
        self.value = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.value


class Gate:
    """A job that runs until the test lets it finish, so "while it runs" needs no sleeping."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        assert self.release.wait(30), "the test never let the job finish"
        return f"run {self.calls}"


def runs(store: Store) -> list[JobRun]:
    with store.session() as session:
        return list(session.exec(select(JobRun)))


def in_thread(fn, *args):
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def result():
        thread.join(30)
        assert not thread.is_alive(), "still waiting"
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]

    return result


def test_many_askers_at_once_open_one_request_and_the_rest_join_it(database_url: str):  # noqa: F811
    create_store(database_url).close()
    stores = [create_store(database_url) for _ in range(8)]  # one engine each, as separate processes have
    start = threading.Barrier(len(stores))

    def ask(store: Store, who: str) -> tuple[int, bool]:
        start.wait()
        row, created = JobRequests(store).open("threat-sweep", who)
        assert row.id is not None
        return row.id, created

    try:
        results = [in_thread(ask, store, f"U{i}") for i, store in enumerate(stores)]
        answers = [result() for result in results]
        assert len({request_id for request_id, _ in answers}) == 1
        assert [created for _, created in answers].count(True) == 1
        requests = JobRequests(stores[0])
        [open_one] = [requests.open_for("threat-sweep")]
        assert open_one is not None and open_one.state == QUEUED
        # once done, the next ask opens a new request instead of joining the finished one
        assert requests.claim(open_one.id or 0, "leader")
        requests.finish(open_one.id or 0, "ok")
        again, created = requests.open("threat-sweep", "U9")
        assert created and again.id != open_one.id
    finally:
        for store in stores:
            store.close()


def test_the_leader_picks_a_request_up_and_the_asker_gets_the_leaders_outcome(tmp_path):
    url = f"sqlite:///{tmp_path}/jobs.db"
    job = Job("count", "counts", interval(minutes=60), lambda: "counted")
    leader = Scheduler(create_store(url), [job], holder="leader", poll_seconds=0.05)
    asker = Scheduler(create_store(url), [job], holder="asker")
    leader.start()
    try:
        while not leader.lease.held_by_me():  # it takes the lease on start, in its own thread
            threading.Event().wait(0.02)
        wait_for_leader = in_thread(lambda: asker.wait(asker.request("count", "U1"), poll_seconds=0.05))
        done: Requested = wait_for_leader()
    finally:
        leader.stop()
    assert done.done and done.outcome == "ok" and not done.here and not done.joined
    assert done.run is not None and done.run.holder == "leader" and done.run.summary == "counted"
    assert done.request.runner == "leader" and done.request.run_id == done.run.id


def test_an_ask_while_the_schedules_run_is_in_progress_joins_it(tmp_path):
    url = f"sqlite:///{tmp_path}/jobs.db"
    gate = Gate()
    job = Job("slow", "waits for the test", interval(minutes=60), gate)
    leader = Scheduler(create_store(url), [job], holder="leader")
    asker = Scheduler(create_store(url), [job], holder="asker")
    leader._keep_lease()
    scheduled = in_thread(leader._run_if_leader, "slow")  # the timer fires
    assert gate.started.wait(30)

    joined = asker.request("slow", "U1")
    assert joined.joined and joined.request.requested_by == SCHEDULE and joined.request.state == RUNNING
    waiting = in_thread(lambda: asker.wait(joined, poll_seconds=0.02))
    gate.release.set()
    scheduled()
    done = waiting()
    assert gate.calls == 1 and len(runs(leader.store)) == 1
    assert done.outcome == "ok" and done.run is not None and done.run.summary == "run 1" and done.joined


def test_two_askers_and_no_leader_run_the_job_once(tmp_path):
    url = f"sqlite:///{tmp_path}/jobs.db"
    calls: list[str] = []
    job = Job("count", "counts", interval(minutes=60), lambda: calls.append("ran") or "counted")
    one = Scheduler(create_store(url), [job], holder="one")
    two = Scheduler(create_store(url), [job], holder="two")
    first, second = one.request("count", "U1"), two.request("count", "U2")
    assert not first.joined and second.joined and first.request.id == second.request.id

    waits = [in_thread(lambda s=s, r=r: s.wait(r, poll_seconds=0.02)) for s, r in ((one, first), (two, second))]
    results = [w() for w in waits]
    assert calls == ["ran"]
    assert len({r.run.id for r in results if r.run}) == 1 and [r.here for r in results].count(True) == 1
    assert one.lease.live() is None  # the one that ran it handed the lease back


def test_with_no_leader_the_asker_runs_it_itself_under_the_lease(tmp_path):
    url = f"sqlite:///{tmp_path}/jobs.db"
    seen: list[Requested] = []
    job = Job("count", "counts", interval(minutes=60), lambda: "counted")
    asker = Scheduler(create_store(url), [job], holder="asker")
    done = asker.wait(asker.request("count", "U1"), on_progress=seen.append)
    assert done.here and done.outcome == "ok" and done.run is not None and done.run.holder == "asker"
    assert seen and seen[-1].here and seen[-1].request.state == RUNNING  # told before it ran
    assert asker.lease.live() is None


def test_a_live_leader_that_serves_no_requests_is_named_not_waited_on_forever(tmp_path):
    url = f"sqlite:///{tmp_path}/jobs.db"
    job = Job("count", "counts", interval(minutes=60), lambda: "counted")
    old = Scheduler(create_store(url), [job], holder="old-version")
    asker = Scheduler(create_store(url), [job], holder="asker")
    assert old.lease.acquire()  # it leads, but never looks at requests
    with pytest.raises(NotPickedUp, match="old-version"):
        asker.wait(asker.request("count", "U1"), poll_seconds=0.02, pickup_seconds=0.1)
    assert asker.requests.open_for("count") is not None  # still queued for a leader that serves requests


def test_a_leader_that_dies_mid_run_leaves_its_request_interrupted_not_open(tmp_path):
    clock = Clock()
    url = f"sqlite:///{tmp_path}/jobs.db"
    job = Job("count", "counts", interval(minutes=60), lambda: "counted")
    dead = Scheduler(create_store(url), [job], now=clock, holder="dead")
    heir = Scheduler(create_store(url), [job], now=clock, holder="heir")
    dead._keep_lease()
    request, _ = dead.requests.open("count", "U1")
    assert dead.requests.claim(request.id or 0, "dead")  # and then it dies

    clock.value += timedelta(seconds=LEASE_SECONDS + 1)
    heir._keep_lease()
    closed = heir.requests.get(request.id or 0)
    assert closed is not None and closed.state == DONE and closed.outcome == INTERRUPTED and closed.open_job is None
    asked = heir.request("count", "U2")
    assert not asked.joined  # a new run, not the dead one
    seen = heir._seen(closed, joined=False, here=False)
    assert seen.outcome == INTERRUPTED and seen.run is not None and "stopped leading" in seen.run.summary


def test_the_schedule_closes_a_request_this_process_lost_track_of(tmp_path):
    url = f"sqlite:///{tmp_path}/jobs.db"
    job = Job("count", "counts", interval(minutes=60), lambda: "counted")
    leader = Scheduler(create_store(url), [job], holder="leader")
    leader._keep_lease()
    stuck, _ = leader.requests.open("count", "U1")
    assert leader.requests.claim(stuck.id or 0, "leader")  # claimed here, its finish lost (a database error)

    leader._run_if_leader("count")

    old = leader.requests.get(stuck.id or 0)
    assert old is not None and old.state == DONE and old.outcome == INTERRUPTED
    with leader.store.session() as session:
        newest = session.exec(select(JobRequest).order_by(JobRequest.id.desc())).first()  # type: ignore[union-attr]
    assert newest is not None and newest.requested_by == SCHEDULE and newest.outcome == "ok"
    assert leader.requests.open_for("count") is None
