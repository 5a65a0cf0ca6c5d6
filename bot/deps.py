"""The collaborators every surface shares, built once per process."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from slack_sdk import WebClient

from bot.cache import TimedCache
from bot.clock import utcnow
from bot.registry import Registry
from bot.roles import Role, RoleDirectory
from bot.runner import BackgroundRunner
from bot.settings import Settings
from bot.store import AuditLog, Drafts, Store, create_store
from bot.store.seen import SeenRequests

if TYPE_CHECKING:
    from bot.microsoft import MicrosoftClients
    from bot.outbox import Outbox
    from bot.sandbox import SandboxTenant
    from bot.scheduler import Scheduler
    from workflows.changes import ChangeService

log = logging.getLogger(__name__)


@dataclass
class Deps:
    settings: Settings
    store: Store
    audit: AuditLog
    microsoft: MicrosoftClients
    runner: BackgroundRunner
    roles: RoleDirectory
    outbox: Outbox
    changes: ChangeService
    policy_names: TimedCache  # (id, name) of the Android policies: modal checks and pickers, never a wait
    seen: SeenRequests  # replayed signatures and duplicate commands, clicks, forms and events (bot.dedupe)
    drafts: Drafts  # what a button stands for, when it is too long for the button's value (bot.store.drafts)
    sandbox: SandboxTenant | None = None
    registry: Registry = field(default_factory=Registry)
    now: Callable[[], datetime] = utcnow
    _scheduler: Scheduler | None = field(default=None, repr=False)

    def start_background(self) -> None:
        """The outbox worker, the scheduled jobs (if this process leads), and unfinished changes."""
        self.outbox.start()
        self.scheduler().start()
        self.runner.submit(self.changes.resume)
        self.runner.submit(self.microsoft.warm_up)

    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            from bot.jobs import default_jobs
            from bot.scheduler import Scheduler

            self._scheduler = Scheduler(self, default_jobs(self))
        return self._scheduler

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Until background work and the outbox are both quiet (work can queue messages and vice versa)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            if not self.runner.wait_idle(remaining) or not self.outbox.wait_idle(remaining):
                return False
            if self.runner.wait_idle(0):
                return self.audit.flush(remaining)

    def close(self) -> None:
        if self._scheduler is not None:
            self._scheduler.stop()
        self.roles.stop()
        self.runner.shutdown()
        self.outbox.close()
        self.audit.close()
        self.microsoft.close()
        self.seen.close()
        self.store.close()


def build_deps(
    settings: Settings,
    *,
    slack_client: WebClient | None,
    sandbox: SandboxTenant | None = None,
    runner: BackgroundRunner | None = None,
) -> Deps:
    """Connect the store and Microsoft's APIs. With MAM_CLOUD=sandbox and no host overrides the
    sandbox tenant runs in this process (pass one in to share it with a test or the demo)."""
    from bot.microsoft import build_clients
    from bot.microsoft.shared_budget import fleet_budget
    from bot.outbox import Outbox, Pace, fleet_pace
    from commands.approvals import SlackNotifier, approval_destinations
    from workflows.changes import ChangeService, approvals_of
    from workflows.connector_change import KIND as CONNECTOR_TOGGLE
    from workflows.connector_change import ConnectorToggle
    from workflows.policy_changes import ASSIGN, CREATE, PolicyAssignments, PolicyCreate

    store = create_store(settings.database_url)
    runner = runner or BackgroundRunner()
    transport = None
    if settings.uses_in_process_sandbox:
        if sandbox is None:
            from bot.sandbox import SandboxTenant

            sandbox = SandboxTenant()
        transport = sandbox.transport()
    # several replicas on PostgreSQL share one request budget; SQLite means one process, the local one
    budget = None if settings.uses_in_process_sandbox else fleet_budget(store.engine)
    microsoft = build_clients(settings, transport=transport, budget=budget)
    roles = RoleDirectory(settings.mam_admins, settings.mam_approvers, slack_client)
    audit = AuditLog(store)
    # the outbox strips the client's own retry handlers: it paces and retries itself; replicas on
    # PostgreSQL share one pace
    rate = settings.mam_slack_posts_per_second
    pace = Pace(workspace_per_second=rate, workspace_burst=max(1, round(2 * rate)))
    outbox = Outbox(
        store, slack_client or WebClient(), pace=pace, fleet=fleet_pace(store.engine, pace),
        sandbox_marker=settings.mam_cloud == "sandbox",
        on_failure=lambda message: audit.record(
            actor="mam-bot", action=f"outbox {message.kind} {message.key}"[:128], outcome="failed",
            target=message.channel or "", detail=message.last_error or ""))
    changes = ChangeService(
        store, audit,
        {CONNECTOR_TOGGLE: ConnectorToggle(microsoft.graph), CREATE: PolicyCreate(microsoft.graph, utcnow),
         ASSIGN: PolicyAssignments(microsoft.graph)},
        SlackNotifier(outbox, lambda request_id: approvals_of(store, request_id)),
        is_approver=lambda user: Role.APPROVER in roles.roles_of(user),
        now=utcnow, quorum=settings.mam_approval_quorum,
        expiry=timedelta(hours=settings.mam_approval_expiry_hours),
        destinations=lambda: approval_destinations(settings, roles),
    )
    policy_names = TimedCache(lambda: [(p.id, p.displayName) for p in microsoft.graph.iter_android_policies()])
    return Deps(settings=settings, store=store, audit=audit, microsoft=microsoft,
                runner=runner, roles=roles, outbox=outbox, changes=changes,
                policy_names=policy_names, seen=SeenRequests(store.engine, background=runner.submit),
                drafts=Drafts(store),
                sandbox=sandbox)

