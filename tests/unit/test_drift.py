"""Drift detection against the sandbox tenant: the snapshot, changes made outside the bot (by whom, from Intune's
audit log), the bot's own changes left alone, late audit events, Revert through approval, Accept, policies created
and deleted in the portal, and the connector's Android toggle handed to the enforcement notice."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from bot.errors import UserError
from bot.microsoft import build_clients
from bot.microsoft.testing import FakeClock
from bot.sandbox import SEED_POLICY_ID, SEED_POLICY_NAME, SandboxConfig, SandboxTenant
from bot.sandbox.audit import SANDBOX_APP_ID
from bot.sandbox.cast import OUTLOOK, TEAMS
from bot.sandbox.seed import CAST_USERS
from bot.settings import load_settings
from bot.store import AuditLog, create_store
from bot.store.drift import ACCEPTED, CHANGED, CREATED, DELETED, OPEN, RESOLVED, DriftBaseline, DriftReport
from bot.store.index import Enforcement
from workflows.changes import ChangeService, State
from workflows.connector_change import KIND as TOGGLE
from workflows.connector_change import ConnectorToggle
from workflows.connectors import PORTALS
from workflows.drift import AUDIT_OVERLAP, NO_EVENT, DriftResult, get_report, open_reports, run_drift_check
from workflows.drift_buttons import accept_drift, revert_drift, revert_plan
from workflows.drift_compare import difference
from workflows.enforcement import current_enforcement
from workflows.policy_changes import ASSIGN, CREATE, PolicyAssignments, PolicyCreate
from workflows.policy_edit import DELETE, EDIT, PolicyDelete, PolicyEdit

MEGAN = next(u for u in CAST_USERS if u.given == "Megan")
ADMIN, APPROVER = "UADMIN001", "UAPPROV01"
ALERTS = "C0ALERTS"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float = 10) -> None:
        self.now += timedelta(minutes=minutes)


@dataclass
class Recorder:
    """The drift notifier: which cards were posted (by key), each edit, the enforcement notices."""

    posted: dict[str, DriftReport] = field(default_factory=dict)
    edits: list[tuple[int, int]] = field(default_factory=list)
    notices: list[Enforcement] = field(default_factory=list)

    def opened(self, report: DriftReport) -> None:
        self.posted.setdefault(f"drift:{report.id}:post", report)

    def changed(self, report: DriftReport) -> None:
        if (report.id or 0, report.version) not in self.edits:
            self.edits.append((report.id or 0, report.version))

    def enforcement(self, row: Enforcement, channel: str) -> None:
        self.notices.append(row)


class Silent:
    def filed(self, request: Any) -> None:
        return None

    def changed(self, request: Any) -> None:
        return None

    def reminded(self, request: Any) -> None:
        return None


class SpyGraph:
    """The real client, with the `since` of every audit read kept."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.since: list[datetime] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.graph, name)

    def iter_audit_events(self, since: datetime) -> Iterable[dict[str, Any]]:
        self.since.append(since)
        return self.graph.iter_audit_events(since)


@dataclass
class World:
    tenant: SandboxTenant
    clock: Clock
    url: str
    notifier: Recorder = field(default_factory=Recorder)

    def __post_init__(self) -> None:
        fake = FakeClock()
        settings = load_settings(mam_cloud="sandbox", mam_graph_url=None, mam_defender_url=None)
        self.graph = SpyGraph(build_clients(settings, transport=self.tenant.transport(), clock=fake, sleep=fake.sleep,
                                            rng=random.Random(3)).graph)
        self.store = create_store(self.url)
        graph = self.graph.graph
        self.changes = ChangeService(
            self.store, AuditLog(self.store, clock=self.clock),
            {EDIT: PolicyEdit(graph), DELETE: PolicyDelete(graph), ASSIGN: PolicyAssignments(graph),
             CREATE: PolicyCreate(graph, self.clock), TOGGLE: ConnectorToggle(graph)},
            Silent(), is_approver=lambda u: u == APPROVER, now=self.clock, destinations=lambda: [APPROVER])

    def poll(self, minutes: float = 10) -> DriftResult:
        self.clock.advance(minutes)
        return run_drift_check(graph=self.graph, store=self.store, notifier=self.notifier, channel=ALERTS,
                               own_apps=[SANDBOX_APP_ID], portals=PORTALS["sandbox"], now=self.clock)

    def only_report(self) -> DriftReport:
        reports = list(open_reports(self.store).values())
        assert len(reports) == 1, reports
        return reports[0]

    def approve_all(self, ids: Iterable[int]) -> None:
        for request_id in ids:
            result = self.changes.approve(request_id, APPROVER)
            assert result.ok, result.message
            assert self.changes.require(request_id).state == State.SUCCEEDED, self.changes.require(request_id).error


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    clock = Clock()
    tenant = SandboxTenant(SandboxConfig(clock=clock, connector="enabled"))
    tenant.set_connector(androidMobileApplicationManagementEnabled=True)
    made = World(tenant, clock, f"sqlite:///{tmp_path}/drift.db")
    yield made
    made.store.close()


