"""One reading of `/mam` for the role check and the router: no spelling of a command gets past its role.

Each bypass found when the role check split on spaces and the router split like a shell is tried here
through signed requests, as a person without the role; then a property test throws generated texts
(quotes, escapes, Unicode quotes and spaces, case, full-width letters, invisible characters, empty
words, Slack entities) at the real app and checks that no handler ever runs for someone its declared
role excludes, and that the role the middleware demanded is the role of the handler that ran.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from bot.app import dispatch_socket_mode
from bot.command_text import read_command
from bot.local import DEMO_ADMIN, DEMO_APPROVER, DEMO_END_USER
from bot.roles import Access, Role, allowed
from bot.store import ChangeRequest
from commands.ids import Action
from tests.scenario.conftest import ack_json
from tests.scenario.slack_requests import command_body

STRANGER = DEMO_END_USER  # in the workspace, no mam-bot role
BOTH = "UBOTH0001"  # admin and approver: never refused, so whatever was demanded is what the handler declares


def change_requests(bot) -> int:
    with bot.deps.store.session() as session:
        return len(session.exec(select(ChangeRequest)).all())


@pytest.mark.parametrize("text", [
    '"assign" "Android BYOD App Protection" "Finance" --why "x"',
    '\\assign "Android BYOD App Protection" "Finance" --why "x"',
    'as""sign "Android BYOD App Protection" "Finance" --why "x"',
    "\u201cassign\u201d \u201cAndroid BYOD App Protection\u201d \u201cFinance\u201d --why x",
    "ASSIGN 'Android BYOD App Protection' Finance --why x",
    "\uff41\uff53\uff53\uff49\uff47\uff4e 'Android BYOD App Protection' Finance --why x",
    "as\u200bsign 'Android BYOD App Protection' Finance --why x",
    "\u201cpolicy\u201d new",
    '"policy" "new"',
    "connectors 'enable-android' why",
    '"audit" 50',
    '"blocked"',
    '"status"',
    "\\requests",
])
def test_no_spelling_gets_a_stranger_past_the_role_check(bot, text):
    before = change_requests(bot)
    answer = ack_json(bot.command(text, user=STRANGER)[0])["text"]
    assert answer.startswith("Only mam-bot admins"), answer
    bot.deps.wait_idle()
    assert change_requests(bot) == before
    assert not bot.slack.views_open  # no form opened either
    refusal = [r for r in bot.audit() if r.actor == STRANGER and r.outcome == "refused"]
    assert refusal, "every refusal is on record"


@pytest.mark.parametrize("text", ['connectors "enable-android" why', "connectors ENABLE-ANDROID why",
                                  "validate \\enable-android why", "policy NEW", '"policy" \u201cnew\u201d'])
def test_an_approver_cannot_file_what_only_admins_may(bot, text):
    answer = ack_json(bot.command(text, user=DEMO_APPROVER)[0])["text"]
    assert answer.startswith("Only mam-bot admins can ask"), answer
    bot.deps.wait_idle()
    assert change_requests(bot) == 0


def test_refusals_name_the_command_or_button_in_words(bot):
    answer = ack_json(bot.command("assign x y", user=STRANGER)[0])["text"]
    assert answer.startswith(f"Only mam-bot admins can run `/mam assign`. Ask one of them: <@{DEMO_ADMIN}>.\n")
    assert answer.endswith("Sandbox tenant: simulated data, nothing reaches Microsoft")  # the sandbox says so
    answer = ack_json(bot.command("connectors enable-android", user=DEMO_APPROVER)[0])["text"]
    assert "ask to turn on Android app protection evaluation" in answer and "connectors_enable" not in answer
    bot.click(Action.APPROVE, user=STRANGER, value="1")
    bot.deps.wait_idle()
    said = [e.text.split("\n")[0] for e in bot.slack.events if e.kind == "response"]
    assert "Only approvers can approve change requests, and you are not one of them (MAM_APPROVERS)." in said
    assert not any(Action.APPROVE in t for t in said)
    bot.click("retired_button", user=DEMO_ADMIN)
    bot.deps.wait_idle()
    assert "This button or form is no longer in use. Run `/mam help` to see what you can do." in [
        e.text.split("\n")[0] for e in bot.slack.events if e.kind == "response"]


def test_the_admin_still_gets_through_however_the_words_are_quoted(bot):
    answer = ack_json(bot.command("\u201cconnectors\u201d", user=DEMO_ADMIN)[0])
    assert "checking" in answer["text"]
    response, _ = bot.command("Connectors 'enable-android' pilot rollout", user=DEMO_ADMIN)
    assert "Filing a change request" in ack_json(response)["text"]
    bot.deps.wait_idle()
    assert change_requests(bot) == 1


def test_an_approver_sees_no_enable_button_they_may_not_press(make_bot):
    bot = make_bot()
    bot.sandbox.connector()  # the sandbox starts with the Android toggle off
    for user, offered in ((DEMO_APPROVER, False), (DEMO_ADMIN, True)):
        bot.command("connectors", user=user)
        bot.deps.wait_idle()
        card = [e for e in bot.slack.events if e.kind == "response" and e.user == user][-1]
        ids = [el.get("action_id") for b in card.blocks if b["type"] == "actions" for el in b["elements"]]
        assert ("connectors_enable_android" in ids) is offered, ids
        if not offered:
            assert "/mam connectors enable-android" in str(card.blocks)


def raw_command(bot, text: str, *, user: str) -> dict[str, Any]:
    """A command whose text is exactly what Slack sent (already escaped, entities and all)."""
    response_url = bot.slack.new_response_url(channel="C0CONSOLE", user=user)
    body = command_body(text, user=user, response_url=response_url, trigger_id=bot.slack.new_trigger_id(user))
    return ack_json(bot.dispatch(body))


def test_blocked_with_an_unknown_person_answers_plainly(bot):
    assert "Looking that person up" in raw_command(bot, "blocked <@U0NOSUCH1|gone>", user=DEMO_ADMIN)["text"]
    said = [e.text for e in bot.slack.events if e.kind == "response"]
    assert any("can't find that person in this Slack workspace" in t for t in said), said
    assert not any("reference" in t for t in said)  # an answer, not an apology with a traceback reference
    # text that only looks like a mention is a name: no lookup, an answer at once
    answer = raw_command(bot, "blocked &lt;@U0NOSUCH1&gt;", user=DEMO_ADMIN)
    assert "No block matches" in str(answer)


def test_a_person_is_named_by_mention_mail_or_name(bot):
    for typed in ("blocked @jordan", "blocked jordan@contoso.example", "blocked Jordan"):
        response, _ = bot.command(typed, user=DEMO_ADMIN)
        assert response.status == 200
        bot.deps.wait_idle()
    said = [e.text for e in bot.slack.events if e.kind in ("response", "ephemeral")]
    assert not any("reference" in t for t in said), said


# ---- the property ----------------------------------------------------------------------------------

_NAMES = ["assign", "unassign", "policy", "new", "list", "show", "connectors", "validate", "enable-android", "audit",
          "blocked", "status", "requests", "cancel", "help", "?", "x", "50", "", "--why", "--exclude"]
_NOISE = ['"', "'", "\u201c", "\u201d", "\u2018", "\u2019", "\\", '""', "&amp;", "&lt;", "&gt;", "<@U0ADMIN01|alex>",
          "<mailto:a@b.example|a@b.example>", "<http://new.example|new>", "\u200b", "\u00ad"]
_SPACES = [" ", "  ", "\t", "\u00a0", "\u3000", "\n"]


def _fullwidth(word: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in word)


@st.composite
def _disguised(draw: Any) -> str:
    """A command word dressed up the ways people (and attackers) dress them: quotes, escapes, case, Unicode."""
    word = draw(st.sampled_from(_NAMES))
    for _ in range(draw(st.integers(0, 2))):
        how = draw(st.sampled_from(["upper", "title", "quote", "single", "curly", "curly-single", "backslash",
                                    "empty-quotes", "zero-width", "fullwidth", "escape-inside", "noise"]))
        at = draw(st.integers(0, len(word)))
        word = {
            "upper": word.upper(), "title": word.title(), "quote": f'"{word}"', "single": f"'{word}'",
            "curly": f"\u201c{word}\u201d", "curly-single": f"\u2018{word}\u2019", "backslash": "\\" + word,
            "empty-quotes": word[:at] + '""' + word[at:], "zero-width": word[:at] + "\u200b" + word[at:],
            "fullwidth": _fullwidth(word), "escape-inside": word[:at] + "\\" + word[at:],
            "noise": word[:at] + draw(st.sampled_from(_NOISE)) + word[at:],
        }[how]
    return word


@st.composite
def _texts(draw: Any) -> str:
    words = draw(st.lists(_disguised(), min_size=0, max_size=4))
    spaces = [draw(st.sampled_from(_SPACES)) for _ in words]
    return draw(st.sampled_from(["", " ", "\u00a0"])) + "".join(w + s for w, s in zip(words, spaces, strict=True))


_TEXTS = _texts()


@pytest.fixture(scope="module")
def spied(tmp_path_factory) -> Any:
    """The real app, with every command and verb handler replaced by one that records itself and acks."""
    from bot.console.fake_slack import FakeSlack, default_users
    from bot.local import CONSOLE_CHANNELS, LocalWorkspace
    from bot.sandbox import SandboxConfig, SandboxTenant
    from bot.settings import load_settings
    from tests.scenario.slack_requests import SIGNING_SECRET

    path = tmp_path_factory.mktemp("spied")
    settings_ = load_settings(database_url=f"sqlite:///{path}/bot.db", mam_admins=[DEMO_ADMIN, BOTH],
                              mam_approvers=[DEMO_APPROVER, BOTH], mam_cloud="sandbox", mam_graph_url=None,
                              mam_defender_url=None)
    slack = FakeSlack(users=default_users(), channels=CONSOLE_CHANNELS).start()
    ws = LocalWorkspace.start(settings_, sandbox=SandboxTenant(SandboxConfig()), signing_secret=SIGNING_SECRET,
                              slack=slack)
    ran: list[Access] = []

    def spy(access: Access) -> Any:
        def handler(req: Any) -> None:
            ran.append(access)
            req.ack(text="ran")
        return handler

    registry = ws.deps.registry
    for name, sub in list(registry.commands.items()):
        verbs = tuple(dataclasses.replace(v, handler=spy(v.access)) for v in sub.verbs)
        registry.commands[name] = dataclasses.replace(sub, handler=spy(sub.access), verbs=verbs)
    yield ws, ran
    ws.close()


_serial = itertools.count()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_TEXTS, who=st.sampled_from([STRANGER, DEMO_APPROVER, DEMO_ADMIN, BOTH]))
def test_the_role_checked_is_the_role_of_the_handler_that_runs(spied, text, who):
    ws, ran = spied
    ran.clear()
    body = {"command": "/mam", "text": text, "user_id": who, "team_id": "T0CONSOLE", "channel_id": "C0CONSOLE",
            "trigger_id": f"trigger-{next(_serial)}", "api_app_id": "A0MAMBOT1"}
    response = dispatch_socket_mode(ws.app, body)
    roles = ws.deps.roles.roles_of(who)
    answer = str(response.body)
    assert len(ran) <= 1
    if ran:  # a handler ran: its own declared role admits this person
        assert allowed(ran[0], roles), (text, who, ran)
        assert "ran" in answer
    refused = answer.startswith('{"response_type": "ephemeral", "text": "Only') or '"text": "Only ' in answer
    if refused:
        assert not ran, (text, who)
    # someone with every role is never refused: a handler runs whenever the words name one
    if {Role.ADMIN, Role.APPROVER} <= roles:
        assert not refused
        assert bool(ran) == (ws.deps.registry.route(read_command(text)) is not None), text


@pytest.mark.parametrize("kind", ["interactive_message", "dialog_submission", "workflow_step_edit", "shortcut"])
@pytest.mark.parametrize("callback_id", ["connectors_enable_android", "cr_approve"])
def test_request_types_without_a_rule_are_refused(bot, kind, callback_id):
    """Bolt's `app.action("id")` also matches legacy attachments' and dialogs' `callback_id`: such a
    request has no rule here, so no handler may see it, whoever sends it."""
    payload = {"type": kind, "callback_id": callback_id, "user": {"id": STRANGER}, "team": {"id": "T0CONSOLE"},
               "channel": {"id": "C0CONSOLE"}, "trigger_id": "t-legacy", "actions": [{"name": "x", "value": "1"}],
               "response_url": bot.slack.new_response_url(channel="C0CONSOLE", user=STRANGER)}
    response = bot.dispatch("payload=" + json.dumps(payload).replace("&", "%26").replace("+", "%2B"))
    bot.deps.wait_idle()
    assert response.status == 200
    assert not bot.slack.views_open and change_requests(bot) == 0
    assert [r.outcome for r in bot.audit() if r.actor == STRANGER] == ["refused"]


@pytest.mark.parametrize(("text", "expected"), [
    ("policy new x", "takes no arguments"),
    ("cancel 99999999999999999999999", "Name the request by its number"),
    ("cancel #\u00b2", "Name the request by its number"),
    ("audit \u00b2", "Give a number of entries"),
    ("audit \u0661\u0662", "Give a number of entries"),
    ('"" assign', "starts with an empty word"),
])
def test_odd_typing_gets_an_answer_not_an_apology(bot, text, expected):
    answer = ack_json(bot.command(text, user=DEMO_ADMIN)[0])["text"]
    assert expected in answer, answer
    assert "reference" not in answer


def test_a_mentioned_person_without_a_mail_address_is_named_by_a_real_mention(bot):
    from bot.console.fake_slack import FakeUser

    bot.slack.add_user(FakeUser("U0NOMAIL1", "nomail", "No Mail"))
    bot.command("blocked @nomail", user=DEMO_ADMIN)
    said = [e.text for e in bot.slack.events if e.kind == "response"]
    assert any(t.startswith("<@U0NOMAIL1> has no email address") or ":x: <@U0NOMAIL1> has no email" in t
               for t in said), said
    assert not any("&lt;@U0NOMAIL1" in t for t in said)
