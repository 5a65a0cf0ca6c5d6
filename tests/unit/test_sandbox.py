"""The sandbox tenant answers Graph and Defender calls in their real shapes, deterministically."""

from __future__ import annotations

import gc
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.sandbox import (
    MDE_CONNECTOR_ID,
    SEED_POLICY_ID,
    ConnectorConfig,
    SandboxConfig,
    SandboxTenant,
    ThrottleConfig,
)
from bot.settings import SANDBOX_DEFENDER_URL, SANDBOX_GRAPH_URL

AUTH = {"Authorization": "Bearer sandbox-token"}
EVENTUAL = {"ConsistencyLevel": "eventual"}
POLICIES = "/beta/deviceAppManagement/androidManagedAppProtections"
CONNECTORS = "/beta/deviceManagement/mobileThreatDefenseConnectors"
REGISTRATIONS = "/beta/deviceAppManagement/managedAppRegistrations"
NOW = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
# The shared reference folder sits beside the project in the team's workspace; skip what needs it elsewhere.
REAL_EXPORT = (Path(__file__).resolve().parents[3]
               / "shared/reference/real-exports/android-app-protection-policy.json")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def clients(tenant: SandboxTenant) -> tuple[httpx.Client, httpx.Client]:
    transport = tenant.transport()
    return (httpx.Client(base_url=SANDBOX_GRAPH_URL, transport=transport, headers=AUTH),
            httpx.Client(base_url=SANDBOX_DEFENDER_URL, transport=transport, headers=AUTH))


@pytest.fixture
def tenant() -> SandboxTenant:
    return SandboxTenant(SandboxConfig(now=NOW))


@pytest.fixture
def graph(tenant: SandboxTenant) -> httpx.Client:
    return clients(tenant)[0]


@pytest.fixture
def defender(tenant: SandboxTenant) -> httpx.Client:
    return clients(tenant)[1]


def follow(client: httpx.Client, url: str, params: dict[str, str] | None = None,
           headers: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], int]:
    """Every item across @odata.nextLink pages, and the number of pages."""
    items: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        response = client.get(next_url, params=params if pages == 0 else None, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["value"])
        pages += 1
        next_url = body.get("@odata.nextLink")
    return items, pages


def policy_body(**extra: Any) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.androidManagedAppProtection", "displayName": "MDE - block",
            **extra}


def app(package: str) -> dict[str, Any]:
    return {"mobileAppIdentifier": {"@odata.type": "#microsoft.graph.androidMobileAppIdentifier",
                                    "packageId": package}}


def group_target(group_id: str, exclude: bool = False) -> dict[str, Any]:
    kind = "exclusionGroupAssignmentTarget" if exclude else "groupAssignmentTarget"
    return {"target": {"@odata.type": f"#microsoft.graph.{kind}", "groupId": group_id}}


def group_id(tenant: SandboxTenant, name: str) -> str:
    found = tenant.group(name)
    assert found is not None
    return str(found["id"])


# ---- protocol: auth, ids, errors -------------------------------------------------------------------

def test_missing_bearer_is_401_in_each_services_error_shape(tenant: SandboxTenant) -> None:
    bare = httpx.Client(transport=tenant.transport())
    graph_error = bare.get(SANDBOX_GRAPH_URL + CONNECTORS).json()["error"]
    assert graph_error["code"] == "InvalidAuthenticationToken"
    defender = bare.get(SANDBOX_DEFENDER_URL + "/api/machines")
    assert defender.status_code == 401
    assert set(defender.json()["error"]) == {"code", "message", "target"}


def test_every_response_has_a_request_id_and_echoes_the_client_request_id(graph: httpx.Client) -> None:
    response = graph.get(CONNECTORS, headers={"client-request-id": "abc-123"})
    assert response.headers["client-request-id"] == "abc-123"
    assert len(response.headers["request-id"]) == 36
    missing = graph.get(POLICIES + "/T_nope", headers={"client-request-id": "abc-123"})
    inner = missing.json()["error"]["innerError"]
    assert missing.status_code == 404
    assert inner["client-request-id"] == "abc-123"
    assert inner["request-id"] == missing.headers["request-id"]
    assert datetime.fromisoformat(inner["date"])


