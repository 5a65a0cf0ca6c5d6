"""The policy read side: labels, the list and the whole picture, on a real tenant's export and the sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.errors import UsageError
from bot.microsoft.errors import NotFound as GraphNotFound
from bot.microsoft.errors import Throttled
from bot.microsoft.models import AndroidPolicy, AssignmentTarget, Group, PolicyAssignment
from bot.sandbox import SandboxTenant
from bot.slack_limits import block_problems
from commands.blocks import section
from commands.ids import Action
from commands.payloads import PolicyRef
from commands.policies import (
    LIST_LIMIT,
    detail_blocks,
    list_blocks,
    list_summary,
    lookup_message,
    pick_list_blocks,
    policy_command,
    policy_row,
)
from tests.scenario.conftest import block_text
from workflows.policies import (
    AssignedTarget,
    PolicyDetail,
    PolicyPage,
    action_label,
    app_names,
    apps_label,
    assignment_counts,
    describe_policy,
    ignores_defender,
    list_policies,
    management_level_labels,
    threat_level_label,
)
from workflows.resolve import Ambiguous, NotFound

EXPORT = Path("/work/shared/reference/real-exports/android-app-protection-policy.json")


@pytest.fixture
def exported() -> AndroidPolicy:
    if not EXPORT.parent.exists():
        pytest.skip("the real-exports reference folder is not on this machine")
    # PowerShell writes the export with a UTF-8 byte order mark; utf-8-sig reads it with or without.
    return AndroidPolicy.model_validate(json.loads(EXPORT.read_text(encoding="utf-8-sig")))


@pytest.fixture(scope="module")
def seeded() -> AndroidPolicy:
    return AndroidPolicy.model_validate(SandboxTenant().policies[0])


def make(**fields) -> AndroidPolicy:
    base = {"id": "T_00000000-0000-0000-0000-000000000001", "displayName": "Policy",
            "maximumAllowedDeviceThreatLevel": "low", "mobileThreatDefenseRemediationAction": "block"}
    base.update(fields)
    return AndroidPolicy.model_validate(base)


def assignment(group_id: str, *, exclude: bool = False) -> PolicyAssignment:
    target = AssignmentTarget.exclude_group(group_id) if exclude else AssignmentTarget.include_group(group_id)
    return PolicyAssignment(target=target)


def valid(blocks: list[dict]) -> list[dict]:
    assert block_problems(blocks) == []
    return blocks


# ---- the real export ----------------------------------------------------------------------------------


def test_the_real_export_reads_as_it_is(exported):
    assert exported.id == "T_e655f25b-6797-4dfa-9ecb-3c5831519219"
    assert ignores_defender(exported)
    assert threat_level_label(exported) == "not configured"
    assert action_label(exported) == "Block access"
    assert management_level_labels(exported) == ["unmanaged (MAM without enrollment)"]
    assert apps_label(exported) == "all Microsoft apps (39)"
    assert assignment_counts(exported) == (0, 0)
    names = app_names(exported)
    assert len(names) == 39
    assert names[:3] == ["Outlook", "Teams", "Edge"]
    assert "com.microsoft.cortana" in names  # no friendly name known: the package id as it is


def test_the_real_export_as_a_list_row(exported):
    text = block_text([policy_row(exported)])
    assert "*Android - Baseline - BYOD - App Protection*" in text
    assert "not configured*: ignores Defender's signal" in text
    assert "all Microsoft apps (39)" in text and "not assigned" in text


def test_the_real_export_in_full(exported):
    blocks = valid(detail_blocks(PolicyDetail(exported, [])))
    text = block_text(blocks)
    assert "Max allowed device threat level is not configured" in text
    assert "Conditional launch &gt; Device conditions &gt; Max allowed device threat level" in text
    assert "*Apps* (39): Outlook, Teams, Edge" in text and "and 24 more" in text
    assert "not assigned to any group" in text
    assert "2023-05-03 04:50 UTC" in text
    assert "unmanaged (MAM without enrollment)" in text


# ---- the sandbox's seeded policy and hand-made ones ------------------------------------------------------


def test_the_sandbox_policy_reads_like_the_real_one(seeded):
    assert seeded.displayName == "Android BYOD App Protection"
    assert ignores_defender(seeded) and apps_label(seeded) == "all Microsoft apps (39)"
    assert assignment_counts(seeded) == (1, 1)
    assert "1 included, 1 excluded" in block_text([policy_row(seeded)])


def test_a_configured_policy_shows_its_level_and_action():
    policy = make(maximumAllowedDeviceThreatLevel="secured", mobileThreatDefenseRemediationAction="wipe",
                  targetedAppManagementLevels="mdm,androidEnterprise", appGroupType="selectedPublicApps",
                  apps=[{"mobileAppIdentifier": {"packageId": "com.microsoft.teams"}},
                        {"mobileAppIdentifier": {"packageId": "com.microsoft.office.outlook"}}])
    assert not ignores_defender(policy)
    assert threat_level_label(policy) == "no threat (secured)"
    assert action_label(policy) == "Wipe data"
    assert management_level_labels(policy) == ["Android Enterprise", "Android device administrator"]
    assert apps_label(policy) == "2 apps" and app_names(policy) == ["Outlook", "Teams"]
    text = block_text([policy_row(policy)])
    assert "Max device threat level *no threat (secured)*, above it: Wipe data" in text
    assert ":warning:" not in text


@pytest.mark.parametrize(("level", "label"), [
    ("low", "low"), ("medium", "medium"), ("high", "high"), ("notConfigured", "not configured"),
    ("somethingNew", "somethingNew"), (None, "not set"),
])
def test_threat_level_labels(level, label):
    assert threat_level_label(make(maximumAllowedDeviceThreatLevel=level)) == label


@pytest.mark.parametrize(("action", "label"), [
    ("block", "Block access"), ("wipe", "Wipe data"), ("warn", "Warn"),
    ("blockWhenSettingIsSupported", "Block when supported"),
])
def test_action_labels(action, label):
    assert action_label(make(mobileThreatDefenseRemediationAction=action)) == label


def test_device_types_default_to_all():
    assert management_level_labels(make(targetedAppManagementLevels="unspecified")) == ["all device types"]
    assert management_level_labels(make(targetedAppManagementLevels=None)) == ["all device types"]


def test_a_partial_match_is_said_so():
    text = block_text(detail_blocks(PolicyDetail(make(), [], partly_matched="<!here>")))
    assert "The only policy whose name matches *&lt;!here&gt;*" in text


def test_no_apps_is_said_plainly():
    policy = make(appGroupType="selectedPublicApps", deployedAppCount=0)
    assert apps_label(policy) == "no apps"
    assert "protects no app" in block_text(detail_blocks(PolicyDetail(policy, [])))


def test_groups_are_shown_by_name_and_a_deleted_one_by_its_id(seeded):
    detail = PolicyDetail(seeded, [
        AssignedTarget("All Android Users", "g-all", excluded=False, members=1234),
        AssignedTarget("Executives", "g-exec", excluded=True, members=1),
        AssignedTarget(None, "9b5d3f86-6f6e-4b44-9f3e-4b1b0c1f2a3d", excluded=False, found=False),
    ])
    text = block_text(valid(detail_blocks(detail)))
    assert ":busts_in_silhouette: Included: *All Android Users* · 1,234 members" in text
    assert ":no_entry_sign: Excluded: *Executives* · 1 member" in text
    assert "group `9b5d3f86-6f6e-4b44-9f3e-4b1b0c1f2a3d`, not found (deleted?)" in text


# ---- describe_policy: groups by name, member counts --------------------------------------------------------


class Groups:
    def __init__(self, groups: dict[str, str], *, counts_fail: bool = False) -> None:
        self.groups = groups
        self.counts_fail = counts_fail
        self.counted: list[str] = []

    def get_group(self, group_id: str) -> Group:
        if group_id not in self.groups:
            raise GraphNotFound("not found", status=404)
        return Group(id=group_id, displayName=self.groups[group_id])

    def group_member_count(self, group_id: str) -> int:
        self.counted.append(group_id)
        if self.counts_fail:
            raise Throttled("throttled", status=429)
        return len(group_id)


def test_describe_lists_included_groups_before_excluded_ones():
    policy = make(assignments=[assignment("g-exec", exclude=True), assignment("g-all"), assignment("gone")])
    detail = describe_policy(Groups({"g-all": "All Android Users", "g-exec": "Executives"}), policy)
    assert [(t.name, t.excluded, t.found) for t in detail.targets] == [
        ("All Android Users", False, True), (None, False, False), ("Executives", True, True)]
    assert detail.targets[0].members == len("g-all")


def test_member_counts_are_optional_and_capped():
    policy = make(assignments=[assignment(f"g{i}") for i in range(4)])
    groups = Groups({f"g{i}": f"Group {i}" for i in range(4)}, counts_fail=True)
    detail = describe_policy(groups, policy, member_counts_up_to=2)
    assert groups.counted == ["g0", "g1"]
    assert all(t.members is None for t in detail.targets)
    assert "members" not in block_text(detail_blocks(detail))


def test_all_users_targets_are_named():
    policy = make(assignments=[PolicyAssignment(target=AssignmentTarget.all_licensed_users())])
    detail = describe_policy(Groups({}), policy)
    assert detail.targets == [AssignedTarget("all licensed users", None, excluded=False)]


# ---- the list: streaming and Slack's 50 blocks ------------------------------------------------------------


class Stream:
    def __init__(self, policies: list[AndroidPolicy]) -> None:
        self.policies = policies

    def iter_android_policies(self):
        yield from self.policies

    def get_android_policy(self, policy_id: str) -> AndroidPolicy:
        raise AssertionError("the list must not read policies one by one")


def test_a_long_list_keeps_to_fifty_blocks_and_says_how_many_more():
    policies = [make(id=f"T_{i}", displayName=f"Policy {i}",
                     maximumAllowedDeviceThreatLevel="notConfigured" if i % 2 else "low") for i in range(60)]
    page = list_policies(Stream(policies), limit=LIST_LIMIT)
    assert (page.total, len(page.policies), page.more, page.ignoring_defender) == (60, LIST_LIMIT, 13, 30)
    blocks = valid(list_blocks(page))
    assert len(blocks) == 50
    text = block_text(blocks)
    assert "…and 13 more: `/mam policy list &lt;part of a name&gt;` narrows it down" in text
    assert "/mam policy show &lt;name or id&gt;" in text
    assert "30 ignore Defender's signal" in text
    assert list_summary(page) == "Android app protection policies: 60 policies, 30 ignoring Defender."


def test_every_row_has_a_details_button_carrying_the_policy_id(seeded):
    row = policy_row(seeded)
    assert row["accessory"]["action_id"] == Action.POLICY_SHOW
    assert PolicyRef.decode(row["accessory"]["value"]).id == seeded.id


def test_an_empty_tenant_says_so():
    text = block_text(valid(list_blocks(PolicyPage([], 0, 0))))
    assert "no Android app protection policies" in text


# ---- a pick list and not found ------------------------------------------------------------------------


def test_a_pick_list_has_one_show_button_per_candidate():
    twins = tuple(make(id=f"T_{i}", displayName="Android Corporate") for i in range(12))
    blocks = valid(pick_list_blocks(Ambiguous("android corporate", twins)))
    buttons = [b["accessory"] for b in blocks if "accessory" in b]
    assert [PolicyRef.decode(b["value"]).id for b in buttons] == [f"T_{i}" for i in range(10)]
    assert {b["action_id"] for b in buttons} == {Action.POLICY_PICK}
    assert "…and 2 more" in block_text(blocks)


def test_not_found_names_the_closest():
    text, blocks = lookup_message(NotFound("Andriod", ("Android BYOD App Protection",)))
    assert "No Android app protection policy called *Andriod*. Closest: *Android BYOD App Protection*." in text
    assert block_text(blocks) == text
    text, _ = lookup_message(NotFound("zzz"))
    assert "`/mam policy list` shows them all" in text


# ---- escaping --------------------------------------------------------------------------------------------


def test_a_policy_named_like_a_mention_pings_nobody():
    sly = make(displayName="<!channel> & <@U123|boss>", description="<https://evil.example|click>",
               apps=[{"mobileAppIdentifier": {"packageId": "<!here>"}}])
    detail = PolicyDetail(sly, [AssignedTarget("<!everyone>", "g1", excluded=False)])
    rendered = [
        list_blocks(PolicyPage([sly], 1, 0)),
        detail_blocks(detail),
        pick_list_blocks(Ambiguous("<!channel>", (sly, sly))),
        lookup_message(NotFound("<!channel>", ("<!here>",)))[1],
    ]
    notifications = [lookup_message(detail)[0], lookup_message(Ambiguous("<!channel>", (sly, sly)))[0]]
    for blocks in [*rendered, [section(t) for t in notifications]]:
        text = block_text(blocks)
        assert "<!" not in text and "<@" not in text and "<http" not in text
        assert "&lt;!" in text
    assert "&lt;!channel&gt; &amp; &lt;@U123|boss&gt;" in block_text(rendered[0])


# ---- the verb dispatch ----------------------------------------------------------------------------------


def test_an_unknown_verb_names_the_valid_ones():
    with pytest.raises(UsageError) as caught:
        policy_command(SimpleNamespace(args=["frobnicate"]))
    assert "`/mam policy frobnicate`" in str(caught.value)
    assert "`list`" in str(caught.value) and "`show`" in str(caught.value)


def test_show_needs_a_name():
    with pytest.raises(UsageError, match="Which policy"):
        policy_command(SimpleNamespace(args=["show"]))
