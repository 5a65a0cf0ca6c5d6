"""Run requests: "run this job now", asked by anyone, run by the scheduler's leader, joined while open.

A request is a row: which job, who asked, when, its state (`queued` → `running` → `done`), the process
that runs it, the `job_runs` row it produced and its outcome. Every run of a job through the scheduler
goes through one, the schedule's own included (asked by `schedule`), so a run in progress is always
something a new request can join.

At most one request per job is open (queued or running): `open_job` holds the job's name while it is
open and NULL after, and a unique constraint on it lets exactly one INSERT win however many processes
ask at once (SQLite and PostgreSQL both allow many NULLs). A request that loses the INSERT reads the
winner and joins it. Moving a request on is a guarded UPDATE (`… WHERE id = ? AND state = 'queued'`),
which exactly one process wins, so a request is run once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Column, DateTime, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, col, select

from bot.clock import utcnow

if TYPE_CHECKING:  # bot.store.migrate imports this module to register the table
    from bot.store.db import Store

QUEUED, RUNNING, DONE = "queued", "running", "done"
INTERRUPTED = "interrupted"  # the outcome of a request whose runner stopped leading before it finished
SCHEDULE = "schedule"  # `requested_by` of the schedule's own runs
# finished requests are deleted after this long (their job_runs rows stay): whoever waits for one reads it
# as soon as it is done, and the schedule's frequent jobs add a few a minute
KEEP_DONE = timedelta(hours=1)


def _when(*, index: bool = False, nullable: bool = True) -> datetime | None:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


class JobRequest(SQLModel, table=True):
    """One "run it now", from `mam-bot jobs run`, `/mam sweep`, a button or the schedule."""

    __tablename__ = "job_requests"

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=64)
    requested_by: str = Field(max_length=128)  # a Slack user id, `schedule`, or `cli:<host>`
    requested_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    state: str = Field(default=QUEUED, max_length=16, index=True)
    # the job's name while queued or running, NULL when done: one open request per job (see the module)
    open_job: str | None = Field(default=None, max_length=64, unique=True)
    runner: str = Field(default="", max_length=128)  # the scheduler lease holder that runs it
    started_at: datetime | None = _when()
    run_id: int | None = None  # the job_runs row it produced
    finished_at: datetime | None = _when(index=True)
    outcome: str = Field(default="", max_length=16)  # ok, failed or interrupted, once done


class JobRequests:
    """The `job_requests` table, as the scheduler and the people waiting for a run use it."""

    def __init__(self, store: Store, *, now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.now = now

    def open(self, job: str, requested_by: str) -> tuple[JobRequest, bool]:
        """A request to run `job`: a new one (True), or the one already queued or running, joined (False)."""
        for _ in range(20):  # each turn ends in a row, unless the open one closed in between
            created = self._insert(job, requested_by)
            if created is not None:
                return created, True
            found = self.open_for(job)  # another request for this job is open: join it
            if found is not None:
                return found, False
        raise RuntimeError(f"could not open or join a request for {job!r}")

    def _insert(self, job: str, requested_by: str) -> JobRequest | None:
        """A new open request, or None when one is open already (the unique `open_job` refused it)."""
        try:
            with self.store.session() as session:
                row = JobRequest(job=job, requested_by=requested_by[:128], requested_at=self.now(), state=QUEUED,
                                 open_job=job)
                session.add(row)
                session.commit()
                session.refresh(row)
                return row
        except IntegrityError:
            return None

    def get(self, request_id: int) -> JobRequest | None:
        with self.store.session() as session:
            return session.get(JobRequest, request_id, populate_existing=True)

    def open_for(self, job: str) -> JobRequest | None:
        """The request of `job` that is queued or running, if any."""
        with self.store.session() as session:
            return session.exec(select(JobRequest).where(col(JobRequest.open_job) == job)).first()

    def queued(self, limit: int = 20) -> list[JobRequest]:
        with self.store.session() as session:
            return list(session.exec(select(JobRequest).where(col(JobRequest.state) == QUEUED)
                                     .order_by(col(JobRequest.id)).limit(limit)))

    def claim(self, request_id: int, runner: str) -> bool:
        """Take a queued request to run it; True for exactly one caller."""
        with self.store.session() as session:
            taken = session.exec(
                update(JobRequest).where(col(JobRequest.id) == request_id, col(JobRequest.state) == QUEUED)
                .values(state=RUNNING, runner=runner, started_at=self.now())
            ).rowcount
            session.commit()
        return taken == 1

    def attach(self, request_id: int, run_id: int) -> None:
        """The job_runs row the request's run is recorded in, as soon as it starts."""
        with self.store.session() as session:
            session.exec(update(JobRequest).where(col(JobRequest.id) == request_id).values(run_id=run_id))
            session.commit()

    def finish(self, request_id: int, outcome: str, run_id: int | None = None) -> None:
        """Close the request with its run's outcome (a later request of the job then starts a new run), and
        delete requests finished more than `KEEP_DONE` ago."""
        now = self.now()
        values: dict[str, object] = {"state": DONE, "open_job": None, "outcome": outcome[:16], "finished_at": now}
        if run_id is not None:
            values["run_id"] = run_id
        with self.store.session() as session:
            session.exec(update(JobRequest).where(col(JobRequest.id) == request_id).values(**values))
            session.exec(delete(JobRequest).where(col(JobRequest.state) == DONE,
                                                  col(JobRequest.finished_at) < now - KEEP_DONE))
            session.commit()

    def close_interrupted(self, *, except_runner: str) -> int:
        """Requests another runner left running (it stopped leading mid-run): done, `interrupted`."""
        with self.store.session() as session:
            closed = session.exec(
                update(JobRequest).where(col(JobRequest.state) == RUNNING, col(JobRequest.runner) != except_runner)
                .values(state=DONE, open_job=None, outcome=INTERRUPTED, finished_at=self.now())
            ).rowcount
            session.commit()
        return int(closed or 0)

    def close_stale(self, request_id: int) -> bool:
        """A request this process claimed but is not running any more (its finish was lost): interrupted."""
        with self.store.session() as session:
            closed = session.exec(
                update(JobRequest).where(col(JobRequest.id) == request_id, col(JobRequest.state) == RUNNING)
                .values(state=DONE, open_job=None, outcome=INTERRUPTED, finished_at=self.now())
            ).rowcount
            session.commit()
        return closed == 1