def test_unknown_segment_is_a_graph_400(graph: httpx.Client) -> None:
    response = graph.get("/v1.0/deviceAppManagement/nonsense")
    assert response.status_code == 400
    assert "nonsense" in response.json()["error"]["message"]


# ---- MTD connector ---------------------------------------------------------------------------------

def test_connector_is_seeded_enabled_with_android_mam_off(graph: httpx.Client) -> None:
    body = graph.get(CONNECTORS).json()
    assert body["@odata.context"].endswith("$metadata#deviceManagement/mobileThreatDefenseConnectors")
    (connector,) = body["value"]
    assert connector["id"] == MDE_CONNECTOR_ID
    assert connector["partnerState"] == "enabled"
    assert connector["androidEnabled"] is True
    assert connector["androidMobileApplicationManagementEnabled"] is False
    assert connector["partnerUnresponsivenessThresholdInDays"] == 7
    assert "macEnabled" in connector and "windowsMobileApplicationManagementEnabled" in connector
    heartbeat = datetime.fromisoformat(connector["lastHeartbeatDateTime"])
    assert datetime.now(UTC) - heartbeat < timedelta(hours=1)


def test_connector_patch_returns_the_updated_object_and_ignores_read_only(graph: httpx.Client) -> None:
    url = f"{CONNECTORS}/{MDE_CONNECTOR_ID}"
    response = graph.patch(url, json={"androidMobileApplicationManagementEnabled": True,
                                      "partnerState": "unavailable", "id": MDE_CONNECTOR_ID})
    assert response.status_code == 200
    assert response.json()["androidMobileApplicationManagementEnabled"] is True
    assert response.json()["partnerState"] == "enabled"
    assert graph.get(url).json()["androidMobileApplicationManagementEnabled"] is True
    assert graph.patch(url, json={"androidTurbo": True}).status_code == 400
    assert graph.patch(url, json={"androidEnabled": "yes"}).status_code == 400


def test_connector_absent_and_other_states() -> None:
    absent, _ = clients(SandboxTenant(SandboxConfig(connector=None)))
    assert absent.get(CONNECTORS).json()["value"] == []
    assert absent.get(f"{CONNECTORS}/{MDE_CONNECTOR_ID}").status_code == 404

    stale = SandboxTenant(SandboxConfig(connector=ConnectorConfig("unresponsive")))
    connector = stale.connector()
    assert connector is not None and connector["partnerState"] == "unresponsive"
    assert datetime.now(UTC) - datetime.fromisoformat(connector["lastHeartbeatDateTime"]) > timedelta(days=7)

    never = SandboxTenant(SandboxConfig(connector="notSetUp"))
    graph, _ = clients(never)
    assert graph.get(CONNECTORS).json()["value"][0]["partnerState"] == "notSetUp"
    # v1.0's enum has no notSetUp: a v1.0 client sees unknownFutureValue.
    assert graph.get("/v1.0/deviceManagement/mobileThreatDefenseConnectors").json()["value"][0][
        "partnerState"] == "unknownFutureValue"


def test_connector_mutators(tenant: SandboxTenant, graph: httpx.Client) -> None:
    tenant.set_connector(partnerState="unresponsive", heartbeat_age=timedelta(days=10))
    connector = graph.get(f"{CONNECTORS}/{MDE_CONNECTOR_ID}").json()
    assert connector["partnerState"] == "unresponsive"
    tenant.remove_connector()
    assert tenant.connector() is None
    tenant.set_connector(androidMobileApplicationManagementEnabled=True)
    assert tenant.connector()["androidMobileApplicationManagementEnabled"] is True  # type: ignore[index]
    with pytest.raises(ValueError, match="unknown connector field"):
        tenant.set_connector(turbo=True)


# ---- app protection policies -----------------------------------------------------------------------

