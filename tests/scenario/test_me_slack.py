"""`/mam me` through the real app, with FakeSlack and the sandbox tenant: anyone sees their own devices, nobody
sees anyone else's, and the button DMs the steps to whoever pressed it, once per card."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.console.fake_slack import FakeUser
from bot.local import DEMO_END_USER
from bot.sandbox import SandboxConfig
from bot.sandbox.seed import CAST_ANDROID, CAST_USERS
from bot.store.index import ON, Enforcement, EntraUserLink, IndexRow, IndexRun
from bot.store.watch import OPEN, Episode, SweepRun
from commands.me import MeAction
from tests.scenario.conftest import ack_json, block_text

ALEX = next(u for u in CAST_USERS if u.given == "Alex")
ADELE = next(u for u in CAST_USERS if u.given == "Adele")
ALEX_S23 = next(d for d in CAST_ANDROID if d.key == "alex-s23")
ADELE_PIXEL = next(d for d in CAST_ANDROID if d.key == "adele-pixel8")
ALEX_SLACK, ADELE_SLACK = "UALEXW001", "UADELE001"
OUTLOOK, TEAMS = "com.microsoft.office.outlook", "com.microsoft.teams"
HOSTILE = "<!channel> & <@U1>"


def add(bot: Any, *rows: Any) -> None:
    with bot.deps.store.session() as session:
        for row in rows:
            session.add(row)
        session.commit()


def seeded(bot: Any) -> None:
    """The index, the last sweep and enforcement as the jobs leave them: Alex's S23 blocked, Adele's Pixel fine."""
    now = datetime.now(UTC)
    bot.slack.add_user(FakeUser(ALEX_SLACK, "alexw", "Alex Wilber", ALEX.mail))
    bot.slack.add_user(FakeUser(ADELE_SLACK, "adele", "Adele Vance", ADELE.mail))
    add(bot, IndexRun(id=1, started_at=now - timedelta(minutes=30), finished_at=now - timedelta(minutes=29), ok=True,
                      source="export"),
        SweepRun(started_at=now - timedelta(minutes=6), finished_at=now - timedelta(minutes=5), ok=True),
        Enforcement(state=ON))
    for user, device in ((ALEX, ALEX_S23), (ADELE, ADELE_PIXEL)):
        add(bot, *(IndexRow(generation=1, user_id=user.id.lower(), email=user.mail,
                            device_id=(device.aad_device_id or "").lower(), device_name=device.name,
                            device_model=device.model, manufacturer=device.manufacturer, app_name=package,
                            package=package, policies=json.dumps(["policy"])) for package in (OUTLOOK, TEAMS)))
    add(bot, Episode(device_id=(ALEX_S23.aad_device_id or "").lower(), policy_id="policy",
                     open_key=f"{ALEX_S23.aad_device_id}|policy", state=OPEN, machine_id=ALEX_S23.machine_id,
                     device_name=ALEX_S23.name, device_model=f"{ALEX_S23.manufacturer} {ALEX_S23.model}",
                     policy_name="Android BYOD App Protection", maximum="medium", action="block", level="high",
                     users=json.dumps([{"id": ALEX.id.lower(), "name": "Alex Wilber", "mail": ALEX.mail}]),
                     apps=json.dumps([OUTLOOK, TEAMS]), opened_at=now - timedelta(hours=2), last_seen_at=now))


def me(bot: Any, user: str, text: str = "me") -> tuple[dict[str, Any], Any]:
    """The ack and the card that replaced it (the last ephemeral answer to `user`)."""
    ack = ack_json(bot.command(text, user=user)[0])
    bot.deps.wait_idle()
    answers = [e for e in bot.slack.events if e.kind == "response" and e.user == user]
    return ack, answers[-1] if answers else None


def steps_value(answer: Any) -> str:
    return next(e["value"] for b in answer.blocks if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == MeAction.SEND_STEPS)


def test_a_blocked_user_sees_which_app_why_and_what_to_do(make_bot):
    bot = make_bot()
    seeded(bot)
    ack, answer = me(bot, ALEX_SLACK)
    assert ack["response_type"] == "ephemeral" and "Looking up your devices" in ack["text"]
    text = block_text(answer.blocks)
    for expected in ("you are *Alex Wilber*", ALEX.mail, "Galaxy S23", "samsung SM-S911B",
                     f"device `{(ALEX_S23.aad_device_id or '')[:8]}…`", "Work apps: Outlook and Teams",
                     "*Blocked:* Outlook and Teams won't let you in on this device",
                     "Defender rates this device *high* and the policy *Android BYOD App Protection* allows at most "
                     "*medium*", "open the *Microsoft Defender* app on this device", "Send me the steps again",
                     "refreshed hourly"):
        assert expected in text, expected
    assert "Adele" not in text and "Pixel 8" not in text
    assert answer.text == "Your devices: 1 device blocked"


def test_a_healthy_user_sees_ok_as_of_the_last_check(make_bot):
    bot = make_bot()
    seeded(bot)
    _, answer = me(bot, ADELE_SLACK)
    text = block_text(answer.blocks)
    assert "you are *Adele Vance*" in text and "Pixel 8" in text and "*OK* as of the last check" in text
    assert "Blocked" not in text and "Galaxy S23" not in text and "Alex" not in text


def test_a_stranger_whose_email_matches_nobody_is_told_what_to_do(make_bot):
    bot = make_bot()
    seeded(bot)
    _, answer = me(bot, DEMO_END_USER)  # jordan@contoso.example: no one in the tenant's directory
    assert "I can't tell who you are" in answer.text and "jordan@contoso.example" in answer.text
    assert "must be the same as your work account's" in answer.text and "reference" not in answer.text
    assert not answer.blocks or "Galaxy" not in block_text(answer.blocks)


def test_someone_without_a_slack_email_is_told_in_words(make_bot):
    bot = make_bot()
    seeded(bot)
    bot.slack.add_user(FakeUser("UGUEST001", "guest", "A Guest"))
    _, answer = me(bot, "UGUEST001")
    assert "Slack doesn't show me an email address for you" in answer.text and "reference" not in answer.text


def test_graph_unavailable_is_cant_check_right_now_not_a_stack_trace(make_bot):
    bot = make_bot(SandboxConfig(fail={"GET /v1.0/users": [503] * 20}))
    seeded(bot)
    _, answer = me(bot, ALEX_SLACK)
    assert "I can't check who you are right now" in answer.text and "try `/mam me` again" in answer.text.lower()
    assert "reference" not in answer.text and "503" not in answer.text


def test_nobody_sees_anyone_elses_data_whatever_they_type(make_bot):
    bot = make_bot()
    seeded(bot)
    for typed in ("me @alexw", f"me <@{ALEX_SLACK}>", f"me {ALEX.mail}", "me Alex", "me --user alexw", "ME alexw"):
        ack = ack_json(bot.command(typed, user=DEMO_END_USER)[0])
        assert "`/mam me` takes no arguments" in ack["text"] and "Usage: `/mam me`" in ack["text"], typed
        bot.deps.wait_idle()
    said = [e for e in bot.slack.events if e.kind == "response" and e.user == DEMO_END_USER]
    everything = " ".join(e.text + block_text(e.blocks or []) for e in said)
    assert "Galaxy S23" not in everything and "Alex Wilber" not in everything


def test_hostile_names_are_escaped_and_a_long_device_name_cut(make_bot):
    bot = make_bot()
    seeded(bot)
    now = datetime.now(UTC)
    bot.slack.add_user(FakeUser("UHOSTILE1", "hostile", "Hostile", "hostile@contoso.example"))
    add(bot, EntraUserLink(email="hostile@contoso.example", user_id="99999999-0000-0000-0000-000000000001", matches=1,
                           name=HOSTILE, resolved_at=now),
        IndexRow(generation=1, user_id="99999999-0000-0000-0000-000000000001", email="hostile@contoso.example",
                 device_id="99999999-aaaa-0000-0000-000000000001", device_name=HOSTILE + "x" * 3000,
                 device_model=HOSTILE, manufacturer="", app_name=OUTLOOK, package=OUTLOOK, policies="[]"))
    _, answer = me(bot, "UHOSTILE1")
    parsed = [answer.text]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                parsed.append(str(node["text"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(answer.blocks)
    joined = "\n".join(parsed)
    assert "<!channel>" not in joined and "<@U1>" not in joined
    assert "*&lt;!channel&gt; &amp; &lt;@U1&gt;*" in joined
    assert "x" * 100 not in joined and "…" in joined  # the name is cut, the card within Slack's limits


def test_the_button_dms_the_steps_only_to_whoever_pressed_it_once_per_card(make_bot):
    bot = make_bot()
    seeded(bot)
    _, answer = me(bot, ALEX_SLACK)
    value = steps_value(answer)
    bot.click(MeAction.SEND_STEPS, user=ALEX_SLACK, value=value)
    bot.click(MeAction.SEND_STEPS, user=ALEX_SLACK, value=value)  # a double click
    bot.deps.wait_idle()
    dms = bot.slack.messages(ALEX_SLACK)
    assert len(dms) == 1
    text = block_text(dms[0].blocks)
    for expected in ("Intune Company Portal", "Open *Outlook* and sign in with your work account",
                     "install *Microsoft Defender* from Google Play", "Finish Defender's onboarding"):
        assert expected in text, expected
    said = [e.text for e in bot.slack.events if e.kind == "response" and e.user == ALEX_SLACK]
    assert "I've sent you the steps in a direct message" in said[-2] and "already" in said[-1]

    # someone else pressing a copy of Alex's button gets the steps themselves; Alex gets nothing more
    bot.click(MeAction.SEND_STEPS, user=DEMO_END_USER, value=value)
    bot.deps.wait_idle()
    assert len(bot.slack.messages(ALEX_SLACK)) == 1
    assert len(bot.slack.messages(DEMO_END_USER)) == 1

    # a new card is a new request: the steps again
    _, answer = me(bot, ALEX_SLACK)
    bot.click(MeAction.SEND_STEPS, user=ALEX_SLACK, value=steps_value(answer))
    bot.deps.wait_idle()
    assert len(bot.slack.messages(ALEX_SLACK)) == 2
    assert [r.outcome for r in bot.audit() if r.action == "sent the Defender setup steps (/mam me)"] == ["ok"] * 3


def test_anyone_may_run_it_and_help_lists_it(make_bot):
    bot = make_bot()
    text = block_text(ack_json(bot.command("help", user=DEMO_END_USER)[0])["blocks"])
    assert "/mam me" in text
