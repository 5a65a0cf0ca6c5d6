"""Assignment sets: one function (`bodies.assignment_change`) makes the `assign` body the card shows and the
executor posts; all-users and all-devices targets and filters are kept, a policy set's assignments left out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.errors import UserError
from bot.microsoft import bodies, build_clients
from bot.microsoft.graph import POLICIES
from bot.microsoft.models import AssignmentSource, AssignmentTarget, PolicyAssignment, TargetKind
from bot.microsoft.testing import Recorder, harness
from bot.sandbox import SEED_POLICY_ID, SandboxTenant
from bot.settings import load_settings
from bot.store import AuditLog, create_store
from workflows.changes import ChangeService, State
from workflows.policy_changes import ASSIGN, PolicyAssignments

REQUESTER, APPROVER = "UADMIN001", "UAPPROV01"
FILTERED_USERS = {
    "@odata.type": TargetKind.ALL_LICENSED_USERS.value,
    "deviceAndAppManagementAssignmentFilterId": "f-corp",
    "deviceAndAppManagementAssignmentFilterType": "include",
}


def read(target: dict[str, Any], *, source: str = "direct", source_id: str | None = None,
         assignment_id: str = "a") -> PolicyAssignment:
    return PolicyAssignment.model_validate({"id": assignment_id, "source": source, "sourceId": source_id,
                                            "target": target})


def group(kind: TargetKind, group_id: str, **extra: Any) -> dict[str, Any]:
    return {"@odata.type": kind.value, "groupId": group_id, **extra}


# ---- the one function ---------------------------------------------------------------------------


def test_all_users_all_devices_and_filters_are_written_back_as_read():
    current = [
        read(FILTERED_USERS),
        read({"@odata.type": TargetKind.ALL_DEVICES.value, "deviceAndAppManagementAssignmentFilterId": None,
              "deviceAndAppManagementAssignmentFilterType": "none"}),
        read(group(TargetKind.GROUP, "g-keep", deviceAndAppManagementAssignmentFilterId="f-2",
                   deviceAndAppManagementAssignmentFilterType="exclude")),
    ]
    change = bodies.assignment_change(current, include=["g-new"])
    assert change.body == {"assignments": [
        {"target": FILTERED_USERS},
        {"target": {"@odata.type": TargetKind.ALL_DEVICES.value}},
        {"target": group(TargetKind.GROUP, "g-keep", deviceAndAppManagementAssignmentFilterId="f-2",
                         deviceAndAppManagementAssignmentFilterType="exclude")},
        {"target": group(TargetKind.GROUP, "g-new")},
    ]}
    assert change.after[:3] == current and not change.left_alone and not change.changes_nothing


def test_a_group_already_included_keeps_its_filter_and_changes_nothing():
    filtered = read(group(TargetKind.GROUP, "G-1", deviceAndAppManagementAssignmentFilterId="f-1",
                          deviceAndAppManagementAssignmentFilterType="include"))
    change = bodies.assignment_change([filtered], include=["g-1"])
    assert change.changes_nothing
    assert change.body["assignments"][0]["target"]["deviceAndAppManagementAssignmentFilterId"] == "f-1"


def test_a_group_moving_between_include_and_exclude_has_one_entry_the_new_one():
    change = bodies.assignment_change([read(group(TargetKind.GROUP, "g"))], exclude=["g"])
    assert change.body == {"assignments": [{"target": group(TargetKind.EXCLUSION_GROUP, "g")}]}
    removed = bodies.assignment_change([read(group(TargetKind.GROUP, "g")), read(FILTERED_USERS)], remove=["G"])
    assert removed.body == {"assignments": [{"target": FILTERED_USERS}]}


def test_a_policy_sets_assignments_are_left_out_of_the_body_and_kept_apart():
    from_set = read(group(TargetKind.GROUP, "g-set"), source=AssignmentSource.POLICY_SETS.value, source_id="ps-1",
                    assignment_id="ps")
    direct = read(group(TargetKind.EXCLUSION_GROUP, "g-ex"))
    change = bodies.assignment_change([from_set, direct], include=["g-new"])
    assert from_set.from_policy_set and not direct.from_policy_set
    assert change.left_alone == [from_set]
    assert change.body == {"assignments": [{"target": group(TargetKind.EXCLUSION_GROUP, "g-ex")},
                                           {"target": group(TargetKind.GROUP, "g-new")}]}
    assert "source" not in json.dumps(change.body)
    assert bodies.assignment_change([from_set, direct]).changes_nothing


def test_assign_body_refuses_a_policy_sets_assignment():
    from_set = read(group(TargetKind.GROUP, "g"), source="policySets", source_id="ps-1")
    with pytest.raises(ValueError, match="policy set ps-1"):
        bodies.assign_body([from_set])


def test_a_group_both_included_and_excluded_is_refused():
    with pytest.raises(ValueError, match="both included and excluded"):
        bodies.assignment_change([], include=["G"], exclude=["g"])


def test_a_filter_is_a_filter_only_with_an_id_and_a_type_other_than_none():
    assert AssignmentTarget.model_validate(FILTERED_USERS).assignment_filter == ("f-corp", "include")
    assert AssignmentTarget.model_validate({**FILTERED_USERS, "deviceAndAppManagementAssignmentFilterType": "none"}
                                           ).assignment_filter is None
    assert AssignmentTarget.all_devices().assignment_filter is None


def test_the_client_posts_the_body_of_that_function():
    current = [
        {"id": "u", "source": "direct", "sourceId": None, "target": FILTERED_USERS},
        {"id": "s", "source": "policySets", "sourceId": "ps-1", "target": group(TargetKind.GROUP, "g-set")},
    ]
    rec = (Recorder()
           .on("GET", f"{POLICIES}/T_1/assignments", httpx.Response(200, json={"value": current}))
           .on("POST", f"{POLICIES}/T_1/assign", httpx.Response(204)))
    change = harness(rec).clients.graph.change_assignments("T_1", include=["g-new"])
    (sent,) = rec.json_bodies("POST", f"{POLICIES}/T_1/assign")
    expected = bodies.assignment_change([PolicyAssignment.model_validate(a) for a in current], include=["g-new"])
    assert sent == change.body == expected.body
    assert [a.id for a in change.left_alone] == ["s"]


# ---- the sandbox keeps what the bot writes ------------------------------------------------------


class Notifier:
    def filed(self, request: Any) -> None: ...

    def changed(self, request: Any) -> None: ...

    def reminded(self, request: Any) -> None: ...


@pytest.fixture
def tenant() -> Any:
    with SandboxTenant() as made:
        yield made


def graph_of(tenant: SandboxTenant) -> Any:
    settings = load_settings(mam_cloud="sandbox", mam_graph_url=None, mam_defender_url=None)
    return build_clients(settings, transport=tenant.transport()).graph


def test_the_sandbox_keeps_all_users_all_devices_and_filters(tenant: SandboxTenant):
    graph = graph_of(tenant)
    pilot = str(tenant.group("MAM Pilot")["id"])
    graph.replace_assignments(SEED_POLICY_ID, [AssignmentTarget.model_validate(FILTERED_USERS),
                                               AssignmentTarget.all_devices(), AssignmentTarget.include_group(pilot)])
    graph.change_assignments(SEED_POLICY_ID, include=[str(tenant.group("Sales")["id"])])
    targets = [a.target for a in graph.get_assignments(SEED_POLICY_ID)]
    assert [t.odata_type for t in targets] == [TargetKind.ALL_LICENSED_USERS, TargetKind.ALL_DEVICES,
                                               TargetKind.GROUP, TargetKind.GROUP]
    assert targets[0].assignment_filter == ("f-corp", "include") and targets[1].assignment_filter is None


def add_policy_set_assignment(tenant: SandboxTenant, group_id: str, policy_set: str = "ps-1") -> None:
    """As Intune shows an assignment a policy set made (the sandbox has no policy sets to make one)."""
    tenant.policies_store.get(SEED_POLICY_ID).assignments.append({
        "@odata.type": "#microsoft.graph.targetedManagedAppPolicyAssignment", "id": f"{group_id}_{policy_set}",
        "source": "policySets", "sourceId": policy_set,
        "target": {"@odata.type": TargetKind.GROUP.value, "groupId": group_id,
                   "deviceAndAppManagementAssignmentFilterId": None,
                   "deviceAndAppManagementAssignmentFilterType": "none"}})


def service_of(tenant: SandboxTenant, tmp_path: Any) -> ChangeService:
    store = create_store(f"sqlite:///{tmp_path}/changes.db")
    return ChangeService(store, AuditLog(store), {ASSIGN: PolicyAssignments(graph_of(tenant))}, Notifier(),
                         is_approver=lambda u: u == APPROVER, now=lambda: datetime.now(UTC),
                         expiry=timedelta(hours=1))


def test_the_card_says_how_many_come_from_a_policy_set_and_the_body_leaves_them_out(tenant, tmp_path):
    sales, pilot = str(tenant.group("Sales")["id"]), str(tenant.group("MAM Pilot")["id"])
    add_policy_set_assignment(tenant, sales)
    service = service_of(tenant, tmp_path)
    request = service.file(ASSIGN, {"policy_id": SEED_POLICY_ID, "include": [pilot]}, requester=REQUESTER,
                           justification="pilot")
    after = json.loads(request.snapshot)["_after"]
    assert "1 assignment comes from a policy set and is left alone: include Sales (from policy set ps-1)" in after
    assert "Microsoft's docs don't say what assign does with it" in after
    assert "(from policy set ps-1)" in json.loads(request.snapshot)["_before"]
    (assign,) = [c for c in json.loads(request.plan) if c["method"] == "POST"]
    assert sales not in json.dumps(assign["body"]) and "source" not in json.dumps(assign["body"])
    assert request.id is not None
    service.approve(request.id, APPROVER)
    done = service.require(request.id)
    assert done.state == State.SUCCEEDED, done.error
    assert "1 assignment comes from a policy set and is left alone" in done.result
    assert tenant.stats.write_requests[-1].body == assign["body"]


def test_removing_a_group_only_a_policy_set_assigns_is_refused_with_where_to_change_it(tenant, tmp_path):
    sales = str(tenant.group("Sales")["id"])
    add_policy_set_assignment(tenant, sales)
    with pytest.raises(UserError, match="Sales is assigned by a policy set"):
        service_of(tenant, tmp_path).file(ASSIGN, {"policy_id": SEED_POLICY_ID, "remove": [sales]},
                                          requester=REQUESTER, justification="tidy")
