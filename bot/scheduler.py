"""Scheduled jobs, run by exactly one process: the holder of the `scheduler` lease.

APScheduler 3 runs inside each bot process with an in-memory job store (job stores are never
shared between schedulers). Every process keeps trying to take or renew the lease row; only the
holder's jobs do any work, and when the holder dies its lease runs out and another process takes
over. What must survive a restart (episodes, nudge history, change requests, last runs) lives in
the bot's own tables, so a new leader simply carries on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import update
from sqlmodel import col, select

from bot.clock import as_utc, utcnow
from bot.store import Store
from bot.store.leases import LEASE_SECONDS, LeaderLease, process_id
from bot.store.models import JobRun

log = logging.getLogger(__name__)

RENEW_SECONDS = 10.0


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    trigger: BaseTrigger
    run: Callable[[], Any]  # bound to what it needs by its definer (bot.jobs); str() of its result is the summary


class JobHeldElsewhere(Exception):
    """`jobs run` found another live process leading."""


class Scheduler:
    """Runs the jobs it is given (bot.jobs) while this process holds the lease, recording each run in the store."""

    def __init__(self, store: Store, jobs: list[Job], *, now: Callable[[], datetime] = utcnow,
                 holder: str | None = None, lease_seconds: float = LEASE_SECONDS,
                 renew_seconds: float = RENEW_SECONDS) -> None:
        self.store = store
        self.now = now
        self.jobs = {job.name: job for job in jobs}
        self.lease = LeaderLease(store, holder or process_id(), seconds=lease_seconds, now=now)
        self.renew_seconds = renew_seconds
        self._scheduler: BackgroundScheduler | None = None
        self._lock = threading.Lock()
        self._leading = False

    # ---- running in the background -------------------------------------------------------------

    def start(self) -> None:
        scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
            timezone=UTC,
        )
        scheduler.add_job(self._keep_lease, IntervalTrigger(seconds=self.renew_seconds), id="lease",
                          next_run_time=datetime.now(UTC))
        for job in self.jobs.values():
            scheduler.add_job(self._run_if_leader, job.trigger, args=[job.name], id=job.name, name=job.description)
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self.lease.held_by_me():
            self.lease.release()  # a clean stop hands over at once instead of after the lease runs out

    def _keep_lease(self) -> None:
        try:
            leading = self.lease.acquire()
        except Exception:
            log.exception("could not renew the scheduler lease")
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
        if closed:
            log.warning("scheduler: %d unfinished run%s of a previous leader marked interrupted", closed,
                        "" if closed == 1 else "s")

    def _run_if_leader(self, name: str) -> None:
        if not self.lease.held_by_me():
            return
        self.run(name)

    # ---- running one job ---------------------------------------------------------------------

    def run(self, name: str) -> JobRun:
        """Run a job now, recording the run; the caller must lead (see `run_now`)."""
        job = self.jobs[name]
        with self._lock:  # one run of a job at a time in this process
            record = JobRun(job=name, holder=self.lease.holder, started_at=self.now())
            with self.store.session() as session:
                session.add(record)
                session.commit()
                session.refresh(record)
            try:
                result = job.run()
                text = result.summary() if hasattr(result, "summary") else str(result)
                record.outcome, record.summary = "ok", text[:4000]
            except Exception as exc:
                log.exception("job %s failed", name)
                record.outcome, record.summary = "failed", f"{type(exc).__name__}: {exc}"[:4000]
            record.finished_at = self.now()
            with self.store.session() as session:
                session.add(record)
                session.commit()
                session.refresh(record)
            return record

    def run_now(self, name: str) -> JobRun:
        """`mam-bot jobs run NAME`: take the lease (or say who holds it), then run."""
        if name not in self.jobs:
            raise KeyError(name)
        if not self.lease.acquire():
            lease = self.lease.current()
            who = f"{lease.holder} until {as_utc(lease.expires_at):%H:%M:%S} UTC" if lease else "another process"
            raise JobHeldElsewhere(f"the scheduler lease is held by {who}; that process runs the jobs")
        self._close_interrupted_runs()
        try:
            return self.run(name)
        finally:
            if self._scheduler is None:
                self.lease.release()

    # ---- reading -----------------------------------------------------------------------------

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


def interval(minutes: float = 0, seconds: float = 0) -> IntervalTrigger:
    return IntervalTrigger(minutes=minutes, seconds=seconds, timezone=UTC)

