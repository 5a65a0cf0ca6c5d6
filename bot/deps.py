"""The collaborators every surface shares: the plain `Deps` type, built once per process by bot.compose."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from bot.cache import TimedCache
from bot.clock import utcnow
from bot.registry import Registry
from bot.runner import BackgroundRunner
from bot.settings import Settings
from bot.store import AuditLog, Drafts, Store
from bot.store.seen import SeenRequests

if TYPE_CHECKING:
    from bot.metrics import Metrics
    from bot.microsoft import MicrosoftClients
    from bot.outbox import Outbox
    from bot.sandbox import SandboxTenant
    from bot.scheduler import Scheduler
    from commands.roles import RoleDirectory  # the Slack side; only a type here
    from workflows.changes import ChangeService


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
    metrics: Metrics  # this process's figures, rendered at /metrics (bot.metrics, bot.health)
    sandbox: SandboxTenant | None = None
    registry: Registry = field(default_factory=Registry)
    now: Callable[[], datetime] = utcnow
    make_scheduler: Callable[[], Scheduler] | None = field(default=None, repr=False)  # set by bot.compose
    _scheduler: Scheduler | None = field(default=None, repr=False)

    def start_background(self) -> None:
        """The outbox worker, the scheduled jobs (if this process leads), and unfinished changes."""
        self.outbox.start()
        self.scheduler().start()
        self.runner.submit(self.changes.take_over)
        self.runner.submit(self.microsoft.warm_up)

    def scheduler(self) -> Scheduler:
        """The scheduler with every job (bot.jobs), made on first use as the composition root (bot.compose) says."""
        if self._scheduler is None:
            if self.make_scheduler is None:
                raise RuntimeError("these Deps have no scheduler: build them with bot.compose.build_deps")
            self._scheduler = self.make_scheduler()
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

    def close(self, job_seconds: float | None = None) -> bool:
        """Stop in the order a clean stop needs (a bounded wait for the runner comes first in bot/cli.py). A job
        still running after `job_seconds` (default MAM_SHUTDOWN_GRACE_SECONDS) keeps the Microsoft clients and the
        store, which the process's exit then ends (its execution is taken over elsewhere): returns False."""
        self.runner.shutdown()  # work acknowledged before the stop, executions included, while the outbox sends
        finished = True
        if self._scheduler is not None:
            # a running job finishes first (bounded); then the lease goes back, so another process leads (or
            # `jobs run` runs) at once
            wait = self.settings.mam_shutdown_grace_seconds if job_seconds is None else job_seconds
            finished = self._scheduler.stop(timeout=wait)
        self.roles.stop()
        self.outbox.close()  # finishes the call in flight, gives back the rows claimed but not sent
        self.audit.close()
        if not finished:  # closing the clients under a running execution would fail it instead of leaving it
            return False
        self.microsoft.close()
        self.seen.close()
        self.store.close()
        return True
