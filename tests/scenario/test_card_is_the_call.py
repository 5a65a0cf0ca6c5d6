"""The card is the call: for every change kind the bot registers, the writes on the approval card are the writes
the tenant receives when it is approved, bodies equal as JSON.

Each kind is filed as people file it (signed Slack requests), its card read from the approver's DM,
approved by a signed click, and the card's calls held against `SandboxStats.write_requests`. A new
policy's id is `{new id}` on the card: it matches one id, the same in every call, of a policy that did
not exist before. Reads carry no body and are not compared.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bot.local import DEMO_ADMIN, DEMO_APPROVER
from bot.microsoft.graph import POLICIES
from bot.sandbox import SEED_POLICY_ID, SEED_POLICY_NAME, SandboxTenant
from bot.settings import load_settings
from commands.ids import Action, View
from tests.scenario.conftest import Bot, ack_json, block_text
from tests.scenario.test_policy_requests import open_form, policy_form
from workflows.changes import State

WHY = "card is the call check (CHG0099)"
MUST_DRIVE = {"policy_create", "policy_assign", "connector_toggle", "policy_edit", "policy_delete"}
NEW_ID = "{new id}"
_CALL = re.compile(r"(GET|POST|PATCH|PUT|DELETE) (/.*)")
ALL_USERS_FILTERED = {
    "@odata.type": "#microsoft.graph.allLicensedUsersAssignmentTarget",
    "deviceAndAppManagementAssignmentFilterId": "9d3bbc35-6f1c-4dd6-a2f4-3d3a0e5c6b11",
    "deviceAndAppManagementAssignmentFilterType": "include",
}


def registered_kinds() -> list[str]:
    """The change kinds `bot.compose` registers now (a kind added later is picked up by this test)."""
    from bot.compose import build_deps

    with tempfile.TemporaryDirectory() as folder, SandboxTenant() as sandbox:
        deps = build_deps(load_settings(database_url=f"sqlite:///{folder}/kinds.db", mam_cloud="sandbox",
                                        mam_graph_url=None, mam_defender_url=None),
                          slack_client=None, sandbox=sandbox)
        try:
            return sorted(deps.changes.kinds)
        finally:
            deps.close()


KINDS = registered_kinds()


# ---- reading the card and the tenant ------------------------------------------------------------


def card_text(bot: Bot, request_id: int) -> str:
    """Every text of the approver's card of `request_id`, as it is now."""
    header = f"Change request #{request_id}"
    cards = [m for m in bot.slack.messages(DEMO_APPROVER)
             if any(b.get("type") == "header" and b["text"]["text"] == header for b in m.blocks)]
    assert cards, f"no card for #{request_id} in the approver's DM"
    return block_text(cards[-1].blocks)


def card_calls(bot: Bot, request_id: int) -> list[dict[str, Any]]:
    """The calls on the approver's card of `request_id`, parsed back from its code block."""
    text = card_text(bot, request_id)
    code = text.split("*Graph calls it will make*\n", 1)[1].split("```")[1]
    assert "(truncated" not in code, "the card's calls were cut: the comparison needs them whole"
    code = code.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    calls: list[dict[str, Any]] = []
    for line in code.splitlines():
        found = _CALL.fullmatch(line)
        if found:
            calls.append({"method": found[1], "path": found[2], "body": None})
        else:
            assert calls and calls[-1]["body"] is None, f"a body line without its call: {line!r}"
            calls[-1]["body"] = json.loads(line)
    return calls


def received_since(bot: Bot, mark: int) -> list[dict[str, Any]]:
    return [{"method": w.method, "path": w.path, "body": w.body} for w in bot.sandbox.stats.write_requests[mark:]]


def assert_card_is_the_call(card: list[dict[str, Any]], received: list[dict[str, Any]],
                            existing_policies: set[str]) -> None:
    writes = [c for c in card if c["method"] != "GET"]
    assert writes, "the card shows no write"
    new_ids: set[str] = set()
    assert len(received) == len(writes), (
        "the tenant received other writes than the card shows:\n card: "
        + json.dumps(writes, indent=1) + "\n received: " + json.dumps(received, indent=1))
    for shown, sent in zip(writes, received, strict=True):
        assert shown["method"] == sent["method"], (shown, sent)
        pattern = re.escape(shown["path"]).replace(re.escape(NEW_ID), "([^/]+)")
        matched = re.fullmatch(pattern, sent["path"])
        assert matched, f"card path {shown['path']} but the tenant got {sent['path']}"
        new_ids.update(matched.groups())
        assert shown["body"] == sent["body"], (
            f"{shown['method']} {shown['path']}: the card's body is not the body sent\n card: "
            + json.dumps(shown["body"], indent=1) + "\n sent: " + json.dumps(sent["body"], indent=1))
    assert len(new_ids) <= 1, f"{NEW_ID} stood for several ids: {sorted(new_ids)}"
    assert not new_ids & existing_policies, f"{NEW_ID} was an existing policy: {new_ids}"


