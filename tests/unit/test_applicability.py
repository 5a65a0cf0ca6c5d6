"""Which policy applies to which registration, Defender's level, and the block decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product
from typing import Any

import pytest

from bot.microsoft.models import AndroidPolicy, Machine
from workflows.applicability import (
    DeviceIndex,
    Level,
    PolicyRule,
    Registration,
    Verdict,
    applicable,
    decide,
    guid_key,
    level_of_risk,
)

DEVICE = "0F8FAD5B-D9CB-469F-A165-70867728950E"
USER = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
INCLUDED, EXCLUDED = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
OUTLOOK = "com.microsoft.office.outlook"

RISK_SCORES = ("None", "Informational", "Low", "Medium", "High")
MAXIMUMS = ("notConfigured", "secured", "low", "medium", "high")
ACTIONS = ("block", "wipe", "warn", "blockWhenSettingIsSupported")


@pytest.mark.parametrize(("risk", "level"), [
    ("None", Level.SECURED), ("Informational", Level.SECURED), ("Low", Level.LOW), ("Medium", Level.MEDIUM),
    ("High", Level.HIGH), ("high", Level.HIGH), (None, Level.SECURED), ("SomethingNew", Level.SECURED),
])
def test_defender_risk_maps_onto_the_policy_scale(risk: str | None, level: Level) -> None:
    assert level_of_risk(risk) is level


def test_every_level_against_every_maximum_and_action() -> None:
    order = {"None": 1, "Informational": 1, "Low": 2, "Medium": 3, "High": 4}
    for risk, maximum, action in product(RISK_SCORES, MAXIMUMS, ACTIONS):
        verdict = decide(level_of_risk(risk), Level.from_wire(maximum), action)
        if maximum == "notConfigured":
            expected = Verdict.NOT_WATCHED  # notConfigured never blocks
        elif order[risk] <= MAXIMUMS.index(maximum):
            expected = Verdict.ALLOWED
        elif action == "warn":
            expected = Verdict.WARNED  # a warning, not a block
        else:
            expected = Verdict.BLOCKED  # block, wipe and blockWhenSettingIsSupported all keep the user out
        assert verdict is expected, (risk, maximum, action)


@pytest.mark.parametrize("maximum", MAXIMUMS[1:])
def test_a_device_not_onboarded_is_pending_whatever_the_maximum(maximum: str) -> None:
    assert decide(None, Level.from_wire(maximum), "block") is Verdict.PENDING_ONBOARDING
    assert decide(None, Level.NOT_CONFIGURED, "block") is Verdict.NOT_WATCHED


def test_an_unknown_action_is_not_reported_as_a_block() -> None:
    assert decide(Level.HIGH, Level.LOW, "somethingNew") is Verdict.ALLOWED


def policy(**fields: Any) -> AndroidPolicy:
    base: dict[str, Any] = {"id": "T_abc", "displayName": "MTD", "maximumAllowedDeviceThreatLevel": "low",
                            "mobileThreatDefenseRemediationAction": "block", "appGroupType": "selectedPublicApps",
                            "targetedAppManagementLevels": "unspecified",
                            "apps": [{"mobileAppIdentifier": {"packageId": OUTLOOK}}],
                            "assignments": [
                                {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget",
                                            "groupId": INCLUDED.upper()}},
                                {"target": {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget",
                                            "groupId": EXCLUDED}}]}
    base.update(fields)
    return AndroidPolicy.model_validate(base)


def registration(**fields: Any) -> Registration:
    item: dict[str, Any] = {"@odata.type": "#microsoft.graph.androidManagedAppRegistration", "id": "r1",
                            "userId": USER, "azureADDeviceId": DEVICE,
                            "appIdentifier": {"packageId": OUTLOOK}}
    item.update(fields)
    return Registration.from_graph(item)


def test_a_policy_applies_through_its_groups_and_exclusions_win() -> None:
    rule = PolicyRule.from_policy(policy())
    user = guid_key(USER)
    assert user is not None
    assert applicable(registration(), [rule], {INCLUDED: {user}}) == [rule]
    assert applicable(registration(), [rule], {INCLUDED: {user}, EXCLUDED: {user}}) == []
    assert applicable(registration(), [rule], {INCLUDED: set()}) == []
    everyone = PolicyRule.from_policy(policy(assignments=[
        {"target": {"@odata.type": "#microsoft.graph.allLicensedUsersAssignmentTarget"}}]))
    assert applicable(registration(), [everyone], {}) == [everyone]


def test_a_policy_applies_only_to_its_apps_and_device_types() -> None:
    members = {INCLUDED: {guid_key(USER)}}
    rule = PolicyRule.from_policy(policy())
    assert applicable(registration(appIdentifier={"packageId": "com.microsoft.teams"}), [rule], members) == []
    all_apps = PolicyRule.from_policy(policy(appGroupType="allApps", apps=[]))
    assert applicable(registration(appIdentifier={"packageId": "com.example.app"}), [all_apps], members)
    unmanaged = PolicyRule.from_policy(policy(targetedAppManagementLevels="unmanaged"))
    assert applicable(registration(), [unmanaged], members) == [unmanaged]
    assert applicable(registration(managedDeviceId="md-1"), [unmanaged], members) == []
    enrolled = PolicyRule.from_policy(policy(targetedAppManagementLevels="mdm,androidEnterprise"))
    assert applicable(registration(managedDeviceId="md-1"), [enrolled], members) == [enrolled]


def test_applied_policies_from_graph_win_over_groups() -> None:
    rule = PolicyRule.from_policy(policy())
    applied = registration(appliedPolicies=[{"id": "T_ABC"}])
    assert applicable(applied, [rule], {}) == [rule]  # not in any group we know of: Graph says it applies
    assert applicable(registration(appliedPolicies=[]), [rule], {INCLUDED: {guid_key(USER)}}) == []


def test_ios_registrations_are_ignored() -> None:
    ios = registration(**{"@odata.type": "#microsoft.graph.iosManagedAppRegistration",
                          "appIdentifier": {"bundleId": "com.microsoft.Office.Outlook"}})
    assert not ios.android
    assert applicable(ios, [PolicyRule.from_policy(policy(appGroupType="allApps", apps=[]))],
                      {INCLUDED: {guid_key(USER)}}) == []


def machine(aad: str | None, risk: str = "High", status: str = "Onboarded", seen: int = 0,
            machine_id: str = "m1") -> Machine:
    return Machine.model_validate({"id": machine_id, "aadDeviceId": aad, "riskScore": risk,
                                   "onboardingStatus": status, "osPlatform": "Android",
                                   "lastSeen": (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=seen)).isoformat()})


def test_the_device_index_joins_on_the_entra_id_case_insensitively() -> None:
    index = DeviceIndex()
    index.add(machine(DEVICE.lower(), "Medium"))
    index.add(machine(None))
    assert index.level(DEVICE) is Level.MEDIUM
    assert index.level(DEVICE.upper()) is Level.MEDIUM
    assert index.details(DEVICE).machine_id == "m1"  # type: ignore[union-attr]
    assert index.level("3f2504e0-4f89-11d3-9a0c-0305e82c3301") is None
    assert (index.machines, index.without_device_id, len(index)) == (2, 1, 1)


def test_a_device_defender_lists_but_has_not_onboarded_has_no_level() -> None:
    index = DeviceIndex()
    index.add(machine(DEVICE, "High", status="CanBeOnboarded"))
    assert index.level(DEVICE) is None and index.known(DEVICE)


def test_duplicate_entries_the_onboarded_then_the_newest_wins() -> None:
    index = DeviceIndex()
    index.add(machine(DEVICE, "High", seen=5, machine_id="old"))
    index.add(machine(DEVICE, "Low", seen=9, machine_id="new"))
    index.add(machine(DEVICE, "None", seen=20, status="InsufficientInfo"))
    assert index.level(DEVICE) is Level.LOW
    index.add(machine(DEVICE, "Medium", seen=1, machine_id="older"))
    assert index.level(DEVICE) is Level.LOW
    assert index.details(DEVICE).machine_id == "new"  # type: ignore[union-attr]
