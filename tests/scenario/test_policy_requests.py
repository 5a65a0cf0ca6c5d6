"""`/mam policy new`, `/mam assign` and `/mam unassign` end to end: signed requests, the sandbox's state after."""

from __future__ import annotations

from typing import Any

from bot.local import DEMO_ADMIN, DEMO_APPROVER, DEMO_END_USER
from bot.sandbox import SEED_POLICY_ID, SEED_POLICY_NAME
from commands.ids import Action, View
from tests.scenario.conftest import ack_json, block_text

WHY = "protect pilot users' mail on risky phones (CHG0042)"
NAME = "Android MAM - block above low"


def opt(value: str, text: str = "x") -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text}, "value": value}


def policy_form(name: str = NAME, *, apps: tuple[str, ...] = ("com.microsoft.office.outlook", "com.microsoft.teams"),
                include: tuple[str, ...] = (), exclude: tuple[str, ...] = (), why: str = WHY,
                device_types: tuple[str, ...] = ("unmanaged",), threat: str = "low", action: str = "block") -> dict:
    return {
        "name": {"value": {"type": "plain_text_input", "value": name}},
        "description": {"value": {"type": "plain_text_input", "value": "block above low"}},
        "apps": {"value": {"type": "multi_static_select", "selected_options": [opt(a) for a in apps]}},
        "device_types": {"value": {"type": "multi_static_select", "selected_options": [opt(d) for d in device_types]}},
        "threat": {"value": {"type": "static_select", "selected_option": opt(threat)}},
        "action": {"value": {"type": "static_select", "selected_option": opt(action)}},
        "include": {"pick_group": {"type": "multi_external_select", "selected_options": [opt(g) for g in include]}},
        "exclude": {"pick_group": {"type": "multi_external_select", "selected_options": [opt(g) for g in exclude]}},
        "justification": {"value": {"type": "plain_text_input", "value": why}},
    }


def group_id(bot, name: str) -> str:
    return str(bot.sandbox.group(name)["id"])


def open_form(bot) -> str:
    response, _ = bot.command("policy new")
    assert response.status == 200
    view = bot.slack.views_open[-1]
    assert view["callback_id"] == View.POLICY_NEW
    return str(view["id"])


def newest_request(bot):
    requests = bot.deps.changes.open_requests()
    assert requests, "no change request was filed"
    return requests[0]


def approve(bot, request_id: int) -> None:
    bot.click(Action.APPROVE, user=DEMO_APPROVER, value=str(request_id))


def test_new_policy_from_the_modal_to_the_tenant(bot):
    view_id = open_form(bot)
    pilot, execs = group_id(bot, "MAM Pilot"), group_id(bot, "Executives")
    ack = ack_json(bot.submit_state(View.POLICY_NEW, state=policy_form(include=(pilot,), exclude=(execs,)),
                                    view_id=view_id))
    assert ack["response_action"] == "update"
    filed = bot.slack.view(view_id)
    assert "Filed change request #" in block_text(filed["blocks"])
    request = newest_request(bot)
    assert request.requester == DEMO_ADMIN and request.kind == "policy_create"
    card = block_text([m for m in bot.slack.messages(DEMO_APPROVER) if "Change request #" in m.text][-1].blocks)
    assert "POST /beta/deviceAppManagement/androidManagedAppProtections" in card and "/targetApps" in card
    assert "/assign" in card and '"maximumAllowedDeviceThreatLevel": "low"' in card

    approve(bot, request.id)
    policy = next(p for p in bot.sandbox.policies if p["displayName"] == NAME)
    assert policy["maximumAllowedDeviceThreatLevel"] == "low"
    assert policy["mobileThreatDefenseRemediationAction"] == "block"
    assert policy["targetedAppManagementLevels"] == "unmanaged"
    assert {a["mobileAppIdentifier"]["packageId"] for a in policy["apps"]} == {
        "com.microsoft.office.outlook", "com.microsoft.teams"}
    assert {(a["target"]["@odata.type"], a["target"]["groupId"]) for a in policy["assignments"]} == {
        ("#microsoft.graph.groupAssignmentTarget", pilot), ("#microsoft.graph.exclusionGroupAssignmentTarget", execs)}


def test_the_form_answers_mistakes_within_the_ack(bot):
    view_id = open_form(bot)
    bot.deps.runner.wait_idle()
    errors = ack_json(bot.submit_state(View.POLICY_NEW, view_id=view_id, state=policy_form(
        name="", apps=(), why="x", device_types=("unspecified", "mdm"))))
    assert errors["response_action"] == "errors"
    assert set(errors["errors"]) == {"name", "apps", "justification", "device_types"}
    taken = ack_json(bot.submit_state(View.POLICY_NEW, view_id=view_id,
                                      state=policy_form(name=SEED_POLICY_NAME.upper())))
    assert "already has this name" in taken["errors"]["name"]
    mixed = ack_json(bot.submit_state(View.POLICY_NEW, view_id=view_id,
                                      state=policy_form(apps=("set:allMicrosoftApps", "com.microsoft.teams"))))
    assert "apps" in mixed["errors"]
    assert bot.deps.changes.open_requests() == []


def test_a_failure_while_filing_refills_the_form_with_the_reason(bot):
    view_id = open_form(bot)
    bot.submit_state(View.POLICY_NEW, view_id=view_id,
                     state=policy_form(include=("00000000-0000-0000-0000-00000000dead",)))
    view = bot.slack.view(view_id)
    text = block_text(view["blocks"])
    assert "There is no group with id" in text
    name_block = next(b for b in view["blocks"] if b.get("block_id") == "name")
    assert name_block["element"]["initial_value"] == NAME  # nothing typed is lost
    assert bot.deps.changes.open_requests() == []


