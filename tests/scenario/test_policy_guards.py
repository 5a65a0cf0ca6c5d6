"""Guards on destructive settings in `/mam policy new` and `/mam assign` (issue 16, item 4): Intune's two actions
for the threat level only, Wipe confirmed in the form and shown first to approvers, no exclusion-only policy."""

from __future__ import annotations

from bot.local import DEMO_APPROVER
from commands.ids import View
from tests.scenario.conftest import ack_json, block_text
from tests.scenario.test_policy_requests import group_id, newest_request, open_form, policy_form


def with_wipe_box(state: dict, ticked: bool) -> dict:
    chosen = [{"text": {"type": "plain_text", "text": "x"}, "value": "wipe-understood"}] if ticked else []
    return {**state, "confirm_wipe": {"value": {"type": "checkboxes", "selected_options": chosen}}}


def test_the_form_offers_block_and_wipe_only(bot):
    open_form(bot)
    view = bot.slack.views_open[-1]
    action = next(b for b in view["blocks"] if b.get("block_id") == "action")
    assert [o["value"] for o in action["element"]["options"]] == ["block", "wipe"]


def test_wipe_must_be_confirmed_and_approvers_read_it_first(bot):
    view_id = open_form(bot)
    bot.deps.runner.wait_idle()
    pilot = group_id(bot, "MAM Pilot")
    unticked = ack_json(bot.submit_state(View.POLICY_NEW, view_id=view_id, state=with_wipe_box(
        policy_form(include=(pilot,), action="wipe"), ticked=False)))
    assert unticked["response_action"] == "errors" and set(unticked["errors"]) == {"confirm_wipe"}
    assert "removes the work data" in unticked["errors"]["confirm_wipe"]
    assert bot.deps.changes.open_requests() == []  # nothing filed

    ticked = ack_json(bot.submit_state(View.POLICY_NEW, view_id=view_id, state=with_wipe_box(
        policy_form(include=(pilot,), action="wipe"), ticked=True)))
    assert ticked["response_action"] == "update"
    request = newest_request(bot)
    assert request.title.startswith("WIPES work app data above")
    card = [m for m in bot.slack.messages(DEMO_APPROVER) if "Change request #" in m.text][-1]
    assert block_text(card.blocks).index("WIPES work app data") < block_text(card.blocks).index("POST ")


def test_a_new_policy_with_excluded_groups_only_is_refused_with_why(bot):
    view_id = open_form(bot)
    bot.deps.runner.wait_idle()
    errors = ack_json(bot.submit_state(View.POLICY_NEW, view_id=view_id,
                                       state=policy_form(exclude=(group_id(bot, "Executives"),))))
    assert errors["response_action"] == "errors" and set(errors["errors"]) == {"include"}
    assert "protects nobody" in errors["errors"]["include"]
    assert bot.deps.changes.open_requests() == []
