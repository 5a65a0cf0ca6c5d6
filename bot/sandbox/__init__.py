"""A simulated Microsoft tenant (Graph beta/v1.0 + Defender for Endpoint) for the demo, tests and benchmarks.

    tenant = SandboxTenant(SandboxConfig())
    client = httpx.Client(base_url=SANDBOX_GRAPH_URL, transport=tenant.transport())
    server = serve_sandbox(tenant, port=0)   # or over a real local port: server.url
    with tenant.hold_writes() as hold:       # writes wait (a change in flight) until the block ends
        hold.wait_for_writes(1)
    SandboxConfig().with_latency(os.environ.get(LATENCY_ENV))   # "300", "300:100" or "300±100" ms
    tenant.edit_policy_as("megan.bowen@contoso.example", "<policy>", maximumAllowedDeviceThreatLevel="high")
                                             # outside the bot, as an admin in the Intune portal: Intune's audit
                                             # log (GET deviceManagement/auditEvents) names her; the bot's own
                                             # Graph writes are by SANDBOX_APP_ID
"""

from bot.sandbox.audit import PORTAL_ADMIN, SANDBOX_APP_ID
from bot.sandbox.cast import SEED_POLICY_ID, SEED_POLICY_NAME
from bot.sandbox.config import LATENCY_ENV, ConnectorConfig, SandboxConfig, ThrottleConfig, latency_from_env
from bot.sandbox.control import RiskChange, SandboxStats, WriteHold
from bot.sandbox.exports import MAM_COLUMNS, MAM_REPORT
from bot.sandbox.licences import DEFENDER_PLANS, INTUNE_A, INTUNE_PLANS, MDE_LITE, WINDEFATP
from bot.sandbox.portal import PortalError
from bot.sandbox.schema import MDE_CONNECTOR_ID
from bot.sandbox.server import SandboxServer, serve_sandbox
from bot.sandbox.tenant import SandboxTenant

__all__ = [
    "DEFENDER_PLANS",
    "INTUNE_A",
    "INTUNE_PLANS",
    "LATENCY_ENV",
    "MAM_COLUMNS",
    "MAM_REPORT",
    "MDE_CONNECTOR_ID",
    "MDE_LITE",
    "PORTAL_ADMIN",
    "SANDBOX_APP_ID",
    "SEED_POLICY_ID",
    "SEED_POLICY_NAME",
    "WINDEFATP",
    "ConnectorConfig",
    "PortalError",
    "RiskChange",
    "SandboxConfig",
    "SandboxServer",
    "SandboxStats",
    "SandboxTenant",
    "ThrottleConfig",
    "WriteHold",
    "latency_from_env",
    "serve_sandbox",
]
