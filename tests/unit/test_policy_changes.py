"""Creating a policy and changing its groups through change requests, against the sandbox tenant."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bot.errors import UserError
from bot.microsoft import build_clients
from bot.sandbox import SEED_POLICY_ID, SandboxConfig, SandboxTenant
from bot.settings import load_settings
from bot.store import AuditLog, create_store
from workflows.changes import ChangeService, State
from workflows.policy_changes import ASSIGN, CREATE, PolicyAssignments, PolicyCreate

REQUESTER, APPROVER = "UADMIN001", "UAPPROV01"
WHY = "pilot MAM threat signals (CHG0042)"


class Notifier:
    def filed(self, request: Any) -> None: ...

    def changed(self, request: Any) -> None: ...

    def reminded(self, request: Any) -> None: ...


class Harness:
    def __init__(self, tmp_path: Any, config: SandboxConfig | None = None) -> None:
        self.tenant = SandboxTenant(config or SandboxConfig())
        settings = load_settings(mam_cloud="sandbox", mam_graph_url=None, mam_defender_url=None)
        self.graph = build_clients(settings, transport=self.tenant.transport()).graph
        store = create_store(f"sqlite:///{tmp_path}/changes.db")
        self.now = self.tenant_clock
        self.service = ChangeService(
            store, AuditLog(store), {CREATE: PolicyCreate(self.graph, self.now), ASSIGN: PolicyAssignments(self.graph)},
            Notifier(), is_approver=lambda u: u == APPROVER, now=self.now, expiry=timedelta(hours=24))

    def tenant_clock(self) -> Any:
        from datetime import UTC, datetime

        return datetime.now(UTC)

    def group_id(self, name: str) -> str:
        group = self.tenant.group(name)
        assert group is not None
        return str(group["id"])

    def run(self, kind: str, change: dict[str, Any]) -> Any:
        request = self.service.file(kind, change, requester=REQUESTER, justification=WHY)
        assert request.id is not None
        self.service.approve(request.id, APPROVER)
        return self.service.require(request.id)

    def policy_named(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.tenant.policies if p["displayName"] == name), None)


def draft(name: str = "Android MAM - Defender block above low", **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "displayName": name,
        "description": "Blocks managed apps when Defender reports a threat above low",
        "maximumAllowedDeviceThreatLevel": "low",
        "mobileThreatDefenseRemediationAction": "block",
        "targetedAppManagementLevels": ["unmanaged"],
        "appGroupType": "selectedPublicApps",
        "packageIds": ["com.microsoft.office.outlook", "com.microsoft.teams"],
    }
    values.update(overrides)
    return values


@pytest.fixture
def h(tmp_path: Any) -> Harness:
    return Harness(tmp_path)


def test_create_with_apps_and_groups(h: Harness):
    pilot, execs = h.group_id("MAM Pilot"), h.group_id("Executives")
    request = h.run(CREATE, {"draft": draft(), "include": [pilot], "exclude": [execs]})
    assert request.state == State.SUCCEEDED, request.error
    policy = h.policy_named("Android MAM - Defender block above low")
    assert policy is not None and policy["id"].startswith("T_")
    assert policy["maximumAllowedDeviceThreatLevel"] == "low"
    assert policy["mobileThreatDefenseRemediationAction"] == "block"
    assert policy["targetedAppManagementLevels"] == "unmanaged"
    assert sorted(a["mobileAppIdentifier"]["packageId"] for a in policy["apps"]) == [
        "com.microsoft.office.outlook", "com.microsoft.teams"]
    targets = {(a["target"]["@odata.type"], a["target"]["groupId"]) for a in policy["assignments"]}
    assert targets == {("#microsoft.graph.groupAssignmentTarget", pilot),
                       ("#microsoft.graph.exclusionGroupAssignmentTarget", execs)}


def test_all_microsoft_apps_for_every_device_type(h: Harness):
    change = {"draft": draft("All apps, wipe on high", maximumAllowedDeviceThreatLevel="medium",
                             mobileThreatDefenseRemediationAction="wipe", targetedAppManagementLevels=["unspecified"],
                             appGroupType="allMicrosoftApps", packageIds=[])}
    assert h.run(CREATE, change).state == State.SUCCEEDED
    policy = h.policy_named("All apps, wipe on high")
    assert policy["appGroupType"] == "allMicrosoftApps" and len(policy["apps"]) > 10
    assert policy["mobileThreatDefenseRemediationAction"] == "wipe"


def test_a_taken_name_is_refused_when_asked(h: Harness):
    with pytest.raises(UserError, match="already exists"):
        h.service.file(CREATE, {"draft": draft("android byod app protection")}, requester=REQUESTER,
                       justification=WHY)


def test_the_card_plan_shows_create_target_apps_and_assign_bodies(h: Harness):
    request = h.service.file(CREATE, {"draft": draft(), "include": [h.group_id("MAM Pilot")]},
                             requester=REQUESTER, justification=WHY)
    import json

    calls = json.loads(request.plan)
    assert [c["path"].rsplit("/", 1)[-1] for c in calls] == ["androidManagedAppProtections", "targetApps", "assign"]
    assert calls[0]["body"]["@odata.type"] == "#microsoft.graph.androidManagedAppProtection"
    assert calls[2]["body"]["assignments"][0]["target"]["groupId"] == h.group_id("MAM Pilot")


def test_a_failing_later_step_removes_the_new_policy_and_retry_completes(tmp_path: Any):
    # a prefix rule: with the trailing slash it matches the calls on the new policy, not the create
    h = Harness(tmp_path, SandboxConfig(fail={"POST /beta/deviceAppManagement/androidManagedAppProtections/": [400]}))
    request = h.run(CREATE, {"draft": draft()})
    assert request.state == State.FAILED
    assert "deleted again: nothing is left in the tenant" in request.error
    assert h.policy_named("Android MAM - Defender block above low") is None
    assert request.id is not None
    assert h.service.retry(request.id, REQUESTER).ok
    assert h.service.require(request.id).state == State.SUCCEEDED
    assert h.policy_named("Android MAM - Defender block above low") is not None


def test_a_policy_left_by_an_earlier_attempt_is_completed_not_created_twice(h: Harness):
    from bot.microsoft.models import AndroidPolicyDraft

    request = h.service.file(CREATE, {"draft": draft(), "include": [h.group_id("MAM Pilot")]},
                             requester=REQUESTER, justification=WHY)
    # as if a crashed attempt had created the policy and died before targetApps and assign
    h.graph.create_android_policy(AndroidPolicyDraft.model_validate(
        {**draft(), "packageIds": [], "appGroupType": "selectedPublicApps"}))
    assert request.id is not None
    h.service.approve(request.id, APPROVER)
    done = h.service.require(request.id)
    assert done.state == State.SUCCEEDED and "earlier attempt" in done.result
    same_name = [p for p in h.tenant.policies if p["displayName"] == "Android MAM - Defender block above low"]
    assert len(same_name) == 1 and len(same_name[0]["apps"]) == 2 and len(same_name[0]["assignments"]) == 1


def test_adding_a_group_keeps_the_existing_ones(h: Harness):
    pilot = h.group_id("MAM Pilot")
    before = {a["target"]["groupId"] for a in h.tenant.policy(SEED_POLICY_ID)["assignments"]}
    request = h.run(ASSIGN, {"policy_id": SEED_POLICY_ID, "include": [pilot]})
    assert request.state == State.SUCCEEDED
    after = {a["target"]["groupId"] for a in h.tenant.policy(SEED_POLICY_ID)["assignments"]}
    assert after == before | {pilot} and len(before) == 2


def test_remove_and_exclude(h: Harness):
    everyone, execs = h.group_id("All Android Users"), h.group_id("Executives")
    h.run(ASSIGN, {"policy_id": SEED_POLICY_ID, "remove": [execs]})
    targets = h.tenant.policy(SEED_POLICY_ID)["assignments"]
    assert [a["target"]["groupId"] for a in targets] == [everyone]
    h.run(ASSIGN, {"policy_id": SEED_POLICY_ID, "include": [execs], "exclude": [everyone]})
    assignments = h.tenant.policy(SEED_POLICY_ID)["assignments"]
    targets = {a["target"]["groupId"]: a["target"]["@odata.type"] for a in assignments}
    assert targets == {execs: "#microsoft.graph.groupAssignmentTarget",
                       everyone: "#microsoft.graph.exclusionGroupAssignmentTarget"}


def test_an_assignment_that_leaves_excluded_groups_only_is_refused_and_says_why(h: Harness):
    everyone = h.group_id("All Android Users")
    h.run(ASSIGN, {"policy_id": SEED_POLICY_ID, "remove": [h.group_id("Executives")]})
    with pytest.raises(UserError, match="excluded groups only, which protects nobody"):
        h.service.file(ASSIGN, {"policy_id": SEED_POLICY_ID, "exclude": [everyone]}, requester=REQUESTER,
                       justification=WHY)
    assert [a["target"]["groupId"] for a in h.tenant.policy(SEED_POLICY_ID)["assignments"]] == [everyone]


def test_nothing_to_change_is_refused_when_asked(h: Harness):
    with pytest.raises(UserError, match="already look like that"):
        h.service.file(ASSIGN, {"policy_id": SEED_POLICY_ID, "include": [h.group_id("All Android Users")]},
                       requester=REQUESTER, justification=WHY)


def test_assignment_drift_is_kept_and_reported(h: Harness):
    pilot, sales = h.group_id("MAM Pilot"), h.group_id("Sales")
    request = h.service.file(ASSIGN, {"policy_id": SEED_POLICY_ID, "include": [pilot]}, requester=REQUESTER,
                             justification=WHY)
    h.graph.change_assignments(SEED_POLICY_ID, include=[sales])  # someone else, in the portal, meanwhile
    assert request.id is not None
    h.service.approve(request.id, APPROVER)
    done = h.service.require(request.id)
    assert done.state == State.SUCCEEDED
    assert "assignment to Sales was added since the request (kept)" in done.result
    groups = {a["target"]["groupId"] for a in h.tenant.policy(SEED_POLICY_ID)["assignments"]}
    assert {pilot, sales} <= groups


def test_assignment_already_in_place_at_execution_is_a_no_op(h: Harness):
    pilot = h.group_id("MAM Pilot")
    request = h.service.file(ASSIGN, {"policy_id": SEED_POLICY_ID, "include": [pilot]}, requester=REQUESTER,
                             justification=WHY)
    h.graph.change_assignments(SEED_POLICY_ID, include=[pilot])
    assert request.id is not None
    h.service.approve(request.id, APPROVER)
    assert "no change made" in h.service.require(request.id).result
