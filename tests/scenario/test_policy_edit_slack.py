"""Edit, any app, delete (issue 16, items 1-3) through signed Slack requests against the sandbox tenant: the forms,
the change requests they file, the approval cards, and what reaches Graph when an approver approves."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from bot.local import DEMO_ADMIN, DEMO_APPROVER, DEMO_END_USER
from bot.microsoft.models import AndroidPolicyDraft, RemediationAction, ThreatLevel
from bot.sandbox import SEED_POLICY_ID, SEED_POLICY_NAME
from commands.ids import Action, View
from commands.payloads import PolicyRef
from commands.policy_edit import EditAction, EditView
from tests.scenario.conftest import ack_json, block_text
from tests.scenario.test_hostile_names import HOSTILE, Seen
from workflows.changes import State
from workflows.policy_edit import DELETE, EDIT

POLICIES = "/beta/deviceAppManagement/androidManagedAppProtections"
WHY = "block managed apps above a low threat on BYOD (CHG0042)"
OUTLOOK, TEAMS, CUSTOM = "com.microsoft.office.outlook", "com.microsoft.teams", "com.contoso.expenses"


def writes(sent: list[httpx.Request]) -> list[tuple[str, str, Any]]:
    return [(r.method, r.url.path, json.loads(r.content) if r.content else None) for r in sent
            if r.method in ("POST", "PATCH", "DELETE") and not r.url.path.endswith("$batch")]


def state_of(view: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The form's `state.values` as Slack sends them when the person changes nothing but `changes`
    (block id → a text, an option value, or a list of option values)."""
    state: dict[str, Any] = {}
    for block in view["blocks"]:
        if block.get("type") != "input":
            continue
        element, block_id = block["element"], block["block_id"]
        kind = element["type"]
        options = [o for g in element.get("option_groups", []) for o in g["options"]] + element.get("options", [])
        by_value = {o["value"]: o for o in options}
        if kind == "plain_text_input":
            value = changes.get(block_id, element.get("initial_value"))
            state[block_id] = {element["action_id"]: {"type": kind, "value": value}}
        elif kind == "static_select":
            chosen = by_value[changes[block_id]] if block_id in changes else element.get("initial_option")
            state[block_id] = {element["action_id"]: {"type": kind, "selected_option": chosen}}
        else:
            chosen = ([by_value[v] for v in changes[block_id]] if block_id in changes
                      else element.get("initial_options", []))
            state[block_id] = {element["action_id"]: {"type": kind, "selected_options": chosen}}
    return state


def initial(view: dict[str, Any], block_id: str) -> Any:
    element = next(b for b in view["blocks"] if b.get("block_id") == block_id)["element"]
    if "initial_option" in element:
        return element["initial_option"]["value"]
    if element["type"] == "plain_text_input":
        return element.get("initial_value")
    return [o["value"] for o in element.get("initial_options", [])]


def option_values(view: dict[str, Any], block_id: str) -> list[str]:
    element = next(b for b in view["blocks"] if b.get("block_id") == block_id)["element"]
    return [o["value"] for g in element.get("option_groups", []) for o in g["options"]] + [
        o["value"] for o in element.get("options", [])]


def open_modal(bot) -> dict[str, Any]:
    [view] = bot.slack.views_open
    return view


def submit(bot, callback: str, view: dict[str, Any], user: str = DEMO_ADMIN, **changes: Any) -> dict[str, Any]:
    return ack_json(bot.submit_state(callback, state=state_of(view, **changes), view_id=view["id"], user=user,
                                     private_metadata=view.get("private_metadata", "")))


def newest_request(bot):
    requests = bot.deps.changes.open_requests()
    assert requests, "no change request was filed"
    return requests[0]


def card_text(bot) -> str:
    cards = [m for m in bot.slack.messages(DEMO_APPROVER) if "Change request #" in m.text]
    assert cards, "no approval card"
    return block_text(cards[-1].blocks)


def approve(bot, request_id: int):
    bot.click(Action.APPROVE, user=DEMO_APPROVER, value=str(request_id))
    return bot.deps.changes.require(request_id)


