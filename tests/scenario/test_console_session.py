"""The console drives a real Bolt App: slash commands, button clicks, modals and identities."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from slack_bolt import Ack, App, Respond
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient

from bot.console import ConsoleSession, FakeSlack, ScriptedInput
from bot.console.fake_slack import BOT_ID, BOT_TOKEN, BOT_USER_ID, TEAM_ID
from bot.runner import BackgroundRunner

pytestmark = pytest.mark.http

OPTIONS = [
    {"text": {"type": "plain_text", "text": "Low"}, "value": "low"},
    {"text": {"type": "plain_text", "text": "Medium"}, "value": "medium"},
    {"text": {"type": "plain_text", "text": "High"}, "value": "high"},
]
APPS = [
    {"text": {"type": "plain_text", "text": "Outlook"}, "value": "outlook"},
    {"text": {"type": "plain_text", "text": "Teams"}, "value": "teams"},
    {"text": {"type": "plain_text", "text": "Edge"}, "value": "edge"},
]
POLICY_MODAL = {
    "type": "modal",
    "callback_id": "new_policy",
    "private_metadata": '{"draft": 7}',
    "notify_on_close": True,
    "title": {"type": "plain_text", "text": "New policy"},
    "submit": {"type": "plain_text", "text": "Create"},
    "blocks": [
        {
            "type": "input",
            "block_id": "name",
            "label": {"type": "plain_text", "text": "Policy name"},
            "element": {"type": "plain_text_input", "action_id": "name_input"},
        },
        {
            "type": "input",
            "block_id": "level",
            "label": {"type": "plain_text", "text": "Max threat level"},
            "element": {"type": "static_select", "action_id": "level_select", "options": OPTIONS},
        },
        {
            "type": "input",
            "block_id": "apps",
            "label": {"type": "plain_text", "text": "Apps"},
            "element": {"type": "multi_static_select", "action_id": "apps_select", "options": APPS},
        },
        {
            "type": "input",
            "block_id": "group",
            "label": {"type": "plain_text", "text": "Group"},
            "element": {"type": "external_select", "action_id": "group_search"},
        },
        {
            "type": "input",
            "block_id": "note",
            "optional": True,
            "label": {"type": "plain_text", "text": "Note"},
            "element": {"type": "plain_text_input", "action_id": "note_input", "multiline": True},
        },
    ],
}


@dataclass
class Bot:
    app: App
    runner: BackgroundRunner
    payloads: list[dict[str, Any]] = field(default_factory=list)



def console_authorize(user_id: str | None = None) -> AuthorizeResult:
    """Bolt `authorize=` for the test apps: no auth.test, no token store."""
    return AuthorizeResult(
        enterprise_id=None,
        team_id=TEAM_ID,
        bot_token=BOT_TOKEN,
        bot_user_id=BOT_USER_ID,
        bot_id=BOT_ID,
        user_id=user_id,
    )

def build_bot(slack: FakeSlack) -> Bot:
    runner = BackgroundRunner(max_workers=2)
    app = App(
        process_before_response=True,
        authorize=console_authorize,
        client=WebClient(base_url=slack.api_url, token="xoxb-test"),
    )
    bot = Bot(app, runner)

    @app.command("/mam")
    def mam(ack: Ack, command: dict[str, Any], client: WebClient, respond: Respond) -> None:
        bot.payloads.append(command)
        verb = command["text"]
        if verb == "hello":
            ack(f"Hello <@{command['user_id']}>, I am &lt;mam&gt;")
        elif verb == "card":
            ack()
            runner.submit(
                client.chat_postMessage, channel=command["channel_id"], text="Approve?", blocks=card()
            )
        elif verb == "dm-card":
            ack()
            runner.submit(client.chat_postMessage, channel=command["user_id"], text="Approve?", blocks=card())
        elif verb == "policy":
            ack()
            client.views_open(trigger_id=command["trigger_id"], view=POLICY_MODAL)
        elif verb == "slow":
            ack("Checking the connector…")
            runner.submit(respond, text="Connector is healthy", replace_original=True)
        else:
            ack(f"Unknown command {verb!r}")

    @app.action("approve")
    def approve(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        bot.payloads.append(body)
        channel, ts = body["container"]["channel_id"], body["container"]["message_ts"]
        done = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"Approved by <@{body['user']['id']}>"}}
        ]
        runner.submit(client.chat_update, channel=channel, ts=ts, text="Approved", blocks=done)

    @app.options("group_search")
    def groups(ack: Ack, payload: dict[str, Any]) -> None:
        bot.payloads.append(payload)
        query = payload["value"]
        ack(
            option_groups=[
                {
                    "label": {"type": "plain_text", "text": "Entra ID groups"},
                    "options": [
                        {
                            "text": {"type": "plain_text", "text": f"{query.title()} Team"},
                            "value": f"g-{query}",
                        },
                        {
                            "text": {"type": "plain_text", "text": f"{query.title()} Leads"},
                            "value": f"gl-{query}",
                        },
                    ],
                }
            ]
        )

    @app.view("new_policy")
    def submitted(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        bot.payloads.append(body)
        name = body["view"]["state"]["values"]["name"]["name_input"]["value"]
        if name == "Existing":
            ack(response_action="errors", errors={"name": "A policy with this name already exists"})
            return
        ack()
        runner.submit(client.chat_postMessage, channel="C0CONSOLE", text=f"Draft {name} created")

    @app.view_closed("new_policy")
    def closed(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        bot.payloads.append(body)

    @app.event("app_home_opened")
    def home(event: dict[str, Any], client: WebClient) -> None:
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"Welcome <@{event['user']}>"}}]
        client.views_publish(user_id=event["user"], view={"type": "home", "blocks": blocks})

    return bot


def card() -> list[dict[str, Any]]:
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Assign *Android MAM* to *Sales*?"}},
        {
            "type": "actions",
            "block_id": "decide",
            "elements": [
                {
                    "type": "button",
                    "action_id": "approve",
                    "text": {"type": "plain_text", "text": "Approve"},
                    "style": "primary",
                    "value": "cr-12",
                },
                {"type": "button", "action_id": "reject", "text": {"type": "plain_text", "text": "Reject"}},
            ],
        },
    ]


@pytest.fixture
def bot(slack: FakeSlack) -> Iterator[Bot]:
    built = build_bot(slack)
    yield built
    built.runner.shutdown()


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


def session_for(
    bot: Bot, slack: FakeSlack, out: io.StringIO, answers: list[str] | None = None
) -> ConsoleSession:
    return ConsoleSession(bot.app, slack, bot.runner, out=out, ask=ScriptedInput(answers or [], echo=out))


def test_a_command_acked_with_text_is_an_ephemeral_reply(
    bot: Bot, slack: FakeSlack, out: io.StringIO
) -> None:
    session = session_for(bot, slack, out)

    session.send("/mam hello")

    assert out.getvalue() == "┌ #console reply (only @alex sees this) m1\n│ Hello @alex, I am <mam>\n"
    [command] = bot.payloads
    assert command["command"] == "/mam" and command["text"] == "hello"
    assert (command["user_id"], command["user_name"], command["channel_id"]) == (
        "UADMIN001",
        "alex",
        "C0CONSOLE",
    )
    assert command["team_id"] == "T0CONSOLE" and command["trigger_id"]
    assert command["response_url"].startswith(slack.base_url + "/hooks/commands/")
    assert [m.text for m in slack.ephemerals("UADMIN001")] == ["Hello <@UADMIN001>, I am &lt;mam&gt;"]


def test_the_ack_shows_before_what_the_background_work_did(
    bot: Bot, slack: FakeSlack, out: io.StringIO
) -> None:
    session = session_for(bot, slack, out)

    session.send("/mam slow")

    assert out.getvalue().splitlines() == [
        "┌ #console reply (only @alex sees this) m1",
        "│ Checking the connector…",
        "┌ #console m1 updated (replace_original) (only @alex sees this)",
        "│ Connector is healthy",
    ]


def test_click_a_button_by_number_and_see_the_message_updated(
    bot: Bot, slack: FakeSlack, out: io.StringIO
) -> None:
    session = session_for(bot, slack, out)
    session.send("/mam card")
    assert "[1] Approve (primary)  [2] Reject" in out.getvalue()

    session.send("1")

    action_body = bot.payloads[-1]
    posted = slack.messages("C0CONSOLE")[0]
    assert action_body["type"] == "block_actions"
    assert action_body["actions"][0] | {"action_ts": "-"} == {
        "type": "button",
        "action_id": "approve",
        "block_id": "decide",
        "text": {"type": "plain_text", "text": "Approve"},
        "style": "primary",
        "value": "cr-12",
        "action_ts": "-",
    }
    assert action_body["container"] == {
        "type": "message",
        "message_ts": posted.ts,
        "channel_id": "C0CONSOLE",
        "is_ephemeral": False,
    }
    assert (
        action_body["message"]["ts"] == posted.ts
        and action_body["message"]["blocks"][1]["block_id"] == "decide"
    )
    assert action_body["user"]["id"] == "UADMIN001" and action_body["trigger_id"]
    assert action_body["response_url"].startswith(slack.base_url + "/hooks/actions/")
    assert posted.text == "Approved"
    assert out.getvalue().endswith("┌ #console m1 updated\n│ Approved by @alex\n")


def test_an_updated_message_s_buttons_refer_to_the_latest_version(
    bot: Bot, slack: FakeSlack, out: io.StringIO
) -> None:
    session = session_for(bot, slack, out)
    session.send("/mam card")
    session.send("1")

    session.send("2")
    session.send("9")

    assert "(button [2] is no longer on #console m1: the message was updated)" in out.getvalue()
    assert "(no button [9]; buttons so far: 1-2)" in out.getvalue()
    assert len([p for p in bot.payloads if p.get("type") == "block_actions"]) == 1


def test_act_as_someone_else_and_respect_who_can_see_what(
    bot: Bot, slack: FakeSlack, out: io.StringIO
) -> None:
    session = session_for(bot, slack, out)
    session.send("/mam dm-card")
    assert "┌ DM to @alex m1" in out.getvalue()

    session.send(":as sam")
    assert session.prompt == "[@sam ➡ #console] mam> "
    session.send("1")
    session.send("/mam hello")

    text = out.getvalue()
    assert "(you are now @sam — Sam Approver, UAPPROV01)" in text
    assert "(@sam can't see DM to @alex m1: it is a DM to @alex; :as alex to act as them)" in text
    assert "│ Hello @sam, I am <mam>" in text
    assert bot.payloads[-1]["user_id"] == "UAPPROV01"
    assert not [p for p in bot.payloads if p.get("type") == "block_actions"]


def test_dm_and_channel_switching(bot: Bot, slack: FakeSlack, out: io.StringIO) -> None:
    session = session_for(bot, slack, out)

    session.send(":dm")
    assert session.prompt == "[@alex ➡ @mam] mam> "
    session.send("/mam hello")
    session.send(":in #console")

    assert bot.payloads[-1]["channel_id"] == "DADMIN001"
    assert session.channel == "C0CONSOLE"
    assert "┌ DM to @alex reply (only @alex sees this) m1" in out.getvalue()


def test_fill_a_modal_fix_the_error_and_submit(bot: Bot, slack: FakeSlack, out: io.StringIO) -> None:
    answers = ["Existing", "3", "1, 3", "sal", "2", "", "Android strict"]
    session = session_for(bot, slack, out, answers)

    session.send("/mam policy")

    first, second = [p for p in bot.payloads if p.get("type") == "view_submission"]
    assert first["view"]["state"]["values"] == {
        "name": {"name_input": {"type": "plain_text_input", "value": "Existing"}},
        "level": {"level_select": {"type": "static_select", "selected_option": OPTIONS[2]}},
        "apps": {"apps_select": {"type": "multi_static_select", "selected_options": [APPS[0], APPS[2]]}},
        "group": {
            "group_search": {
                "type": "external_select",
                "selected_option": {"text": {"type": "plain_text", "text": "Sal Leads"}, "value": "gl-sal"},
            }
        },
        "note": {"note_input": {"type": "plain_text_input", "value": None}},
    }
    assert second["view"]["state"]["values"]["name"]["name_input"]["value"] == "Android strict"
    assert {k: v for k, v in second["view"]["state"]["values"].items() if k != "name"} == {
        k: v for k, v in first["view"]["state"]["values"].items() if k != "name"
    }
    assert second["view"]["callback_id"] == "new_policy"
    assert second["view"]["private_metadata"] == '{"draft": 7}'
    assert second["view"]["id"] == first["view"]["id"]
    suggestion = next(p for p in bot.payloads if p.get("type") == "block_suggestion")
    assert (suggestion["action_id"], suggestion["block_id"], suggestion["value"]) == (
        "group_search",
        "group",
        "sal",
    )
    assert suggestion["container"] == {"type": "view", "view_id": first["view"]["id"]}
    assert slack.views_open == []
    assert [m.text for m in slack.messages("C0CONSOLE")] == ["Draft Android strict created"]
    text = out.getvalue()
    assert "┌ modal “New policy”" in text
    assert "    2) Sal Leads" in text
    assert "  ✗ Policy name: A policy with this name already exists" in text
    assert "└ modal “New policy” closed" in text
    assert text.rstrip().endswith("│ Draft Android strict created")


def test_cancel_closes_the_modal_and_notifies_when_asked(
    bot: Bot, slack: FakeSlack, out: io.StringIO
) -> None:
    session = session_for(bot, slack, out, ["Something", ":cancel"])

    session.send("/mam policy")

    assert slack.views_open == []
    closed = [p for p in bot.payloads if p.get("type") == "view_closed"]
    assert len(closed) == 1 and closed[0]["view"]["callback_id"] == "new_policy"
    assert not [p for p in bot.payloads if p.get("type") == "view_submission"]
    assert "└ modal “New policy” closed" in out.getvalue()


def test_home_tab(bot: Bot, slack: FakeSlack, out: io.StringIO) -> None:
    session = session_for(bot, slack, out)

    session.send(":home")

    assert out.getvalue() == "┌ App Home of @alex\n│ Welcome @alex\n"


def test_meta_commands_explain_themselves(bot: Bot, slack: FakeSlack, out: io.StringIO) -> None:
    session = session_for(bot, slack, out)

    session.send(":frobnicate")
    session.send(":as nobody")
    session.send("/other")
    session.send(":quit")
    session.send("/mam hello")

    text = out.getvalue()
    assert "(unknown :frobnicate; try :help" in text
    assert "(no user 'nobody'; people here: @alex, @sam, @kim, @jordan)" in text
    assert "(nothing in the app answered /other" in text
    assert session.done and not [p for p in bot.payloads if p.get("text") == "hello"]


def test_repl_reads_until_end_of_input(bot: Bot, slack: FakeSlack, out: io.StringIO) -> None:
    ask = ScriptedInput(["/mam hello", ":as sam"])
    session = ConsoleSession(bot.app, slack, bot.runner, out=out, ask=ask)

    session.repl()

    assert ask.prompts == ["[@alex ➡ #console] mam> ", "[@alex ➡ #console] mam> ", "[@sam ➡ #console] mam> "]
    assert "│ Hello @alex, I am <mam>" in out.getvalue()


def step(callback_id: str, title: str, block_id: str, *, submit: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": callback_id,
        "title": {"type": "plain_text", "text": title},
        "blocks": [
            {
                "type": "input",
                "block_id": block_id,
                "label": {"type": "plain_text", "text": title},
                "element": {"type": "plain_text_input", "action_id": "v"},
            }
        ],
    }
    if submit:
        view["submit"] = {"type": "plain_text", "text": "Next"}
    return view


def test_response_actions_push_update_and_clear(slack: FakeSlack, out: io.StringIO) -> None:
    runner = BackgroundRunner(max_workers=1)
    app = App(
        process_before_response=True, authorize=console_authorize, client=WebClient(base_url=slack.api_url)
    )
    submitted: list[dict[str, Any]] = []

    @app.command("/mam")
    def wizard(ack: Ack, command: dict[str, Any], client: WebClient) -> None:
        ack()
        info: dict[str, Any] = {
            "type": "modal",
            "callback_id": "info",
            "title": {"type": "plain_text", "text": "Info"},
            "blocks": [
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": "start",
                            "text": {"type": "plain_text", "text": "Start"},
                        }
                    ],
                }
            ],
        }
        client.views_open(trigger_id=command["trigger_id"], view=info)

    @app.action("start")
    def start(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        client.views_update(view_id=body["view"]["id"], view=step("one", "One", "a"))

    @app.view("one")
    def one(ack: Ack, view: dict[str, Any]) -> None:
        submitted.append(view["state"]["values"])
        ack(response_action="push", view=step("two", "Two", "b"))

    @app.view("two")
    def two(ack: Ack, view: dict[str, Any]) -> None:
        submitted.append(view["state"]["values"])
        ack(response_action="update", view=step("three", "Three", "c"))

    @app.view("three")
    def three(ack: Ack, view: dict[str, Any]) -> None:
        submitted.append(view["state"]["values"])
        ack(response_action="clear")

    session = ConsoleSession(app, slack, runner, out=out, ask=ScriptedInput(["1st", "2nd", "3rd"]))
    session.send("/mam")
    assert "(modal open: click its buttons by number, or :close it)" in out.getvalue()
    assert slack.top_modal("UADMIN001") is not None

    session.send("1")

    assert [list(values) for values in submitted] == [["a"], ["b"], ["c"]]
    assert submitted[2]["c"]["v"]["value"] == "3rd"
    assert slack.views_open == []
    kinds = [e.kind for e in slack.events]
    assert kinds == ["view_open", "view_update", "view_push", "view_update", "view_close"]
    runner.shutdown()


def test_plain_messages_and_mentions_become_events(slack: FakeSlack, out: io.StringIO) -> None:
    runner = BackgroundRunner(max_workers=1)
    app = App(
        process_before_response=True, authorize=console_authorize, client=WebClient(base_url=slack.api_url)
    )
    mentions: list[dict[str, Any]] = []

    @app.event("app_mention")
    def mentioned(event: dict[str, Any], say: Any) -> None:
        mentions.append(event)
        say(f"Hi <@{event['user']}>")

    session = ConsoleSession(app, slack, runner, out=out, ask=ScriptedInput([]))
    session.send("hey @mam, ping @sam")

    [event] = mentions
    assert event["text"] == "hey <@UMAMBOT01>, ping <@UAPPROV01>"
    assert (event["user"], event["channel"]) == ("UADMIN001", "C0CONSOLE")
    assert out.getvalue() == "┌ #console post m1\n│ Hi @alex\n"
    runner.shutdown()