# ---- how each kind is filed ---------------------------------------------------------------------


def group_id(bot: Bot, name: str) -> str:
    found = bot.sandbox.group(name)
    assert found is not None, name
    return str(found["id"])


def portal_assign(bot: Bot, policy_id: str, targets: list[dict[str, Any]]) -> None:
    """Someone sets the policy's assignments in Intune, outside the bot (the sandbox's own API)."""
    with httpx.Client(transport=bot.sandbox.transport(), base_url="https://graph.microsoft.com",
                      headers={"Authorization": "Bearer portal"}) as portal:
        answer = portal.post(f"{POLICIES}/{policy_id}/assign", json={"assignments": [{"target": t} for t in targets]})
    assert answer.status_code == 204, answer.text


def newest_request_id(bot: Bot, kind: str) -> int:
    requests = [r for r in bot.deps.changes.open_requests() if r.kind == kind]
    assert requests, f"no {kind} request was filed"
    assert requests[0].id is not None
    return requests[0].id


def file_policy_create(bot: Bot) -> int:
    """The new-policy form: all Microsoft apps (targetApps after the create), an include and an exclude."""
    view_id = open_form(bot)
    state = policy_form("Card is the call", apps=("set:allMicrosoftApps",), include=(group_id(bot, "MAM Pilot"),),
                        exclude=(group_id(bot, "Executives"),), why=WHY)
    assert ack_json(bot.submit_state(View.POLICY_NEW, state=state, view_id=view_id))["response_action"] == "update"
    return newest_request_id(bot, "policy_create")


