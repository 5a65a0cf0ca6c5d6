"""A simulated Microsoft tenant (Graph beta/v1.0 + Defender for Endpoint) for the demo, tests and benchmarks.

    tenant = SandboxTenant(SandboxConfig())
    client = httpx.Client(base_url=SANDBOX_GRAPH_URL, transport=tenant.transport())
    server = serve_sandbox(tenant, port=0)   # or over a real local port: server.url
    with tenant.hold_writes() as hold:       # writes wait (a change in flight) until the block ends
        hold.wait_for_writes(1)
"""

from bot.sandbox.config import ConnectorConfig, SandboxConfig, ThrottleConfig
from bot.sandbox.schema import MDE_CONNECTOR_ID
from bot.sandbox.seed import SEED_POLICY_ID, SEED_POLICY_NAME
from bot.sandbox.server import SandboxServer, serve_sandbox
from bot.sandbox.tenant import SandboxStats, SandboxTenant, WriteHold

__all__ = [
    "MDE_CONNECTOR_ID",
    "SEED_POLICY_ID",
    "SEED_POLICY_NAME",
    "ConnectorConfig",
    "SandboxConfig",
    "SandboxServer",
    "SandboxStats",
    "SandboxTenant",
    "ThrottleConfig",
    "WriteHold",
    "serve_sandbox",
]
