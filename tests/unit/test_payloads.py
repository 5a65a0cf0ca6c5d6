"""Typed button and form data: short, versioned, read back exactly, and still readable from earlier versions."""

from __future__ import annotations

import json

import pytest

from bot.errors import UserError
from commands.context import Form
from commands.payloads import (
    METADATA_MAX,
    AlertRef,
    ChangeDraft,
    DraftRef,
    NudgeRef,
    PolicyRef,
    RequestRef,
    recipient_of,
)

HOSTILE = "<!channel> <@U1> & " + "x" * 3000


@pytest.mark.parametrize("payload", [
    RequestRef(id=42),
    AlertRef(id=7),
    NudgeRef(to="UISAIAH01", user="ac6ad2ad-bf31-4cd8-a2cf-8e3f2a0fa98a", round=2, n=3),
    PolicyRef(id="T_b879459e-046c-4160-bc14-0a59e5f2ad66"),
    DraftRef(draft="d_abc"),
    ChangeDraft(kind="assign", change={"policy_id": "T_1", "include": ["g-1"]}, channel="C1"),
])
def test_each_kind_reads_back_what_it_wrote_with_a_version(payload):
    text = payload.encode()
    assert json.loads(text)["v"] == 1
    assert type(payload).decode(text) == payload


def test_values_are_short():
    assert RequestRef(id=12345).encode() == '{"v":1,"id":12345}'


@pytest.mark.parametrize("kind, legacy, expected", [
    (RequestRef, "42", RequestRef(id=42)),
    (AlertRef, "7", AlertRef(id=7)),
    (NudgeRef, "UISAIAH01|AC6AD2AD-x|2|3", NudgeRef(to="UISAIAH01", user="ac6ad2ad-x", round=2, n=3)),
    (PolicyRef, "T_b879459e", PolicyRef(id="T_b879459e")),
    (DraftRef, "d_abc", DraftRef(draft="d_abc")),
    (ChangeDraft, '{"kind": "connector", "change": {"flag": "x", "value": true}, "channel": "C1"}',
     ChangeDraft(kind="connector", change={"flag": "x", "value": True}, channel="C1")),
])
def test_cards_posted_by_an_earlier_version_still_work(kind, legacy, expected):
    assert kind.decode(legacy) == expected


@pytest.mark.parametrize("kind, raw", [
    (RequestRef, ""), (RequestRef, "abc"), (RequestRef, '{"v":1,"id":"x"}'), (RequestRef, '{"v":2,"id":1}'),
    (RequestRef, '{"v":1,"id":1,"extra":2}'), (RequestRef, "{not json"), (AlertRef, "-1"),
    (NudgeRef, "U1|x|1"), (NudgeRef, '{"v":1,"to":"U1"}'), (DraftRef, '{"p": "policy"}'),
    (ChangeDraft, "12"), (PolicyRef, HOSTILE), (RequestRef, HOSTILE),
    (RequestRef, '{"v":1,"id":true}'), (RequestRef, '{"v":true,"id":1}'), (RequestRef, '{"v":1,"id":1e20}'),
    (RequestRef, '{"v":1,"id":100000000000000000000}'), (RequestRef, "0"), (AlertRef, "99999999999"),
    (NudgeRef, '{"v":1,"to":"U1","user":"u","round":true,"n":false}'), (RequestRef, "{" * 2000 + "}" * 2000),
])
def test_anything_else_is_refused_in_words(kind, raw):
    with pytest.raises(UserError) as caught:
        kind.decode(raw)
    assert caught.value.message == kind.unreadable
    assert "<!channel>" not in str(caught.value)


def test_a_payload_that_would_not_fit_is_a_bug_not_a_truncation():
    with pytest.raises(ValueError, match="Slack keeps 3000"):
        ChangeDraft(kind="assign", change={"groups": ["g" * 40] * 80}).encode()
    assert len(ChangeDraft(kind="assign", change={"include": ["g" * 36]}).encode()) < METADATA_MAX


def test_the_recipient_of_a_dm_button():
    assert recipient_of(NudgeRef(to="U1", user="u", round=1, n=1).encode()) == "U1"
    assert recipient_of("U2|u|1|1") == "U2"
    assert recipient_of('{"v":1,"id":4}') == "" and recipient_of(HOSTILE) == ""


def test_one_reader_for_every_form():
    view = {"state": {"values": {
        "name": {"any_action": {"type": "plain_text_input", "value": "  Pilot  "}},
        "mode": {"value": {"type": "radio_buttons", "selected_option": {"value": "exclude"}}},
        "apps": {"value": {"type": "multi_static_select", "selected_options": [{"value": "a"}, {"value": "b"}]}},
        "empty": {"value": {"type": "static_select", "selected_option": None}},
    }}}
    form = Form(view)
    assert form.text("name") == "Pilot" and form.text("missing") == ""
    assert form.choice("mode") == "exclude" and form.choice("empty") is None and form.choice("missing") is None
    assert form.choices("apps") == ["a", "b"] and form.choices("missing") == []
    assert Form({}).text("name") == ""
