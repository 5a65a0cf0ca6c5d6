"""Editing and deleting a policy through change requests (workflows/policy_edit.py), against the sandbox tenant:
plan() says exactly what will be written, apply() writes only what is still missing and stops, writing nothing,
on a setting changed since approval."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.errors import UserError
from bot.microsoft import build_clients
from bot.microsoft.errors import NotFound
from bot.microsoft.models import AndroidPolicy, AndroidPolicyDraft, Group, ThreatLevel
from bot.sandbox import SEED_POLICY_ID, SandboxConfig, SandboxTenant
from bot.settings import load_settings
from bot.store import AuditLog, create_store
from workflows.changes import ChangeService, State
from workflows.policy_edit import (
    DELETE,
    EDIT,
    GROUPS_COUNTED,
    SETTABLE,
    PolicyDelete,
    PolicyEdit,
    coverage,
    read_edit,
)

REQUESTER, APPROVER = "UADMIN001", "UAPPROV01"
WHY = "block above low on the BYOD baseline (CHG0042)"
POLICIES = "/beta/deviceAppManagement/androidManagedAppProtections"
SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "data" / "graph-schema.json").read_text("utf-8"))
OUTLOOK, TEAMS, CUSTOM = "com.microsoft.office.outlook", "com.microsoft.teams", "com.contoso.expenses"


class Notifier:
    def filed(self, request: Any) -> None: ...

    def changed(self, request: Any) -> None: ...

    def reminded(self, request: Any) -> None: ...


class Harness:
    """The change service with both kinds, over a sandbox tenant whose every request is recorded."""

    def __init__(self, tmp_path: Any) -> None:
        self.tenant = SandboxTenant(SandboxConfig())
        self.sent: list[httpx.Request] = []

        def handle(request: httpx.Request) -> httpx.Response:
            self.sent.append(request)
            return self.tenant.handle(request)

        settings = load_settings(mam_cloud="sandbox", mam_graph_url=None, mam_defender_url=None)
        self.graph = build_clients(settings, transport=httpx.MockTransport(handle)).graph
        store = create_store(f"sqlite:///{tmp_path}/changes.db")
        self.edit, self.delete = PolicyEdit(self.graph), PolicyDelete(self.graph)
        self.service = ChangeService(store, AuditLog(store), {EDIT: self.edit, DELETE: self.delete}, Notifier(),
                                     is_approver=lambda u: u == APPROVER, now=lambda: datetime.now(UTC),
                                     expiry=timedelta(hours=24))

    def file(self, kind: str, change: dict[str, Any]) -> Any:
        return self.service.file(kind, change, requester=REQUESTER, justification=WHY)

    def approve(self, request: Any) -> Any:
        self.service.approve(request.id, APPROVER)
        return self.service.require(request.id)

    def writes(self) -> list[tuple[str, str, Any]]:
        return [(r.method, r.url.path, json.loads(r.content) if r.content else None) for r in self.sent
                if r.method in ("POST", "PATCH", "DELETE")]

    def policy(self, policy_id: str = SEED_POLICY_ID) -> dict[str, Any]:
        found = self.tenant.policy(policy_id)
        assert found is not None
        return found

    def add_policy(self, name: str, packages: tuple[str, ...] = (OUTLOOK, TEAMS)) -> str:
        return self.graph.create_android_policy(AndroidPolicyDraft(
            displayName=name, maximumAllowedDeviceThreatLevel=ThreatLevel.LOW, packageIds=packages)).id


@pytest.fixture
def h(tmp_path: Any) -> Harness:
    return Harness(tmp_path)


def threat(before: str = "notConfigured", after: str = "low") -> dict[str, Any]:
    return {"policy_id": SEED_POLICY_ID,
            "settings": {"maximumAllowedDeviceThreatLevel": {"before": before, "after": after}}}


def packages(policy: dict[str, Any]) -> list[str]:
    return sorted(a["mobileAppIdentifier"]["packageId"] for a in policy["apps"])


class Run:
    """What apply() is given to fence its writes: records them instead."""

    def __init__(self, earlier: dict[str, Any] | None = None) -> None:
        self.intents: list[dict[str, Any]] = []
        self.earlier_intent = earlier or {}

    def intend(self, what: dict[str, Any]) -> None:
        self.intents.append(dict(what))


# ---- the payload ----------------------------------------------------------------------------------------


def test_every_settable_name_is_a_property_of_the_policy_and_the_draft():
    properties = SCHEMA["beta"]["types"]["androidManagedAppProtection"]["properties"]
    assert set(SETTABLE) <= set(properties)
    assert set(SETTABLE) <= set(AndroidPolicyDraft.model_fields) & set(AndroidPolicy.model_fields)


@pytest.mark.parametrize(("change", "words"), [
    ({"policy_id": SEED_POLICY_ID, "settings": {"pinRequired": {"before": False, "after": True}}},
     "can't change pinRequired"),
    ({"policy_id": SEED_POLICY_ID, "settings": {"<!channel>": {"before": 1, "after": 2}}},
     "can't change &lt;!channel&gt;"),
    ({"policy_id": SEED_POLICY_ID, "settings": {"maximumAllowedDeviceThreatLevel": {"after": "low"}}},
     "needs its before and after"),
    (threat(after="extreme"), "Max allowed device threat level: 'extreme' is not a device threat level"),
    ({"policy_id": SEED_POLICY_ID, "settings": {"targetedAppManagementLevels": {
        "before": "unmanaged", "after": "unmanaged,deviceAdministrator"}}}, "is not a device management type"),
    ({"policy_id": SEED_POLICY_ID, "settings": {}, "apps": {"before": [], "after": ["not a package"]}},
     "not an Android package id"),
    ({"policy_id": SEED_POLICY_ID, "settings": {}, "apps": {"before": [], "after": ["com.1contoso.app"]}},
     "not an Android package id"),
    ({"policy_id": SEED_POLICY_ID, "setting": {}}, "not setting"),
    ({"settings": {}}, "no policy id"),
])
def test_the_payload_is_checked_and_refused_in_words(change, words):
    with pytest.raises(UserError, match=re.escape(words)):
        read_edit(change)


def test_a_setting_whose_before_is_its_after_is_no_change():
    edit = read_edit({"policy_id": "T_1", "settings": {
        "targetedAppManagementLevels": {"before": "mdm,unmanaged", "after": ["unmanaged", "mdm"]},
        "description": {"before": None, "after": ""},
        "maximumAllowedDeviceThreatLevel": {"before": "notConfigured", "after": "low"}}})
    assert list(edit.settings) == ["maximumAllowedDeviceThreatLevel"] and edit.apps is None


# ---- edit: plan -----------------------------------------------------------------------------------------


def test_a_threat_level_edit_plans_one_patch_with_one_property(h: Harness):
    request = h.file(EDIT, threat())
    calls = json.loads(request.plan)
    assert calls == [{"method": "PATCH", "path": f"{POLICIES}/{SEED_POLICY_ID}",
                      "body": {"maximumAllowedDeviceThreatLevel": "low"}}]
    snapshot = json.loads(request.snapshot)
    assert snapshot["_before"] == "Max allowed device threat level: not configured"
    assert snapshot["_after"] == "Max allowed device threat level: low"
    assert "threat level not configured → low" in request.title
    assert request.target_key == f"policy:{SEED_POLICY_ID.lower()}"
    assert json.loads(request.change)["settings"] == threat()["settings"]
    assert h.writes() == []  # planning writes nothing


def test_plan_refuses_a_setting_that_is_not_what_the_requester_saw(h: Harness):
    with pytest.raises(UserError, match=r"is now not configured \(the request saw medium"):
        h.file(EDIT, threat(before="medium"))


def test_plan_leaves_out_what_is_already_in_place_and_refuses_an_empty_change(h: Harness):
    change = threat()
    change["settings"]["mobileThreatDefenseRemediationAction"] = {"before": "wipe", "after": "block"}
    request = h.file(EDIT, change)  # the action is already block: only the level is asked for
    assert json.loads(request.plan)[0]["body"] == {"maximumAllowedDeviceThreatLevel": "low"}
    with pytest.raises(UserError, match="already has these settings"):
        h.file(EDIT, {"policy_id": SEED_POLICY_ID, "settings": {
            "mobileThreatDefenseRemediationAction": {"before": "wipe", "after": "block"}}})


def test_a_wipe_says_so_first(h: Harness):
    change = threat()
    change["settings"]["mobileThreatDefenseRemediationAction"] = {"before": "block", "after": "wipe"}
    assert h.file(EDIT, change).title.startswith("WIPES work app data above low: ")


def test_a_rename_to_a_taken_name_is_refused(h: Harness):
    h.add_policy("Android Corporate")
    with pytest.raises(UserError, match="Another Android app protection policy is called 'Android Corporate'"):
        h.file(EDIT, {"policy_id": SEED_POLICY_ID, "settings": {"displayName": {
            "before": "Android BYOD App Protection", "after": "android  CORPORATE"}}})


def test_a_gone_policy_is_refused_when_asked(h: Harness):
    with pytest.raises(UserError, match="no Android app protection policy T_gone"):
        h.file(EDIT, {"policy_id": "T_gone", "settings": threat()["settings"]})


# ---- edit: apply ----------------------------------------------------------------------------------------


def test_the_threat_level_of_a_policy_with_39_apps_and_groups_changes_alone(h: Harness):
    before = h.policy()
    assert len(before["apps"]) == 39 and len(before["assignments"]) == 2
    request = h.file(EDIT, threat())
    h.sent.clear()
    done = h.approve(request)
    assert done.state == State.SUCCEEDED, done.error
    assert h.writes() == [("PATCH", f"{POLICIES}/{SEED_POLICY_ID}", {"maximumAllowedDeviceThreatLevel": "low"})]
    after = h.policy()
    assert after["maximumAllowedDeviceThreatLevel"] == "low"
    assert after["apps"] == before["apps"] and after["assignments"] == before["assignments"]
    assert after["appGroupType"] == "allMicrosoftApps"
    assert "Max allowed device threat level: low" in done.result


def test_adding_a_custom_app_posts_the_whole_list_and_patches_nothing(h: Harness):
    policy_id = h.add_policy("Sales phones")
    request = h.file(EDIT, {"policy_id": policy_id, "settings": {},
                            "apps": {"before": [OUTLOOK, TEAMS], "after": [OUTLOOK, TEAMS, CUSTOM]}})
    [call] = json.loads(request.plan)
    assert call["path"].endswith(f"{policy_id}/targetApps") and call["body"]["appGroupType"] == "selectedPublicApps"
    assert sorted(a["mobileAppIdentifier"]["packageId"] for a in call["body"]["apps"]) == sorted([OUTLOOK, TEAMS,
                                                                                                 CUSTOM])
    snapshot = json.loads(request.snapshot)
    assert "add com.contoso.expenses" in snapshot["_after"] and "Outlook, Teams" in snapshot["_before"]
    h.sent.clear()
    assert h.approve(request).state == State.SUCCEEDED
    assert [w[:2] for w in h.writes()] == [("POST", f"{POLICIES}/{policy_id}/targetApps")]
    assert packages(h.policy(policy_id)) == sorted([OUTLOOK, TEAMS, CUSTOM])


def test_from_an_app_set_to_chosen_apps_and_back(h: Harness):
    seed_apps = packages(h.policy())
    request = h.file(EDIT, {"policy_id": SEED_POLICY_ID, "settings": {
        "appGroupType": {"before": "allMicrosoftApps", "after": "selectedPublicApps"}},
        "apps": {"before": seed_apps, "after": [OUTLOOK, CUSTOM]}})
    assert [c["path"].rsplit("/", 1)[-1] for c in json.loads(request.plan)] == ["targetApps"]
    assert h.approve(request).state == State.SUCCEEDED
    policy = h.policy()
    assert policy["appGroupType"] == "selectedPublicApps" and packages(policy) == sorted([OUTLOOK, CUSTOM])

    back = h.file(EDIT, {"policy_id": SEED_POLICY_ID, "settings": {
        "appGroupType": {"before": "selectedPublicApps", "after": "allCoreMicrosoftApps"}}})
    assert json.loads(back.plan)[0]["body"] == {"apps": [], "appGroupType": "allCoreMicrosoftApps"}
    assert h.approve(back).state == State.SUCCEEDED
    assert h.policy()["appGroupType"] == "allCoreMicrosoftApps"


def test_a_revert_to_an_app_set_leaves_the_list_to_intune(h: Harness):
    """As drift detection files it after someone picked apps in the portal: the group goes back, Intune fills it."""
    seed_apps = packages(h.policy())
    h.graph.set_target_apps(SEED_POLICY_ID, [OUTLOOK], "selectedPublicApps")
    request = h.file(EDIT, {"policy_id": SEED_POLICY_ID, "settings": {
        "appGroupType": {"before": "selectedPublicApps", "after": "allMicrosoftApps"}},
        "apps": {"before": [OUTLOOK], "after": seed_apps}})
    assert json.loads(request.plan) == [{"method": "POST", "path": f"{POLICIES}/{SEED_POLICY_ID}/targetApps",
                                         "body": {"apps": [], "appGroupType": "allMicrosoftApps"}}]
    assert "apps" not in json.loads(request.change)
    assert h.approve(request).state == State.SUCCEEDED
    assert packages(h.policy()) == seed_apps


def test_apps_can_not_be_picked_under_an_app_set(h: Harness):
    with pytest.raises(UserError, match="whose apps Intune chooses"):
        h.file(EDIT, {"policy_id": SEED_POLICY_ID, "settings": {},
                      "apps": {"before": packages(h.policy()), "after": [OUTLOOK]}})


def test_a_setting_changed_since_approval_stops_the_request_and_writes_nothing(h: Harness):
    request = h.file(EDIT, threat())
    h.tenant.policies_store.update(SEED_POLICY_ID, {"maximumAllowedDeviceThreatLevel": "high"}, True)
    h.sent.clear()
    done = h.approve(request)
    assert done.state == State.FAILED
    assert "Changed since approval" in done.error
    assert "Max allowed device threat level is now high (the request saw not configured, to become low)" in done.error
    assert h.writes() == [] and h.policy()["maximumAllowedDeviceThreatLevel"] == "high"


def test_apps_changed_since_approval_stop_it_too(h: Harness):
    policy_id = h.add_policy("Sales phones")
    request = h.file(EDIT, {"policy_id": policy_id, "settings": {},
                            "apps": {"before": [OUTLOOK, TEAMS], "after": [OUTLOOK]}})
    h.graph.set_target_apps(policy_id, [OUTLOOK, TEAMS, CUSTOM], "selectedPublicApps")
    done = h.approve(request)
    assert done.state == State.FAILED and "the apps are now Outlook, Teams, com.contoso.expenses" in done.error
    assert packages(h.policy(policy_id)) == sorted([OUTLOOK, TEAMS, CUSTOM])


def test_what_is_already_in_place_is_left_and_the_rest_written(h: Harness):
    change = threat()
    change["settings"]["targetedAppManagementLevels"] = {"before": "unmanaged", "after": "unmanaged,mdm"}
    request = h.file(EDIT, change)
    assert json.loads(request.plan)[0]["body"] == {"maximumAllowedDeviceThreatLevel": "low",
                                                   "targetedAppManagementLevels": "unmanaged,mdm"}
    h.tenant.policies_store.update(SEED_POLICY_ID, {"targetedAppManagementLevels": "mdm,unmanaged"}, True)
    h.sent.clear()
    done = h.approve(request)
    assert done.state == State.SUCCEEDED
    assert h.writes() == [("PATCH", f"{POLICIES}/{SEED_POLICY_ID}", {"maximumAllowedDeviceThreatLevel": "low"})]
    assert "Device types was already" in done.result


def test_apply_again_writes_nothing(h: Harness):
    change = json.loads(h.file(EDIT, threat()).change)
    first, second = Run(), Run()
    assert h.edit.apply(change, {}, first).applied  # type: ignore[arg-type]
    h.sent.clear()
    again = h.edit.apply(change, {}, second)  # type: ignore[arg-type]
    assert not again.applied and "no change made" in again.summary
    assert h.writes() == [] and second.intents == []
    assert first.intents == [{"patch": {"maximumAllowedDeviceThreatLevel": "low"}, "policy": SEED_POLICY_ID}]


def test_a_graph_failure_midway_says_what_was_written(h: Harness, monkeypatch: pytest.MonkeyPatch):
    from bot.microsoft.errors import MicrosoftError

    seed_apps = packages(h.policy())
    change = json.loads(h.file(EDIT, {"policy_id": SEED_POLICY_ID, "settings": {
        **threat()["settings"], "appGroupType": {"before": "allMicrosoftApps", "after": "selectedPublicApps"}},
        "apps": {"before": seed_apps, "after": [OUTLOOK]}}).change)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise MicrosoftError("Graph is down")

    monkeypatch.setattr(h.graph, "set_target_apps", fail)
    with pytest.raises(UserError, match=r"It had written: Max allowed device threat level: low\. Retry writes"):
        h.edit.apply(change, {}, Run())  # type: ignore[arg-type]
    monkeypatch.undo()
    h.sent.clear()
    assert h.edit.apply(change, {}, Run()).applied  # type: ignore[arg-type]
    assert [w[1].rsplit("/", 1)[-1] for w in h.writes()] == ["targetApps"]  # the PATCH is in place already


# ---- delete ---------------------------------------------------------------------------------------------


def test_delete_card_says_who_is_covered_and_apply_deletes_once(h: Harness):
    request = h.file(DELETE, {"policy_id": SEED_POLICY_ID})
    assert json.loads(request.plan) == [{"method": "DELETE", "path": f"{POLICIES}/{SEED_POLICY_ID}", "body": None}]
    snapshot = json.loads(request.snapshot)
    members = h.graph.group_member_count(str(h.tenant.group("All Android Users")["id"]))
    assert f"includes All Android Users ({members:,} members)" in snapshot["_before"]
    assert "excludes Executives" in snapshot["_before"]
    assert f"({members:,} direct members in its included groups)" in snapshot["_before"]
    assert "lose this protection" in snapshot["_after"] and "all Microsoft apps (39 apps)" in snapshot["_after"]
    assert request.title.startswith("DELETE Android app protection policy 'Android BYOD App Protection'")
    done = h.approve(request)
    assert done.state == State.SUCCEEDED and h.tenant.policy(SEED_POLICY_ID) is None
    again = h.delete.apply(json.loads(request.change), {}, Run())  # type: ignore[arg-type]
    assert not again.applied and "already gone" in again.summary
    resumed = h.delete.apply(json.loads(request.change), {}, Run({"delete": SEED_POLICY_ID}))  # type: ignore[arg-type]
    assert resumed.applied and "earlier run" in resumed.summary


def test_delete_of_a_policy_gone_before_approval_is_a_recorded_no_op(h: Harness):
    request = h.file(DELETE, {"policy_id": SEED_POLICY_ID})
    h.tenant.policies_store.delete(SEED_POLICY_ID)
    done = h.approve(request)
    assert done.state == State.SUCCEEDED and "already gone: nothing to delete" in done.result


class ManyGroups:
    """A policy assigned to many groups: member counts stop at the cap, and the card says "at least"."""

    def __init__(self, groups: int) -> None:
        self.counted = 0
        self.groups = groups

    def get_group(self, group_id: str) -> Group:
        if group_id == "gone":
            raise NotFound("no such group")
        return Group(id=group_id, displayName=f"Group {group_id}")

    def group_member_count(self, group_id: str) -> int:
        self.counted += 1
        return 10


def test_coverage_counts_a_few_groups_and_says_at_least_beyond():
    graph = ManyGroups(15)
    policy = AndroidPolicy.model_validate({"id": "T_1", "displayName": "p", "assignments": [
        {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": f"g{i}"}} for i in range(15)
    ] + [{"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "gone"}}]})
    covered = coverage(graph, policy)  # type: ignore[arg-type]
    assert graph.counted == GROUPS_COUNTED
    text = covered.text()
    assert text.startswith("covers now: includes Group g0 (10 members)")
    assert text.endswith(f"(at least {GROUPS_COUNTED * 10} direct members in its included groups)")
    assert "includes Group g0 (10 members)" in text and "includes Group g14 (not counted)" in text
    assert "group gone (deleted: reaches nobody)" in text
    nobody = AndroidPolicy.model_validate({"id": "T_2", "displayName": "q"})
    assert coverage(graph, nobody).text() == "it is assigned to no group, so it covers nobody now"  # type: ignore[arg-type]
