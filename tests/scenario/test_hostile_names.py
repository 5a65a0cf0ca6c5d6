"""Every surface, rendered with hostile names from the tenant, Slack and people: nothing Slack parses pings,
links or reorders; plain text shows the names as they are (without their bidi and zero-width tricks)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.local import DEMO_ADMIN, DEMO_APPROVER
from bot.microsoft.errors import MicrosoftError
from bot.mrkdwn import clean
from bot.sandbox.seed import SEED_POLICY_ID
from bot.store.watch import OPEN, Episode, OnboardingCase, SweepRun
from commands.adapters import SlackAlerts, SlackNudger
from commands.alerts import portals_for
from commands.ids import Action
from tests.scenario.conftest import ack_json
from workflows.policy_changes import ASSIGN

HOSTILE = ("<!channel> <!here> <@U123> <http://evil.example|click> *bold* `tick` & "
           "\u202egnp.exe \u2066iso\u2069 ze\u200bro")
RAW = ("<!channel>", "<!here>", "<@U123>", "<http://evil", "\u202e", "\u2066", "\u200b")
SHOWN = clean(HOSTILE)  # what plain text must show: the name, minus its bidi and zero-width tricks
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def _walk(node: Any, parsed: list[str], plain: list[str]) -> None:
    if isinstance(node, str) and node[:1] in "[{":
        try:
            node = json.loads(node)  # blocks and views travel as JSON in form posts
        except ValueError:
            return
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn":
            parsed.append(str(node.get("text", "")))
        elif node.get("type") == "plain_text":
            plain.append(str(node.get("text", "")))
        for value in node.values():
            _walk(value, parsed, plain)
    elif isinstance(node, list):
        for item in node:
            _walk(item, parsed, plain)


def _payload(args: dict[str, Any], parsed: list[str], plain: list[str]) -> None:
    if isinstance(args.get("text"), str):
        parsed.append(args["text"])  # a message's top-level text: notifications and screen readers
    for key in ("blocks", "view", "attachments"):
        if key in args:
            _walk(args[key], parsed, plain)


class Seen:
    """Everything the bot sent Slack: Web API calls, response_url posts and the acks the test collected."""

    def __init__(self, bot: Any) -> None:
        self.bot = bot
        self.acks: list[dict[str, Any]] = []

    def command(self, text: str, user: str = DEMO_ADMIN) -> dict[str, Any]:
        body = ack_json(self.bot.command(text, user=user)[0])
        self.acks.append(body)
        return body

    def fields(self) -> tuple[list[str], list[str]]:
        parsed: list[str] = []
        plain: list[str] = []
        for call in self.bot.slack.calls:
            _payload(call.args, parsed, plain)
        for body in self.acks:
            _payload(body, parsed, plain)
        return parsed, plain

    def assert_inert(self, *, in_parsed: bool = True, in_plain: str = "") -> None:
        """No raw hostile sequence where Slack parses; `in_plain`: a plain_text that shows it as typed."""
        parsed, plain = self.fields()
        for text in parsed:
            for raw in RAW:
                assert raw not in text, (raw, text)
        if in_parsed:
            assert any("&lt;!channel&gt;" in text for text in parsed), "the hostile name was never shown"
        for text in plain:
            assert "&lt;" not in text and "&amp;" not in text, text  # plain text is shown as it is
            assert "\u202e" not in text and "\u200b" not in text, text
        if in_plain:
            assert any(in_plain in text for text in plain), plain


@pytest.fixture
def hostile(make_bot) -> Iterator[Any]:
    bot = make_bot()
    tenant = bot.sandbox
    tenant.policies_store.update(SEED_POLICY_ID, {"displayName": "Accept & <Test> BYOD " + HOSTILE}, True)
    for group in tenant.world.groups:
        if group["displayName"] == "Finance":
            group["displayName"] = "Finance " + HOSTILE
    yield bot


def _group_id(bot: Any) -> str:
    return next(g["id"] for g in bot.sandbox.world.groups if g["displayName"].startswith("Finance "))


def test_assign_and_the_approval_card_keep_policy_group_and_justification_inert(hostile):
    seen = Seen(hostile)
    seen.command(f'assign "{SEED_POLICY_ID}" "{_group_id(hostile)}" --why "pilot {HOSTILE}"')
    cards = [m for m in hostile.slack.messages(DEMO_APPROVER) if "Change request #" in m.text]
    assert cards, [m.text for m in hostile.slack.messages(DEMO_APPROVER)]
    assert "Accept &amp; &lt;Test&gt; BYOD" in cards[-1].text  # the policy name, escaped in the notification
    request_id = int(cards[-1].text.split("#")[1].split(":")[0])
    hostile.click(Action.APPROVE, user=DEMO_APPROVER, value=str(request_id))
    seen.command("requests")
    seen.command("audit 20")
    seen.assert_inert()


def test_policy_list_and_show(hostile):
    seen = Seen(hostile)
    seen.command("policy list")
    seen.command(f"policy show {SEED_POLICY_ID}")
    seen.command('policy show "<!channel> nothing like it"')
    seen.assert_inert()


def test_ambiguous_group_names_are_plain_on_buttons(hostile):
    for group in hostile.sandbox.world.groups:
        if group["displayName"] == "Sales":
            group["displayName"] = "Finance " + HOSTILE + " 2"
    seen = Seen(hostile)
    seen.command(f'assign "{SEED_POLICY_ID}" "Finance"')
    seen.assert_inert(in_parsed=False, in_plain="Finance <!channel> <!here> <@U123>")  # pick buttons


def _episode(state: str = OPEN) -> Episode:
    users = json.dumps([{"id": "11111111-2222-3333-4444-555555555555", "name": HOSTILE, "mail": "x@contoso.com"}])
    return Episode(id=None, device_id="dev-1", policy_id=SEED_POLICY_ID, open_key=f"dev-1|{SEED_POLICY_ID}",
                   state=state, machine_id="m1|<http://evil.example>", device_name=HOSTILE, device_model=HOSTILE,
                   policy_name=HOSTILE, maximum="low", action="block", level="high", risk_score="High",
                   users=users, apps=json.dumps(["com.microsoft.office.outlook", HOSTILE]), opened_at=T0,
                   last_seen_at=T0, resolution=HOSTILE if state != OPEN else "")


def test_alert_cards_digests_dms_and_blocked(hostile):
    deps = hostile.deps
    with deps.store.session() as session:
        episode = _episode()
        session.add(episode)
        run = SweepRun(started_at=T0, finished_at=T0 + timedelta(seconds=5), ok=False, error=HOSTILE)
        session.add(run)
        session.commit()
        session.refresh(episode)
        session.refresh(run)
    episode.card_key = f"alert:{episode.id}"
    alerts = SlackAlerts(deps.outbox, portals_for("global"))
    alerts.opened(episode, "C0CONSOLE")
    alerts.digest("digest:1", "C0CONSOLE", "new", [episode, episode], run)
    alerts.user_blocked("dm:1", DEMO_ADMIN, episode)
    resolved = _episode(state="resolved")
    resolved.id, resolved.card_key, resolved.resolved_at = episode.id, episode.card_key, T0 + timedelta(hours=2)
    alerts.user_unblocked("dm:2", DEMO_ADMIN, resolved)
    alerts.resolved(resolved)
    deps.wait_idle()
    seen = Seen(hostile)
    seen.command("blocked")
    seen.command(f"blocked {HOSTILE}")
    seen.assert_inert(in_plain="App blocked: <!channel> <!here>")  # the card's header: plain text
    posts = [c.args for c in hostile.slack.calls if c.method == "chat.postMessage"]
    alert_post = next(a for a in posts if str(a.get("text", "")).startswith("Blocked: "))
    assert "&lt;!channel&gt; bo" not in alert_post["text"]  # sanity: the name is the hostile one, escaped
    assert "&lt;!channel&gt;" in alert_post["text"]


def test_nudges(hostile):
    deps = hostile.deps
    case = OnboardingCase(user_id="u1", user_name=HOSTILE, user_mail="x@contoso.com",
                          devices=json.dumps([{"id": "d", "name": HOSTILE, "model": HOSTILE}]),
                          apps=json.dumps([HOSTILE]), policies=json.dumps([HOSTILE]),
                          first_pending_at=T0, last_pending_at=T0)
    nudger = SlackNudger(deps.outbox)
    nudger.nudge("nudge:u1:r1:n1", DEMO_ADMIN, case, 1, 3)
    nudger.nudge("nudge:u1:r1:n2", DEMO_ADMIN, case, 2, 3)
    nudger.thank("thanks:u1", DEMO_ADMIN, case)
    deps.wait_idle()
    Seen(hostile).assert_inert()


def test_app_home_and_the_connector_card_with_a_hostile_error(hostile, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise MicrosoftError(f"Graph said {HOSTILE}")

    monkeypatch.setattr("commands.home.check_connectors", broken)
    monkeypatch.setattr("commands.connectors.check_connectors", broken)
    hostile.deps.changes.file(ASSIGN, {"policy_id": SEED_POLICY_ID, "include": [_group_id(hostile)]},
                              requester=DEMO_ADMIN, justification=HOSTILE)
    hostile.deps.wait_idle()
    hostile.event({"type": "app_home_opened", "user": DEMO_APPROVER, "tab": "home", "channel": "D0HOME"})
    seen = Seen(hostile)
    seen.command("connectors")
    hostile.deps.wait_idle()
    home = hostile.slack.home(DEMO_APPROVER)
    assert home is not None
    seen.assert_inert()