def test_seed_policy_has_a_real_policys_shape(graph: httpx.Client) -> None:
    body = graph.get(f"{POLICIES}/{SEED_POLICY_ID}", params={"$expand": "apps,assignments"}).json()
    assert body["id"].startswith("T_")
    assert body["maximumAllowedDeviceThreatLevel"] == "notConfigured"
    assert body["isAssigned"] is True and body["roleScopeTagIds"] == ["0"]
    assert len(body["apps"]) == body["deployedAppCount"] == 39
    assert {"com.microsoft.office.outlook.android", "com.microsoft.emmx.android"} <= {a["id"] for a in body["apps"]}
    kinds = sorted(a["target"]["@odata.type"].rsplit(".", 1)[1] for a in body["assignments"])
    assert kinds == ["exclusionGroupAssignmentTarget", "groupAssignmentTarget"]
    if REAL_EXPORT.exists():
        real = json.loads(REAL_EXPORT.read_text(encoding="utf-8-sig"))
        expected = {k for k in real if "@" not in k and not k.startswith("#")}
        assert expected <= set(body)


def test_create_then_list_filter_patch_delete(graph: httpx.Client) -> None:
    created = graph.post(POLICIES, json=policy_body(maximumAllowedDeviceThreatLevel="low",
                                                   targetedAppManagementLevels="unmanaged,androidEnterprise"))
    assert created.status_code == 201
    policy = created.json()
    assert policy["id"].startswith("T_") and policy["isAssigned"] is False
    assert policy["roleScopeTagIds"] == ["0"] and policy["version"]
    assert policy["createdDateTime"] and policy["lastModifiedDateTime"]
    assert policy["mobileThreatDefenseRemediationAction"] == "block"

    listed = graph.get(POLICIES, params={"$filter": "displayName eq 'mde - BLOCK'"}).json()["value"]
    assert [p["id"] for p in listed] == [policy["id"]]

    patched = graph.patch(f"{POLICIES}/{policy['id']}", json={"maximumAllowedDeviceThreatLevel": "medium"})
    assert patched.status_code == 200 and patched.json()["maximumAllowedDeviceThreatLevel"] == "medium"
    assert patched.json()["version"] != policy["version"]

    assert graph.delete(f"{POLICIES}/{policy['id']}").status_code == 204
    gone = graph.get(f"{POLICIES}/{policy['id']}")
    assert gone.status_code == 404
    assert set(gone.json()["error"]) == {"code", "message", "innerError"}


@pytest.mark.parametrize(("body", "fragment"), [
    (policy_body(maximumAllowedDeviceThreatLevel="extreme"), "managedAppDeviceThreatLevel"),
    (policy_body(mobileThreatDefenseRemediationAction="nuke"), "managedAppRemediationAction"),
    (policy_body(targetedAppManagementLevels="unmanaged,deviceAdministrator"), "appManagementLevel"),
    (policy_body(appGroupType="someApps"), "targetedManagedAppGroupType"),
    (policy_body(threatLevel="low"), "does not exist"),
    (policy_body(pinRequired="yes"), "Edm.Boolean"),
    (policy_body(periodOnlineBeforeAccessCheck="30 minutes"), "Edm.Duration"),
    (policy_body(encryptAppData=None), "null"),
    ({"@odata.type": "#microsoft.graph.androidManagedAppProtection"}, "displayName"),
    (policy_body(**{"@odata.type": "#microsoft.graph.iosManagedAppProtection"}), "not compatible"),
])
def test_create_rejects_what_graph_rejects(graph: httpx.Client, body: dict[str, Any], fragment: str) -> None:
    response = graph.post(POLICIES, json=body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]


def test_threat_settings_are_beta_only(graph: httpx.Client) -> None:
    v1 = "/v1.0/deviceAppManagement/androidManagedAppProtections"
    assert graph.post(v1, json=policy_body(maximumAllowedDeviceThreatLevel="low")).status_code == 400
    seed = graph.get(f"{v1}/{SEED_POLICY_ID}").json()
    assert "maximumAllowedDeviceThreatLevel" not in seed and "displayName" in seed


