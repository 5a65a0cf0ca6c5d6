"""The watch through the real app: alert cards, their buttons, `/mam blocked`, digests and onboarding DMs."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from bot.console.fake_slack import FakeUser
from bot.jobs import nudge_job, sweep_job
from bot.local import DEMO_ADMIN, DEMO_APPROVER, DEMO_END_USER
from bot.sandbox import SEED_POLICY_ID
from bot.sandbox.seed import CAST_ANDROID, CAST_PENDING, CAST_USERS
from bot.store.watch import active_blocks
from commands.adapters import SlackAlerts
from commands.alerts import AlertAction, portals_for
from commands.nudges import COMPANY_PORTAL, DEFENDER, STOP_STATUS, NudgeAction
from commands.payloads import NudgeRef
from tests.scenario.conftest import ack_json, block_text
from workflows.onboarding import WatchSettings, find_case
from workflows.threat_sweep import run_threat_sweep

ALERTS = "C0ALERTS"
TUESDAY_10 = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
DEVICES = {d.key: d for d in (*CAST_ANDROID, *CAST_PENDING)}
ISAIAH = next(u for u in CAST_USERS if u.given == "Isaiah")
ISAIAH_SLACK = "UISAIAH01"


def no_wait(_seconds: float) -> None:
    """Email lookups are paced at Slack's ~50 a minute; the tests don't wait for real."""


def watching(bot, maximum: str = "medium") -> None:
    """The seeded policy blocks above `maximum`: at medium, Alex's and Grady's phones (High).

    Few cards keep the tests fast: the outbox paces posts to one channel at Slack's 1 a second.
    The connector's Android app protection toggle is on: without it Intune blocks nobody (test_enforcement_slack)."""
    bot.sandbox.set_connector(androidMobileApplicationManagementEnabled=True)
    bot.sandbox.policies_store.update(SEED_POLICY_ID, {"maximumAllowedDeviceThreatLevel": maximum,
                                                       "mobileThreatDefenseRemediationAction": "block"}, True)


def sweep(bot):
    result = sweep_job(bot.deps)
    bot.deps.wait_idle()
    return result


def cards(bot):
    return [m for m in bot.slack.messages(ALERTS) if not m.thread_ts]


def card_of(bot, device: str):
    name = DEVICES[device].name
    return next(m for m in cards(bot) if f"App blocked: {name}" in block_text(m.blocks)
                or f"Resolved: {name}" in block_text(m.blocks))


def episode_id(bot, device: str) -> int:
    aad = DEVICES[device].aad_device_id
    found = next(e for e in active_blocks(bot.deps.store) if e.device_id == aad)
    assert found.id is not None
    return found.id


def ephemeral_texts(bot) -> list[str]:
    return [e.text for e in bot.slack.events if e.kind == "response"]


def test_one_card_per_blocked_device_and_none_again_on_the_next_sweep(make_bot):
    bot = make_bot(mam_alert_channel=ALERTS)
    watching(bot)
    result = sweep(bot)
    assert result.ok and result.new_episodes == 2
    assert len(cards(bot)) == 2
    text = block_text(card_of(bot, "alex-s23").blocks)
    for expected in ("Alex Wilber", "alex.wilber@contoso.example", "Galaxy S23", "samsung SM-S911B", "Outlook, Teams",
                     "high", "Android BYOD App Protection", "Block access", "Inferred by mam-bot",
                     "intune.microsoft.com/#view/Microsoft_AAD_UsersAndTenants"):
        assert expected in text, expected
    buttons = [e for b in card_of(bot, "alex-s23").blocks if b["type"] == "actions" for e in b["elements"]]
    assert [b["text"]["text"] for b in buttons] == ["Acknowledge", "Snooze 4 h", "Snooze 24 h", "Open in Defender"]
    assert buttons[-1]["url"].startswith("https://security.microsoft.com/machines/")

    assert sweep(bot).new_episodes == 0
    assert len(cards(bot)) == 2


