"""Scheduled jobs, run by exactly one process: the holder of the `scheduler` lease.

APScheduler 3 runs inside each bot process with an in-memory job store (job stores are never
shared between schedulers). Every process keeps trying to take or renew the lease row; only the
holder's jobs do any work, and when the holder dies its lease runs out and another process takes
over. What must survive a restart (episodes, nudge history, change requests, last runs) lives in
the bot's own tables, so a new leader simply carries on.

"Run it now" is a request (`bot.store.job_requests`), from any process: `mam-bot jobs run`, `/mam sweep`,
a button. The leader picks queued requests up within a second or two (`_serve_requests`) and runs them
through `run`, as the schedule does; the schedule's own runs are requests too, so a run in progress is
joined, never doubled, whoever asked. While no process leads, the one that asked runs the job itself
under the lease (`wait`), as `jobs run` always did.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import update
from sqlmodel import col, select

from bot.clock import as_utc, utcnow
from bot.logs import bind
from bot.store import Store
from bot.store.job_requests import DONE, INTERRUPTED, QUEUED, RUNNING, SCHEDULE, JobRequest, JobRequests
from bot.store.leases import LEASE_SECONDS, LeaderLease, process_id
from bot.store.models import JobRun

log = logging.getLogger(__name__)

RENEW_SECONDS = 10.0
POLL_SECONDS = 1.0  # how often the leader looks for run requests
PICKUP_SECONDS = 30.0  # a live leader that leaves a request queued this long does not serve requests


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    trigger: BaseTrigger
    run: Callable[[], Any]  # bound to what it needs by its definer (bot.jobs); str() of its result is the summary
    # asked at each scheduled time: False skips that time (nothing recorded); runs asked for (`jobs run`,
    # Slack) always run. Lets a daily job tick often and still run soon after a first start.
    due: Callable[[], bool] | None = None
    # how often a job with `due` really runs (its data's refresh period), where the trigger is only its tick:
    # `mam_job_interval_seconds`, which staleness alerts divide by
    every: timedelta | None = None


class JobHeldElsewhere(Exception):
    """`run_now` found another live process leading."""


class NotPickedUp(Exception):
    """A live leader left a run request queued (an older mam-bot that serves no requests?)."""


@dataclass(frozen=True)
class Requested:
    """A run request as the one who asked sees it: the row, its run once started, and how it came about."""

    request: JobRequest
    run: JobRun | None = None
    joined: bool = False  # it joined a request already open: the schedule's run, or someone else's
    here: bool = False  # no process led, so the process that asked ran it itself

    @property
    def done(self) -> bool:
        return self.request.state == DONE

    @property
    def outcome(self) -> str:
        """ok, failed or interrupted once done; queued or running before."""
        if self.done:
            return self.request.outcome or (self.run.outcome if self.run else INTERRUPTED)
        return self.request.state

    @property
    def started_at(self) -> datetime | None:
        moment = self.run.started_at if self.run else self.request.started_at
        return as_utc(moment) if moment else None


class Scheduler:
    """Runs the jobs it is given (bot.jobs) while this process holds the lease, recording each run in the store."""

    def __init__(self, store: Store, jobs: list[Job], *, now: Callable[[], datetime] = utcnow,
                 holder: str | None = None, lease_seconds: float = LEASE_SECONDS,
                 renew_seconds: float = RENEW_SECONDS, poll_seconds: float = POLL_SECONDS) -> None:
        self.store = store
        self.now = now
        self.jobs = {job.name: job for job in jobs}
        self.lease = LeaderLease(store, holder or process_id(), seconds=lease_seconds, now=now)
        self.requests = JobRequests(store, now=now)
        self.renew_seconds = renew_seconds
        self.poll_seconds = poll_seconds
        self._scheduler: BackgroundScheduler | None = None
        # one run of each job at a time in this process; different jobs run side by side, so a long sweep never
        # holds up change-takeover (crash recovery) or approval expiry
        self._locks = {name: threading.Lock() for name in self.jobs}
        self._leading = False
        self._claimed: set[int] = set()  # requests this process claimed and has not finished yet
        self._claimed_lock = threading.Lock()

    # ---- running in the background -------------------------------------------------------------

    def start(self) -> None:
        scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            # the lease and the request poll have threads of their own: jobs waiting for the run lock
            # (one run at a time) must never hold up the lease's renewal
            executors={"default": ThreadPoolExecutor(4), "control": ThreadPoolExecutor(2)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
            timezone=UTC,
        )
        scheduler.add_job(self._keep_lease, IntervalTrigger(seconds=self.renew_seconds), id="lease",
                          next_run_time=datetime.now(UTC), executor="control")
        scheduler.add_job(self._serve_requests, IntervalTrigger(seconds=self.poll_seconds), id="requests",
                          executor="control")
        self._scheduler = scheduler
        for job in self.jobs.values():
            scheduler.add_job(self._run_if_leader, job.trigger, args=[job.name], id=job.name, name=job.description)
        scheduler.start()

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop scheduling, wait up to `timeout` seconds for a job that is running (so no other process starts
        it again meanwhile), then hand the lease back. False when a job was still running."""
        scheduler, self._scheduler, finished = self._scheduler, None, True
        if scheduler is not None:
            waiter = threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}, name="scheduler-stop",
                                      daemon=True)
            waiter.start()
            waiter.join(max(timeout, 0.5))  # an idle scheduler stops within milliseconds; no job is cut then
            if waiter.is_alive():
                finished = False
                log.warning("a scheduled job was still running %.0f s after the stop; handing the lease back "
                            "without it", timeout)
        if self.lease.held_by_me():
            self.lease.release()  # a clean stop hands over at once instead of after the lease runs out
        return finished

    def _keep_lease(self) -> None:
        try:
            leading = self.lease.acquire()
        except Exception:
            log.exception("could not renew the scheduler lease")
            self._leading = False  # unproven until a renewal succeeds: nothing is claimed, mam_leader says 0
            return
        if leading and not self._leading:
            try:
                self._close_interrupted_runs()
            except Exception:
                log.exception("could not mark the previous leader's unfinished runs; trying at the next renewal")
                return
        self._leading = leading
        log.debug("scheduler lease: %s", "leader" if leading else "follower")

    def _close_interrupted_runs(self) -> None:
        """Runs another holder left `running`: it lost the lease (died, or stalled past it) mid-run.
        Marked `interrupted` so `/mam status` and `jobs list` don't show them running forever; a holder
        that was only slow still records its real outcome when it finishes."""
        with self.store.session() as session:
            closed = session.exec(
                update(JobRun).where(col(JobRun.outcome) == "running", col(JobRun.holder) != self.lease.holder)
                .values(outcome="interrupted", summary="its process stopped leading before the run finished; "
                                                      "the job runs again on schedule")
            ).rowcount
            session.commit()
        requests = self.requests.close_interrupted(except_runner=self.lease.holder)
        if closed or requests:
            log.warning("scheduler: %d unfinished run%s and %d request%s of a previous leader marked interrupted",
                        closed, "" if closed == 1 else "s", requests, "" if requests == 1 else "s")

    def _run_if_leader(self, name: str) -> None:
        """The schedule's run: a request like any other, so whoever asks meanwhile joins it."""
        if not self.lease.held_by_me():
            return
        due = self.jobs[name].due
        if due is not None and not due():
            return
        request, _created = self.requests.open(name, SCHEDULE)
        if request.state == RUNNING and request.runner == self.lease.holder and not self._claimed_here(request):
            # claimed by this process, whose run of it is over: its finish was lost (a database error)
            self.requests.close_stale(_id(request))
            request, _created = self.requests.open(name, SCHEDULE)
        if request.state == QUEUED and self._claim(request):
            self._run_claimed(_id(request), name)
        else:
            log.debug("%s is already running (request #%s): the schedule joins it", name, request.id)

    def _serve_requests(self) -> None:
        """The leader's poll: claim each queued request and run it on the job threads."""
        if not self._leading:
            return
        try:
            queued = [r for r in self.requests.queued() if r.job in self.jobs]
            if not queued or not self.lease.held_by_me():
                return
            for request in queued:
                if not self._claim(request):
                    continue  # the schedule took it first
                scheduler = self._scheduler
                if scheduler is None:
                    self._run_claimed(_id(request), request.job)
                else:
                    # however long it waits for a thread: a claimed request must run (or its run stays open)
                    scheduler.add_job(self._run_claimed, args=[request.id, request.job], id=f"request-{request.id}",
                                      name=f"{request.job} (asked)", misfire_grace_time=None)
        except Exception:
            log.exception("could not serve run requests; trying again in %.0f s", self.poll_seconds)

    def _claim(self, request: JobRequest) -> bool:
        with self._claimed_lock:  # marked before the UPDATE: the schedule never finds it claimed and not ours
            if _id(request) in self._claimed:
                return False  # another thread of this process has it
            self._claimed.add(_id(request))
        try:
            if self.requests.claim(_id(request), self.lease.holder):
                return True
        except BaseException:  # a database error: unmarked, so the next look (or the schedule) claims it again
            with self._claimed_lock:
                self._claimed.discard(_id(request))
            raise
        with self._claimed_lock:
            self._claimed.discard(_id(request))
        return False

    def _claimed_here(self, request: JobRequest) -> bool:
        with self._claimed_lock:
            return request.id in self._claimed

    def _run_claimed(self, request_id: int, name: str) -> None:
        """Run a request this process claimed, and close it with the run's outcome."""
        outcome, run_id = "failed", None
        try:
            run = self.run(name, request_id=request_id)
            outcome, run_id = run.outcome, run.id
        except Exception:
            log.exception("job %s (request #%s) could not be run", name, request_id)
        finally:
            try:
                self.requests.finish(request_id, outcome, run_id)
            except Exception:
                log.exception("could not close request #%s of %s; the schedule's next run closes it", request_id,
                              name)
            with self._claimed_lock:
                self._claimed.discard(request_id)

    # ---- running one job ---------------------------------------------------------------------

    def run(self, name: str, *, request_id: int | None = None) -> JobRun:
        """Run a job now, recording the run (and attaching it to `request_id`); the caller must lead."""
        job = self.jobs[name]
        with self._locks[name]:  # one run of this job at a time in this process
            record = JobRun(job=name, holder=self.lease.holder, started_at=self.now())
            with self.store.session() as session:
                session.add(record)
                session.commit()
                session.refresh(record)
            if request_id is not None and record.id is not None:
                self.requests.attach(request_id, record.id)
            # every line the run logs, and the audit rows of the writes it makes, name the job and this run
            with bind(job=name, correlation_id=f"job-{name}-{record.id}"):
                try:
                    result = job.run()
                    text = result.summary() if hasattr(result, "summary") else str(result)
                    # a job that returns its own verdict (a sweep, an index or licence refresh) failed when it says so
                    record.outcome = "ok" if getattr(result, "ok", True) is not False else "failed"
                    record.summary = text[:4000]
                except Exception as exc:
                    log.exception("job %s failed", name)
                    record.outcome, record.summary = "failed", f"{type(exc).__name__}: {exc}"[:4000]
            record.finished_at = self.now()
            with self.store.session() as session:
                session.add(record)
                session.commit()
                session.refresh(record)
            return record

    def run_now(self, name: str, requested_by: str = "run_now") -> JobRun:
        """Take the lease (or say who holds it), then run the job here, joining a run of it already open."""
        if name not in self.jobs:
            raise KeyError(name)
        with self._leading_here() as leading:
            if not leading:
                lease = self.lease.current()
                who = f"{lease.holder} until {as_utc(lease.expires_at):%H:%M:%S} UTC" if lease else "another process"
                raise JobHeldElsewhere(f"the scheduler lease is held by {who}; that process runs the jobs")
            done = self.wait(self.request(name, requested_by), poll_seconds=0.1)
        assert done.run is not None
        return done.run

    # ---- asking for a run, from any process --------------------------------------------------

    def request(self, name: str, requested_by: str) -> Requested:
        """Ask for a run of `name` now: a new request, or the open one of the same job (joined)."""
        if name not in self.jobs:
            raise KeyError(name)
        row, created = self.requests.open(name, requested_by)
        return self._seen(row, joined=not created, here=False)

    def wait(self, requested: Requested, *, on_progress: Callable[[Requested], Any] | None = None,
             poll_seconds: float = 0.5, pickup_seconds: float = PICKUP_SECONDS) -> Requested:
        """Until the request is done, its run attached (`Requested.run`).

        A live leader runs it; while none is alive (or this process holds the lease without running the
        schedule, as `run_now` does), this process takes the lease and runs it itself (`here`).
        `on_progress` sees the request at each look (every `poll_seconds`) and once just before this
        process runs it. NotPickedUp: a live leader left it queued for `pickup_seconds`.
        """
        request_id, joined, here = _id(requested.request), requested.joined, False
        waiting_since = time.monotonic()
        while True:
            row = self.requests.get(request_id)
            if row is None:
                raise RuntimeError(f"run request #{request_id} is gone")
            current = self._seen(row, joined=joined, here=here)
            if current.done:
                return current
            if row.state == QUEUED:
                if self._may_run_here() and self._run_here(row, joined, on_progress):
                    here = True
                    continue
                lease = self.lease.live()
                if lease is not None and time.monotonic() - waiting_since > pickup_seconds:
                    raise NotPickedUp(f"the leader ({lease.holder}) has not picked the request up in "
                                      f"{pickup_seconds:.0f} s (is it an older mam-bot?); the request stays "
                                      "queued and runs when a leader picks it up")
            elif row.state == RUNNING and row.runner != self.lease.holder and self.lease.live() is None:
                # its runner stopped leading mid-run (died) and nobody leads now: close it as interrupted,
                # so this wait ends (the asker runs the job again) instead of waiting for a leader forever
                with self._leading_here() as leading:
                    if leading:
                        self._close_interrupted_runs()
                        continue
            _tell(on_progress, current)
            time.sleep(poll_seconds)

    def _may_run_here(self) -> bool:
        """No live leader, or this process holds the lease without serving requests (`run_now`)."""
        lease = self.lease.live()
        return lease is None or (lease.holder == self.lease.holder and self._scheduler is None)

    def _run_here(self, row: JobRequest, joined: bool, on_progress: Callable[[Requested], Any] | None) -> bool:
        with self._leading_here() as leading:
            if not leading:
                return False
            self._close_interrupted_runs()
            if not self._claim(row):
                return False  # a leader that just started took it
            if on_progress is not None:
                claimed = self.requests.get(_id(row))
                _tell(on_progress, self._seen(claimed or row, joined=joined, here=True))
            self._run_claimed(_id(row), row.job)
            return True

    @contextmanager
    def _leading_here(self) -> Iterator[bool]:
        """Hold the lease for a run in this process, renewing it until the run ends (a sweep outlasts the
        lease), and hand it back after, unless this process runs the schedule."""
        if not self.lease.acquire():
            yield False
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.renew_seconds):
                try:
                    self.lease.acquire()
                except Exception:
                    log.exception("could not renew the scheduler lease during a run")

        renewer = threading.Thread(target=renew, name="mam-lease-renew", daemon=True)
        renewer.start()
        try:
            yield True
        finally:
            stop.set()
            renewer.join(timeout=5)
            if self._scheduler is None:
                self.lease.release()

    def _seen(self, row: JobRequest, *, joined: bool, here: bool) -> Requested:
        run = None
        if row.run_id is not None:
            with self.store.session() as session:
                run = session.get(JobRun, row.run_id, populate_existing=True)
        if run is None and row.state == DONE:  # closed before its run was recorded: say so as a run would
            run = JobRun(job=row.job, holder=row.runner, started_at=as_utc(row.started_at or row.requested_at),
                         finished_at=as_utc(row.finished_at), outcome=row.outcome or INTERRUPTED,
                         summary="its process stopped leading before the run started; ask again")
        return Requested(row, run, joined=joined, here=here)

    # ---- reading -----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """False once APScheduler's thread has died under a started scheduler (no job, lease renewal or run
        request would ever run again: only a restart mends that, /livez says so). True when not started."""
        scheduler = self._scheduler
        thread = getattr(scheduler, "_thread", None) if scheduler is not None else None
        return thread is None or thread.is_alive()

    @property
    def leading(self) -> bool:
        """Whether this process's last renewal of the scheduler lease succeeded (`mam_leader`); a renewal that
        could not reach the database says no."""
        return self._leading

    def next_run(self, name: str) -> datetime | None:
        if self._scheduler is not None:
            job = self._scheduler.get_job(name)
            if job is not None and job.next_run_time is not None:
                return job.next_run_time
        return self.jobs[name].trigger.get_next_fire_time(None, self.now())


def last_runs(store: Store) -> dict[str, JobRun]:
    """The latest run of each job."""
    latest: dict[str, JobRun] = {}
    with store.session() as session:
        for run in session.exec(select(JobRun).order_by(col(JobRun.id).desc()).limit(200)):
            latest.setdefault(run.job, run)
    return latest


def _tell(on_progress: Callable[[Requested], Any] | None, seen: Requested) -> None:
    """Show progress; a failure to show it never stops the wait, nor a run this process claimed."""
    if on_progress is None:
        return
    try:
        on_progress(seen)
    except Exception:
        log.exception("could not show the progress of request #%s", seen.request.id)


def _id(request: JobRequest) -> int:
    assert request.id is not None  # a stored row
    return request.id


def interval(minutes: float = 0, seconds: float = 0) -> IntervalTrigger:
    return IntervalTrigger(minutes=minutes, seconds=seconds, timezone=UTC)