def test_target_apps_replaces_the_app_list(graph: httpx.Client) -> None:
    policy_id = graph.post(POLICIES, json=policy_body()).json()["id"]
    first = {"apps": [app("com.microsoft.office.outlook"), app("com.microsoft.teams")],
             "appGroupType": "selectedPublicApps"}
    assert graph.post(f"{POLICIES}/{policy_id}/targetApps", json=first).status_code == 204
    second = {"apps": [app("com.microsoft.emmx")], "appGroupType": "selectedPublicApps"}
    assert graph.post(f"{POLICIES}/{policy_id}/targetApps", json=second).status_code == 204
    apps = graph.get(f"{POLICIES}/{policy_id}/apps").json()["value"]
    assert [a["id"] for a in apps] == ["com.microsoft.emmx.android"]

    everything = {"apps": [], "appGroupType": "allMicrosoftApps"}
    assert graph.post(f"{POLICIES}/{policy_id}/targetApps", json=everything).status_code == 204
    policy = graph.get(f"{POLICIES}/{policy_id}").json()
    assert policy["appGroupType"] == "allMicrosoftApps" and policy["deployedAppCount"] == 39

    ios = {"apps": [{"mobileAppIdentifier": {"@odata.type": "#microsoft.graph.iosMobileAppIdentifier",
                                             "bundleId": "com.microsoft.Office.Outlook"}}]}
    assert graph.post(f"{POLICIES}/{policy_id}/targetApps", json=ios).status_code == 400


def test_assign_replaces_all_assignments(tenant: SandboxTenant, graph: httpx.Client) -> None:
    policy_id = graph.post(POLICIES, json=policy_body()).json()["id"]
    pilot, finance = group_id(tenant, "MAM Pilot"), group_id(tenant, "Finance")
    url = f"{POLICIES}/{policy_id}/assign"
    assert graph.post(url, json={"assignments": [group_target(pilot)]}).status_code == 204
    assert graph.post(url, json={"assignments": [group_target(finance, exclude=True)]}).status_code == 204
    assignments = graph.get(f"{POLICIES}/{policy_id}/assignments").json()["value"]
    assert [(a["target"]["@odata.type"], a["target"]["groupId"]) for a in assignments] == [
        ("#microsoft.graph.exclusionGroupAssignmentTarget", finance)]
    assert graph.get(f"{POLICIES}/{policy_id}").json()["isAssigned"] is True

    unknown = graph.post(url, json={"assignments": [group_target("00000000-1111-4222-8333-444444444444")]})
    assert unknown.status_code == 400
    assert graph.post(url, json={"assignments": []}).status_code == 204
    assert graph.get(f"{POLICIES}/{policy_id}").json()["isAssigned"] is False


def test_actions_accept_odata_casts_and_key_syntax(graph: httpx.Client) -> None:
    cast = (f"/beta/deviceAppManagement/androidManagedAppProtections('{SEED_POLICY_ID}')"
            "/microsoft.graph.targetedManagedAppProtection/microsoft.graph.targetApps")
    assert graph.post(cast, json={"apps": [app("com.microsoft.teams")]}).status_code == 204
    assert graph.get(f"{POLICIES}/{SEED_POLICY_ID}").json()["deployedAppCount"] == 1


def test_policy_paging_with_top(graph: httpx.Client) -> None:
    for n in range(4):
        graph.post(POLICIES, json=policy_body(displayName=f"P{n}"))
    items, pages = follow(graph, POLICIES, {"$top": "2"})
    assert len(items) == 5 and pages == 3


# ---- registrations ---------------------------------------------------------------------------------

