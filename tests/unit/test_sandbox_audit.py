"""The sandbox's Intune audit log: every write to a policy or the connector is an auditEvent, by the bot's app
through Graph and by a named admin in the "portal"; the list filters on activityDateTime (an unquoted UTC time),
pages, and shows late events late. The portal edits are also reachable over HTTP (/sandbox-admin/...) and from
the console (`:portal`)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bot.console.portal import portal
from bot.microsoft import AndroidPolicyDraft, RemediationAction, ThreatLevel, build_clients
from bot.microsoft.testing import FakeClock, global_settings, make_access_token
from bot.sandbox import SEED_POLICY_ID, SEED_POLICY_NAME, SandboxConfig, SandboxTenant, serve_sandbox
from bot.sandbox.audit import PORTAL_ADMIN, PORTAL_APP_ID, SANDBOX_APP_ID
from bot.sandbox.portal import PortalError
from bot.sandbox.seed import CAST_USERS

BASE = "http://graph.sandbox.invalid"
MEGAN = next(u for u in CAST_USERS if u.given == "Megan")
HOSTILE = "<!channel> <@U1> & " + "x" * 3000


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 3, 10, 0, tzinfo=UTC))


@pytest.fixture
def tenant(clock: Clock) -> SandboxTenant:
    return SandboxTenant(SandboxConfig(clock=clock, audit_page_size=2))


def graph_of(tenant: SandboxTenant, transport: httpx.BaseTransport | None = None):
    fake = FakeClock()
    clients = build_clients(global_settings(mam_cloud="sandbox"), transport or tenant.transport(), clock=fake,
                            sleep=fake.sleep, rng=random.Random(1))
    return clients.graph


STATIC = "Bearer sandbox-token"  # the bot's sandbox clients send this; the sandbox takes any bearer


def get(tenant: SandboxTenant, path: str) -> httpx.Response:
    return tenant.handle(httpx.Request("GET", BASE + path, headers={"Authorization": STATIC}))


def test_the_bots_writes_carry_its_app_and_what_changed(tenant, clock):
    graph = graph_of(tenant)
    created = graph.create_android_policy(AndroidPolicyDraft(
        displayName="Android - risk", maximumAllowedDeviceThreatLevel=ThreatLevel.LOW,
        mobileThreatDefenseRemediationAction=RemediationAction.BLOCK, packageIds=("com.microsoft.teams",)))
    graph.patch_android_policy(created.id, {"maximumAllowedDeviceThreatLevel": "medium"})

    events = tenant.audit_events
    assert [e["activityType"] for e in events] == ["Create AndroidManagedAppProtection",
                                                   "TargetApps AndroidManagedAppProtection",
                                                   "Patch AndroidManagedAppProtection"]
    assert {e["actor"]["applicationId"] for e in events} == {SANDBOX_APP_ID}
    assert all(e["actor"]["userPrincipalName"] is None and e["actor"]["type"] == "Application" for e in events)
    patch = events[-1]
    assert patch["componentName"] == "ManagedAppProtection" and patch["activityOperationType"] == "Patch"
    assert patch["activityDateTime"].startswith("2026-03-03T10:00:00") and patch["activityDateTime"].endswith("Z")
    resource = patch["resources"][0]
    assert resource["resourceId"] == created.id and resource["displayName"] == "Android - risk"
    assert resource["modifiedProperties"] == [{"@odata.type": "#microsoft.graph.auditProperty",
                                               "displayName": "maximumAllowedDeviceThreatLevel",
                                               "oldValue": "low", "newValue": "medium"}]
    apps = next(p for p in events[1]["resources"][0]["modifiedProperties"] if p["displayName"] == "apps")
    assert apps["oldValue"] == "" and apps["newValue"] == "com.microsoft.teams"  # strings, as Intune's are


def test_a_jwt_names_the_calling_app(tenant):
    token = make_access_token(audience="https://graph.microsoft.com", roles=[], app_id="11111111-2222-3333-4444-"
                              "555555555555")
    response = tenant.handle(httpx.Request(
        "PATCH", f"{BASE}/beta/deviceManagement/mobileThreatDefenseConnectors/fc780465-2017-40d4-a0c5-307022471b92",
        headers={"Authorization": f"Bearer {token}"}, json={"iosEnabled": False}))
    assert response.status_code == 200
    event = tenant.audit_events[-1]
    assert event["actor"]["applicationId"] == "11111111-2222-3333-4444-555555555555"
    assert event["componentName"] == "MobileThreatDefense"
    assert event["resources"][0]["modifiedProperties"] == [{"@odata.type": "#microsoft.graph.auditProperty",
                                                            "displayName": "iosEnabled", "oldValue": "True",
                                                            "newValue": "False"}]


def test_an_admin_in_the_portal_is_named(tenant):
    tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_NAME, maximumAllowedDeviceThreatLevel="high",
                          add_apps=["com.contoso.expenses"], include=["Sales"], remove_groups=["Executives"])

    events = tenant.audit_events
    assert [e["activityType"].split()[0] for e in events] == ["Patch", "TargetApps", "Assign"]
    assert len({e["correlationId"] for e in events}) == 1  # one save in the portal
    actor = events[0]["actor"]
    assert actor["userPrincipalName"] == MEGAN.mail and actor["userId"] == MEGAN.id
    assert actor["applicationId"] == PORTAL_APP_ID and actor["type"] == "ItPro"
    policy = tenant.policy(SEED_POLICY_ID)
    assert policy is not None and policy["maximumAllowedDeviceThreatLevel"] == "high"
    assert "com.contoso.expenses" in {a["mobileAppIdentifier"]["packageId"] for a in policy["apps"]}
    assert tenant.group("Sales")["id"] in {a["target"].get("groupId") for a in policy["assignments"]}  # type: ignore[index]
    assert tenant.group("Executives")["id"] not in {a["target"].get("groupId") for a in policy["assignments"]}  # type: ignore[index]

    connector = tenant.set_connector_as("", androidMobileApplicationManagementEnabled=True)
    assert connector["androidMobileApplicationManagementEnabled"] is True
    assert tenant.audit_events[-1]["actor"]["userPrincipalName"] == PORTAL_ADMIN


def test_a_portal_edit_intune_refuses_changes_nothing(tenant):
    with pytest.raises(PortalError, match="Cannot convert the literal 'extreme'"):
        tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, maximumAllowedDeviceThreatLevel="extreme")
    with pytest.raises(PortalError, match="no policy"):
        tenant.edit_policy_as(MEGAN.mail, "nope", description="x")
    with pytest.raises(PortalError, match="not a setting"):
        tenant.set_connector_as(MEGAN.mail, partnerState="enabled")
    assert tenant.audit_events == []


def test_created_and_deleted_with_hostile_names(tenant):
    created = tenant.create_policy_as(HOSTILE[:200], HOSTILE[:256], maximumAllowedDeviceThreatLevel="low")
    tenant.delete_policy_as("", created["id"])
    first, second = tenant.audit_events
    assert first["activityOperationType"] == "Create" and first["actor"]["userPrincipalName"] == HOSTILE[:200]
    assert second["activityOperationType"] == "Delete" and second["resources"][0]["displayName"] == HOSTILE[:256]


def test_the_list_filters_on_an_unquoted_utc_time_and_pages(tenant, clock):
    for level in ("low", "medium", "high", "secured", "low"):
        clock.now += timedelta(minutes=1)
        tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, maximumAllowedDeviceThreatLevel=level)
    since = "2026-03-03T10:02:30Z"
    page = get(tenant, f"/v1.0/deviceManagement/auditEvents?$filter=activityDateTime ge {since}").json()
    assert len(page["value"]) == 2 and "@odata.nextLink" in page  # two a page
    assert "auditActorType" not in page["value"][0]["actor"]  # v1.0 shape
    seen = list(page["value"])
    while "@odata.nextLink" in page:
        link = urlsplit(page["@odata.nextLink"])
        page = get(tenant, f"{link.path}?{link.query}").json()
        seen += page["value"]
    assert [e["activityDateTime"][:16] for e in seen] == ["2026-03-03T10:03", "2026-03-03T10:04", "2026-03-03T10:05"]
    beta = get(tenant, "/beta/deviceManagement/auditEvents?$top=10").json()
    assert len(beta["value"]) == 5 and beta["value"][0]["actor"]["auditActorType"] == "ItPro"
    one = get(tenant, f"/beta/deviceManagement/auditEvents/{seen[0]['id']}").json()
    assert one["id"] == seen[0]["id"]


@pytest.mark.parametrize("literal", ["'2026-03-03T10:00:00Z'", "2026-03-03T10:00:00"])
def test_a_quoted_or_zoneless_time_is_refused(tenant, literal):
    response = get(tenant, f"/v1.0/deviceManagement/auditEvents?$filter=activityDateTime ge {literal}")
    assert response.status_code == 400


def test_components_are_filtered_by_the_caller(tenant):
    response = get(tenant, "/v1.0/deviceManagement/auditEvents?$filter=componentName eq 'ManagedAppProtection'")
    assert response.status_code == 400 and "componentName" in response.json()["error"]["message"]


def test_late_events_show_late(clock):
    tenant = SandboxTenant(SandboxConfig(clock=clock, audit_delay=timedelta(minutes=20)))
    tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="late")
    tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="at once", audit_delay=timedelta(0))
    listed = get(tenant, "/v1.0/deviceManagement/auditEvents").json()["value"]
    assert [e["resources"][0]["modifiedProperties"][0]["newValue"] for e in listed] == ["at once"]
    clock.now += timedelta(minutes=21)
    assert len(get(tenant, "/v1.0/deviceManagement/auditEvents").json()["value"]) == 2

    tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="held")
    assert tenant.deliver_late_audit_events() == 1
    assert len(get(tenant, "/v1.0/deviceManagement/auditEvents").json()["value"]) == 3


def test_the_graph_client_sends_utc_and_follows_pages(tenant, clock):
    for level in ("low", "medium", "high"):
        tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, maximumAllowedDeviceThreatLevel=level)
    sent: list[httpx.Request] = []

    def spy(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return tenant.handle(request)

    graph = graph_of(tenant, httpx.MockTransport(spy))
    local = datetime(2026, 3, 3, 11, 59, 30, tzinfo=timezone(timedelta(hours=2)))  # 09:59:30 UTC
    events = list(graph.iter_audit_events(local))

    assert len(events) == 3
    calls = [r for r in sent if r.url.path.endswith("/auditEvents")]
    assert len(calls) == 2  # two pages
    assert calls[0].url.path == "/v1.0/deviceManagement/auditEvents"
    assert parse_qs(calls[0].url.query.decode())["$filter"] == ["activityDateTime ge 2026-03-03T09:59:30Z"]
    with pytest.raises(ValueError, match="time zone"):
        graph.iter_audit_events(datetime(2026, 3, 3, 10, 0))  # naive on purpose


def test_refused_without_the_permission():
    tenant = SandboxTenant(SandboxConfig(forbid={"/deviceManagement/auditEvents"}))
    response = get(tenant, "/v1.0/deviceManagement/auditEvents")
    assert response.status_code == 403 and "DeviceManagementApps.Read.All" in response.json()["error"]["message"]


def test_the_served_sandbox_takes_portal_edits_on_its_admin_routes():
    with serve_sandbox(SandboxTenant(SandboxConfig(audit_delay=timedelta(hours=1)))) as server:
        with httpx.Client(base_url=server.url) as http:
            edited = http.post("/sandbox-admin/portal/policy", json={
                "admin": MEGAN.mail, "policy": SEED_POLICY_NAME,
                "settings": {"maximumAllowedDeviceThreatLevel": "medium"}, "include": ["Sales"]})
            assert edited.status_code == 200, edited.text
            assert edited.json()["policy"]["maximumAllowedDeviceThreatLevel"] == "medium"
            off = http.post("/sandbox-admin/portal/connector",
                            json={"settings": {"androidMobileApplicationManagementEnabled": False}})
            assert off.status_code == 200
            assert http.post("/sandbox-admin/audit/deliver").json() == {"delivered": 3}
            assert http.post("/sandbox-admin/portal/policy", json={"policy": "nope"}).status_code == 400
            assert http.get("/sandbox-admin/portal/policy").status_code == 405
            assert http.post("/sandbox-admin/elsewhere").status_code == 404
        actors = [e["actor"]["userPrincipalName"] for e in server.tenant.audit_events]
        assert actors == [MEGAN.mail, MEGAN.mail, PORTAL_ADMIN]


def test_the_console_portal_command(tenant):
    said = portal(tenant, f'policy "{SEED_POLICY_NAME}" maximumAllowedDeviceThreatLevel=high '
                          f'+app=com.contoso.expenses +group=Sales --as {MEGAN.mail} --late 30')
    assert "was changed in the Intune portal" in said
    assert tenant.policy(SEED_POLICY_ID)["maximumAllowedDeviceThreatLevel"] == "high"  # type: ignore[index]
    assert {e["actor"]["userPrincipalName"] for e in tenant.audit_events} == {MEGAN.mail}
    assert get(tenant, "/v1.0/deviceManagement/auditEvents").json()["value"] == []  # late
    assert "3 late audit events arrived" in portal(tenant, "deliver")
    assert "was changed" in portal(tenant, "connector androidMobileApplicationManagementEnabled=false")
    assert "not changed" in portal(tenant, "policy nope description=x")
    assert "not changed" in portal(tenant, 'policy "Android BYOD App Protection" justaword')
    assert portal(tenant, "").startswith("(usage")
    assert "other tenant" in portal(None, "deliver")
    assert json.dumps(tenant.audit_events)  # JSON all the way