def baseline(world: World) -> None:
    result = world.poll()
    assert result.ok and result.baseline and result.policies == 1 and result.connector
    assert world.notifier.posted == {} and world.notifier.edits == []


def test_the_first_poll_takes_the_baseline_silently(world):
    baseline(world)
    with world.store.session() as session:
        rows = {b.key: b for b in session.exec(select(DriftBaseline))}
    policy = rows[f"policy:{SEED_POLICY_ID.lower()}"]
    assert policy.name == SEED_POLICY_NAME and policy.object_version and policy.last_modified
    assert json.loads(policy.state)["settings"]["maximumAllowedDeviceThreatLevel"] == "notConfigured"
    assert world.poll().reported == 0 and world.notifier.posted == {}


def test_a_change_in_the_portal_is_one_card_naming_who_and_what(world):
    baseline(world)
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, maximumAllowedDeviceThreatLevel="high",
                                add_apps=[TEAMS], include=["Sales"], remove_groups=["Executives"])

    result = world.poll()

    assert result.reported == 1 and result.audit_events >= 3
    report = world.only_report()
    assert report.change == CHANGED and report.channel == ALERTS and report.card_key == f"drift:{report.id}:post"
    assert [a["upn"] for a in report.loaded("actors")] == [MEGAN.mail]
    assert report.changed_at is not None and report.object_id == SEED_POLICY_ID
    change = difference("policy", report.loaded("before"), report.loaded("after"))
    # the seed policy protects all Microsoft apps: an app added by hand makes it a list of selected apps
    assert change.settings == {"maximumAllowedDeviceThreatLevel": ("notConfigured", "high"),
                               "appGroupType": ("allMicrosoftApps", "selectedPublicApps")}
    sales = world.tenant.group("Sales")["id"]  # type: ignore[index]
    assert [g["groupId"] for g in change.groups_added] == [sales]
    assert [g["target"] for g in change.groups_removed] == ["exclude"]
    assert report.loaded("names")[sales] == "Sales"
    assert list(world.notifier.posted) == [f"drift:{report.id}:post"]

    again = world.poll()
    assert again.reported == 0 and again.updated == 0
    assert list(world.notifier.posted) == [f"drift:{report.id}:post"] and world.notifier.edits == []


def test_the_bots_own_change_posts_nothing(world):
    baseline(world)
    request = world.changes.file(EDIT, {"policy_id": SEED_POLICY_ID, "settings": {
        "maximumAllowedDeviceThreatLevel": {"before": "notConfigured", "after": "medium"}}},
        requester=ADMIN, justification="watch the threat level")
    world.approve_all([request.id or 0])
    sales = world.tenant.group("Sales")["id"]  # type: ignore[index]
    assigned = world.changes.file(ASSIGN, {"policy_id": SEED_POLICY_ID, "include": [sales]}, requester=ADMIN,
                                  justification="pilot for sales")
    world.approve_all([assigned.id or 0])

    result = world.poll()

    assert result.reported == 0 and result.absorbed == 1 and world.notifier.posted == {}
    with world.store.session() as session:
        row = session.get(DriftBaseline, f"policy:{SEED_POLICY_ID.lower()}")
    assert row is not None and json.loads(row.state)["settings"]["maximumAllowedDeviceThreatLevel"] == "medium"
    assert row.updated_by.startswith("the bot's change #")
    assert world.poll().reported == 0