def test_registrations_page_by_skiptoken_and_join_defender(tenant: SandboxTenant, graph: httpx.Client,
                                                           defender: httpx.Client) -> None:
    items, pages = follow(graph, REGISTRATIONS, {"$top": "6"})
    assert pages == 4 and len(items) == len(tenant.registrations) == 20
    first = graph.get(REGISTRATIONS, params={"$top": "6"}).json()
    assert "$skiptoken=" in first["@odata.nextLink"] and "$top=6" in first["@odata.nextLink"]

    android = [r for r in items if r["@odata.type"] == "#microsoft.graph.androidManagedAppRegistration"]
    assert {r["appIdentifier"]["packageId"] for r in android} == {
        "com.microsoft.office.outlook", "com.microsoft.teams", "com.microsoft.emmx"}
    machines = defender.get("/api/machines").json()["value"]
    by_aad = {m["aadDeviceId"]: m for m in machines if m["aadDeviceId"]}
    joined = [r for r in android if r["azureADDeviceId"] in by_aad]
    pending = [r for r in android if r["azureADDeviceId"] and r["azureADDeviceId"] not in by_aad]
    no_device_id = [r for r in android if r["azureADDeviceId"] is None]
    assert joined and pending and no_device_id
    assert {tenant.user(r["userId"])["mail"] for r in pending} == {"isaiah.langer@contoso.example"}  # type: ignore[index]

    # The pending device shows up in Defender once it is onboarded.
    tenant.set_onboarded(pending[0]["azureADDeviceId"])
    machine = tenant.machine(pending[0]["azureADDeviceId"])
    assert machine is not None and machine["onboardingStatus"] == "Onboarded"


def test_applied_policies_follow_assignments(tenant: SandboxTenant, graph: httpx.Client) -> None:
    adele = tenant.user("adele.vance@contoso.example")
    assert adele is not None
    url = f"/beta/users/{adele['id']}/managedAppRegistrations"
    before = graph.get(url, params={"$expand": "appliedPolicies"}).json()["value"]
    assert all([p["id"] for p in r["appliedPolicies"]] == [SEED_POLICY_ID] for r in before)

    policy_id = graph.post(POLICIES, json=policy_body()).json()["id"]
    graph.post(f"{POLICIES}/{policy_id}/targetApps", json={"apps": [app("com.microsoft.office.outlook")]})
    sales = group_target(group_id(tenant, "Sales"))
    graph.post(f"{POLICIES}/{policy_id}/assign", json={"assignments": [sales]})
    after = graph.get(url, params={"$expand": "appliedPolicies"}).json()["value"]
    applied = {r["appIdentifier"]["packageId"]: {p["id"] for p in r["appliedPolicies"]} for r in after}
    # Adele is in Sales through Sales EMEA (nested): transitive membership counts.
    assert applied["com.microsoft.office.outlook"] == {SEED_POLICY_ID, policy_id}
    assert applied["com.microsoft.teams"] == {SEED_POLICY_ID}


def test_v1_registrations_lack_beta_properties(graph: httpx.Client) -> None:
    item = graph.get("/v1.0/deviceAppManagement/managedAppRegistrations").json()["value"][0]
    assert "azureADDeviceId" not in item and "userId" in item


# ---- directory -------------------------------------------------------------------------------------

