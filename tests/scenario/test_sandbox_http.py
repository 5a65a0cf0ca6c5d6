"""The sandbox served on a real local port answers exactly as it does in-process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bot.sandbox import MDE_CONNECTOR_ID, SandboxConfig, SandboxServer, SandboxTenant, serve_sandbox
from bot.settings import SANDBOX_DEFENDER_URL, SANDBOX_GRAPH_URL

pytestmark = pytest.mark.http

AUTH = {"Authorization": "Bearer sandbox-token"}
NOW = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
READS = [
    ("graph", "/beta/deviceManagement/mobileThreatDefenseConnectors", {}),
    ("graph", "/beta/deviceAppManagement/androidManagedAppProtections", {"$expand": "apps,assignments"}),
    ("graph", "/beta/deviceAppManagement/managedAppRegistrations", {"$top": "7", "$expand": "appliedPolicies"}),
    ("graph", "/v1.0/groups", {"$filter": "startswith(displayName,'Sales')", "$select": "id,displayName"}),
    ("graph", "/v1.0/users/lee.gu@contoso.example", {"$select": "id,mail"}),
    ("defender", "/api/machines", {"$filter": "osPlatform eq 'Android'", "$top": "5"}),
    ("graph", "/beta/deviceAppManagement/androidManagedAppProtections/T_missing", {}),
]


@pytest.fixture
def served() -> Iterator[tuple[SandboxTenant, SandboxServer]]:
    tenant = SandboxTenant(SandboxConfig(now=NOW))
    server = serve_sandbox(tenant, host="127.0.0.1", port=0)
    try:
        yield tenant, server
    finally:
        server.shutdown()


def rebase(value: Any, old: str, new: str) -> Any:
    """Swap the base URL inside @odata.context / nextLink strings, so bodies compare across hosts."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [rebase(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: rebase(v, old, new) for k, v in value.items()}
    return value


def without_ids(body: Any) -> Any:
    if isinstance(body, dict) and "error" in body:
        error = dict(body["error"])
        error.pop("innerError", None)
        error.pop("target", None)
        return {"error": error}
    return body


def test_served_answers_match_in_process(served: tuple[SandboxTenant, SandboxServer]) -> None:
    _tenant, server = served
    twin = SandboxTenant(SandboxConfig(now=NOW))
    local = httpx.Client(transport=twin.transport(), headers=AUTH)
    remote = httpx.Client(headers=AUTH)
    for service, path, params in READS:
        base = SANDBOX_DEFENDER_URL if service == "defender" else SANDBOX_GRAPH_URL
        here = local.get(base + path, params=params)
        there = remote.get(server.url + path, params=params)
        assert there.status_code == here.status_code, path
        assert there.headers["content-type"] == here.headers["content-type"]
        assert there.headers["request-id"] and there.headers["client-request-id"]
        expected = without_ids(rebase(here.json(), base, server.url))
        got = without_ids(there.json())
        if service == "graph" and "lastHeartbeatDateTime" in str(expected):
            for item in expected["value"] + got["value"]:
                item.pop("lastHeartbeatDateTime")
        assert got == expected, path


def test_next_links_point_at_the_server_and_writes_round_trip(served: tuple[SandboxTenant, SandboxServer]) -> None:
    tenant, server = served
    client = httpx.Client(base_url=server.url, headers=AUTH)
    first = client.get("/api/machines", params={"$top": "4"}).json()
    assert first["@odata.nextLink"].startswith(server.url + "/api/machines?")
    second = client.get(first["@odata.nextLink"]).json()
    assert {m["id"] for m in second["value"]}.isdisjoint({m["id"] for m in first["value"]})

    created = client.post("/beta/deviceAppManagement/androidManagedAppProtections",
                          json={"@odata.type": "#microsoft.graph.androidManagedAppProtection",
                                "displayName": "Served", "maximumAllowedDeviceThreatLevel": "low"})
    assert created.status_code == 201
    assert tenant.policy(created.json()["id"]) is not None
    patched = client.patch(f"/beta/deviceManagement/mobileThreatDefenseConnectors/{MDE_CONNECTOR_ID}",
                           json={"androidMobileApplicationManagementEnabled": True})
    assert patched.status_code == 200
    assert tenant.connector()["androidMobileApplicationManagementEnabled"] is True  # type: ignore[index]
    count = client.get(f"/v1.0/groups/{tenant.group('Sales')['id']}/members/$count",  # type: ignore[index]
                       headers={"ConsistencyLevel": "eventual"})
    assert count.text == "3" and count.headers["content-type"].startswith("text/plain")
    assert httpx.get(server.url + "/beta/groups").status_code == 401
    assert tenant.stats.writes == 2