def add_policy(bot, name: str, *, apps: tuple[str, ...] = (OUTLOOK, TEAMS), level: ThreatLevel = ThreatLevel.LOW,
               action: RemediationAction = RemediationAction.BLOCK) -> str:
    return bot.deps.microsoft.graph.create_android_policy(AndroidPolicyDraft(
        displayName=name, maximumAllowedDeviceThreatLevel=level, mobileThreatDefenseRemediationAction=action,
        packageIds=apps)).id


def last_response(bot):
    return [e for e in bot.slack.events if e.kind == "response"][-1]


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]] + [
        b["accessory"] for b in blocks if b.get("accessory")]


# ---- edit ---------------------------------------------------------------------------------------------


def test_set_threat_level_from_the_list_patches_that_one_property(sent, make_bot):
    bot = make_bot()
    add_policy(bot, "Sales phones")  # sets a level: no button beside it
    bot.command("policy list")
    listed = last_response(bot).blocks
    offered = [b for b in buttons(listed) if b["action_id"] == EditAction.SET_THREAT]
    assert [PolicyRef.decode(b["value"]).id for b in offered] == [SEED_POLICY_ID]

    bot.click(EditAction.SET_THREAT, value=offered[0]["value"])
    view = open_modal(bot)
    assert view["callback_id"] == EditView.EDIT
    assert (initial(view, "threat"), initial(view, "action")) == ("low", "block")
    threat = next(b for b in view["blocks"] if b.get("block_id") == "threat")["element"]
    assert threat.get("focus_on_load") is True
    assert initial(view, "apps") == ["set:allMicrosoftApps"] and initial(view, "name") == SEED_POLICY_NAME
    text = block_text(view["blocks"])
    assert "Groups are not edited here: `/mam assign`" in text and "preset to *Low*" in text
    assert "include" not in {b.get("block_id") for b in view["blocks"]}  # no group pickers

    before = bot.sandbox.policy(SEED_POLICY_ID)
    ack = submit(bot, EditView.EDIT, view, justification=WHY)
    assert ack["response_action"] == "update"
    assert "Filed change request #" in block_text(bot.slack.view(view["id"])["blocks"])
    request = newest_request(bot)
    assert request.kind == EDIT and request.requester == DEMO_ADMIN
    assert json.loads(request.change)["settings"] == {
        "maximumAllowedDeviceThreatLevel": {"before": "notConfigured", "after": "low"}}
    card = card_text(bot)
    assert "Max allowed device threat level: not configured" in card and "Max allowed device threat level: low" in card
    assert f"PATCH {POLICIES}/{SEED_POLICY_ID}" in card and '{"maximumAllowedDeviceThreatLevel": "low"}' in card
    assert "targetApps" not in card

    sent.clear()
    bot.sandbox.stats.reset()
    assert approve(bot, request.id).state == State.SUCCEEDED
    assert writes(sent) == [("PATCH", f"{POLICIES}/{SEED_POLICY_ID}", {"maximumAllowedDeviceThreatLevel": "low"})]
    assert [method for method, _ in bot.sandbox.stats.write_log] == ["PATCH"]  # the tenant's own count agrees
    after = bot.sandbox.policy(SEED_POLICY_ID)
    assert after["maximumAllowedDeviceThreatLevel"] == "low" and len(after["apps"]) == 39
    assert after["apps"] == before["apps"] and after["assignments"] == before["assignments"]
    assert "Done" in card_text(bot)