def test_group_filters_are_case_insensitive_and_find_duplicates(graph: httpx.Client) -> None:
    def names(params: dict[str, str], headers: dict[str, str] | None = None) -> list[str]:
        response = graph.get("/v1.0/groups", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [g["displayName"] for g in response.json()["value"]]

    assert names({"$filter": "displayName eq 'mam pilot'"}) == ["MAM Pilot"]
    assert names({"$filter": "startswith(displayName,'Sales')"}) == ["Sales", "Sales EMEA", "Sales AMER"]
    assert names({"$filter": "displayName eq 'Contractors'"}) == ["Contractors", "Contractors"]
    assert names({"$search": '"displayName:pilot"'}, EVENTUAL) == ["MAM Pilot", "MAM Pilot Users"]
    selected = graph.get("/beta/groups", params={"$select": "id,displayName", "$top": "3"}).json()
    assert set(selected["value"][0]) == {"id", "displayName"} and "@odata.nextLink" in selected


def test_advanced_queries_need_consistency_level(tenant: SandboxTenant, graph: httpx.Client) -> None:
    search = graph.get("/v1.0/groups", params={"$search": '"displayName:sales"'})
    assert search.status_code == 400
    assert "ConsistencyLevel" in search.json()["error"]["message"]
    sales = group_id(tenant, "Sales")
    assert graph.get(f"/v1.0/groups/{sales}/members/$count").status_code == 400
    direct = graph.get(f"/v1.0/groups/{sales}/members/$count", headers=EVENTUAL)
    assert direct.headers["content-type"].startswith("text/plain") and direct.text == "3"
    assert graph.get(f"/v1.0/groups/{sales}/transitiveMembers/$count", headers=EVENTUAL).text == "6"
    users_only = graph.get(f"/v1.0/groups/{sales}/transitiveMembers/microsoft.graph.user/$count",
                           headers=EVENTUAL)
    assert users_only.text == "4"
    assert graph.get("/v1.0/groups", params={"$top": "1000"}).status_code == 400


def test_members_and_member_of(tenant: SandboxTenant, graph: httpx.Client) -> None:
    pilot = group_id(tenant, "MAM Pilot")
    members, pages = follow(graph, f"/v1.0/groups/{pilot}/members", {"$top": "3"})
    assert pages == 2
    assert {m["mail"] for m in members} == {"adele.vance@contoso.example", "alex.wilber@contoso.example",
                                            "megan.bowen@contoso.example", "isaiah.langer@contoso.example"}
    adele = tenant.user("adele.vance@contoso.example")
    assert adele is not None
    groups = graph.get(f"/v1.0/users/{adele['id']}/transitiveMemberOf").json()["value"]
    assert {"Sales", "Sales EMEA", "MAM Pilot"} <= {g["displayName"] for g in groups}
    assert all(g["@odata.type"] == "#microsoft.graph.group" for g in groups)


def test_users_select_filter_and_404(graph: httpx.Client) -> None:
    user = graph.get("/v1.0/users/ADELE.VANCE@contoso.example",
                     params={"$select": "id,displayName,mail,userPrincipalName"}).json()
    assert set(user) == {"@odata.context", "id", "displayName", "mail", "userPrincipalName"}
    found = graph.get("/v1.0/users", params={"$filter": "mail eq 'lee.gu@contoso.example'"}).json()["value"]
    assert [u["displayName"] for u in found] == ["Lee Gu"]
    missing = graph.get("/v1.0/users/8d1c3c4e-0000-4000-8000-000000000000")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Request_ResourceNotFound"
    assert graph.get("/v1.0/users", params={"$select": "shoeSize"}).status_code == 400


# ---- Defender --------------------------------------------------------------------------------------

def test_defender_filters_pages_and_limits(tenant: SandboxTenant, defender: httpx.Client) -> None:
    query = {"$filter": "osPlatform eq 'android' and onboardingStatus eq 'Onboarded'", "$top": "4"}
    items, pages = follow(defender, "/api/machines", query)
    assert len(items) == 10 and pages == 3
    assert all(m["osPlatform"] == "Android" and m["onboardingStatus"] == "Onboarded" for m in items)
    first = defender.get("/api/machines", params=query).json()
    assert first["@odata.context"].endswith("/api/$metadata#Machines")
    assert "$skip=4" in first["@odata.nextLink"]

    everything = defender.get("/api/machines").json()
    assert len(everything["value"]) == 15 and "@odata.nextLink" not in everything
    assert {m["riskScore"] for m in everything["value"]} == {"None", "Informational", "Low", "Medium", "High"}
    states = {m["onboardingStatus"] for m in everything["value"]}
    assert states >= {"Onboarded", "CanBeOnboarded", "Unsupported"}
    assert {m["osPlatform"] for m in everything["value"]} == {"Android", "Windows11", "Windows10"}
    assert defender.get("/api/machines", params={"$top": "10001"}).status_code == 400
    assert defender.get("/api/machines", params={"$filter": "shoeSize eq 'x'"}).status_code == 400


def test_defender_single_machine_and_mutators(tenant: SandboxTenant, defender: httpx.Client) -> None:
    machine = next(m for m in tenant.machines if m["computerDnsName"] == "adele-pixel8")
    assert len(machine["id"]) == 40
    assert defender.get(f"/api/machines/{machine['id']}").json()["riskScore"] == "None"
    tenant.set_risk(machine["aadDeviceId"], "high")
    assert defender.get(f"/api/machines/{machine['id']}").json()["riskScore"] == "High"
    high = defender.get("/api/machines",
                        params={"$filter": "riskScore eq 'High' and osPlatform eq 'Android'"})
    assert machine["id"] in {m["id"] for m in high.json()["value"]}
    tenant.set_onboarded(machine["id"], False)
    missing = defender.get(f"/api/machines/{machine['id']}")
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"code", "message", "target"}
    with pytest.raises(ValueError):
        tenant.set_risk(machine["id"], "Severe")


