"""Attacks on issue 16 (edit, delete, drift) below the Slack layer: tenant safety of EDIT/DELETE against the sandbox,
and drift correctness (the bot's own changes, failed requests, audit reads). A failing attack is xfail(strict)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlmodel import select

from bot.errors import UserError
from bot.microsoft.models import AndroidPolicyDraft, RemediationAction, ThreatLevel
from bot.sandbox import SEED_POLICY_ID, SandboxConfig, SandboxTenant
from bot.store.drift import DriftAuditEvent
from tests.unit.test_drift import ADMIN, MEGAN, Clock, World, baseline
from workflows.changes import State
from workflows.drift import open_reports
from workflows.drift_buttons import revert_drift, revert_plan
from workflows.drift_compare import difference
from workflows.policy_edit import DELETE, EDIT

OUTLOOK, TEAMS, CUSTOM = "com.microsoft.office.outlook", "com.microsoft.teams", "com.contoso.expenses"
THREAT = "maximumAllowedDeviceThreatLevel"


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    clock = Clock()
    tenant = SandboxTenant(SandboxConfig(clock=clock, connector="enabled"))
    tenant.set_connector(androidMobileApplicationManagementEnabled=True)
    made = World(tenant, clock, f"sqlite:///{tmp_path}/drift.db")
    yield made
    made.store.close()


def _edit(world: World, settings: dict[str, Any], apps: dict[str, Any] | None = None,
          policy_id: str = SEED_POLICY_ID) -> int:
    change: dict[str, Any] = {"policy_id": policy_id, "settings": settings}
    if apps is not None:
        change["apps"] = apps
    request = world.changes.file(EDIT, change, requester=ADMIN, justification="attack test")
    return request.id or 0


def _approve(world: World, request_id: int) -> Any:
    world.changes.approve(request_id, "UAPPROV01")
    return world.changes.require(request_id)


def _policy(world: World, name: str, apps: tuple[str, ...] = (OUTLOOK, TEAMS)) -> str:
    return world.graph.graph.create_android_policy(AndroidPolicyDraft(
        displayName=name, maximumAllowedDeviceThreatLevel=ThreatLevel.LOW,
        mobileThreatDefenseRemediationAction=RemediationAction.BLOCK, packageIds=apps)).id


# ---- 1. tenant safety ----------------------------------------------------------------------------------


def test_an_unrelated_portal_edit_between_filing_and_approval_is_not_overwritten(world):
    request_id = _edit(world, {THREAT: {"before": "notConfigured", "after": "low"}})
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, mobileThreatDefenseRemediationAction="wipe",
                                description="changed in the portal")
    done = _approve(world, request_id)
    assert done.state == State.SUCCEEDED, done.error
    policy = world.tenant.policy(SEED_POLICY_ID)
    assert policy is not None and policy[THREAT] == "low"
    assert policy["mobileThreatDefenseRemediationAction"] == "wipe" and policy["description"] == "changed in the portal"


def test_an_app_added_in_the_portal_between_filing_and_approval_stops_the_app_edit(world):
    policy_id = _policy(world, "Sales phones")
    request_id = _edit(world, {}, {"before": [OUTLOOK, TEAMS], "after": [OUTLOOK, TEAMS, CUSTOM]}, policy_id)
    world.tenant.edit_policy_as(MEGAN.mail, policy_id, add_apps=["com.contoso.crm"])
    done = _approve(world, request_id)
    assert done.state == State.FAILED and "Changed since approval" in (done.error or "")
    apps = {a["mobileAppIdentifier"]["packageId"] for a in world.tenant.policy(policy_id)["apps"]}
    assert apps == {OUTLOOK, TEAMS, "com.contoso.crm"}


def test_a_rename_in_the_portal_stops_a_rename_by_the_bot(world):
    request_id = _edit(world, {"displayName": {"before": world.tenant.policy(SEED_POLICY_ID)["displayName"],
                                               "after": "Bot's name"}})
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, displayName="Megan's name")
    done = _approve(world, request_id)
    assert done.state == State.FAILED and "Changed since approval" in (done.error or "")
    assert world.tenant.policy(SEED_POLICY_ID)["displayName"] == "Megan's name"


def test_delete_targets_the_id_even_when_another_policy_takes_the_name(world):
    first = _policy(world, "Sales phones")
    request = world.changes.file(DELETE, {"policy_id": first}, requester=ADMIN, justification="attack test")
    world.tenant.edit_policy_as(MEGAN.mail, first, displayName="Sales phones (old)")
    second = _policy(world, "Sales phones")
    done = _approve(world, request.id or 0)
    assert done.state == State.SUCCEEDED
    assert world.tenant.policy(first) is None and world.tenant.policy(second) is not None


def test_a_delete_stops_when_the_policy_reaches_more_groups_than_the_card_said(world):
    policy_id = _policy(world, "Pilot only")
    request = world.changes.file(DELETE, {"policy_id": policy_id}, requester=ADMIN, justification="attack test")
    world.tenant.edit_policy_as(MEGAN.mail, policy_id, include=["Sales", "Finance"])
    done = _approve(world, request.id or 0)
    assert done.state == State.FAILED and world.tenant.policy(policy_id) is not None


def test_a_retired_app_stays_on_an_unrelated_edit(world):
    policy_id = _policy(world, "Old apps", apps=(OUTLOOK, "com.microsoft.office.lync15", CUSTOM))
    request_id = _edit(world, {THREAT: {"before": "low", "after": "medium"}}, policy_id=policy_id)
    assert _approve(world, request_id).state == State.SUCCEEDED
    apps = {a["mobileAppIdentifier"]["packageId"] for a in world.tenant.policy(policy_id)["apps"]}
    assert apps == {OUTLOOK, "com.microsoft.office.lync15", CUSTOM}


# ---- 4. drift correctness ------------------------------------------------------------------------------


def test_a_failed_bot_edit_does_not_hide_the_portal_change_it_refused_to_overwrite(world):
    baseline(world)
    request_id = _edit(world, {THREAT: {"before": "notConfigured", "after": "medium"}})
    world.clock.advance(3)
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, maximumAllowedDeviceThreatLevel="high")
    assert _approve(world, request_id).state == State.FAILED  # nothing written
    result = world.poll()
    assert result.reported == 1 and result.absorbed == 0
    change = difference("policy", world.only_report().loaded("before"), world.only_report().loaded("after"))
    assert change.settings == {THREAT: ("notConfigured", "high")}


def test_an_admin_overriding_the_bots_change_within_one_poll_window_is_reported(world):
    baseline(world)
    request_id = _edit(world, {THREAT: {"before": "notConfigured", "after": "low"}})
    assert _approve(world, request_id).state == State.SUCCEEDED
    world.clock.advance(5)
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, maximumAllowedDeviceThreatLevel="high")
    result = world.poll()
    assert result.reported == 1


def test_a_revert_never_undoes_the_bots_own_later_change(world):
    baseline(world)
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="portal text")
    world.poll()
    request_id = _edit(world, {THREAT: {"before": "notConfigured", "after": "low"}})
    assert _approve(world, request_id).state == State.SUCCEEDED
    world.poll()
    report = world.only_report()
    [(kind, change)] = revert_plan(report).requests
    assert kind == EDIT and set(change["settings"]) == {"description"}  # the bot's threat level is not undone
    _, filed, _ = revert_drift(world.store, world.changes, report.id or 0, ADMIN, world.clock())
    assert len(filed) == 1
    with pytest.raises(UserError, match="already waiting"):
        revert_drift(world.store, world.changes, report.id or 0, ADMIN, world.clock())
    world.approve_all([filed[0].id or 0])
    policy = world.tenant.policy(SEED_POLICY_ID)
    assert policy is not None and policy[THREAT] == "low" and policy["description"] != "portal text"
    assert world.poll().resolved == 1 and open_reports(world.store) == {}


def test_a_stale_revert_stops_when_the_policy_moved_again(world):
    baseline(world)
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, maximumAllowedDeviceThreatLevel="high")
    world.poll()
    report = world.only_report()
    _, filed, _ = revert_drift(world.store, world.changes, report.id or 0, ADMIN, world.clock())
    world.tenant.edit_policy_as("lee.gu@contoso.example", SEED_POLICY_ID, maximumAllowedDeviceThreatLevel="medium")
    done = _approve(world, filed[0].id or 0)
    assert done.state == State.FAILED and "Changed since approval" in (done.error or "")
    assert world.tenant.policy(SEED_POLICY_ID)[THREAT] == "medium"


def test_audit_events_read_twice_are_kept_once(world):
    baseline(world)
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="one")
    world.poll(minutes=1)
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="two")
    world.poll(minutes=1)  # the overlap reads the first event again
    with world.store.session() as session:
        ids = [e.id for e in session.exec(select(DriftAuditEvent))]
    assert len(ids) == len(set(ids)) and len(ids) >= 2
    assert len(world.graph.since) >= 2 and world.graph.since[-1] < world.graph.since[0] + timedelta(minutes=2)


def test_the_audit_filter_is_utc_with_z_whatever_the_zone_given(world):
    import random

    from bot.microsoft import build_clients
    from bot.microsoft.testing import FakeClock
    from bot.settings import load_settings

    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auditEvents"):
            seen.append(request.url.params.get("$filter", ""))
        return world.tenant.handle(request)

    fake = FakeClock()
    graph = build_clients(load_settings(mam_cloud="sandbox", mam_graph_url=None, mam_defender_url=None),
                          transport=httpx.MockTransport(handle), clock=fake, sleep=fake.sleep,
                          rng=random.Random(3)).graph
    here = datetime(2026, 3, 3, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    list(graph.iter_audit_events(here))
    assert seen == ["activityDateTime ge 2026-03-03T10:30:00Z"]
    with pytest.raises(ValueError):
        list(graph.iter_audit_events(datetime(2026, 3, 3, 12, 30)))
    assert datetime(2026, 3, 3, tzinfo=UTC).utcoffset() == timedelta(0)


def test_the_android_toggle_and_another_flag_together_only_the_other_is_a_card(world):
    baseline(world)
    world.tenant.set_connector_as(MEGAN.mail, androidMobileApplicationManagementEnabled=False, iosEnabled=False)
    result = world.poll()
    assert result.enforcement == "off" and result.reported == 1
    report = world.only_report()
    change = difference("connector", report.loaded("before"), report.loaded("after"))
    assert set(change.settings) == {"iosEnabled"}
    assert [c for _, c in revert_plan(report).requests] == [{"flag": "iosEnabled", "value": True}]


def test_a_card_is_not_reposted_and_a_third_change_edits_it(world):
    baseline(world)
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="one")
    world.poll()
    world.poll()
    world.tenant.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="two")
    world.poll()
    assert len(world.notifier.posted) == 1 and len(world.notifier.edits) == 1
    assert json.loads(world.only_report().after)["settings"]["description"] == "two"
