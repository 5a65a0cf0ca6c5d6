"""Attacks on issue 15 through the real app (FakeSlack, the sandbox tenant, signed requests): what the alert
channel, `/mam blocked`, `/mam status`, `/mam me` and its button say, and who may ask for what.

Tests marked xfail(strict=True) show a problem found by the review; the others are attacks that held.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from bot.console.fake_slack import FakeUser
from bot.jobs import sweep_job
from bot.local import DEMO_ADMIN, DEMO_APPROVER, DEMO_END_USER
from bot.sandbox import SEED_POLICY_ID
from bot.sandbox.seed import CAST_ANDROID, CAST_USERS
from bot.store.index import OFF, Enforcement, IndexRow, IndexRun
from bot.store.job_requests import JobRequest
from bot.store.watch import OPEN, Episode, SweepRun
from commands.me import MeAction, StepsRef
from tests.scenario.conftest import ack_json, block_text

ALERTS = "C0ALERTS"
HOSTILE = "<!channel> & <@U1> \u202egnp.exe"
ALEX = next(u for u in CAST_USERS if u.given == "Alex")
ALEX_S23 = next(d for d in CAST_ANDROID if d.key == "alex-s23")
ALEX_SLACK = "UALEXW001"
OUTLOOK, TEAMS = "com.microsoft.office.outlook", "com.microsoft.teams"


def policy(bot: Any, maximum: str = "low", action: str = "block") -> None:
    bot.sandbox.policies_store.update(SEED_POLICY_ID, {"maximumAllowedDeviceThreatLevel": maximum,
                                                       "mobileThreatDefenseRemediationAction": action}, True)


def sweep(bot: Any) -> Any:
    result = sweep_job(bot.deps)
    bot.deps.wait_idle()
    return result


def add(bot: Any, *rows: Any) -> None:
    with bot.deps.store.session() as session:
        for row in rows:
            session.add(row)
        session.commit()


def last_response(bot: Any, user: str) -> Any:
    answers = [e for e in bot.slack.events if e.kind == "response" and e.user == user]
    return answers[-1] if answers else None


def everything_said(bot: Any) -> str:
    parts = []
    for event in bot.slack.events:
        parts.append(getattr(event, "text", "") or "")
        parts.append(block_text(getattr(event, "blocks", None) or []))
    return "\n".join(parts)


# ---- 1. truthfulness in Slack ---------------------------------------------------------------------------


def test_back_on_the_one_digest_says_blocked_not_resolved(make_bot: Any) -> None:
    bot = make_bot(mam_alert_channel=ALERTS)
    policy(bot)
    bot.sandbox.set_connector(androidMobileApplicationManagementEnabled=False)
    sweep(bot)
    notice = bot.slack.messages(ALERTS)[0]
    bot.sandbox.set_connector(androidMobileApplicationManagementEnabled=True)
    result = sweep(bot)
    assert result.new_episodes > 1
    digest = next(m for m in bot.slack.messages(ALERTS) if not m.thread_ts and m.ts != notice.ts)
    said = digest.text + block_text(digest.blocks)
    assert "resolved" not in said and ":white_check_mark:" not in said


def test_enforcement_off_me_tells_a_user_with_an_open_block_they_are_not_blocked(make_bot: Any) -> None:
    bot = make_bot()
    now = datetime.now(UTC)
    bot.slack.add_user(FakeUser(ALEX_SLACK, "alexw", "Alex Wilber", ALEX.mail))
    device = (ALEX_S23.aad_device_id or "").lower()
    add(bot, IndexRun(id=1, started_at=now - timedelta(minutes=30), finished_at=now - timedelta(minutes=29), ok=True,
                      source="export"),
        SweepRun(started_at=now - timedelta(minutes=6), finished_at=now - timedelta(minutes=5), ok=True),
        Enforcement(state=OFF, reason="Android app protection evaluation: Off"),
        IndexRow(generation=1, user_id=ALEX.id.lower(), email=ALEX.mail, device_id=device,
                 device_name=ALEX_S23.name, device_model=ALEX_S23.model, manufacturer=ALEX_S23.manufacturer,
                 app_name=OUTLOOK, package=OUTLOOK, policies=json.dumps(["policy"])),
        Episode(device_id=device, policy_id="policy", open_key=f"{device}|policy", state=OPEN,
                machine_id=ALEX_S23.machine_id, device_name=ALEX_S23.name, policy_name="BYOD", maximum="medium",
                action="block", level="high", apps=json.dumps([OUTLOOK]), opened_at=now - timedelta(hours=2),
                users=json.dumps([{"id": ALEX.id.lower(), "name": "Alex Wilber", "mail": ALEX.mail}]),
                last_seen_at=now))
    ack_json(bot.command("me", user=ALEX_SLACK)[0])
    bot.deps.wait_idle()
    answer = last_response(bot, ALEX_SLACK)
    text = answer.text + block_text(answer.blocks)
    assert "*Blocked:*" not in text and "won't let you in" not in text and "blocked" not in answer.text
    assert "Not blocked for now" in text and "not currently enforcing" in text


def test_a_warn_policy_is_not_reported_as_blocking(make_bot: Any) -> None:
    bot = make_bot(mam_alert_channel=ALERTS)
    policy(bot, "low", "warn")
    bot.sandbox.set_connector(androidMobileApplicationManagementEnabled=True)
    result = sweep(bot)
    assert result.ok and result.new_episodes > 0
    with bot.deps.store.session() as session:
        assert {e.action for e in session.exec(select(Episode))} == {"warn"}
    blocked = ack_json(bot.command("blocked")[0])
    text = block_text(blocked["blocks"])
    assert blocked["text"].startswith("0 blocked devices") and "Blocked now: 0 devices" in text
    assert "Warned, not blocked:" in text  # listed apart, in their own words
    bot.command("status")
    status = [e for e in bot.slack.events if e.kind == "response"][-1]
    assert "0 active blocks" in status.text


# ---- 2. security ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["index", "licences", "licenses", ""])
@pytest.mark.parametrize("user", [DEMO_APPROVER, DEMO_END_USER])
def test_only_admins_may_ask_for_a_sweep_an_index_refresh_or_a_licence_read(make_bot: Any, user: str,
                                                                           what: str) -> None:
    bot = make_bot()
    ack = ack_json(bot.command(f"sweep {what}".strip(), user=user)[0])
    assert "Only mam-bot admins" in ack["text"]
    bot.deps.wait_idle()
    with bot.deps.store.session() as session:
        assert session.exec(select(JobRequest)).all() == []
        assert session.exec(select(IndexRun)).all() == []


def test_another_users_steps_button_with_a_hostile_app_dms_only_the_clicker_and_inertly(make_bot: Any) -> None:
    bot = make_bot()
    bot.slack.add_user(FakeUser(ALEX_SLACK, "alexw", "Alex Wilber", ALEX.mail))
    forged = StepsRef(card="abc123", app=HOSTILE + "x" * 150).encode()
    bot.click(MeAction.SEND_STEPS, user=DEMO_END_USER, value=forged)
    bot.deps.wait_idle()
    assert bot.slack.messages(ALEX_SLACK) == []
    (dm,) = bot.slack.messages(DEMO_END_USER)
    said = dm.text + json.dumps(dm.blocks)
    assert "<!channel>" not in said and "<@U1>" not in said and "\u202e" not in said


@pytest.mark.parametrize("value", ['{"v":1,"card":"ABC","app":"x"}', '{"v":1,"card":"a","app":""}',
                                   '{"v":1,"card":"a","app":"x","to":"UALEXW001"}', "U123", "x" * 5000])
def test_a_forged_steps_button_value_is_refused_in_words(make_bot: Any, value: str) -> None:
    bot = make_bot()
    bot.slack.add_user(FakeUser(ALEX_SLACK, "alexw", "Alex Wilber", ALEX.mail))
    bot.click(MeAction.SEND_STEPS, user=DEMO_END_USER, value=value)
    bot.deps.wait_idle()
    assert bot.slack.messages(ALEX_SLACK) == [] and bot.slack.messages(DEMO_END_USER) == []
    assert "Traceback" not in everything_said(bot)


def test_hostile_names_from_the_report_reach_status_inert(make_bot: Any) -> None:
    bot = make_bot()
    now = datetime.now(UTC)
    add(bot, IndexRun(id=1, started_at=now - timedelta(minutes=3), finished_at=now - timedelta(minutes=2), ok=True,
                      source="export", kept=3, unknown_apps=json.dumps([HOSTILE, "y" * 4000]),
                      unknown_policies=json.dumps([HOSTILE]), duplicate_policies=json.dumps([HOSTILE + " dup"])))
    ack_json(bot.command("status")[0])
    bot.deps.wait_idle()
    answer = last_response(bot, DEMO_ADMIN)
    body = json.dumps(answer.blocks, ensure_ascii=False)
    assert "<!channel>" not in body and "<@U1>" not in body and "\u202e" not in body
    assert "&lt;!channel&gt;" in body and "y" * 700 not in body