def test_an_admin_changing_the_same_setting_right_after_the_bots_change_is_reported(world):
    """The bot's change, taken into the snapshot by one poll, is not taken again by the next: an admin who sets
    the same property moments later (within the clocks' skew) is reported, not absorbed as the bot's."""
    baseline(world)
    request = world.changes.file(EDIT, {"policy_id": SEED_POLICY_ID, "settings": {
        "maximumAllowedDeviceThreatLevel": {"before": "notConfigured", "after": "low"}}},
        requester=ADMIN, justification="watch the threat level")
    world.approve_all([request.id or 0])
    assert world.poll(minutes=0.5).absorbed == 1  # the change ran half a minute before this poll
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, maximumAllowedDeviceThreatLevel="high")

    assert world.poll(minutes=0.5).reported == 1  # and the admin's, half a minute after it
    change = difference("policy", world.only_report().loaded("before"), world.only_report().loaded("after"))
    assert change.settings == {"maximumAllowedDeviceThreatLevel": ("low", "high")}


def test_the_bots_app_in_the_audit_log_is_the_bot_even_without_a_request(world):
    baseline(world)
    world.graph.patch_android_policy(SEED_POLICY_ID, {"description": "written by the bot's app"})
    assert world.poll().absorbed == 1 and world.notifier.posted == {}


def test_a_bot_change_and_a_portal_change_together_report_only_the_portal_one(world):
    baseline(world)
    request = world.changes.file(EDIT, {"policy_id": SEED_POLICY_ID, "settings": {
        "maximumAllowedDeviceThreatLevel": {"before": "notConfigured", "after": "medium"}}},
        requester=ADMIN, justification="watch the threat level")
    world.approve_all([request.id or 0])
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, mobileThreatDefenseRemediationAction="wipe")

    world.poll()

    change = difference("policy", world.only_report().loaded("before"), world.only_report().loaded("after"))
    assert change.settings == {"mobileThreatDefenseRemediationAction": ("block", "wipe")}


def test_a_late_audit_event_names_who_on_the_same_card(world):
    baseline(world)
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="changed quietly",
                                audit_delay=timedelta(hours=2))
    world.poll()
    report = world.only_report()
    assert report.loaded("actors") == [] and report.changed_at is not None  # lastModifiedDateTime stands in
    assert NO_EVENT == "someone (no audit event yet)"

    world.tenant.deliver_late_audit_events()
    result = world.poll()

    assert result.reported == 0 and result.updated == 1
    updated = world.only_report()
    assert updated.id == report.id and [a["upn"] for a in updated.loaded("actors")] == [MEGAN.mail]
    assert world.notifier.edits == [(report.id, updated.version)] and len(world.notifier.posted) == 1


def test_audit_reads_overlap_the_last_read_in_utc(world):
    baseline(world)
    last = world.clock.now
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="x")
    world.poll()
    since = world.graph.since[-1]
    assert since == last - AUDIT_OVERLAP and since.utcoffset() == timedelta(0)
    events_before = len(world.graph.since)
    world.poll()  # the report has its actor: no audit read needed, nothing differs
    assert len(world.graph.since) == events_before


def test_revert_files_approvals_and_once_approved_restores_the_snapshot(world):
    baseline(world)
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, maximumAllowedDeviceThreatLevel="high",
                                include=["Sales"], remove_groups=["Executives"])
    world.poll()
    report = world.only_report()
    plan = revert_plan(report)
    assert [kind for kind, _ in plan.requests] == [EDIT, ASSIGN]
    edit = plan.requests[0][1]
    assert edit["settings"] == {"maximumAllowedDeviceThreatLevel": {"before": "high", "after": "notConfigured"}}
    executives = world.tenant.group("Executives")["id"]  # type: ignore[index]
    sales = world.tenant.group("Sales")["id"]  # type: ignore[index]
    assert plan.requests[1][1] == {"policy_id": SEED_POLICY_ID, "include": [], "exclude": [executives],
                                   "remove": [sales]}

    done, filed, cannot = revert_drift(world.store, world.changes, report.id or 0, ADMIN, world.clock())
    assert cannot == [] and len(filed) == 2 and all(r.state == State.PENDING for r in filed)
    assert done.loaded("revert_requests") == [r.id for r in filed] and done.reverted_by == ADMIN
    with pytest.raises(UserError, match="already waiting"):
        revert_drift(world.store, world.changes, report.id or 0, ADMIN, world.clock())
    assert world.tenant.policy(SEED_POLICY_ID)["maximumAllowedDeviceThreatLevel"] == "high"  # type: ignore[index]

    world.approve_all([r.id or 0 for r in filed])
    policy = world.tenant.policy(SEED_POLICY_ID)
    assert policy is not None and policy["maximumAllowedDeviceThreatLevel"] == "notConfigured"
    assert executives in {a["target"]["groupId"] for a in policy["assignments"]}
    result = world.poll()

    assert result.resolved == 1 and result.reported == 0 and open_reports(world.store) == {}
    closed = get_report(world.store, report.id or 0)
    assert closed is not None and closed.state == RESOLVED and "reverted through" in closed.resolution
    assert world.poll().reported == 0


