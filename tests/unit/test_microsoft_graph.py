"""Typed Graph operations against httpx.MockTransport: paths, query options, bodies, parsing."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from bot.microsoft import (
    MDE_CONNECTOR_ID,
    AndroidPolicyDraft,
    AppGroupType,
    AppManagementLevel,
    AssignmentTarget,
    IncompleteOperation,
    PermissionDenied,
    RemediationAction,
    ThreatLevel,
)
from bot.microsoft.bodies import CONNECTOR_WRITABLE_FLAGS
from bot.microsoft.testing import Recorder, harness

CONNECTORS = "/beta/deviceManagement/mobileThreatDefenseConnectors"
POLICIES = "/beta/deviceAppManagement/androidManagedAppProtections"
REAL_EXPORT = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "reference"
    / "real-exports"
    / "android-app-protection-policy.json"
)

CONNECTOR = {
    "@odata.type": "#microsoft.graph.mobileThreatDefenseConnector",
    "id": MDE_CONNECTOR_ID,
    "lastHeartbeatDateTime": "2026-01-02T03:04:05Z",
    "partnerState": "enabled",
    "partnerUnresponsivenessThresholdInDays": 7,
    **{name: False for name in CONNECTOR_WRITABLE_FLAGS},
    "androidEnabled": True,
    "someFutureProperty": {"x": 1},
}


def policy(pid: str = "T_1", **extra: object) -> dict[str, object]:
    return {
        "@odata.type": "#microsoft.graph.androidManagedAppProtection",
        "id": pid,
        "displayName": f"P {pid}",
        "maximumAllowedDeviceThreatLevel": "low",
        "mobileThreatDefenseRemediationAction": "block",
        "targetedAppManagementLevels": "unmanaged,androidEnterprise",
        "appGroupType": "selectedPublicApps",
        "isAssigned": False,
        **extra,
    }


def assignment(kind: str, group: str | None, **target: object) -> dict[str, object]:
    t: dict[str, object] = {"@odata.type": f"#microsoft.graph.{kind}", **target}
    if group:
        t["groupId"] = group
    return {"id": f"a-{group}", "source": "direct", "sourceId": None, "target": t}


# ---- connectors ---------------------------------------------------------------------------------


def test_mde_connector_is_picked_from_the_list_and_absent_means_not_connected():
    other = {"id": "other-partner", "partnerState": "available"}
    rec = Recorder().on(
        "GET",
        CONNECTORS,
        httpx.Response(200, json={"value": [other, CONNECTOR]}),
        httpx.Response(200, json={"value": [other]}),
    )
    graph = harness(rec).clients.graph
    mde = graph.get_mde_connector()
    assert mde is not None and mde.partnerState == "enabled" and mde.androidEnabled is True
    assert mde.allowPartnerToCollectIOSApplicationMetadata is False
    assert mde.lastHeartbeatDateTime is not None and mde.lastHeartbeatDateTime.year == 2026
    assert graph.get_mde_connector() is None


def test_update_connector_reads_changes_and_writes_back_every_boolean():
    path = f"{CONNECTORS}/{MDE_CONNECTOR_ID}"
    updated = {**CONNECTOR, "androidMobileApplicationManagementEnabled": True}
    rec = (
        Recorder()
        .on("GET", path, httpx.Response(200, json=CONNECTOR))
        .on("PATCH", path, httpx.Response(200, json=updated))
    )
    result = harness(rec).clients.graph.update_connector(
        MDE_CONNECTOR_ID, androidMobileApplicationManagementEnabled=True
    )

    assert result.androidMobileApplicationManagementEnabled is True
    (body,) = rec.json_bodies("PATCH", path)
    assert set(body) == set(CONNECTOR_WRITABLE_FLAGS)
    assert body["androidMobileApplicationManagementEnabled"] is True
    assert body["androidEnabled"] is True  # kept as read
    assert "partnerState" not in body and "lastHeartbeatDateTime" not in body


def test_update_connector_refuses_unknown_settings_before_any_write():
    rec = Recorder().on("GET", f"{CONNECTORS}/{MDE_CONNECTOR_ID}", httpx.Response(200, json=CONNECTOR))
    with pytest.raises(ValueError, match="allowPartnerToCollectIosApplicationMetadata"):
        harness(rec).clients.graph.update_connector(
            MDE_CONNECTOR_ID, allowPartnerToCollectIosApplicationMetadata=True
        )
    assert rec.sent("PATCH", f"{CONNECTORS}/{MDE_CONNECTOR_ID}") == []


# ---- policies -----------------------------------------------------------------------------------


def test_policies_are_listed_with_apps_and_assignments_expanded():
    rec = Recorder().on(
        "GET",
        POLICIES,
        httpx.Response(
            200,
            json={
                "value": [
                    policy(
                        "T_1",
                        apps=[
                            {
                                "id": "com.microsoft.teams.android",
                                "mobileAppIdentifier": {
                                    "@odata.type": "#microsoft.graph.androidMobileAppIdentifier",
                                    "packageId": "com.microsoft.teams",
                                },
                            }
                        ],
                        assignments=[assignment("groupAssignmentTarget", "g1")],
                    ),
                    policy("T_2"),
                ]
            },
        ),
    )
    policies = list(harness(rec).clients.graph.iter_android_policies())
    assert rec.requests[0].url.params["$expand"] == "apps,assignments"
    assert [p.id for p in policies] == ["T_1", "T_2"]
    assert policies[0].package_ids == ["com.microsoft.teams"]
    assert policies[0].assignments[0].target.groupId == "g1"
    assert policies[0].management_levels == {"unmanaged", "androidEnterprise"}


@pytest.mark.skipif(
    not REAL_EXPORT.exists(), reason="shared/reference/real-exports is not beside the project"
)
def test_the_real_tenant_export_parses_as_graph_sends_it():
    raw = REAL_EXPORT.read_bytes()  # CRLF line ends, `@odata` annotations, ~100 properties
    pid = json.loads(raw.decode("utf-8-sig"))["id"]
    bom = b"\xef\xbb\xbf"
    with_bom = raw if raw.startswith(bom) else bom + raw
    rec = Recorder().on(
        "GET",
        f"{POLICIES}/{pid}",
        *(
            httpx.Response(200, content=body, headers={"Content-Type": "application/json"})
            for body in (raw, with_bom)
        ),
    )
    graph = harness(rec).clients.graph
    assert graph.get_android_policy(pid) == graph.get_android_policy(pid)
    p = graph.get_android_policy(pid)
    assert p.id == "T_e655f25b-6797-4dfa-9ecb-3c5831519219"
    assert p.maximumAllowedDeviceThreatLevel == "notConfigured"
    assert p.mobileThreatDefenseRemediationAction == "block"
    assert p.targetedAppManagementLevels == "unmanaged" and p.appGroupType == "allMicrosoftApps"
    assert len(p.apps) == 39 and "com.microsoft.office.outlook" in p.package_ids
    assert p.assignments == [] and p.isAssigned is False and p.roleScopeTagIds == ["0"]


def test_create_posts_the_draft_then_attaches_apps_and_returns_the_result():
    created = policy("T_new", targetedAppManagementLevels="unmanaged")
    rec = (
        Recorder()
        .on("POST", POLICIES, httpx.Response(201, json=created))
        .on("POST", f"{POLICIES}/T_new/targetApps", httpx.Response(204))
        .on(
            "GET",
            f"{POLICIES}/T_new",
            httpx.Response(
                200,
                json={
                    **created,
                    "apps": [
                        {
                            "id": "com.microsoft.office.outlook.android",
                            "mobileAppIdentifier": {
                                "@odata.type": "#microsoft.graph.androidMobileAppIdentifier",
                                "packageId": "com.microsoft.office.outlook",
                            },
                        }
                    ],
                },
            ),
        )
    )
    draft = AndroidPolicyDraft(
        displayName="MDE - block high risk",
        maximumAllowedDeviceThreatLevel=ThreatLevel.LOW,
        mobileThreatDefenseRemediationAction=RemediationAction.BLOCK,
        targetedAppManagementLevels=(AppManagementLevel.UNMANAGED,),
        packageIds=("com.microsoft.office.outlook", "com.microsoft.office.outlook"),
    )
    result = harness(rec).clients.graph.create_android_policy(draft)

    assert result.package_ids == ["com.microsoft.office.outlook"]
    (create,) = rec.json_bodies("POST", POLICIES)
    assert create["@odata.type"] == "#microsoft.graph.androidManagedAppProtection"
    assert create["maximumAllowedDeviceThreatLevel"] == "low"
    assert create["targetedAppManagementLevels"] == "unmanaged"
    assert "apps" not in create
    (target,) = rec.json_bodies("POST", f"{POLICIES}/T_new/targetApps")
    assert target == {
        "apps": [
            {
                "mobileAppIdentifier": {
                    "@odata.type": "#microsoft.graph.androidMobileAppIdentifier",
                    "packageId": "com.microsoft.office.outlook",
                }
            }
        ],
        "appGroupType": "selectedPublicApps",
    }


def test_create_that_fails_to_attach_apps_says_the_policy_exists():
    rec = (
        Recorder()
        .on("POST", POLICIES, httpx.Response(201, json=policy("T_new")))
        .on(
            "POST", f"{POLICIES}/T_new/targetApps", httpx.Response(403, json={"error": {"code": "Forbidden"}})
        )
    )
    draft = AndroidPolicyDraft(
        displayName="x",
        maximumAllowedDeviceThreatLevel=ThreatLevel.SECURED,
        packageIds=("com.microsoft.teams",),
    )
    with pytest.raises(IncompleteOperation) as err:
        harness(rec).clients.graph.create_android_policy(draft)
    assert err.value.done == "created policy T_new"
    assert isinstance(err.value.cause, PermissionDenied)
    assert "T_new" in str(err.value)


def test_change_assignments_is_read_modify_write_of_the_whole_set():
    current = [
        assignment(
            "groupAssignmentTarget",
            "keep",
            deviceAndAppManagementAssignmentFilterId="f1",
            deviceAndAppManagementAssignmentFilterType="include",
        ),
        assignment("exclusionGroupAssignmentTarget", "moving"),
        assignment("groupAssignmentTarget", "gone"),
        assignment("allLicensedUsersAssignmentTarget", None),
    ]
    rec = (
        Recorder()
        .on("GET", f"{POLICIES}/T_1/assignments", httpx.Response(200, json={"value": current}))
        .on("POST", f"{POLICIES}/T_1/assign", httpx.Response(204))
    )
    change = harness(rec).clients.graph.change_assignments("T_1", include=["new", "moving"], remove=["gone"])

    assert len(change.before) == 4
    (body,) = rec.json_bodies("POST", f"{POLICIES}/T_1/assign")
    targets = [a["target"] for a in body["assignments"]]
    assert targets == [
        {
            "@odata.type": "#microsoft.graph.groupAssignmentTarget",
            "groupId": "keep",
            "deviceAndAppManagementAssignmentFilterId": "f1",
            "deviceAndAppManagementAssignmentFilterType": "include",
        },
        {"@odata.type": "#microsoft.graph.allLicensedUsersAssignmentTarget"},
        {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "new"},
        {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "moving"},
    ]


def test_replace_assignments_with_nothing_clears_them():
    rec = Recorder().on("POST", f"{POLICIES}/T_1/assign", httpx.Response(204))
    harness(rec).clients.graph.replace_assignments("T_1", [])
    assert rec.json_bodies("POST", f"{POLICIES}/T_1/assign") == [{"assignments": []}]


def test_replace_assignments_refuses_a_group_both_included_and_excluded():
    rec = Recorder()
    with pytest.raises(ValueError, match="both included and excluded"):
        harness(rec).clients.graph.replace_assignments(
            "T_1", [AssignmentTarget.include_group("G"), AssignmentTarget.exclude_group("g")]
        )
    assert rec.requests == []


def test_patch_sends_only_the_changes_and_delete_deletes():
    rec = (
        Recorder()
        .on("PATCH", f"{POLICIES}/T_1", httpx.Response(204))
        .on("DELETE", f"{POLICIES}/T_1", httpx.Response(204))
    )
    graph = harness(rec).clients.graph
    graph.patch_android_policy(
        "T_1",
        {
            "maximumAllowedDeviceThreatLevel": ThreatLevel.MEDIUM,
            "targetedAppManagementLevels": ["androidEnterprise", "mdm"],
        },
    )
    graph.delete_android_policy("T_1")
    assert rec.json_bodies("PATCH", f"{POLICIES}/T_1") == [
        {"maximumAllowedDeviceThreatLevel": "medium", "targetedAppManagementLevels": "mdm,androidEnterprise"}
    ]
    assert len(rec.sent("DELETE", f"{POLICIES}/T_1")) == 1


def test_policy_ids_are_not_treated_as_guids():
    rec = Recorder().on(
        "GET",
        f"{POLICIES}/T_e655f25b-6797-4dfa-9ecb-3c5831519219",
        httpx.Response(200, json=policy("T_e655f25b-6797-4dfa-9ecb-3c5831519219")),
    )
    assert (
        harness(rec)
        .clients.graph.get_android_policy("T_e655f25b-6797-4dfa-9ecb-3c5831519219")
        .id.startswith("T_")
    )


# ---- registrations ------------------------------------------------------------------------------


def test_one_users_registrations_come_from_the_user():
    rec = Recorder().on(
        "GET",
        "/beta/users/u-1/managedAppRegistrations",
        httpx.Response(
            200,
            json={
                "value": [
                    {
                        "@odata.type": "#microsoft.graph.iosManagedAppRegistration",
                        "id": "r1",
                        "userId": "u-1",
                        "appIdentifier": {
                            "@odata.type": "#microsoft.graph.iosMobileAppIdentifier",
                            "bundleId": "com.x",
                        },
                    },
                    {
                        "@odata.type": "#microsoft.graph.androidManagedAppRegistration",
                        "id": "r2",
                        "userId": "u-1",
                        "azureADDeviceId": "aad-1",
                        "flaggedReasons": ["none"],
                        "lastSyncDateTime": "2026-01-01T00:00:00Z",
                    },
                ]
            },
        ),
    )
    regs = list(harness(rec).clients.graph.iter_managed_app_registrations("u-1"))
    assert [(r.id, r.is_android) for r in regs] == [("r1", False), ("r2", True)]
    assert regs[1].azureADDeviceId == "aad-1"


def test_a_malformed_item_is_skipped_not_fatal(caplog):
    rec = Recorder().on(
        "GET",
        "/beta/deviceAppManagement/managedAppRegistrations",
        httpx.Response(200, json={"value": [{"userId": "no id"}, {"id": "ok"}]}),
    )
    assert [r.id for r in harness(rec).clients.graph.iter_managed_app_registrations()] == ["ok"]
    assert "doesn't parse" in caplog.text


# ---- groups and users ---------------------------------------------------------------------------


def test_find_groups_tries_exact_then_prefix_then_search():
    def groups(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        if "$search" in params:
            assert request.headers["ConsistencyLevel"] == "eventual"
            return httpx.Response(200, json={"value": [{"id": "g3", "displayName": "All Sales EMEA"}]})
        return httpx.Response(200, json={"value": []})

    rec = Recorder().on("GET", "/v1.0/groups", groups)
    found = harness(rec).clients.graph.find_groups("Sales 'EMEA'")
    assert [g.id for g in found] == ["g3"]
    filters = [r.url.params.get("$filter") for r in rec.requests]
    assert filters == ["displayName eq 'Sales ''EMEA'''", "startswith(displayName,'Sales ''EMEA''')", None]
    assert rec.requests[2].url.params["$search"] == "\"displayName:Sales 'EMEA'\""
    assert "ConsistencyLevel" not in rec.requests[0].headers


def test_find_groups_stops_at_an_exact_match():
    rec = Recorder().on(
        "GET",
        "/v1.0/groups",
        httpx.Response(
            200,
            json={
                "value": [{"id": "g1", "displayName": "Android users", "groupTypes": ["DynamicMembership"]}]
            },
        ),
    )
    (group,) = harness(rec).clients.graph.find_groups("Android users")
    assert group.is_dynamic and len(rec.requests) == 1


def test_group_member_count_reads_plain_text_with_eventual_consistency():
    rec = Recorder().on(
        "GET",
        "/v1.0/groups/g1/members/$count",
        httpx.Response(200, content=b"\xef\xbb\xbf42", headers={"Content-Type": "text/plain"}),
    )
    assert harness(rec).clients.graph.group_member_count("g1") == 42
    request = rec.requests[0]
    assert request.headers["ConsistencyLevel"] == "eventual" and request.headers["Accept"] == "text/plain"


def test_get_group():
    rec = Recorder().on("GET", "/v1.0/groups/g1", httpx.Response(200, json={"id": "g1", "displayName": "G"}))
    assert harness(rec).clients.graph.get_group("g1").displayName == "G"


def test_get_users_batches_twenty_at_a_time_and_leaves_out_unknown_ids():
    def batch(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert len(body["requests"]) <= 20
        responses = []
        for r in body["requests"]:
            uid = r["url"].split("/")[2].split("?")[0]
            if uid == "u-missing":
                responses.append(
                    {"id": r["id"], "status": 404, "body": {"error": {"code": "Request_ResourceNotFound"}}}
                )
            else:
                responses.append(
                    {
                        "id": r["id"],
                        "status": 200,
                        "body": {
                            "id": uid,
                            "mail": f"{uid}@contoso.com",
                            "userPrincipalName": f"{uid}@contoso.com",
                            "displayName": uid.upper(),
                        },
                    }
                )
        return httpx.Response(200, json={"responses": list(reversed(responses))})

    rec = Recorder().on("POST", "/v1.0/$batch", batch)
    ids = [f"u-{n}" for n in range(44)] + ["u-missing", "u-1"]
    users = harness(rec).clients.graph.get_users(ids)

    assert len(rec.requests) == 3  # 45 distinct ids
    assert len(users) == 44 and "u-missing" not in users
    assert users["u-7"].mail == "u-7@contoso.com"
    first = json.loads(rec.requests[0].content)["requests"][0]
    assert (
        first["method"] == "GET"
        and first["url"] == "/users/u-0?$select=id,displayName,mail,userPrincipalName"
    )


def test_throttled_requests_inside_a_batch_are_sent_again_after_retry_after():
    calls: list[list[str]] = []

    def batch(request: httpx.Request) -> httpx.Response:
        ids = [r["id"] for r in json.loads(request.content)["requests"]]
        calls.append(ids)
        responses = []
        for r in json.loads(request.content)["requests"]:
            uid = r["url"].split("/")[2].split("?")[0]
            if uid == "u-1" and len(calls) == 1:
                responses.append({"id": r["id"], "status": 429, "headers": {"Retry-After": "3"}, "body": {}})
            else:
                responses.append({"id": r["id"], "status": 200, "body": {"id": uid}})
        return httpx.Response(200, json={"responses": responses})

    h = harness(Recorder().on("POST", "/v1.0/$batch", batch))
    users = h.clients.graph.get_users(["u-0", "u-1", "u-2"])
    assert set(users) == {"u-0", "u-1", "u-2"}
    assert calls == [["0", "1", "2"], ["1"]]
    assert h.clock.sleeps == [3.0]


def test_a_forbidden_request_inside_a_batch_names_user_read_all():
    rec = Recorder().on(
        "POST",
        "/v1.0/$batch",
        httpx.Response(
            200,
            json={
                "responses": [
                    {
                        "id": "0",
                        "status": 403,
                        "headers": {},
                        "body": {
                            "error": {
                                "code": "Authorization_RequestDenied",
                                "message": "Insufficient privileges",
                            }
                        },
                    }
                ]
            },
        ),
    )
    with pytest.raises(PermissionDenied, match=r"User\.Read\.All"):
        harness(rec).clients.graph.get_users(["u-0"])


def test_app_group_type_all_microsoft_apps_still_calls_target_apps():
    created = policy("T_all", appGroupType="allMicrosoftApps")
    rec = (
        Recorder()
        .on("POST", POLICIES, httpx.Response(201, json=created))
        .on("POST", f"{POLICIES}/T_all/targetApps", httpx.Response(204))
        .on("GET", f"{POLICIES}/T_all", httpx.Response(200, json=created))
    )
    draft = AndroidPolicyDraft(
        displayName="x",
        maximumAllowedDeviceThreatLevel=ThreatLevel.HIGH,
        appGroupType=AppGroupType.ALL_MICROSOFT_APPS,
    )
    harness(rec).clients.graph.create_android_policy(draft)
    assert rec.json_bodies("POST", f"{POLICIES}/T_all/targetApps") == [
        {"apps": [], "appGroupType": "allMicrosoftApps"}
    ]


def test_a_batch_counts_each_inner_request_against_the_read_budget():
    taken: list[tuple[str, int, bool]] = []

    class RecordingBudget:
        def reserve(self, api: str, *, count: int = 1, write: bool = False) -> float:
            taken.append((api, count, write))
            return 0.0

    rec = Recorder().on("POST", "/v1.0/$batch", httpx.Response(200, json={"responses": []}))
    harness(rec, budget=RecordingBudget()).clients.graph.get_users([f"u{n}" for n in range(25)])
    assert taken == [("graph", 20, False), ("graph", 5, False)]
