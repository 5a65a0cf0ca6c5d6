"""bot.slack_limits: each of Slack's documented Block Kit limits, at the limit (fine) and one over (refused),
and the fake Slack answering like Slack and recording what it refused."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.console.fake_slack import BOT_TOKEN, FakeSlack
from bot.slack_limits import block_problems, message_problems, options_problems, pack_lines, view_problems


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def section(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(text), **extra}


def button(text: str = "Go", *, value: str = "v", action_id: str = "go", **extra: Any) -> dict[str, Any]:
    return {"type": "button", "text": plain(text), "action_id": action_id, "value": value, **extra}


def option(text: str = "One", value: str = "1") -> dict[str, Any]:
    return {"text": plain(text), "value": value}


def select(options: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "static_select", "action_id": "pick", "options": options or [option()], **extra}


def text_input(**element: Any) -> dict[str, Any]:
    return {"type": "input", "block_id": "in", "label": plain("Name"),
            "element": {"type": "plain_text_input", "action_id": "value", **element}}


def modal(blocks: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "modal", "title": plain("Title"), "submit": plain("Send"), "close": plain("Cancel"),
            "blocks": blocks if blocks is not None else [section()], **extra}


def blocks(*items: dict[str, Any]) -> list[str]:
    return block_problems(list(items))


# Each case: (what, the payload at Slack's limit, the same one character or item over, the field named).
Check = Callable[[int], list[str]]
CASES: list[tuple[str, int, Check, str]] = [
    ("blocks in a message", 50, lambda n: message_problems({"blocks": [section()] * n}), "/blocks"),
    ("blocks in a modal", 100, lambda n: view_problems(modal([section()] * n)), "/view/blocks"),
    ("blocks in App Home", 100, lambda n: view_problems({"type": "home", "blocks": [section()] * n}),
     "/view/blocks"),
    ("message text", 40_000, lambda n: message_problems({"text": "x" * n}), "/text"),
    ("section text", 3000, lambda n: blocks(section("x" * n)), "/blocks/0/text/text"),
    ("section fields", 10, lambda n: blocks({"type": "section", "fields": [mrkdwn("f")] * n}), "/blocks/0/fields"),
    ("section field text", 2000, lambda n: blocks({"type": "section", "fields": [mrkdwn("x" * n)]}),
     "/blocks/0/fields/0/text"),
    ("context elements", 10, lambda n: blocks({"type": "context", "elements": [mrkdwn("c")] * n}),
     "/blocks/0/elements"),
    ("header text", 150, lambda n: blocks({"type": "header", "text": plain("x" * n)}), "/blocks/0/text/text"),
    ("actions elements", 25,
     lambda n: blocks({"type": "actions", "elements": [button(action_id=f"b{i}") for i in range(n)]}),
     "/blocks/0/elements"),
    ("button text", 75, lambda n: blocks({"type": "actions", "elements": [button("x" * n)]}),
     "/blocks/0/elements/0/text/text"),
    ("button value", 2000, lambda n: blocks({"type": "actions", "elements": [button(value="x" * n)]}),
     "/blocks/0/elements/0/value"),
    ("button url", 3000, lambda n: blocks({"type": "actions", "elements": [button(url="h" * n)]}),
     "/blocks/0/elements/0/url"),
    ("action_id", 255, lambda n: blocks({"type": "actions", "elements": [button(action_id="a" * n)]}),
     "/blocks/0/elements/0/action_id"),
    ("block_id", 255, lambda n: blocks(section(block_id="b" * n)), "/blocks/0/block_id"),
    ("options of a select", 100,
     lambda n: blocks(section(accessory=select([option(value=str(i)) for i in range(n)]))),
     "/blocks/0/accessory/options"),
    ("option groups of a select", 100,
     lambda n: blocks(section(accessory={"type": "static_select", "action_id": "p", "option_groups": [
         {"label": plain("G"), "options": [option()]}] * n})), "/blocks/0/accessory/option_groups"),
    ("option text", 75, lambda n: blocks(section(accessory=select([option("x" * n)]))),
     "/blocks/0/accessory/options/0/text/text"),
    ("option value", 150, lambda n: blocks(section(accessory=select([option(value="x" * n)]))),
     "/blocks/0/accessory/options/0/value"),
    ("options of an options answer", 100, lambda n: options_problems({"options": [option()] * n}), "/options"),
    ("option value of an options answer", 150,
     lambda n: options_problems({"options": [option(value="x" * n)]}), "/options/0/value"),
    ("modal title", 24, lambda n: view_problems(modal(title=plain("x" * n))), "/view/title/text"),
    ("modal submit", 24, lambda n: view_problems(modal(submit=plain("x" * n))), "/view/submit/text"),
    ("modal close", 24, lambda n: view_problems(modal(close=plain("x" * n))), "/view/close/text"),
    ("callback_id", 255, lambda n: view_problems(modal(callback_id="c" * n)), "/view/callback_id"),
    ("private_metadata", 3000, lambda n: view_problems(modal(private_metadata="m" * n)),
     "/view/private_metadata"),
    ("input label", 2000, lambda n: blocks({**text_input(), "label": plain("x" * n)}), "/blocks/0/label/text"),
    ("input hint", 2000, lambda n: blocks({**text_input(), "hint": plain("x" * n)}), "/blocks/0/hint/text"),
    ("placeholder", 150, lambda n: blocks(text_input(placeholder=plain("x" * n))),
     "/blocks/0/element/placeholder/text"),
]


@pytest.mark.parametrize(("what", "limit", "check", "where"), CASES, ids=[c[0] for c in CASES])
def test_at_the_limit_is_fine_and_one_over_is_refused(what: str, limit: int, check: Check, where: str) -> None:
    assert check(limit) == []
    problems = check(limit + 1)
    assert problems, f"{what}: {limit + 1} was let through"
    assert any(p.endswith(f"[json-pointer:{where}]") for p in problems), problems


def test_text_objects_have_the_type_their_field_needs() -> None:
    assert blocks({"type": "header", "text": mrkdwn("Title")}) == [
        "must be a plain_text text object [json-pointer:/blocks/0/text/type]"]
    assert blocks({"type": "actions", "elements": [{**button(), "text": mrkdwn("Go")}]})
    assert view_problems(modal(title=mrkdwn("Title")))
    assert blocks(section(accessory=select([{"text": mrkdwn("*One*"), "value": "1"}])))
    assert blocks({"type": "section", "text": {"type": "markdown", "text": "hi"}})
    assert blocks({"type": "section", "text": "just a string"})
    assert blocks({"type": "section", "text": {"type": "mrkdwn", "text": "hi", "emoji": True}})
    assert blocks({"type": "section", "text": {"type": "plain_text", "text": "hi", "verbatim": True}})
    # radio buttons and checkboxes may show mrkdwn options; selects may not
    radio = {"type": "radio_buttons", "action_id": "r", "options": [{"text": mrkdwn("*One*"), "value": "1"}]}
    assert blocks({"type": "actions", "elements": [radio]}) == []


def test_empty_text_and_missing_parts_are_refused() -> None:
    assert blocks(section(""))
    assert blocks({"type": "section"})
    assert blocks({"type": "actions", "elements": []})
    assert blocks({"type": "input", "label": plain("Name")})
    assert blocks({"type": "carousel"})
    assert view_problems({"type": "modal", "blocks": []})  # no title
    assert view_problems(modal([text_input()], submit=None))  # inputs need a submit button
    assert view_problems(modal(), expected_type="home")


def test_ids_must_be_unique_where_slack_says() -> None:
    assert blocks(section(block_id="a"), section(block_id="a"))
    twice = {"type": "actions", "elements": [button(action_id="go"), button(action_id="go")]}
    assert blocks(twice)


def test_other_elements_and_composition_objects() -> None:
    overflow = {"type": "overflow", "action_id": "o", "options": [option(value=str(i)) for i in range(6)]}
    assert blocks(section(accessory=overflow))
    confirm = {"title": plain("x" * 101), "text": mrkdwn("Sure?"), "confirm": plain("Yes"), "deny": plain("No")}
    assert blocks({"type": "actions", "elements": [button(confirm=confirm)]})
    assert blocks({"type": "actions", "elements": [button(style="green")]})
    assert blocks(text_input(max_length=3001))
    assert blocks({"type": "image", "image_url": "https://example.com/a.png", "alt_text": "x" * 2001})
    assert blocks({"type": "markdown", "text": "x" * 12_001})
    assert blocks({"type": "actions", "elements": [{"type": "plain_text_input", "action_id": "t"}]})
    assert options_problems({"options": [option()], "option_groups": []})
    assert options_problems({"options": []}) == [] and options_problems({}) == []


# ---- the fake Slack: answers like Slack, and remembers -------------------------------------------------


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> WebClient:
    return WebClient(token=BOT_TOKEN, base_url=slack.api_url)


def test_every_way_into_the_fake_is_checked(slack: FakeSlack, client: WebClient) -> None:
    too_many = [section()] * 51
    with pytest.raises(SlackApiError) as posted:
        client.chat_postMessage(channel="C0CONSOLE", text="t", blocks=too_many)
    with pytest.raises(SlackApiError) as ephemeral:
        client.chat_postEphemeral(channel="C0CONSOLE", user="UADMIN001", text="x" * 40_001)
    ok = client.chat_postMessage(channel="C0CONSOLE", text="fine")
    with pytest.raises(SlackApiError) as updated:
        client.chat_update(channel="C0CONSOLE", ts=ok["ts"], text="t", blocks=[section("x" * 3001)])
    with pytest.raises(SlackApiError) as opened:
        client.views_open(trigger_id=slack.new_trigger_id("UADMIN001"), view=modal(title=plain("x" * 25)))
    with pytest.raises(SlackApiError) as published:
        client.views_publish(user_id="UADMIN001", view={"type": "home", "blocks": [section()] * 101})
    url = slack.new_response_url(user="UADMIN001")
    request = urllib.request.Request(url, data=b'{"text": "t", "blocks": [{"type": "header", "text": '
                                     b'{"type": "plain_text", "text": "' + b"x" * 151 + b'"}}]}',
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as replied:
        urllib.request.urlopen(request)
    assert slack.deliver_ack(slack.new_response_url(user="UADMIN001"), {"blocks": too_many}) is None
    assert slack.check_options({"options": [option()] * 101})

    assert posted.value.response["error"] == "invalid_blocks"
    assert "must provide no more than 50 items [json-pointer:/blocks]" in posted.value.response["errors"]
    assert ephemeral.value.response["error"] == "msg_too_long"
    assert updated.value.response["error"] == "invalid_blocks"
    assert opened.value.response["error"] == "invalid_arguments"
    assert published.value.response["error"] == "invalid_arguments"
    assert any("/view/title/text" in m for m in opened.value.response["response_metadata"]["messages"])
    assert replied.value.code == 400
    violations = slack.take_limit_violations()
    assert [v.method for v in violations] == [
        "chat.postMessage", "chat.postEphemeral", "chat.update", "views.open", "views.publish", "response_url",
        "ack", "options"]
    assert slack.limit_violations == []
    assert [m.text for m in slack.messages("C0CONSOLE")] == ["fine"]  # nothing refused was shown


def test_a_view_from_an_ack_is_checked_too(slack: FakeSlack, client: WebClient) -> None:
    view = client.views_open(trigger_id=slack.new_trigger_id("UADMIN001"), view=modal())["view"]
    with pytest.raises(Exception, match="invalid_arguments"):
        slack.replace_view(view["id"], modal([section()] * 101))
    with pytest.raises(Exception, match="invalid_arguments"):
        slack.push_view("UADMIN001", modal(private_metadata="m" * 3001))
    assert [v.method for v in slack.take_limit_violations()] == ["ack", "ack"]


def test_pack_lines_keeps_whole_lines_within_each_text_and_counts_the_rest() -> None:
    lines = [f"line {i:02} " + "x" * 20 for i in range(10)]  # 28 characters each
    texts, left_out = pack_lines(lines, max_chars=60)
    assert texts == ["\n".join(lines[:2])] and left_out == 8
    texts, left_out = pack_lines(lines, max_chars=60, max_texts=3, reserve=20)
    assert texts == ["\n".join(lines[0:2]), "\n".join(lines[2:4]), lines[4]] and left_out == 5
    assert all(len(t) <= 60 for t in texts) and len(texts[-1]) <= 40
    assert pack_lines(lines, max_chars=3000) == (["\n".join(lines)], 0)
    assert pack_lines([], max_chars=10) == ([], 0)
