"""The composition root: builds the collaborators (`bot.deps.Deps`), wires the Slack adapters into the
workflows and hands the scheduler its jobs.

Only the entry points (bot.cli, bot.local, the demo) import this module; nothing below it does
(`lint-imports` checks it).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from apscheduler.triggers.interval import IntervalTrigger
from slack_sdk import WebClient

from bot.cache import TimedCache
from bot.clock import utcnow
from bot.deps import Deps
from bot.metrics import Metrics, StateCollector
from bot.roles import Role
from bot.runner import BackgroundRunner
from bot.settings import Settings
from bot.store import AuditLog, Drafts, create_store
from bot.store.seen import SeenRequests
from commands.roles import RoleDirectory

if TYPE_CHECKING:
    from bot.sandbox import SandboxTenant
    from bot.scheduler import Job


def build_deps(
    settings: Settings,
    *,
    slack_client: WebClient | None,
    sandbox: SandboxTenant | None = None,
    runner: BackgroundRunner | None = None,
    metrics: Metrics | None = None,
) -> Deps:
    """Connect the store and Microsoft's APIs. With MAM_CLOUD=sandbox and no host overrides the
    sandbox tenant runs in this process (pass one in to share it with a test or the demo). `metrics`: the
    process's (bot/cli.py makes it first, for the Slack client's meter); a new one when not given."""
    from bot.jobs import default_jobs
    from bot.microsoft import build_clients
    from bot.microsoft.shared_budget import fleet_budget
    from bot.outbox import Outbox, OutboxSettings, Pace, fleet_pace
    from bot.scheduler import Scheduler
    from commands.adapters import SlackNotifier, approval_destinations
    from workflows.changes import ChangeService, approvals_of
    from workflows.connector_change import KIND as CONNECTOR_TOGGLE
    from workflows.connector_change import ConnectorToggle
    from workflows.licences import licence_note
    from workflows.policy_changes import ASSIGN, CREATE, PolicyAssignments, PolicyCreate
    from workflows.policy_edit import DELETE, EDIT, PolicyDelete, PolicyEdit

    store = create_store(settings.database_url)
    audit = AuditLog(store)  # before the clients: it records each of their writes with Microsoft's request-id
    runner = runner or BackgroundRunner()
    transport = None
    if settings.uses_in_process_sandbox:
        if sandbox is None:
            from bot.sandbox import SandboxConfig, SandboxTenant

            sandbox = SandboxTenant(SandboxConfig().with_latency(settings.mam_sandbox_latency_ms))
        transport = sandbox.transport()
    # several replicas on PostgreSQL share one request budget; SQLite means one process, the local one
    budget = None if settings.uses_in_process_sandbox else fleet_budget(store.engine)
    metrics = metrics or Metrics()
    microsoft = build_clients(settings, transport=transport, budget=budget,
                              listeners=[metrics.microsoft_answer, audit.record_write])
    roles = RoleDirectory(settings.mam_admins, settings.mam_approvers, slack_client)
    # the outbox strips the client's own retry handlers: it paces and retries itself; replicas on
    # PostgreSQL share one pace
    rate = settings.mam_slack_posts_per_second
    pace = Pace(workspace_per_second=rate, workspace_burst=max(1, round(2 * rate)))
    outbox = Outbox(
        store, slack_client or WebClient(), fleet=fleet_pace(store.engine, pace),
        settings=OutboxSettings(pace=pace, sandbox_marker=settings.mam_cloud == "sandbox"),
        on_failure=lambda message: audit.record(
            actor="mam-bot", action=f"outbox {message.kind} {message.key}"[:128], outcome="failed",
            target=message.channel or "", detail=message.last_error or ""))
    changes = ChangeService(
        store, audit,
        {CONNECTOR_TOGGLE: ConnectorToggle(microsoft.graph), CREATE: PolicyCreate(microsoft.graph, utcnow),
         ASSIGN: PolicyAssignments(microsoft.graph, lambda group: licence_note(store, microsoft.graph, group)),
         EDIT: PolicyEdit(microsoft.graph), DELETE: PolicyDelete(microsoft.graph)},
        SlackNotifier(outbox, lambda request_id: approvals_of(store, request_id)),
        is_approver=lambda user: Role.APPROVER in roles.roles_of(user),
        now=utcnow, quorum=settings.mam_approval_quorum,
        expiry=timedelta(hours=settings.mam_approval_expiry_hours),
        destinations=lambda: approval_destinations(settings, roles),
    )
    policy_names = TimedCache(lambda: [(p.id, p.displayName) for p in microsoft.graph.iter_android_policies()])
    deps = Deps(settings=settings, store=store, audit=audit, microsoft=microsoft,
                runner=runner, roles=roles, outbox=outbox, changes=changes,
                policy_names=policy_names, seen=SeenRequests(store.engine, background=runner.submit),
                drafts=Drafts(store), metrics=metrics,
                sandbox=sandbox)
    # every job of bot.jobs, run while this process holds the scheduler lease; made on first use (a process that
    # never schedules never touches the lease), and reading the clock through deps, as the jobs do
    deps.make_scheduler = lambda: Scheduler(store, default_jobs(deps), now=lambda: deps.now())
    metrics.watch(StateCollector(store, leading=lambda: deps.scheduler().leading,
                                 intervals=lambda: job_intervals(deps.scheduler().jobs.values())))
    return deps


def job_intervals(jobs: Iterable[Job]) -> dict[str, float]:
    """Each job's period in seconds (`mam_job_interval_seconds`, what the staleness alerts divide by): its data's
    refresh period for a job that ticks more often than it runs (`Job.every`), else its trigger's interval."""
    return {job.name: (job.every or job.trigger.interval).total_seconds() for job in jobs
            if job.every is not None or isinstance(job.trigger, IntervalTrigger)}