def test_accept_moves_the_baseline(world):
    baseline(world)
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, maximumAllowedDeviceThreatLevel="low")
    world.poll()
    report = world.only_report()

    accepted, note = accept_drift(world.store, report.id or 0, ADMIN, world.clock())

    assert note == "" and accepted is not None and accepted.state == ACCEPTED and accepted.decided_by == ADMIN
    with world.store.session() as session:
        row = session.get(DriftBaseline, report.target_key)
    assert row is not None and json.loads(row.state)["settings"]["maximumAllowedDeviceThreatLevel"] == "low"
    assert row.updated_by == f"accepted by {ADMIN}"
    assert world.poll().reported == 0 and open_reports(world.store) == {}
    again, note = accept_drift(world.store, report.id or 0, ADMIN, world.clock())
    assert again is not None and "already accepted" in note
    with pytest.raises(UserError, match="already accepted"):
        revert_drift(world.store, world.changes, report.id or 0, ADMIN, world.clock())


def test_changed_back_by_hand_resolves_the_card(world):
    baseline(world)
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="oops")
    world.poll()
    report = world.only_report()
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="Baseline app protection for personal "
                                "Android devices")
    assert world.poll().resolved == 1
    assert get_report(world.store, report.id or 0).state == RESOLVED  # type: ignore[union-attr]


def test_a_further_change_edits_the_same_card(world):
    baseline(world)
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, maximumAllowedDeviceThreatLevel="low")
    world.poll()
    first = world.only_report()
    world.tenant.edit_policy_as("lee.gu@contoso.example", SEED_POLICY_ID, mobileThreatDefenseRemediationAction="wipe")

    result = world.poll()

    assert result.reported == 0 and result.updated == 1
    report = world.only_report()
    assert report.id == first.id
    assert [a["upn"] for a in report.loaded("actors")] == [MEGAN.mail, "lee.gu@contoso.example"]
    assert set(difference("policy", report.loaded("before"), report.loaded("after")).settings) == {
        "maximumAllowedDeviceThreatLevel", "mobileThreatDefenseRemediationAction"}


def test_created_and_deleted_outside_the_bot(world):
    baseline(world)
    created = world.tenant.create_policy_as(MEGAN.mail, "Made in the portal", maximumAllowedDeviceThreatLevel="low")
    world.poll()
    report = world.only_report()
    assert report.change == CREATED and report.object_id == created["id"]
    assert revert_plan(report).requests == [(DELETE, {"policy_id": created["id"], "policy_name": "Made in the portal"})]
    accept_drift(world.store, report.id or 0, ADMIN, world.clock())
    assert world.poll().reported == 0

    world.tenant.delete_policy_as(MEGAN.mail, SEED_POLICY_ID)
    world.poll()
    gone = world.only_report()
    assert gone.change == DELETED and gone.name == SEED_POLICY_NAME and gone.loaded("after") == {}
    plan = revert_plan(gone)
    assert plan.requests == [] and "can't be restored" in plan.cannot[0]
    with pytest.raises(UserError, match="can't be restored"):
        revert_drift(world.store, world.changes, gone.id or 0, ADMIN, world.clock())
    accept_drift(world.store, gone.id or 0, ADMIN, world.clock())
    with world.store.session() as session:
        assert session.get(DriftBaseline, gone.target_key) is None
    assert world.poll().reported == 0


def test_a_policy_the_bot_created_is_not_reported(world):
    baseline(world)
    request = world.changes.file(CREATE, {"draft": {"displayName": "Bot made", "maximumAllowedDeviceThreatLevel":
                                                    "low", "packageIds": [OUTLOOK]}},
                                 requester=ADMIN, justification="a new policy")
    world.approve_all([request.id or 0])
    result = world.poll()
    assert result.reported == 0 and result.absorbed == 1 and world.notifier.posted == {}


