"""Through the real app: with the connector's Android app protection toggle off (Intune ignores Defender's
threat level), no card, `/mam blocked`, App Home, `/mam status` or DM says anyone is blocked; one notice
says why, and it is edited in place when the toggle comes back, with what was true all along as one digest."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.console.fake_slack import FakeUser
from bot.jobs import nudge_job, sweep_job
from bot.local import DEMO_ADMIN, DEMO_END_USER
from bot.sandbox import SEED_POLICY_ID
from bot.sandbox.seed import CAST_USERS
from tests.scenario.conftest import ack_json, block_text

ALERTS = "C0ALERTS"
TUESDAY_10 = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
ISAIAH = next(u for u in CAST_USERS if u.given == "Isaiah")
ALEX = next(u for u in CAST_USERS if u.given == "Alex")


def watching_without_enforcement(bot, maximum: str = "low") -> None:
    bot.sandbox.policies_store.update(SEED_POLICY_ID, {"maximumAllowedDeviceThreatLevel": maximum,
                                                       "mobileThreatDefenseRemediationAction": "block"}, True)
    bot.sandbox.set_connector(androidMobileApplicationManagementEnabled=False)


def sweep(bot):
    result = sweep_job(bot.deps)
    bot.deps.wait_idle()
    return result


def test_toggle_off_nobody_is_told_they_are_blocked_anywhere(make_bot):
    bot = make_bot(mam_alert_channel=ALERTS, mam_alert_dm_users=True)
    bot.slack.add_user(FakeUser("UALEXW001", "alexw", "Alex Wilber", ALEX.mail))
    watching_without_enforcement(bot)

    result = sweep(bot)

    assert result.ok and result.enforcement == "off" and result.suppressed > 1
    posts = bot.slack.messages(ALERTS)
    assert len(posts) == 1  # the notice, and no card or digest
    notice = block_text(posts[0].blocks)
    assert "Threat-level enforcement is off" in notice and "Connect Android devices to Microsoft Defender" in notice
    assert "App blocked" not in notice and bot.dm_messages("UALEXW001") == []

    blocked = ack_json(bot.command("blocked")[0])
    assert "enforcement is off" in blocked["text"]
    text = block_text(blocked["blocks"])
    assert "Threat-level enforcement is OFF" in text and "Blocked now" not in text and "Alex Wilber" not in text
    bot.command("status")
    status = [e for e in bot.slack.events if e.kind == "response"][-1]  # answered after the ack
    assert "threat-level enforcement is OFF" in status.text
    assert "none enforced (enforcement off)" in block_text(status.blocks)

    bot.event({"type": "app_home_opened", "user": DEMO_ADMIN, "tab": "home"})
    home = block_text(bot.slack.home(DEMO_ADMIN)["blocks"])  # type: ignore[index]
    assert "Threat-level enforcement is OFF" in home and "none enforced" in home


def test_nudges_wait_while_enforcement_is_off(make_bot):
    bot = make_bot()
    bot.slack.add_user(FakeUser("UISAIAH01", "isaiah", "Isaiah Langer", ISAIAH.mail))
    watching_without_enforcement(bot)
    bot.deps.now = lambda: TUESDAY_10
    assert sweep(bot).pending_onboarding == 1

    result = nudge_job(bot.deps, sleep=lambda s: None)

    assert result.sent == 0 and result.held == 1
    assert bot.dm_messages("UISAIAH01") == []


def test_back_on_edits_the_notice_and_announces_one_digest(make_bot):
    bot = make_bot(mam_alert_channel=ALERTS)
    watching_without_enforcement(bot)
    sweep(bot)
    sweep(bot)  # still off: the notice is not posted again
    assert len(bot.slack.messages(ALERTS)) == 1
    notice = bot.slack.messages(ALERTS)[0]

    bot.sandbox.set_connector(androidMobileApplicationManagementEnabled=True)
    result = sweep(bot)

    assert result.enforcement == "on" and result.new_episodes > 1
    top = [m for m in bot.slack.messages(ALERTS) if not m.thread_ts]
    edited = next(m for m in top if m.ts == notice.ts)
    assert "back on" in block_text(edited.blocks)
    others = [m for m in top if m.ts != notice.ts]
    assert len(others) == 1 and "App blocked" not in block_text(others[0].blocks)  # one digest, no flood

    blocked = block_text(ack_json(bot.command("blocked", user=DEMO_ADMIN)[0])["blocks"])
    assert "Blocked now" in blocked and "enforcement is OFF" not in blocked
    refused = ack_json(bot.command("blocked", user=DEMO_END_USER)[0])
    assert "Only mam-bot admins and approvers" in refused["text"]


def test_blocked_lists_ten_unlicensed_users_and_counts_the_rest(make_bot):
    from bot.store.watch import UNLICENSED, OnboardingCase

    bot = make_bot()
    with bot.deps.store.session() as session:
        for n in range(12):
            session.add(OnboardingCase(user_id=f"u{n:02d}", state=UNLICENSED, user_name=f"<!channel> & <@U1> {n}",
                                       first_pending_at=TUESDAY_10, last_pending_at=TUESDAY_10))
        session.commit()

    text = block_text(ack_json(bot.command("blocked")[0])["blocks"])

    assert "Can't be protected: 12 users" in text and "…and 2 more" in text
    assert "&lt;!channel&gt; &amp; &lt;@U1&gt; 0" in text and "<!channel>" not in text
