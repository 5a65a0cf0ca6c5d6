"""Attacks on issue 16 through signed Slack requests: deleting the wrong policy, one PATCH on a big policy, who may
press what, self-approval, a double Revert, hostile text on forms and cards. A failing attack is xfail(strict)."""

from __future__ import annotations

import json
from typing import Any

from bot.local import DEMO_ADMIN, DEMO_APPROVER, DEMO_END_USER
from bot.sandbox import SEED_POLICY_ID, SEED_POLICY_NAME
from commands.drift import DriftAction
from commands.ids import Action
from commands.payloads import PolicyRef
from commands.policy_edit import EditAction, EditView
from tests.scenario.conftest import block_text
from tests.scenario.test_drift_slack import ALERTS, HOSTILE, MEGAN, cards, drift_bot, last_response, poll, value_of
from tests.scenario.test_hostile_names import Seen
from tests.scenario.test_policy_edit_slack import (
    CUSTOM,
    OUTLOOK,
    WHY,
    add_policy,
    approve,
    card_text,
    newest_request,
    state_of,
    submit,
    writes,
)
from workflows.changes import State
from workflows.drift import open_reports
from workflows.policies import PICKER_APPS
from workflows.policy_edit import DELETE, EDIT

POLICIES = "/beta/deviceAppManagement/androidManagedAppProtections"
BOTH = "UBOTH0001"


def last_view(bot) -> dict[str, Any]:
    return bot.slack.view(bot.slack.views_open[-1]["id"]) or bot.slack.views_open[-1]


# ---- 1. tenant safety ----------------------------------------------------------------------------------


def test_two_policies_with_one_name_are_never_guessed_and_the_id_deletes_the_right_one(sent, make_bot):
    bot = make_bot()
    first = add_policy(bot, "Sales phones")
    second = add_policy(bot, "Sales  PHONES")
    bot.command('policy delete "sales phones"')
    assert "2 policies match" in block_text(last_view(bot)["blocks"])
    assert bot.deps.changes.open_requests() == []

    bot.command(f"policy delete {second}")
    view = last_view(bot)
    assert second in block_text(view["blocks"])
    wrong_case = submit(bot, EditView.DELETE, view, confirm_name="Sales phones", justification=WHY)
    assert "confirm_name" in wrong_case["errors"]  # another policy's name is not this one's
    submit(bot, EditView.DELETE, view, confirm_name="Sales PHONES", justification=WHY)  # spaces folded, case kept
    request = newest_request(bot)
    assert request.kind == DELETE and json.loads(request.change)["policy_id"] == second
    assert f"DELETE {POLICIES}/{second}" in card_text(bot)
    sent.clear()
    assert approve(bot, request.id).state == State.SUCCEEDED
    assert writes(sent) == [("DELETE", f"{POLICIES}/{second}", None)]
    assert bot.sandbox.policy(first) is not None and bot.sandbox.policy(second) is None


def test_an_edit_of_a_policy_with_39_apps_and_groups_sends_one_patch_and_nothing_else(sent, make_bot):
    bot = make_bot()
    custom = [f"com.contoso.app{n:02d}" for n in range(39 - len(PICKER_APPS))]
    apps = (*PICKER_APPS, *custom)
    assert len(apps) == 39
    policy_id = add_policy(bot, "Big policy", apps=apps)
    bot.sandbox.edit_policy_as(MEGAN.mail, policy_id, include=["Sales", "Finance"], exclude=["Executives"])
    before = bot.sandbox.policy(policy_id)
    bot.command('policy edit "Big policy"')
    view = last_view(bot)
    submit(bot, EditView.EDIT, view, threat="medium", justification=WHY)
    request = newest_request(bot)
    change = json.loads(request.change)
    assert "apps" not in change and change["settings"] == {
        "maximumAllowedDeviceThreatLevel": {"before": "low", "after": "medium"}}
    card = card_text(bot)
    assert "targetApps" not in card and "/assign" not in card
    sent.clear()
    assert approve(bot, request.id).state == State.SUCCEEDED
    assert writes(sent) == [("PATCH", f"{POLICIES}/{policy_id}", {"maximumAllowedDeviceThreatLevel": "medium"})]
    after = bot.sandbox.policy(policy_id)
    assert after["apps"] == before["apps"] and after["assignments"] == before["assignments"]


def test_a_retired_app_the_policy_lists_survives_an_unrelated_edit_from_the_form(sent, make_bot):
    bot = make_bot()
    policy_id = add_policy(bot, "Old apps", apps=(OUTLOOK, "com.microsoft.office.lync15",
                                                   "com.microsoft.mobile.polymer", CUSTOM))
    bot.command('policy edit "Old apps"')
    submit(bot, EditView.EDIT, last_view(bot), threat="high", justification=WHY)
    request = newest_request(bot)
    assert "apps" not in json.loads(request.change)
    sent.clear()
    assert approve(bot, request.id).state == State.SUCCEEDED
    assert [m for m, _, _ in writes(sent)] == ["PATCH"]
    listed = {a["mobileAppIdentifier"]["packageId"] for a in bot.sandbox.policy(policy_id)["apps"]}
    assert listed == {OUTLOOK, "com.microsoft.office.lync15", "com.microsoft.mobile.polymer", CUSTOM}


# ---- 2. authorisation ----------------------------------------------------------------------------------


