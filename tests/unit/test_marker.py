"""The sandbox marker: on every message, once, within Slack's 50 blocks; in the outbox and in Bolt's answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient

from bot.console.fake_slack import BOT_TOKEN, FakeSlack
from bot.marker import (
    MARKER_BLOCK_ID,
    MARKER_TEXT,
    MarkedAck,
    SandboxMarkerMiddleware,
    mark_blocks,
    mark_message,
    mark_response,
)
from bot.outbox import Outbox, OutboxSettings
from bot.store import Store, create_store


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": t} for t in texts]}


def markers(message: dict[str, Any]) -> int:
    """How many times the marker's words appear anywhere in the message."""
    return json.dumps(message).count(MARKER_TEXT)


# --- mark_message ------------------------------------------------------------------------------------


def test_a_text_only_message_gets_the_words_on_a_last_line() -> None:
    marked = mark_message({"text": "Checking the connector…", "response_type": "ephemeral"})
    assert marked == {"text": f"Checking the connector…\n{MARKER_TEXT}", "response_type": "ephemeral"}


def test_a_message_with_blocks_gets_a_context_block_and_keeps_its_notification_text() -> None:
    message = {"text": "Approval needed", "blocks": [section("Approve *this*?")]}
    marked = mark_message(message)
    assert marked["text"] == "Approval needed"
    assert marked["blocks"][:-1] == message["blocks"]
    assert marked["blocks"][-1] == {"type": "context", "block_id": MARKER_BLOCK_ID,
                                    "elements": [{"type": "mrkdwn", "text": MARKER_TEXT}]}
    assert message["blocks"] == [section("Approve *this*?")]  # the caller's payload is not changed


@pytest.mark.parametrize("message", [
    {"text": "hi"},
    {"text": "hi", "blocks": [section("a")]},
    {"text": "hi", "blocks": [section(str(i)) for i in range(50)]},
    {"text": "hi", "blocks": [*[section(str(i)) for i in range(49)], context("1 more: /mam policy list")]},
])
def test_marking_twice_is_marking_once(message: dict[str, Any]) -> None:
    once = mark_message(message)
    assert markers(once) == 1
    assert mark_message(once) == once


def test_a_full_message_puts_the_words_in_its_last_context_block() -> None:
    blocks = [*[section(str(i)) for i in range(48)], context("48 of 60 policies"), section("last")]
    marked = mark_blocks(blocks)
    assert len(marked) == 50
    assert marked[48]["elements"][-1] == {"type": "mrkdwn", "text": MARKER_TEXT}
    assert marked[49] == section("last")


def test_a_full_message_without_context_room_uses_the_last_section_text() -> None:
    full_context = context(*[str(i) for i in range(10)])  # Slack allows 10 elements
    blocks = [*[section(str(i)) for i in range(48)], full_context, {"type": "divider"}]
    marked = mark_blocks(blocks)
    assert len(marked) == 50 and marked[48] == full_context
    assert marked[47]["text"]["text"] == f"47\n{MARKER_TEXT}"


def test_a_full_message_with_no_room_anywhere_gives_up_its_last_block_rather_than_go_unmarked() -> None:
    blocks = [{"type": "divider"} for _ in range(50)]
    marked = mark_blocks(blocks)
    assert len(marked) == 50 and marked[-1]["block_id"] == MARKER_BLOCK_ID


def test_block_objects_are_accepted() -> None:
    from slack_sdk.models.blocks import SectionBlock

    marked = mark_blocks([SectionBlock(text="hello")])
    assert marked[0]["type"] == "section" and marked[-1]["block_id"] == MARKER_BLOCK_ID


# --- Bolt responses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "expected"), [
    ("Checking…", f"Checking…\n{MARKER_TEXT}"),
    ("", ""),
    ({"response_action": "errors", "errors": {"b": "bad"}}, {"response_action": "errors", "errors": {"b": "bad"}}),
    ({"options": [{"text": {"type": "plain_text", "text": "x"}, "value": "x"}]},
     {"options": [{"text": {"type": "plain_text", "text": "x"}, "value": "x"}]}),
    ({"text": "done", "response_type": "ephemeral"},
     {"text": f"done\n{MARKER_TEXT}", "response_type": "ephemeral"}),
])
def test_only_message_bodies_are_marked(body: Any, expected: Any) -> None:
    response = BoltResponse(status=200, body=body)
    mark_response(response)
    assert (json.loads(response.body) if isinstance(expected, dict) else response.body) == expected


