"""What `/mam status` and App Home say about the bot: jobs, the leader, the outbox, pending work."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlmodel import col, func, select

from bot.clock import as_utc
from bot.scheduler import last_runs
from bot.store.index import Enforcement, IndexRun, LicenceRun
from bot.store.job_requests import JobRequest
from bot.store.models import ChangeRequest, JobRun
from bot.store.watch import (
    SweepRun,
    active_blocks,
    is_warning,
    last_sweep,
    nudges_sent,
    pending_onboardings,
    unlicensed_count,
)
from workflows.changes import OPEN_STATES
from workflows.enforcement import current_enforcement
from workflows.index_store import current_run
from workflows.licences import last_licence_run

if TYPE_CHECKING:
    from bot.deps import Deps


@dataclass
class JobLine:
    name: str
    description: str
    last: JobRun | None
    next_run: datetime | None
    open_request: JobRequest | None = None  # a run queued or running now (`mam-bot jobs run`, /mam sweep, the schedule)


@dataclass
class Status:
    leader: str | None
    leader_until: datetime | None
    jobs: list[JobLine]
    last_sweep: SweepRun | None
    active_blocks: int
    pending_onboarding: int
    nudges_sent_7d: int
    open_requests: int
    outbox_pending: int
    outbox_failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    enforcement: Enforcement = field(default_factory=Enforcement)
    index: IndexRun | None = None  # the registrations index in use
    licences: LicenceRun | None = None  # the last good licence read
    unlicensed: int = 0  # waiting users who lack a licence: can't be protected


def gather(deps: Deps) -> Status:
    scheduler = deps.scheduler()
    runs = last_runs(deps.store)
    lease = scheduler.lease.live()
    sweep = last_sweep(deps.store)
    with deps.store.session() as session:
        requests = session.exec(select(func.count()).select_from(ChangeRequest)
                                .where(col(ChangeRequest.state).in_([s.value for s in OPEN_STATES]))).one()
    now = deps.now()
    errors = [f"{name}: {run.summary}" for name, run in runs.items() if run.outcome == "failed"]
    swept = runs.get("threat-sweep")
    if sweep is not None and sweep.error and not (swept is not None and swept.outcome == "failed"):
        errors.append(f"last sweep: {sweep.error}")  # (a failed sweep job says it already)
    index = current_run(deps.store)
    stale = stale_index(index, now, timedelta(minutes=deps.settings.mam_index_minutes))
    if stale:
        errors.append(stale)
    return Status(
        leader=lease.holder if lease else None,
        leader_until=lease.expires_at if lease else None,
        jobs=[JobLine(name, job.description, runs.get(name), scheduler.next_run(name),
                      scheduler.requests.open_for(name))
              for name, job in scheduler.jobs.items()],
        last_sweep=sweep,
        active_blocks=sum(1 for e in active_blocks(deps.store) if not is_warning(e)),
        pending_onboarding=pending_onboardings(deps.store),
        nudges_sent_7d=nudges_sent(deps.store, since=now - timedelta(days=7)),
        open_requests=int(requests),
        outbox_pending=deps.outbox.pending_count(),
        outbox_failed=[f"{m.key}: {m.last_error}" for m in deps.outbox.failed(limit=5)],
        errors=errors,
        enforcement=current_enforcement(deps.store),
        index=index,
        licences=last_licence_run(deps.store),
        unlicensed=unlicensed_count(deps.store),
    )


def stale_index(index: IndexRun | None, now: datetime, every: timedelta) -> str:
    """A warning when the registrations the sweeps read are over three refresh intervals old (refreshes fail)."""
    finished = as_utc(index.finished_at) if index is not None else None
    if finished is None or now - finished <= 3 * every:
        return ""
    hours = (now - finished).total_seconds() / 3600
    return (f"registrations index: {hours:.0f} h old (refreshed every {every.total_seconds() / 60:.0f} min): the "
            "sweeps still read it, so new registrations and policy changes since then are not seen; see the "
            "registrations-index job's last run")