def test_acknowledge_and_snooze_edit_the_card_and_only_admins_and_approvers_may(make_bot):
    bot = make_bot(mam_alert_channel=ALERTS)
    watching(bot)
    sweep(bot)
    alex = episode_id(bot, "alex-s23")
    before = card_of(bot, "alex-s23")

    bot.click(AlertAction.ACK, user=DEMO_END_USER, value=str(alex))
    assert "Only mam-bot admins and approvers can acknowledge or snooze alerts." in ephemeral_texts(bot)[-1]
    bot.click(AlertAction.ACK, user=DEMO_APPROVER, value=str(alex))
    after = card_of(bot, "alex-s23")
    assert after.ts == before.ts and f"Acknowledged by <@{DEMO_APPROVER}>" in block_text(after.blocks)

    bot.click(AlertAction.SNOOZE_4H, user=DEMO_ADMIN, value=str(episode_id(bot, "grady-oneplus11")))
    assert "Snoozed for 4 h" in ephemeral_texts(bot)[-1]
    assert f"Snoozed by <@{DEMO_ADMIN}>" in block_text(card_of(bot, "grady-oneplus11").blocks)
    assert bot.click(AlertAction.OPEN_DEFENDER, user=DEMO_END_USER, value=str(alex))[0].status == 200


def test_back_within_the_limit_resolves_the_card_and_says_how_long_in_its_thread(make_bot):
    bot = make_bot(mam_alert_channel=ALERTS)
    watching(bot)
    bot.sandbox.set_risk(DEVICES["grady-oneplus11"].aad_device_id, "Low")
    bot.deps.now = lambda: TUESDAY_10
    sweep(bot)
    bot.sandbox.set_risk(DEVICES["alex-s23"].aad_device_id, "Medium")
    bot.deps.now = lambda: TUESDAY_10 + timedelta(hours=2, minutes=5)
    assert sweep(bot).resolved_episodes == 1
    card = card_of(bot, "alex-s23")
    assert "Resolved: Galaxy S23" in block_text(card.blocks)
    assert not [b for b in card.blocks if b["type"] == "actions"]
    replies = [m for m in bot.slack.messages(ALERTS) if m.thread_ts == card.ts]
    assert len(replies) == 1 and "Resolved after 2 h 5 min: back within the limit" in replies[0].text


def test_many_new_blocks_make_one_digest_with_the_full_list_as_a_csv(make_bot):
    bot = make_bot(mam_alert_channel=ALERTS)
    watching(bot, "secured")  # Alex, Grady, Johanna's tablet and Lee
    notifier = SlackAlerts(bot.deps.outbox, portals_for("sandbox"))
    result = run_threat_sweep(graph=bot.deps.microsoft.graph, defender=bot.deps.microsoft.defender,
                              store=bot.deps.store, notifier=notifier, settings=WatchSettings(digest_threshold=2),
                              alert_channel=ALERTS)
    bot.deps.wait_idle()
    assert result.new_episodes == 4 and result.digests == 1
    digest, *rest = bot.slack.messages(ALERTS)
    assert "4 new app blocks" in block_text(digest.blocks) and "By policy" in block_text(digest.blocks)
    assert len(rest) == 1 and rest[0].thread_ts == digest.ts and rest[0].files
    rows = list(csv.DictReader(io.StringIO(bot.slack.uploaded(rest[0].files[0]["id"]).decode())))
    assert sorted(r["user"] for r in rows) == ["Alex Wilber", "Grady Archie", "Johanna Lorenz", "Lee Gu"]


def test_mam_blocked_lists_who_is_blocked_and_why(make_bot):
    bot = make_bot(mam_alert_channel=ALERTS)
    watching(bot)
    text = block_text(ack_json(bot.command("blocked")[0])["blocks"])
    assert "No threat sweep has run yet" in text
    sweep(bot)
    text = block_text(ack_json(bot.command("blocked")[0])["blocks"])
    assert "Blocked now: 2 devices" in text and "Grady Archie" in text and "1 user waiting for Defender" in text
    one = block_text(ack_json(bot.command("blocked alex.wilber@contoso.example")[0])["blocks"])
    assert "Alex Wilber" in one and "Grady" not in one and "device high, allowed up to medium" in one
    alex = next(u for u in CAST_USERS if u.given == "Alex")
    bot.slack.add_user(FakeUser("UALEXW001", "alexw", "Alex Wilber", alex.mail))
    bot.command("blocked @alexw")  # Slack sends the mention as <@UALEXW001|alexw>
    answer = [e for e in bot.slack.events if e.kind == "response"][-1]
    assert "Blocked now for <@UALEXW001>: 1 device" in block_text(answer.blocks)
    refused = ack_json(bot.command("blocked", user=DEMO_END_USER)[0])
    assert "Only mam-bot admins and approvers can run `/mam blocked`" in refused["text"]