def file_policy_assign(bot: Bot) -> int:
    """`/mam assign` on a policy already assigned to all licensed users with an assignment filter, and a group."""
    portal_assign(bot, SEED_POLICY_ID, [
        ALL_USERS_FILTERED,
        {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"},
        {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group_id(bot, "All Android Users"),
         "deviceAndAppManagementAssignmentFilterId": "0f9e3d2c-1b4a-4c5d-8e7f-6a5b4c3d2e1f",
         "deviceAndAppManagementAssignmentFilterType": "exclude"},
        {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": group_id(bot, "Executives")},
    ])
    bot.command(f'assign "{SEED_POLICY_NAME}" "MAM Pilot" --why "{WHY}"')
    return newest_request_id(bot, "policy_assign")


def file_connector_toggle(bot: Bot) -> int:
    """`/mam connectors enable-android <why>` with Android app protection evaluation off."""
    bot.sandbox.set_connector(androidMobileApplicationManagementEnabled=False)
    bot.command(f"connectors enable-android {WHY}")
    return newest_request_id(bot, "connector_toggle")


def file_policy_edit(bot: Bot) -> int:
    """An edit of the seeded policy: its threat level set (PATCH), and from all Microsoft apps to Outlook and a
    line-of-business app (targetApps): a short list, so the card holds the whole body."""
    policy = bot.sandbox.policy(SEED_POLICY_ID)
    assert policy is not None
    apps = [a["mobileAppIdentifier"]["packageId"] for a in policy["apps"]]
    change = {"policy_id": SEED_POLICY_ID,
              "settings": {"maximumAllowedDeviceThreatLevel": {"before": policy["maximumAllowedDeviceThreatLevel"],
                                                                "after": "low"},
                           "appGroupType": {"before": policy["appGroupType"], "after": "selectedPublicApps"}},
              "apps": {"before": apps, "after": ["com.microsoft.office.outlook", "com.contoso.expenses"]}}
    request = bot.deps.changes.file("policy_edit", change, requester=DEMO_ADMIN, justification=WHY)
    bot.deps.wait_idle()  # the card goes out through the outbox
    assert request.id is not None
    return request.id


def file_policy_delete(bot: Bot) -> int:
    request = bot.deps.changes.file("policy_delete", {"policy_id": SEED_POLICY_ID}, requester=DEMO_ADMIN,
                                    justification=WHY)
    bot.deps.wait_idle()
    assert request.id is not None
    return request.id


DRIVERS: dict[str, Callable[[Bot], int]] = {
    "policy_create": file_policy_create,
    "policy_assign": file_policy_assign,
    "connector_toggle": file_connector_toggle,
    "policy_edit": file_policy_edit,
    "policy_delete": file_policy_delete,
}


# ---- the tests ----------------------------------------------------------------------------------


def test_the_kinds_that_must_be_compared_are_registered():
    assert set(KINDS) >= MUST_DRIVE, f"registered: {KINDS}"


@pytest.mark.parametrize("kind", KINDS)
def test_the_card_is_the_call(bot: Bot, kind: str):
    if kind not in DRIVERS:
        pytest.fail(f"change kind {kind!r} is registered in bot.compose but this test does not know how to file it: "
                    f"add a driver for {kind!r} to DRIVERS in tests/scenario/test_card_is_the_call.py")
    request_id = DRIVERS[kind](bot)
    request = bot.deps.changes.require(request_id)
    card = card_calls(bot, request_id)
    assert card == json.loads(request.plan), "the card shows other calls than the stored plan"
    existing = {str(p["id"]) for p in bot.sandbox.policies}
    mark = len(bot.sandbox.stats.write_requests)

    bot.click(Action.APPROVE, user=DEMO_APPROVER, value=str(request_id))
    done = bot.deps.changes.require(request_id)
    assert done.state == State.SUCCEEDED, done.error
    assert_card_is_the_call(card, received_since(bot, mark), existing)


def test_assign_keeps_all_users_and_filters_on_the_card_and_in_the_tenant(bot: Bot):
    request_id = file_policy_assign(bot)
    (assign,) = [c for c in card_calls(bot, request_id) if c["method"] == "POST"]
    targets = [a["target"] for a in assign["body"]["assignments"]]
    assert targets[0] == ALL_USERS_FILTERED
    assert targets[1] == {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}
    assert targets[2]["deviceAndAppManagementAssignmentFilterType"] == "exclude"
    assert targets[-1] == {"@odata.type": "#microsoft.graph.groupAssignmentTarget",
                           "groupId": group_id(bot, "MAM Pilot")}
    card = card_text(bot, request_id)
    assert "include all licensed users (filter 9d3bbc35-6f1c-4dd6-a2f4-3d3a0e5c6b11: include)" in card
    bot.click(Action.APPROVE, user=DEMO_APPROVER, value=str(request_id))
    after = bot.sandbox.policy(SEED_POLICY_ID)
    assert after is not None
    kept = after["assignments"][0]["target"]
    assert kept["@odata.type"] == ALL_USERS_FILTERED["@odata.type"]
    assert kept["deviceAndAppManagementAssignmentFilterId"] == ALL_USERS_FILTERED[
        "deviceAndAppManagementAssignmentFilterId"]
    assert kept["deviceAndAppManagementAssignmentFilterType"] == "include"


def test_a_policy_sets_assignments_are_left_out_and_the_card_says_so(bot: Bot):
    sales = group_id(bot, "Sales")
    # as Intune shows an assignment a policy set made (the sandbox has no policy sets to make one)
    bot.sandbox.policies_store.get(SEED_POLICY_ID).assignments.append({
        "@odata.type": "#microsoft.graph.targetedManagedAppPolicyAssignment", "id": "ps-sales",
        "source": "policySets", "sourceId": "ps-7",
        "target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": sales,
                   "deviceAndAppManagementAssignmentFilterId": None,
                   "deviceAndAppManagementAssignmentFilterType": "none"}})
    bot.command(f'assign "{SEED_POLICY_NAME}" "MAM Pilot" --why "{WHY}"')
    request_id = newest_request_id(bot, "policy_assign")
    shown = card_text(bot, request_id)
    assert "1 assignment comes from a policy set and is left alone: include Sales (from policy set ps-7)" in shown
    card = card_calls(bot, request_id)
    (assign,) = [c for c in card if c["method"] == "POST"]
    assert sales not in json.dumps(assign["body"]) and '"source"' not in json.dumps(assign["body"])
    mark = len(bot.sandbox.stats.write_requests)
    bot.click(Action.APPROVE, user=DEMO_APPROVER, value=str(request_id))
    done = bot.deps.changes.require(request_id)
    assert done.state == State.SUCCEEDED, done.error
    assert "comes from a policy set and is left alone" in done.result
    assert_card_is_the_call(card, received_since(bot, mark), set())