def test_forms_opened_by_an_admin_can_not_be_submitted_by_others(make_bot):
    bot = make_bot(mam_admins=[DEMO_ADMIN, "UADMIN002"])
    bot.command(f'policy delete "{SEED_POLICY_NAME}"')
    view = last_view(bot)
    for user in (DEMO_APPROVER, DEMO_END_USER, "UADMIN002"):
        bot.submit_state(EditView.DELETE, state=state_of(view, confirm_name=SEED_POLICY_NAME, justification=WHY),
                         view_id=view["id"], user=user, private_metadata=view["private_metadata"])
    bot.command(f'policy edit "{SEED_POLICY_NAME}"')
    edit = last_view(bot)
    bot.submit_state(EditView.EDIT, state=state_of(edit, threat="low", justification=WHY), view_id=edit["id"],
                     user="UADMIN002", private_metadata=edit["private_metadata"])
    assert bot.deps.changes.open_requests() == []


def test_edit_buttons_refused_for_approvers_and_people_without_a_role(make_bot):
    bot = make_bot()
    ref = PolicyRef(id=SEED_POLICY_ID).encode()
    for user in (DEMO_APPROVER, DEMO_END_USER):
        for action in (EditAction.EDIT, EditAction.SET_THREAT):
            bot.click(action, user=user, value=ref)
    assert bot.slack.views_open == []


def test_accept_is_refused_for_an_approver_without_the_admin_role(make_bot):
    bot = drift_bot(make_bot)
    poll(bot)
    bot.sandbox.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="portal")
    poll(bot)
    [card] = cards(bot)
    bot.click(DriftAction.ACCEPT, user=DEMO_APPROVER, value=value_of(card, DriftAction.ACCEPT))
    assert "Only mam-bot admins" in last_response(bot)
    assert len(open_reports(bot.deps.store)) == 1


def test_a_requester_can_not_approve_their_own_delete_or_revert(make_bot):
    bot = drift_bot(make_bot, mam_admins=[DEMO_ADMIN, BOTH], mam_approvers=[DEMO_APPROVER, BOTH])
    bot.command(f'policy delete "{SEED_POLICY_NAME}"', user=BOTH)
    submit(bot, EditView.DELETE, last_view(bot), user=BOTH, confirm_name=SEED_POLICY_NAME, justification=WHY)
    delete = newest_request(bot)
    bot.click(Action.APPROVE, user=BOTH, value=str(delete.id))
    assert bot.deps.changes.require(delete.id).state == State.PENDING

    poll(bot)
    bot.sandbox.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, maximumAllowedDeviceThreatLevel="high")
    poll(bot)
    bot.click(DriftAction.REVERT, user=BOTH, value=value_of(cards(bot)[-1], DriftAction.REVERT))
    revert = next(r for r in bot.deps.changes.open_requests() if r.kind == EDIT)
    assert revert.requester == BOTH
    bot.click(Action.APPROVE, user=BOTH, value=str(revert.id))
    assert bot.deps.changes.require(revert.id).state == State.PENDING
    assert bot.sandbox.policy(SEED_POLICY_ID)["maximumAllowedDeviceThreatLevel"] == "high"  # type: ignore[index]


def test_revert_pressed_twice_on_the_same_card_files_once(make_bot):
    bot = drift_bot(make_bot)
    poll(bot)
    bot.sandbox.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, maximumAllowedDeviceThreatLevel="high")
    poll(bot)
    value = value_of(cards(bot)[0], DriftAction.REVERT)
    bot.click(DriftAction.REVERT, user=DEMO_ADMIN, value=value)
    bot.click(DriftAction.REVERT, user=DEMO_ADMIN, value=value)  # the same, stale card
    assert [r.kind for r in bot.deps.changes.open_requests()] == [EDIT]
    assert "changed since it was shown" in last_response(bot)


# ---- 3. hostile text -----------------------------------------------------------------------------------


def test_hostile_names_in_an_ambiguous_delete_answer_stay_inert(make_bot):
    bot = make_bot()
    add_policy(bot, "<!channel> & <@U1> one " + "z" * 200)
    add_policy(bot, "<!channel> & <@U1> two " + "z" * 200)
    seen = Seen(bot)
    seen.command('policy delete "<!channel>"')
    seen.command('policy edit "<!channel> & <@U1>"')
    assert "2 policies match" in block_text(last_view(bot)["blocks"])
    seen.assert_inert()


def test_a_hostile_admin_upn_on_a_changed_card_stays_inert_and_within_limits(make_bot):
    bot = drift_bot(make_bot)
    poll(bot)
    bot.sandbox.edit_policy_as(HOSTILE[:320], SEED_POLICY_ID, description=HOSTILE)
    poll(bot)
    [card] = cards(bot)
    parsed = [b for b in card.blocks if b["type"] != "header"]
    shown = card.text + block_text(parsed)
    assert "<!channel>" not in shown and "<@U1>" not in shown and "&lt;!channel&gt;" in shown
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in card.blocks if b["type"] == "section")
    assert len(card.text) <= 40000 and ALERTS


def test_a_crlf_description_is_not_rewritten_by_an_unrelated_edit(sent, make_bot):
    bot = make_bot()
    policy_id = add_policy(bot, "No action")
    bot.sandbox.policies_store.update(policy_id, {"description": "line one\r\nline two"}, True)
    bot.command('policy edit "No action"')
    view = last_view(bot)
    # Slack hands a multi-line value back with \n line ends
    submit(bot, EditView.EDIT, view, threat="high", description="line one\nline two", justification=WHY)
    request = newest_request(bot)
    assert set(json.loads(request.change)["settings"]) == {"maximumAllowedDeviceThreatLevel"}