def nudge_value(bot) -> str:
    dm = bot.slack.messages(ISAIAH_SLACK)[-1]
    return next(e["value"] for b in dm.blocks if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == NudgeAction.STOP)


def test_onboarding_nudge_by_dm_and_only_its_recipient_can_stop_it(make_bot):
    bot = make_bot()
    bot.slack.add_user(FakeUser(ISAIAH_SLACK, "isaiah", "Isaiah Langer", ISAIAH.mail))
    watching(bot)
    bot.deps.now = lambda: TUESDAY_10
    assert sweep(bot).pending_onboarding == 1  # Isaiah: apps registered, phone not in Defender
    result = nudge_job(bot.deps, sleep=no_wait)
    bot.deps.wait_idle()
    assert (result.sent, result.lookups_done) == (1, 1)
    dm = bot.slack.messages(ISAIAH_SLACK)
    assert len(dm) == 1
    text = block_text(dm[0].blocks)
    for expected in ("Hi Isaiah", "Outlook, Teams", "Galaxy S22", "Intune Company Portal", COMPANY_PORTAL,
                     "Tap *Continue*", "Microsoft Defender", DEFENDER, "*Continue* &gt; *Launch*",
                     "Finish Defender's onboarding", "Tap *Continue* to sign in"):
        assert expected in text, expected
    value = nudge_value(bot)
    sent = NudgeRef.decode(value)
    assert (sent.to, sent.user, sent.n) == (ISAIAH_SLACK, ISAIAH.id, 1)

    bot.click(NudgeAction.STOP, user=DEMO_ADMIN, value=value)
    assert "Only the person this message was sent to" in ephemeral_texts(bot)[-1]
    assert find_case(bot.deps.store, ISAIAH.id).state == "pending"  # type: ignore[union-attr]
    # a stranger who knows Isaiah's Entra id and puts their own Slack id first in a forged value gets past
    # the middleware's look at the value, and is refused by the reminder's own record before anything changes
    for action in (NudgeAction.STOP, NudgeAction.DONE):
        forged = sent.model_copy(update={"to": DEMO_END_USER}).encode()
        bot.click(action, user=DEMO_END_USER, value=forged)
        bot.deps.wait_idle()
        assert "Only the person this message was sent to" in bot.slack.messages(DEMO_END_USER)[-1].text
        case = find_case(bot.deps.store, ISAIAH.id)
        assert case is not None and case.state == "pending" and case.done_at is None
    assert [r.outcome for r in bot.audit() if r.actor == DEMO_END_USER and "onboarding nudge" in r.action] == [
        "refused", "refused"]

    bot.click(NudgeAction.STOP, user=ISAIAH_SLACK, value=value)
    assert find_case(bot.deps.store, ISAIAH.id).state == "stopped"  # type: ignore[union-attr]
    edited = bot.slack.messages(ISAIAH_SLACK)[-1]
    assert STOP_STATUS.split(",")[0] in block_text(edited.blocks)
    assert not [b for b in edited.blocks if b["type"] == "actions"]

    bot.deps.now = lambda: TUESDAY_10 + timedelta(days=3)
    assert nudge_job(bot.deps, sleep=no_wait).reminded == 0
    bot.deps.wait_idle()
    assert len(bot.slack.messages(ISAIAH_SLACK)) == 1


def test_nudges_wait_for_working_hours_and_thank_once_defender_has_the_device(make_bot):
    bot = make_bot()
    bot.slack.add_user(FakeUser(ISAIAH_SLACK, "isaiah", "Isaiah Langer", ISAIAH.mail))
    watching(bot)
    bot.sandbox.set_onboarded(DEVICES["alex-s23"].aad_device_id, False)  # Alex too, but he has no Slack account
    bot.deps.now = lambda: TUESDAY_10.replace(hour=20)
    sweep(bot)
    evening = nudge_job(bot.deps, sleep=no_wait)
    assert (evening.sent, evening.skipped_outside_hours, evening.no_slack_account) == (0, 1, 1)
    bot.deps.now = lambda: TUESDAY_10 + timedelta(days=1)
    assert nudge_job(bot.deps, sleep=no_wait).sent == 1
    bot.sandbox.set_onboarded(DEVICES["isaiah-s22"].aad_device_id)
    sweep(bot)
    assert nudge_job(bot.deps, sleep=no_wait).thanked == 1
    bot.deps.wait_idle()
    dms = bot.slack.messages(ISAIAH_SLACK)
    assert len(dms) == 2 and "Thank you" in dms[-1].text
