"""The sandbox under load like the cloud: latency, licences (assignedPlans), Defender's osPlatform filter, and
the runtime knobs a benchmark turns (risk changes with their time, the connector)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.sandbox import (
    INTUNE_A,
    LATENCY_ENV,
    MDE_CONNECTOR_ID,
    MDE_LITE,
    WINDEFATP,
    SandboxConfig,
    SandboxTenant,
    latency_from_env,
)
from bot.sandbox.cast import CAST_ANDROID, CAST_PENDING, CAST_USERS
from bot.settings import SANDBOX_DEFENDER_URL, SANDBOX_GRAPH_URL

AUTH = {"Authorization": "Bearer sandbox-token"}
EVENTUAL = {"ConsistencyLevel": "eventual"}
NOW = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
MAIL = {u.given.lower(): u.mail for u in CAST_USERS}
ID = {u.given.lower(): u.id for u in CAST_USERS}
DEVICES = {d.key: d for d in (*CAST_ANDROID, *CAST_PENDING)}


def clients(tenant: SandboxTenant) -> tuple[httpx.Client, httpx.Client]:
    transport = tenant.transport()
    return (httpx.Client(base_url=SANDBOX_GRAPH_URL, transport=transport, headers=AUTH),
            httpx.Client(base_url=SANDBOX_DEFENDER_URL, transport=transport, headers=AUTH))


def licensed(plan: str, status: str = "Enabled") -> str:
    return f"assignedPlans/any(a:a/servicePlanId eq {plan} and a/capabilityStatus eq '{status}')"


# Defender P2 or P1, enabled: an `or` inside the lambda
DEFENDER = (f"assignedPlans/any(a:(a/servicePlanId eq {WINDEFATP} or a/servicePlanId eq {MDE_LITE}) "
            "and a/capabilityStatus eq 'Enabled')")


def follow(graph: httpx.Client, params: dict[str, str]) -> tuple[list[dict[str, Any]], int, int]:
    """Every user a query returns, the @odata.count it reported and the number of pages."""
    response = graph.get("/v1.0/users", params=params, headers=EVENTUAL)
    assert response.status_code == 200, response.text
    body = response.json()
    items, count, pages = list(body["value"]), body["@odata.count"], 1
    while "@odata.nextLink" in body:
        body = graph.get(body["@odata.nextLink"], headers=EVENTUAL).json()
        assert body["@odata.count"] == count
        items += body["value"]
        pages += 1
    return items, count, pages


# ---- latency -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("300", (300.0, 0.0)), ("300:100", (300.0, 100.0)), ("300±100", (300.0, 100.0)),
    (" 250 ± 50 ", (250.0, 50.0)), ("300+-100", (300.0, 100.0)), ("12.5:2.5", (12.5, 2.5)),
    ("0", (0.0, 0.0)), (None, (0.0, 0.0)), ("", (0.0, 0.0)),
])
def test_latency_from_env_parses(text: str | None, expected: tuple[float, float]) -> None:
    assert latency_from_env(text) == expected


@pytest.mark.parametrize("text", ["fast", "300ms", "-5", "300:", ":100", "300:100:5", "300 100", "1e3"])
def test_latency_from_env_refuses_in_words(text: str) -> None:
    with pytest.raises(ValueError, match=LATENCY_ENV) as caught:
        latency_from_env(text)
    assert "300:100" in str(caught.value)


def test_with_latency_and_negative_values() -> None:
    config = SandboxConfig().with_latency("40±10")
    assert (config.latency_ms, config.latency_jitter_ms) == (40.0, 10.0)
    with pytest.raises(ValueError, match="negative"):
        SandboxConfig(latency_ms=-1)


def test_each_request_waits_and_concurrent_requests_overlap() -> None:
    tenant = SandboxTenant(SandboxConfig(now=NOW, latency_ms=150))
    graph, defender = clients(tenant)
    for call in (lambda: graph.get("/v1.0/users/lee.gu@contoso.example"), lambda: defender.get("/api/machines"),
                 lambda: graph.get("/beta/nothing/here")):
        started = time.monotonic()
        call()
        assert time.monotonic() - started >= 0.15

    errors: list[int] = []

    def read() -> None:
        status = graph.get("/beta/deviceAppManagement/managedAppRegistrations").status_code
        if status != 200:
            errors.append(status)

    threads = [threading.Thread(target=read) for _ in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert not errors and 0.15 <= elapsed < 0.8   # eight in a row would take 1.2 s


def test_jitter_varies_and_a_batch_waits_once() -> None:
    tenant = SandboxTenant(SandboxConfig(now=NOW, latency_ms=60, latency_jitter_ms=40))
    graph, _ = clients(tenant)
    delays = []
    for _ in range(6):
        started = time.monotonic()
        graph.get("/v1.0/groups", params={"$top": "1"})
        delays.append(time.monotonic() - started)
    assert all(d >= 0.02 for d in delays) and max(delays) - min(delays) > 0.005

    requests = [{"id": str(n), "method": "GET", "url": "/users/lee.gu@contoso.example"} for n in range(5)]
    started = time.monotonic()
    batch = graph.post("/v1.0/$batch", json={"requests": requests})
    elapsed = time.monotonic() - started
    assert batch.status_code == 200 and all(r["status"] == 200 for r in batch.json()["responses"])
    assert 0.02 <= elapsed < 0.25                 # one wait for the envelope, not five


# ---- licences ----------------------------------------------------------------------------------------

def test_licence_filter_needs_eventual_consistency_and_count() -> None:
    graph, _ = clients(SandboxTenant(SandboxConfig(now=NOW)))
    params = {"$filter": licensed(INTUNE_A), "$count": "true", "$select": "id", "$top": "999"}
    no_header = graph.get("/v1.0/users", params=params)
    assert no_header.status_code == 400 and no_header.json()["error"]["code"] == "Request_UnsupportedQuery"
    no_count = graph.get("/v1.0/users", params={k: v for k, v in params.items() if k != "$count"},
                         headers=EVENTUAL)
    assert no_count.status_code == 400 and no_count.json()["error"]["code"] == "Request_UnsupportedQuery"
    assert graph.get("/v1.0/users", params=params, headers=EVENTUAL).status_code == 200


def test_curated_users_lacking_licences() -> None:
    tenant = SandboxTenant(SandboxConfig(now=NOW))
    graph, _ = clients(tenant)
    params = {"$filter": licensed(INTUNE_A), "$count": "true", "$select": "id", "$top": "4"}
    intune, count, pages = follow(graph, params)
    assert (count, pages, len(intune)) == (9, 3, 9) and set(intune[0]) == {"id"}
    assert ID["isaiah"] not in {u["id"] for u in intune}          # pending onboarding, no Intune licence

    defender, count, _ = follow(graph, {"$filter": DEFENDER, "$count": "true", "$select": "id,mail"})
    assert count == 8 and {u["mail"] for u in defender} == set(MAIL.values()) - {MAIL["nestor"], MAIL["grady"]}
    p2, _, _ = follow(graph, {"$filter": licensed(WINDEFATP), "$count": "true", "$select": "mail"})
    assert {u["mail"] for u in p2} == set(MAIL.values()) - {MAIL["nestor"], MAIL["grady"], MAIL["diego"]}
    suspended, _, _ = follow(graph, {"$filter": licensed(WINDEFATP, "Suspended"), "$count": "true"})
    assert [u["mail"] for u in suspended] == [MAIL["grady"]]

    grady = graph.get(f"/v1.0/users/{ID['grady']}", params={"$select": "id,assignedPlans"}).json()
    plans = {p["servicePlanId"]: p for p in grady["assignedPlans"]}
    assert plans[WINDEFATP]["capabilityStatus"] == "Suspended" and plans[INTUNE_A]["service"] == "SCO"
    assert set(plans[WINDEFATP]) == {"assignedDateTime", "capabilityStatus", "service", "servicePlanId"}
    listed = graph.get("/v1.0/users", params={"$select": "id,assignedPlans", "$top": "2"}).json()["value"]
    assert all(set(u) == {"id", "assignedPlans"} and u["assignedPlans"] for u in listed)
    assert "assignedPlans" not in graph.get(f"/v1.0/users/{ID['grady']}").json()   # not a default property

    # A licence given at run time shows at once, count included.
    tenant.set_licence(MAIL["isaiah"], "INTUNE_A")
    assert follow(graph, params)[1] == 10
    tenant.set_licence(MAIL["isaiah"], INTUNE_A, "Deleted")
    assert follow(graph, params)[1] == 9


def test_mail_or_upn_filter_is_a_lookup() -> None:
    tenant = SandboxTenant(SandboxConfig.large(devices=20_000, registrations=20_000, now=NOW))
    graph, _ = clients(tenant)
    mail = tenant.world.user(12_345)["mail"]
    calls = 0
    user = tenant.world.user

    def counted(index: int) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return user(index)

    tenant.world.user = counted  # type: ignore[method-assign]
    found = graph.get("/v1.0/users", params={"$filter": f"mail eq '{mail}' or userPrincipalName eq '{mail}'"})
    assert [u["mail"] for u in found.json()["value"]] == [mail] and calls < 5
    two = graph.get("/v1.0/users", params={
        "$filter": f"mail eq '{MAIL['lee']}' or userPrincipalName eq '{mail.upper()}'", "$select": "mail"})
    assert [u["mail"] for u in two.json()["value"]] == [MAIL["lee"], mail]


def test_generated_users_licences_and_the_large_tenant() -> None:
    tenant = SandboxTenant(SandboxConfig.large(devices=5_000, registrations=5_000, now=NOW))
    graph, _ = clients(tenant)
    total = tenant.world.user_count
    intune, count, pages = follow(graph, {"$filter": licensed(INTUNE_A), "$count": "true", "$select": "id",
                                          "$top": "999"})
    assert count == len(intune) and pages == 5 and 0.01 < 1 - count / total < 0.035
    defender = follow(graph, {"$filter": DEFENDER, "$count": "true", "$select": "id", "$top": "999"})[1]
    assert 0.02 < 1 - defender / total < 0.045
    lite = follow(graph, {"$filter": licensed(MDE_LITE), "$count": "true", "$select": "id", "$top": "999"})[1]
    assert 0.05 < lite / total < 0.3

    big = SandboxTenant(SandboxConfig.large(now=NOW))
    graph, _ = clients(big)
    built = 0
    user = big.world.user

    def counted(index: int) -> dict[str, Any]:
        nonlocal built
        built += 1
        return user(index)

    big.world.user = counted  # type: ignore[method-assign]
    first = graph.get("/v1.0/users", headers=EVENTUAL, params={
        "$filter": licensed(INTUNE_A), "$count": "true", "$select": "id", "$top": "999"}).json()
    assert len(first["value"]) == 999 and 95_000 < first["@odata.count"] < 99_000
    assert built == 0            # the licence query never builds whole users
    second = graph.get(first["@odata.nextLink"], headers=EVENTUAL).json()
    assert len(second["value"]) == 999 and not {u["id"] for u in second["value"]} & {u["id"] for u in first["value"]}


# ---- Defender ----------------------------------------------------------------------------------------

def test_os_platform_filter_returns_android_only() -> None:
    tenant = SandboxTenant(SandboxConfig(now=NOW))
    _, defender = clients(tenant)
    everything = defender.get("/api/machines").json()["value"]
    android = defender.get("/api/machines", params={"$filter": "osPlatform eq 'Android'"}).json()["value"]
    assert {m["osPlatform"] for m in everything} == {"Android", "Windows10", "Windows11"}
    assert android == [m for m in everything if m["osPlatform"] == "Android"] and len(android) == 12
    lower = defender.get("/api/machines", params={"$filter": "osPlatform eq 'android'"}).json()["value"]
    assert lower == android


def test_os_platform_paging_costs_a_page_on_the_large_tenant() -> None:
    tenant = SandboxTenant(SandboxConfig.large(now=NOW))
    _, defender = clients(tenant)
    world = tenant.world
    built = 0
    machine = world.machine

    def counted(raw: int) -> dict[str, Any] | None:
        nonlocal built
        built += 1
        return machine(raw)

    world.machine = counted  # type: ignore[method-assign]
    url = "/api/machines?$filter=osPlatform eq 'Android'&$top=2000"
    seen: set[str] = set()
    costs = []
    for _ in range(3):
        built = 0
        body = defender.get(url).json()
        costs.append(built)
        assert len(body["value"]) == 2000 and {m["osPlatform"] for m in body["value"]} == {"Android"}
        seen.update(m["id"] for m in body["value"])
        url = body["@odata.nextLink"]
    assert len(seen) == 6000 and max(costs) < 2_100     # each page reads about its own rows, never the tenant
    assert defender.get("/api/machines", params={"$top": "10001"}).status_code == 400


# ---- runtime knobs -----------------------------------------------------------------------------------

def test_risk_changes_are_recorded_with_their_time() -> None:
    clock_value = [500.0]
    tenant = SandboxTenant(SandboxConfig(now=NOW, monotonic=lambda: clock_value[0]))
    _, defender = clients(tenant)
    lee = DEVICES["lee-pixel7a"]
    assert tenant.risk_changed_at(lee.aad_device_id or "") is None
    change = tenant.set_risk(lee.aad_device_id or "", "high")
    assert (change.level, change.previous, change.monotonic) == ("High", "Low", 500.0)
    assert change.machine_id == lee.machine_id and change.aad_device_id == lee.aad_device_id
    clock_value[0] = 512.5
    tenant.set_risk(lee.machine_id, "Medium")
    assert tenant.risk_changed_at(lee.aad_device_id or "") == 512.5
    assert tenant.risk_changed_at(lee.machine_id.upper()) == 512.5
    assert [c.level for c in tenant.risk_changes] == ["High", "Medium"]
    machine = defender.get(f"/api/machines/{lee.machine_id}").json()
    assert machine["riskScore"] == "Medium"
    # A device Defender does not list yet can still have its risk set (it shows once onboarded).
    pending = tenant.set_risk(DEVICES["isaiah-s22"].aad_device_id or "", "Low")
    assert pending.previous is None and pending.machine_id == DEVICES["isaiah-s22"].machine_id


def test_connector_toggle_and_heartbeat_at_runtime() -> None:
    tenant = SandboxTenant(SandboxConfig(now=NOW))
    graph, _ = clients(tenant)
    url = f"/beta/deviceManagement/mobileThreatDefenseConnectors/{MDE_CONNECTOR_ID}"
    assert graph.get(url).json()["androidMobileApplicationManagementEnabled"] is False
    tenant.set_connector(androidMobileApplicationManagementEnabled=True, heartbeat_age=timedelta(days=3))
    connector = graph.get(url).json()
    assert connector["androidMobileApplicationManagementEnabled"] is True
    heartbeat = datetime.fromisoformat(connector["lastHeartbeatDateTime"][:19] + "+00:00")
    assert timedelta(days=3) - timedelta(minutes=1) < datetime.now(UTC) - heartbeat < timedelta(days=3, minutes=1)