# ---- batching, throttling, failures, permissions ---------------------------------------------------

def test_batch_routes_inner_requests_and_caps_at_20(tenant: SandboxTenant, graph: httpx.Client) -> None:
    adele = tenant.user("adele.vance@contoso.example")
    assert adele is not None
    requests = [{"id": "1", "method": "GET", "url": f"/users/{adele['id']}?$select=displayName"},
                {"id": "2", "method": "GET", "url": "/users/nobody@contoso.example"},
                {"id": "3", "method": "GET", "url": f"/groups/{group_id(tenant, 'Sales')}/members/$count",
                 "headers": {"ConsistencyLevel": "eventual"}}]
    body = graph.post("/v1.0/$batch", json={"requests": requests}).json()
    by_id = {r["id"]: r for r in body["responses"]}
    assert by_id["1"]["status"] == 200 and by_id["1"]["body"]["displayName"] == "Adele Vance"
    assert by_id["2"]["status"] == 404
    assert by_id["3"]["body"] == "3"
    too_many = [{"id": str(n), "method": "GET", "url": "/groups"} for n in range(21)]
    response = graph.post("/beta/$batch", json={"requests": too_many})
    assert response.status_code == 400 and "20" in response.json()["error"]["message"]


def test_scripted_429_carries_retry_after_and_counts_batch_inner_requests() -> None:
    tenant = SandboxTenant(SandboxConfig(throttle=ThrottleConfig(on_requests=[2, 4], retry_after=7)))
    graph, _ = clients(tenant)
    assert graph.get(CONNECTORS).status_code == 200
    throttled = graph.get(CONNECTORS)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    batch = graph.post("/v1.0/$batch", json={"requests": [
        {"id": "a", "method": "GET", "url": "/groups"}, {"id": "b", "method": "GET", "url": "/groups"}]})
    assert batch.status_code == 200
    assert [r["status"] for r in batch.json()["responses"]] == [200, 429]
    assert batch.json()["responses"][1]["headers"]["Retry-After"] == "7"
    assert tenant.stats.throttled == 2


def test_quotas_on_an_injected_clock() -> None:
    clock = FakeClock()
    tenant = SandboxTenant(SandboxConfig(throttle=ThrottleConfig(enforce_quotas=True, clock=clock)))
    graph, defender = clients(tenant)
    for _ in range(100):
        assert defender.get("/api/machines", params={"$top": "1"}).status_code == 200
    over = defender.get("/api/machines")
    assert over.status_code == 429 and int(over.headers["Retry-After"]) == 60
    clock.now += 61
    assert defender.get("/api/machines").status_code == 200

    for n in range(100):
        assert graph.post(POLICIES, json=policy_body(displayName=f"P{n}")).status_code == 201
    assert graph.post(POLICIES, json=policy_body()).status_code == 429
    assert graph.get(POLICIES).status_code == 200  # reads have their own, larger budget
    clock.now += 20
    assert graph.post(POLICIES, json=policy_body()).status_code == 201