def test_a_marked_ack_marks_what_the_error_handler_sets_too() -> None:
    ack = MarkedAck()
    ack(text="hello", blocks=[section("hello")])
    assert ack.response is not None and markers(json.loads(ack.response.body)) == 1
    apology = BoltResponse(status=200, body={"response_type": "ephemeral", "text": "Sorry [abc]"})
    ack.response = apology
    assert json.loads(apology.body)["text"].endswith(MARKER_TEXT)


# --- the middleware in a Bolt app --------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


def small_app(slack: FakeSlack, *, marked: bool) -> App:
    app = App(client=WebClient(token=BOT_TOKEN, base_url=slack.api_url), signing_secret="s",
              token_verification_enabled=False, process_before_response=True, request_verification_enabled=False)
    if marked:
        app.use(SandboxMarkerMiddleware())

    @app.command("/mam")
    def command(ack: Any, respond: Any, body: dict[str, Any]) -> None:
        if body.get("text") == "blocks":
            ack(text="A card", blocks=[section("*card*")])
        else:
            ack("Working on it…")
        respond(text="Done.", response_type="ephemeral")
        respond(text="Card", blocks=[section("*done*")], replace_original=False)

    @app.view("form")
    def form(ack: Any) -> None:
        ack(response_action="errors", errors={"name": "Too long"})

    return app


def slash(slack: FakeSlack, text: str = "") -> dict[str, Any]:
    return {"command": "/mam", "text": text, "user_id": "UADMIN001", "channel_id": "C0CONSOLE",
            "team_id": "T0CONSOLE", "response_url": slack.new_response_url(channel="C0CONSOLE", user="UADMIN001"),
            "trigger_id": "1.2.3"}


def responded(slack: FakeSlack) -> list[dict[str, Any]]:
    return [c.args for c in slack.calls if c.method.startswith("response_url")]


def test_the_middleware_marks_acks_and_responds(slack: FakeSlack) -> None:
    app = small_app(slack, marked=True)
    ack = app.dispatch(BoltRequest(body=slash(slack), mode="socket_mode"))
    assert ack.status == 200 and ack.body == f"Working on it…\n{MARKER_TEXT}"
    card = app.dispatch(BoltRequest(body=slash(slack, "blocks"), mode="socket_mode"))
    assert json.loads(card.body)["blocks"][-1]["block_id"] == MARKER_BLOCK_ID
    sent = responded(slack)
    assert len(sent) == 4
    assert all(markers(message) == 1 for message in sent), sent


def test_without_the_middleware_nothing_is_marked(slack: FakeSlack) -> None:
    app = small_app(slack, marked=False)
    ack = app.dispatch(BoltRequest(body=slash(slack), mode="socket_mode"))
    assert ack.body == "Working on it…"
    assert not any(markers(message) for message in responded(slack))


def test_a_form_error_is_not_a_message(slack: FakeSlack) -> None:
    app = small_app(slack, marked=True)
    body = {"type": "view_submission", "user": {"id": "UADMIN001"}, "team": {"id": "T0CONSOLE"},
            "view": {"id": "V1", "type": "modal", "callback_id": "form", "state": {"values": {}}}}
    response = app.dispatch(BoltRequest(body=body, mode="socket_mode"))
    assert json.loads(response.body) == {"response_action": "errors", "errors": {"name": "Too long"}}


# --- the outbox --------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = create_store(f"sqlite:///{tmp_path / 'outbox.db'}")
    yield s
    s.close()


@pytest.mark.parametrize("sandbox", [True, False])
def test_the_outbox_marks_posts_and_updates_on_the_sandbox_only(store: Store, slack: FakeSlack,
                                                                sandbox: bool) -> None:
    outbox = Outbox(store, WebClient(token=BOT_TOKEN, base_url=slack.api_url),
                    settings=OutboxSettings(sandbox_marker=sandbox))
    outbox.post("card", channel="C0CONSOLE", text="Approval needed", blocks=[section("Approve?")])
    outbox.post("note", channel="C0CONSOLE", text="Plain words")
    while outbox.deliver_due():
        pass
    outbox.update("card:2", of="card", text="Approved", blocks=[section("Approved by <@U1>")])
    while outbox.deliver_due():
        pass
    card, note = slack.messages("C0CONSOLE")
    assert [b.get("block_id") == MARKER_BLOCK_ID for b in card.blocks] == [False, True][:1 + sandbox]
    assert card.blocks[0]["text"]["text"] == "Approved by <@U1>"
    assert note.text == (f"Plain words\n{MARKER_TEXT}" if sandbox else "Plain words")
    assert outbox.get("note") is not None and outbox.get("note").text == "Plain words"  # stored as queued
