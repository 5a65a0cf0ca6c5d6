"""What the Graph and Defender handlers (bot.sandbox.graph, bot.sandbox.defender) use of the tenant.

bot.sandbox.tenant.SandboxTenant is the one implementation; it imports the handlers, so they name this
protocol instead of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bot.sandbox.audit import AuditTrail
    from bot.sandbox.config import SandboxConfig
    from bot.sandbox.exports import ExportJobs
    from bot.sandbox.policies import PolicyStore
    from bot.sandbox.seed import World


class TenantState(Protocol):
    config: SandboxConfig
    world: World
    policies_store: PolicyStore
    exports: ExportJobs
    audit: AuditTrail

    def connector_state(self) -> dict[str, Any] | None: ...

    def patch_connector(self, changes: dict[str, Any]) -> None: ...

    def remove_connector(self) -> None: ...
