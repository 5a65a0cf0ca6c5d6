"""Double clicks, double submits and repeated commands through the Bolt app itself (the path Socket Mode,
the console and these tests take; `mam-bot serve` is covered in test_http_edge.py): each acts once, and
a form the bot sent back with errors can be sent again."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from bot.app import dispatch_socket_mode
from bot.local import DEMO_ADMIN
from bot.sandbox import SEED_POLICY_ID, SEED_POLICY_NAME
from commands.ids import Action, View
from tests.scenario.conftest import ack_json
from tests.scenario.slack_requests import action_body, command_body, new_action_ts, new_trigger_id, view_state_body

WHY = "finance phones need the policy (CHG0042)"


def opt(value: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": "x"}, "value": value}


def assign_state(bot, *, why: str = WHY, group: str = "Finance") -> dict[str, Any]:
    return {
        "policy": {"pick_policy": {"type": "external_select", "selected_option": opt(SEED_POLICY_ID)}},
        "group": {"pick_group": {"type": "external_select",
                                 "selected_option": opt(str(bot.sandbox.group(group)["id"]))}},
        "mode": {"value": {"type": "radio_buttons", "selected_option": opt("include")}},
        "justification": {"value": {"type": "plain_text_input", "value": why}},
    }


def open_assign_form(bot) -> str:
    bot.command("assign")
    modal = bot.slack.views_open[-1]
    assert modal["callback_id"] == View.ASSIGN
    return str(modal["id"])


def filed(bot) -> int:
    return len(bot.deps.changes.open_requests())


def test_a_form_sent_twice_files_one_request(bot):
    view_id = open_assign_form(bot)
    first = bot.submit_state(View.ASSIGN, state=assign_state(bot), view_id=view_id)
    second = bot.submit_state(View.ASSIGN, state=assign_state(bot), view_id=view_id)  # another trigger_id
    assert first.status == second.status == 200
    assert second.body == ""
    assert filed(bot) == 1


def test_a_form_corrected_after_errors_goes_through(bot):
    view_id = open_assign_form(bot)
    errors = ack_json(bot.submit_state(View.ASSIGN, state=assign_state(bot, why="x"), view_id=view_id))
    assert errors["response_action"] == "errors" and "justification" in errors["errors"]
    assert filed(bot) == 0
    bot.submit_state(View.ASSIGN, state=assign_state(bot), view_id=view_id)
    assert filed(bot) == 1


def test_a_form_sent_back_with_errors_can_be_sent_again_unchanged(bot):
    view_id = open_assign_form(bot)
    for _ in range(2):  # the second press is answered again, not swallowed as a duplicate
        errors = ack_json(bot.submit_state(View.ASSIGN, state=assign_state(bot, why="x"), view_id=view_id))
        assert errors["response_action"] == "errors"


def test_a_command_seen_twice_runs_once(bot):
    url = bot.slack.new_response_url(user=DEMO_ADMIN)
    body = command_body(f'assign "{SEED_POLICY_NAME}" "Finance" --why "{WHY}"', user=DEMO_ADMIN, response_url=url,
                        trigger_id=bot.slack.new_trigger_id(DEMO_ADMIN))
    first, second = bot.dispatch(body), bot.dispatch(body)
    assert first.body and second.status == 200 and second.body == ""
    assert filed(bot) == 1
    bot.command(f'assign "{SEED_POLICY_NAME}" "Sales EMEA" --why "{WHY}"')  # a new command: its own trigger_id
    assert filed(bot) == 2


def test_a_click_delivered_twice_works_once_and_the_next_click_again(bot):
    url = bot.slack.new_response_url(user=DEMO_ADMIN, kind="actions")
    action_ts = new_action_ts()
    for _ in range(2):
        bot.dispatch(action_body(Action.POLICY_SHOW, user=DEMO_ADMIN, response_url=url, value=SEED_POLICY_ID,
                                 action_ts=action_ts, trigger_id=new_trigger_id()))
    assert bot.slack.response_url_uses(url) == 1
    bot.dispatch(action_body(Action.POLICY_SHOW, user=DEMO_ADMIN, response_url=url, value=SEED_POLICY_ID))
    assert bot.slack.response_url_uses(url) == 2


def test_socket_mode_deduplicates_too(bot):
    url = bot.slack.new_response_url(user=DEMO_ADMIN, kind="actions")
    form = action_body(Action.POLICY_SHOW, user=DEMO_ADMIN, response_url=url, value=SEED_POLICY_ID)
    payload = json.loads(parse_qs(form)["payload"][0])
    for _ in range(2):
        assert dispatch_socket_mode(bot.ws.app, dict(payload)).status == 200
        bot.deps.wait_idle()
    assert bot.slack.response_url_uses(url) == 1


def test_a_view_submission_for_another_view_is_its_own(bot):
    first = open_assign_form(bot)
    second = open_assign_form(bot)
    assert first != second
    bot.dispatch(view_state_body(View.ASSIGN, user=DEMO_ADMIN, state=assign_state(bot), view_id=first))
    bot.dispatch(view_state_body(View.ASSIGN, user=DEMO_ADMIN, state=assign_state(bot, group="Sales EMEA"),
                                 view_id=second))
    assert filed(bot) == 2
