"""The collaborators every surface shares, built once per process."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from slack_sdk import WebClient

from bot.registry import Registry
from bot.roles import RoleDirectory
from bot.runner import BackgroundRunner
from bot.settings import Settings
from bot.store import AuditLog, Store, create_store

if TYPE_CHECKING:
    from bot.microsoft import MicrosoftClients
    from bot.sandbox import SandboxTenant

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Deps:
    settings: Settings
    store: Store
    audit: AuditLog
    microsoft: MicrosoftClients
    runner: BackgroundRunner
    roles: RoleDirectory
    sandbox: SandboxTenant | None = None
    registry: Registry = field(default_factory=Registry)
    now: Callable[[], datetime] = utcnow

    def close(self) -> None:
        self.roles.stop()
        self.runner.shutdown()
        self.microsoft.close()
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

    store = create_store(settings.database_url)
    transport = None
    if settings.uses_in_process_sandbox:
        if sandbox is None:
            from bot.sandbox import SandboxTenant

            sandbox = SandboxTenant()
        transport = sandbox.transport()
    microsoft = build_clients(settings, transport=transport)
    roles = RoleDirectory(settings.mam_admins, settings.mam_approvers, slack_client)
    return Deps(
        settings=settings,
        store=store,
        audit=AuditLog(store),
        microsoft=microsoft,
        runner=runner or BackgroundRunner(),
        roles=roles,
        sandbox=sandbox,
    )