def test_show_has_an_edit_button_and_the_edit_command_adds_a_custom_app(sent, make_bot):
    bot = make_bot()
    policy_id = add_policy(bot, "Sales phones")
    bot.command('policy show "Sales phones"')
    shown = buttons(last_response(bot).blocks)
    assert [b["action_id"] for b in shown] == [EditAction.EDIT]  # it has a level: no Set threat level here

    bot.click(EditAction.EDIT, value=shown[0]["value"])
    view = open_modal(bot)
    assert sorted(initial(view, "apps")) == sorted([OUTLOOK, TEAMS]) and initial(view, "threat") == "low"
    assert "com.microsoft.office.lync15" not in option_values(view, "apps")  # retired: not offered
    errors = submit(bot, EditView.EDIT, view, custom_apps="com.contoso.expenses, not a package", justification=WHY)
    assert errors["response_action"] == "errors"
    assert "“not a package” is not an Android package id: type ids like com.contoso.expenses" in (
        errors["errors"]["custom_apps"])
    nothing = submit(bot, EditView.EDIT, view, justification=WHY)
    assert "Nothing here differs from the policy now" in nothing["errors"]["threat"]

    submit(bot, EditView.EDIT, view, custom_apps=f"{CUSTOM}\n", justification=WHY)
    request = newest_request(bot)
    assert json.loads(request.change)["apps"] == {"before": [OUTLOOK, TEAMS], "after": [OUTLOOK, TEAMS, CUSTOM]}
    assert json.loads(request.change)["settings"] == {}
    card = card_text(bot)
    assert "Apps (2): Outlook, Teams" in card and "Apps (3): add com.contoso.expenses" in card
    assert "PATCH" not in card and f"POST {POLICIES}/{policy_id}/targetApps" in card

    sent.clear()
    assert approve(bot, request.id).state == State.SUCCEEDED
    assert [(m, p) for m, p, _ in writes(sent)] == [("POST", f"{POLICIES}/{policy_id}/targetApps")]
    assert sorted(a["mobileAppIdentifier"]["packageId"] for a in bot.sandbox.policy(policy_id)["apps"]) == sorted(
        [OUTLOOK, TEAMS, CUSTOM])
    bot.command('policy show "Sales phones"')
    assert "*Apps* (3): Outlook, Teams, com.contoso.expenses" in block_text(last_response(bot).blocks)

    bot.command(f"policy edit {policy_id}")  # an app added by id is in the text field next time, as it is
    assert initial(open_modal(bot), "custom_apps") == CUSTOM


def test_a_setting_changed_since_approval_ends_the_request_failed_and_overwrites_nothing(sent, make_bot):
    bot = make_bot()
    bot.command(f'policy edit "{SEED_POLICY_NAME}"')
    view = open_modal(bot)
    assert initial(view, "threat") == "notConfigured"  # as it is; the new-policy form doesn't offer it
    submit(bot, EditView.EDIT, view, threat="medium", justification=WHY)
    request = newest_request(bot)
    bot.sandbox.policies_store.update(SEED_POLICY_ID, {"maximumAllowedDeviceThreatLevel": "high"}, True)
    sent.clear()
    done = approve(bot, request.id)
    assert done.state == State.FAILED
    assert writes(sent) == [] and bot.sandbox.policy(SEED_POLICY_ID)["maximumAllowedDeviceThreatLevel"] == "high"
    card = card_text(bot)
    assert "Changed since approval" in card and "Max allowed device threat level is now high" in card
    dm = [m for m in bot.slack.messages(DEMO_ADMIN) if f"Change request #{request.id}" in m.text]
    assert dm and "Failed" in dm[-1].text


def test_an_existing_warn_action_is_shown_as_it_is_and_wipe_must_be_confirmed(make_bot):
    bot = make_bot()
    add_policy(bot, "Old warn policy", action=RemediationAction.WARN,
               apps=(OUTLOOK, "com.microsoft.office.lync15", CUSTOM))
    bot.command('policy edit "Old warn policy"')
    view = open_modal(bot)
    assert initial(view, "action") == "warn" and option_values(view, "action") == ["block", "wipe", "warn"]
    assert "com.microsoft.office.lync15" in initial(view, "apps")  # retired, but listed by this policy
    assert "Skype for Business (retired)" in block_text(view["blocks"])
    assert initial(view, "custom_apps") == CUSTOM
    errors = submit(bot, EditView.EDIT, view, action="wipe", justification=WHY)
    assert "tick the box to confirm" in errors["errors"]["confirm_wipe"]
    submit(bot, EditView.EDIT, view, action="wipe", confirm_wipe=["wipe-understood"], justification=WHY)
    request = newest_request(bot)
    assert request.title.startswith("WIPES work app data above low")
    assert "Action above it: Warn" in card_text(bot) and "Action above it: Wipe data" in card_text(bot)

    bot.command("policy new")  # a new policy: Block access and Wipe data only, no retired apps
    new = bot.slack.views_open[-1]
    assert option_values(new, "action") == ["block", "wipe"]
    assert not {"com.microsoft.office.lync15", "com.microsoft.mobile.polymer",
                "com.microsoft.office.officelens"} & set(option_values(new, "apps"))
    assert len(option_values(new, "apps")) <= 100