def test_the_android_toggle_switched_off_outside_is_the_enforcement_notice_not_a_card(world):
    baseline(world)
    world.tenant.set_connector_as(MEGAN.mail, androidMobileApplicationManagementEnabled=False)

    result = world.poll()

    assert result.enforcement == "off" and result.reported == 0 and world.notifier.posted == {}
    row = current_enforcement(world.store)
    assert row.state == "off" and row.notice_channel == ALERTS and row.notice_round == 1
    assert [n.notice_round for n in world.notifier.notices] == [1]
    assert world.poll().reported == 0 and len(world.notifier.notices) == 1  # recorded once


def test_another_connector_setting_is_a_card_reverted_by_toggle(world):
    baseline(world)
    world.tenant.set_connector_as(MEGAN.mail, iosEnabled=False, partnerUnresponsivenessThresholdInDays=30)
    world.poll()
    report = world.only_report()
    assert report.kind == "connector" and [a["upn"] for a in report.loaded("actors")] == [MEGAN.mail]
    plan = revert_plan(report)
    assert plan.requests == [(TOGGLE, {"flag": "iosEnabled", "value": True})]
    assert plan.cannot == ["partnerUnresponsivenessThresholdInDays (change it on the connector's page in Intune)"]
    _, filed, _ = revert_drift(world.store, world.changes, report.id or 0, ADMIN, world.clock())
    world.approve_all([r.id or 0 for r in filed])
    assert world.tenant.connector()["iosEnabled"] is True  # type: ignore[index]


def test_without_the_audit_log_changes_are_still_reported(tmp_path):
    clock = Clock()
    tenant = SandboxTenant(SandboxConfig(clock=clock, forbid={"/deviceManagement/auditEvents"}))
    world = World(tenant, clock, f"sqlite:///{tmp_path}/drift.db")
    baseline(world)
    tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="who knows")
    result = world.poll()
    assert result.ok and result.reported == 1 and "DeviceManagementApps.Read.All" in result.audit_error
    assert world.only_report().loaded("actors") == []
    assert "could not be read" in result.summary()


def test_a_failed_read_changes_nothing(tmp_path):
    clock = Clock()
    tenant = SandboxTenant(SandboxConfig(clock=clock, fail={"GET /deviceAppManagement/androidManagedAppProtections":
                                                             [503] * 20}))
    world = World(tenant, clock, f"sqlite:///{tmp_path}/drift.db")
    result = world.poll()
    assert not result.ok and not result.baseline and "reading the policies" in result.summary()


def test_the_same_open_report_is_never_opened_twice(world):
    baseline(world)
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="once")
    world.poll()
    with world.store.session() as session:
        total = list(session.exec(select(DriftReport)))
    assert len(total) == 1 and world.only_report().state == OPEN


def test_what_revert_cant_put_back_is_said(world):
    baseline(world)
    world.tenant.policies_store.assign(SEED_POLICY_ID, {"assignments": [
        {"target": {"@odata.type": "#microsoft.graph.allLicensedUsersAssignmentTarget"}}]})  # no audit event
    world.poll()
    report = world.only_report()
    assert report.loaded("actors") == []
    plan = revert_plan(report)
    assert [kind for kind, _ in plan.requests] == [ASSIGN]  # the groups it dropped come back
    assert plan.cannot == ["the assignment to allLicensedUsers (change it in Intune)"]


def test_a_policy_the_bots_app_created_without_a_request_is_not_reported(world):
    from bot.microsoft import AndroidPolicyDraft, ThreatLevel

    baseline(world)
    world.graph.create_android_policy(AndroidPolicyDraft(displayName="by the app",
                                                         maximumAllowedDeviceThreatLevel=ThreatLevel.LOW))
    result = world.poll()
    assert result.reported == 0 and result.absorbed == 1


def test_a_connector_set_up_outside_the_bot_can_only_be_accepted(tmp_path):
    clock = Clock()
    tenant = SandboxTenant(SandboxConfig(clock=clock, connector=None))
    world = World(tenant, clock, f"sqlite:///{tmp_path}/drift.db")
    baseline_result = world.poll()
    assert baseline_result.baseline and not baseline_result.connector
    tenant.set_connector(partnerState="enabled")
    world.poll()
    report = world.only_report()
    assert report.kind == "connector" and report.change == CREATED
    assert revert_plan(report).requests == [] and "Defender portal" in revert_plan(report).cannot[0]