def test_group_picker_searches_the_directory(bot):
    options = ack_json(bot.options(Action.PICK_GROUP, "Sal"))["options"]
    assert {o["text"]["text"] for o in options} >= {"Sales", "Sales EMEA", "Sales AMER"}
    assert ack_json(bot.options(Action.PICK_GROUP, "Sal", user=DEMO_END_USER)) == {"options": []}


def test_policy_picker_lists_policies(bot):
    options = ack_json(bot.options(Action.PICK_POLICY, "byod"))["options"]
    assert [o["value"] for o in options] == [SEED_POLICY_ID]


def test_assign_with_names_shows_the_group_and_asks_for_a_reason(bot):
    response, _ = bot.command(f'assign "{SEED_POLICY_NAME}" "MAM Pilot"')
    assert "Looking up" in ack_json(response)["text"]
    answer = [e for e in bot.slack.events if e.kind == "response"][-1]
    text = block_text(answer.blocks)
    assert "direct member" in text and "include All Android Users" in text and "exclude Executives" in text
    button = next(b for b in answer.blocks if b["type"] == "actions")["elements"][0]
    bot.click(Action.ASSIGN_REQUEST, value=button["value"])
    modal = bot.slack.views_open[-1]
    assert modal["callback_id"] == View.JUSTIFY
    bot.submit(View.JUSTIFY, values={"justification": WHY}, private_metadata=modal["private_metadata"])
    request = newest_request(bot)
    approve(bot, request.id)
    groups = {a["target"]["groupId"] for a in bot.sandbox.policy(SEED_POLICY_ID)["assignments"]}
    assert groups == {group_id(bot, "All Android Users"), group_id(bot, "Executives"), group_id(bot, "MAM Pilot")}


def test_assign_with_a_reason_files_at_once(bot):
    bot.command(f'assign "{SEED_POLICY_NAME}" "Sales EMEA" --exclude --why "{WHY}"')
    request = newest_request(bot)
    assert "exclude Sales EMEA" in request.title
    approve(bot, request.id)
    targets = bot.sandbox.policy(SEED_POLICY_ID)["assignments"]
    assert ("#microsoft.graph.exclusionGroupAssignmentTarget", group_id(bot, "Sales EMEA")) in {
        (a["target"]["@odata.type"], a["target"]["groupId"]) for a in targets}


def test_unassign(bot):
    bot.command(f'unassign "{SEED_POLICY_NAME}" Executives --why "{WHY}"')
    approve(bot, newest_request(bot).id)
    groups = [a["target"]["groupId"] for a in bot.sandbox.policy(SEED_POLICY_ID)["assignments"]]
    assert groups == [group_id(bot, "All Android Users")]


def test_an_ambiguous_group_gets_a_pick_list(bot):
    bot.command(f'assign "{SEED_POLICY_NAME}" Contractors')
    answer = [e for e in bot.slack.events if e.kind == "response"][-1]
    assert "Several groups match *Contractors*" in block_text(answer.blocks)
    buttons = next(b for b in answer.blocks if b["type"] == "actions")["elements"]
    assert len(buttons) == 2
    bot.click(buttons[0]["action_id"], value=buttons[0]["value"])
    confirm = [e for e in bot.slack.events if e.kind == "response"][-1]
    assert "You are about to ask to assign" in block_text(confirm.blocks)


def test_unknown_names_get_the_closest(bot):
    bot.command('assign "Andriod BYOD" Contractrs')
    text = block_text([e for e in bot.slack.events if e.kind == "response"][-1].blocks)
    assert "Closest: *Android BYOD App Protection*" in text and "*Contractors*" in text


def test_assign_usage_errors(bot):
    assert "Name the policy and the group" in ack_json(bot.command('assign "only one"')[0])["text"]
    assert "needs the reason" in ack_json(bot.command('assign a b --why')[0])["text"]
    refused = ack_json(bot.command('assign a b', user=DEMO_APPROVER)[0])["text"]
    assert "Only mam-bot admins can run `/mam assign`." in refused


def test_assign_without_arguments_opens_the_form(bot):
    bot.command("assign")
    modal = bot.slack.views_open[-1]
    assert modal["callback_id"] == View.ASSIGN
    state = {
        "policy": {"pick_policy": {"type": "external_select", "selected_option": opt(SEED_POLICY_ID)}},
        "group": {"pick_group": {"type": "external_select", "selected_option": opt(group_id(bot, "Finance"))}},
        "mode": {"value": {"type": "radio_buttons", "selected_option": opt("include")}},
        "justification": {"value": {"type": "plain_text_input", "value": WHY}},
    }
    bot.submit_state(View.ASSIGN, state=state, view_id=modal["id"])
    request = newest_request(bot)
    approve(bot, request.id)
    assert group_id(bot, "Finance") in {a["target"]["groupId"]
                                        for a in bot.sandbox.policy(SEED_POLICY_ID)["assignments"]}


def test_names_with_mrkdwn_are_escaped(bot):
    from bot.microsoft.models import AndroidPolicyDraft

    bot.deps.microsoft.graph.create_android_policy(AndroidPolicyDraft.model_validate(
        {"displayName": "<!channel> policy", "maximumAllowedDeviceThreatLevel": "low"}))
    bot.command('assign "<!channel> policy" "MAM Pilot"')
    answer = [e for e in bot.slack.events if e.kind == "response"][-1]
    text = block_text(answer.blocks)
    assert "<!channel>" not in text and "&lt;!channel&gt; policy" in text