def test_the_new_policy_form_takes_custom_apps(make_bot):
    bot = make_bot()
    bot.command("policy new")
    view = bot.slack.views_open[-1]
    assert view["callback_id"] == View.POLICY_NEW
    bad = submit(bot, View.POLICY_NEW, view, name="Custom apps", custom_apps="com.contoso.app, 1bad.app",
                 justification=WHY)
    assert "“1bad.app” is not an Android package id" in bad["errors"]["custom_apps"]
    mixed = submit(bot, View.POLICY_NEW, view, name="Custom apps", apps=["set:allMicrosoftApps"],
                   custom_apps=CUSTOM, justification=WHY)
    assert "not both" in mixed["errors"]["apps"]
    too_long = "com." + "a" * 260
    assert "at most 255 characters" in submit(bot, View.POLICY_NEW, view, name="Custom apps", custom_apps=too_long,
                                              justification=WHY)["errors"]["custom_apps"]
    submit(bot, View.POLICY_NEW, view, name="Custom apps", apps=[OUTLOOK], custom_apps=f"{CUSTOM},\ncom.contoso.crm",
           justification=WHY)
    request = newest_request(bot)
    assert json.loads(request.change)["draft"]["packageIds"] == [OUTLOOK, CUSTOM, "com.contoso.crm"]
    assert approve(bot, request.id).state == State.SUCCEEDED
    policy = next(p for p in bot.sandbox.policies if p["displayName"] == "Custom apps")
    assert sorted(a["mobileAppIdentifier"]["packageId"] for a in policy["apps"]) == sorted(
        [OUTLOOK, CUSTOM, "com.contoso.crm"])


# ---- delete -------------------------------------------------------------------------------------------


def test_delete_asks_for_the_typed_name_and_says_who_loses_protection(sent, make_bot):
    bot = make_bot()
    bot.command("policy delete byod")
    view = open_modal(bot)
    assert view["callback_id"] == EditView.DELETE
    text = block_text(view["blocks"])
    assert f"*delete* the Android app protection policy *{SEED_POLICY_NAME}*" in text
    assert "The only policy whose name matches *byod*" in text
    wrong = submit(bot, EditView.DELETE, view, confirm_name="android byod app protection", justification=WHY)
    assert "That is not the policy's name" in wrong["errors"]["confirm_name"]
    assert bot.deps.changes.open_requests() == []

    submit(bot, EditView.DELETE, view, confirm_name=f" {SEED_POLICY_NAME} ", justification=WHY)
    request = newest_request(bot)
    assert request.kind == DELETE
    card = card_text(bot)
    members = bot.deps.microsoft.graph.group_member_count(str(bot.sandbox.group("All Android Users")["id"]))
    assert f"includes All Android Users ({members:,} members)" in card and "excludes Executives" in card
    assert "lose this protection" in card and f"DELETE {POLICIES}/{SEED_POLICY_ID}" in card

    sent.clear()
    assert approve(bot, request.id).state == State.SUCCEEDED
    assert writes(sent) == [("DELETE", f"{POLICIES}/{SEED_POLICY_ID}", None)]
    assert bot.sandbox.policy(SEED_POLICY_ID) is None


def test_unknown_and_ambiguous_names_are_answered_in_the_modal(make_bot):
    bot = make_bot()
    add_policy(bot, "Android Corporate")
    bot.command("policy edit android")
    assert "2 policies match “android”" in block_text(open_modal(bot)["blocks"])
    bot.command('policy delete "Andriod BYOD App Protecton"')
    text = block_text(bot.slack.views_open[-1]["blocks"])
    assert "No Android app protection policy called “Andriod BYOD App Protecton”" in text
    assert f"Closest: {SEED_POLICY_NAME}" in text
    assert "Which policy?" in ack_json(bot.command("policy edit")[0])["text"]