def test_scripted_failures_and_forbidden_routes() -> None:
    tenant = SandboxTenant(SandboxConfig(
        fail={"/api/machines": [503, 503]},
        forbid={"PATCH /beta/deviceManagement/mobileThreatDefenseConnectors", "/groups"}))
    graph, defender = clients(tenant)
    statuses = [defender.get("/api/machines").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert graph.get(CONNECTORS).status_code == 200
    denied = graph.patch(f"{CONNECTORS}/{MDE_CONNECTOR_ID}", json={"androidEnabled": True})
    assert denied.status_code == 403
    assert "DeviceManagementServiceConfig.ReadWrite.All" in denied.json()["error"]["message"]
    groups = graph.get("/beta/groups")
    assert groups.status_code == 403 and groups.json()["error"]["code"] == "Authorization_RequestDenied"


def test_stats_count_routes_writes_and_reset(tenant: SandboxTenant, graph: httpx.Client) -> None:
    graph.get(POLICIES)
    graph.post(POLICIES, json=policy_body())
    graph.post(POLICIES, json=policy_body(displayName=""))
    assert tenant.stats.requests[("GET", "/beta/deviceAppManagement/androidManagedAppProtections")] == 1
    assert tenant.stats.count("POST", "androidManagedAppProtections") == 2
    assert tenant.stats.writes == 1
    tenant.stats.reset()
    assert tenant.stats.total == 0 and tenant.stats.writes == 0


def test_concurrent_requests_are_all_answered(tenant: SandboxTenant, graph: httpx.Client) -> None:
    errors: list[int] = []

    def work() -> None:
        for _ in range(25):
            response = graph.get(REGISTRATIONS, params={"$top": "5"})
            if response.status_code != 200:
                errors.append(response.status_code)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and tenant.stats.total == 100


# ---- determinism and size --------------------------------------------------------------------------

def test_same_seed_same_answers_and_cast_ids_do_not_move() -> None:
    def snapshot(seed: int) -> tuple[Any, ...]:
        tenant = SandboxTenant(SandboxConfig(seed=seed, now=NOW, android_devices=30))
        graph, defender = clients(tenant)
        return (defender.get("/api/machines").json(), graph.get(REGISTRATIONS).json(),
                graph.get("/v1.0/users", params={"$top": "999"}).json())

    assert snapshot(7) == snapshot(7)
    other = snapshot(8)
    assert other != snapshot(7)
    seven_users = {u["mail"]: u["id"] for u in snapshot(7)[2]["value"]}
    eight_users = {u["mail"]: u["id"] for u in other[2]["value"]}
    assert seven_users["adele.vance@contoso.example"] == eight_users["adele.vance@contoso.example"]


def test_large_tenant_pages_lazily() -> None:
    tenant = SandboxTenant(SandboxConfig.large(devices=100_000, registrations=250_000))
    _, defender = clients(tenant)
    full = defender.get("/api/machines").json()
    assert len(full["value"]) == 10_000 and "$skip=10000" in full["@odata.nextLink"]
    del full

    gc.collect()
    objects_before = len(gc.get_objects())
    # A selective filter scans all 100,000 rows while keeping the JSON small, so this stays fast.
    ids: set[str] = set()
    sizes: list[int] = []
    url: str | None = "/api/machines?$filter=riskScore eq 'High' and osPlatform eq 'Android'&$top=1000"
    while url:
        body = defender.get(url).json()
        ids.update(m["id"] for m in body["value"] if m["riskScore"] == "High")
        sizes.append(len(body["value"]))
        url = body.get("@odata.nextLink")
        del body
    gc.collect()
    assert len(sizes) > 2 and set(sizes[:-1]) == {1000} and 0 < sizes[-1] <= 1000
    assert len(ids) == sum(sizes) and 2_000 < len(ids) < 6_000
    # Nothing the size of the tenant stays behind: rows are made per page and dropped.
    assert len(gc.get_objects()) - objects_before < 5_000 + len(ids)
    assert not tenant.world.machine_overlay

    graph, _ = clients(tenant)
    first = graph.get(REGISTRATIONS).json()
    assert len(first["value"]) == 50 and "@odata.nextLink" in first
    generated = first["value"][-1]
    assert tenant.user(generated["userId"]) is not None
    machine = tenant.machine(generated["azureADDeviceId"]) if generated["azureADDeviceId"] else None
    assert machine is None or machine["aadDeviceId"] == generated["azureADDeviceId"]
    last_page = graph.get("/v1.0/users", params={"$filter": "mail eq 'nobody@contoso.example'"})
    assert last_page.json()["value"] == []