# ---- who may, and hostile names ----------------------------------------------------------------------


def test_only_admins_may_edit_or_delete(make_bot):
    bot = make_bot()
    for user in (DEMO_APPROVER, DEMO_END_USER):
        edit = ack_json(bot.command(f'policy edit "{SEED_POLICY_NAME}"', user=user)[0])["text"]
        assert "Only mam-bot admins can ask to edit app protection policies" in edit
        delete = ack_json(bot.command(f'policy delete "{SEED_POLICY_NAME}"', user=user)[0])["text"]
        assert "Only mam-bot admins can ask to delete app protection policies" in delete
    ref = PolicyRef(id=SEED_POLICY_ID).encode()
    bot.click(EditAction.SET_THREAT, user=DEMO_APPROVER, value=ref)
    bot.click(EditAction.EDIT, user=DEMO_END_USER, value=ref)
    assert bot.slack.views_open == []
    refusals = [e for e in bot.slack.events if e.kind == "response"]
    assert any("Only mam-bot admins can set a policy's max device threat level" in block_text(e.blocks) + e.text
               for e in refusals)
    # a form opened by an admin, submitted by someone else, is refused too
    bot.command(f'policy edit "{SEED_POLICY_NAME}"')
    view = open_modal(bot)
    refused = bot.submit_state(EditView.EDIT, state=state_of(view, justification=WHY), view_id=view["id"],
                               user=DEMO_APPROVER, private_metadata=view["private_metadata"])
    assert "Only mam-bot admins can ask to edit app protection policies" in refused.body
    assert bot.deps.changes.open_requests() == []


def test_the_requester_can_not_approve_their_own_edit(make_bot):
    both = "UBOTH0001"
    bot = make_bot(mam_admins=[DEMO_ADMIN, both], mam_approvers=[DEMO_APPROVER, both])
    bot.command(f'policy edit "{SEED_POLICY_NAME}"', user=both)
    submit(bot, EditView.EDIT, open_modal(bot), user=both, threat="low", justification=WHY)
    request = newest_request(bot)
    bot.click(Action.APPROVE, user=both, value=str(request.id))
    assert bot.deps.changes.require(request.id).state == State.PENDING


@pytest.mark.parametrize("name", [
    "Accept & <Test> BYOD " + HOSTILE,
    ("<@U1> & <!channel> " + "long name " * 300)[:3000],
])
def test_hostile_and_long_names_stay_inert_within_slacks_limits(make_bot, name):
    bot = make_bot()
    bot.sandbox.policies_store.update(SEED_POLICY_ID, {"displayName": name}, True)
    seen = Seen(bot)
    seen.command("policy list")
    seen.command(f"policy show {SEED_POLICY_ID}")
    bot.click(EditAction.SET_THREAT, value=PolicyRef(id=SEED_POLICY_ID).encode())
    view = open_modal(bot)
    assert initial(view, "name") == name  # the whole name, as it is (plain text)
    submit(bot, EditView.EDIT, view, justification=f"pilot {HOSTILE}")
    request = newest_request(bot)
    assert json.loads(request.change)["settings"] == {
        "maximumAllowedDeviceThreatLevel": {"before": "notConfigured", "after": "low"}}  # the name is not touched
    assert len(request.title) <= 512 and len(request.target) <= 512
    assert approve(bot, request.id).state == State.SUCCEEDED
    seen.command(f"policy delete {SEED_POLICY_ID}")
    delete = bot.slack.views_open[-1]
    wrong = submit(bot, EditView.DELETE, delete, confirm_name="nope", justification=WHY)
    assert "confirm_name" in wrong["errors"]
    submit(bot, EditView.DELETE, delete, confirm_name=name, justification=WHY)
    assert newest_request(bot).kind == DELETE
    seen.command("requests")
    seen.assert_inert()
