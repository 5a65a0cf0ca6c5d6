"""Through the real app: a change made in the Intune portal (the sandbox's admin edits) posts one drift card in
the alert channel naming who and what; the next poll posts nothing new; Revert (admins) files approvals that
restore the snapshot once approved; Accept moves it; the bot's own changes post none; a late audit event edits
the card in place; the connector's Android toggle switched off outside the bot is the enforcement notice only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.local import DEMO_ADMIN, DEMO_APPROVER, DEMO_END_USER
from bot.sandbox import SEED_POLICY_ID, SEED_POLICY_NAME
from bot.sandbox.seed import CAST_USERS
from commands import drift
from commands.drift import DriftAction, check_drift
from commands.ids import Action
from commands.payloads import RequestRef
from tests.scenario.conftest import Bot, block_text
from workflows.changes import State
from workflows.drift import open_reports
from workflows.policy_edit import EDIT

ALERTS = "C0ALERTS"
MEGAN = next(u for u in CAST_USERS if u.given == "Megan")
HOSTILE = "<!channel> <@U1> & " + "y" * 3000


def drift_bot(make_bot: Any, **settings: Any) -> Bot:
    bot: Bot = make_bot(mam_alert_channel=ALERTS, **settings)
    if ("action", DriftAction.REVERT.value) not in bot.deps.registry.interactions:
        drift.listeners.install(bot.ws.app, bot.deps)  # until commands/__init__.py lists the module
    bot.sandbox.set_connector(androidMobileApplicationManagementEnabled=True)
    return bot


def poll(bot: Bot) -> Any:
    result = check_drift(bot.deps)
    bot.deps.wait_idle()
    assert result.ok, result.summary()
    return result


def cards(bot: Bot) -> list[Any]:
    return [m for m in bot.slack.messages(ALERTS) if not m.thread_ts]


def value_of(message: Any, action_id: str) -> str:
    for block in message.blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == action_id:
                return str(element["value"])
    raise AssertionError(f"no {action_id} button on {block_text(message.blocks)}")


def last_response(bot: Bot) -> str:
    return [e for e in bot.slack.events if e.kind == "response"][-1].text


def test_a_portal_change_is_one_card_and_revert_restores_it_through_approval(make_bot):
    bot = drift_bot(make_bot)
    assert poll(bot).baseline and cards(bot) == []

    bot.sandbox.edit_policy_as(MEGAN.mail, SEED_POLICY_NAME, maximumAllowedDeviceThreatLevel="high",
                               include=["Sales"])
    assert poll(bot).reported == 1
    [card] = cards(bot)
    text = block_text(card.blocks)
    assert MEGAN.mail in text and SEED_POLICY_NAME in text
    assert "Max allowed device threat level" in text and "not configured → high" in text
    assert "Groups added" in text and "Sales" in text
    assert MEGAN.mail in card.text

    poll(bot)
    assert len(cards(bot)) == 1 and cards(bot)[0].edits == 0  # the same drift keeps its card

    bot.click(DriftAction.REVERT, user=DEMO_END_USER, value=value_of(card, DriftAction.REVERT))
    assert "Only mam-bot admins can revert changes made outside the bot" in last_response(bot)
    bot.click(DriftAction.REVERT, user=DEMO_APPROVER, value=value_of(card, DriftAction.REVERT))
    assert "Only mam-bot admins" in last_response(bot)
    assert bot.deps.changes.open_requests() == []

    bot.click(DriftAction.REVERT, user=DEMO_ADMIN, value=value_of(card, DriftAction.REVERT))
    requests = bot.deps.changes.open_requests()
    assert sorted(r.kind for r in requests) == ["policy_assign", EDIT]
    assert all(r.requester == DEMO_ADMIN and r.state == State.PENDING for r in requests)
    assert "Filed 2 change requests" in last_response(bot)
    edited = cards(bot)[0]
    assert edited.edits >= 1 and "Revert asked for by" in block_text(edited.blocks)
    assert bot.sandbox.policy(SEED_POLICY_ID)["maximumAllowedDeviceThreatLevel"] == "high"  # type: ignore[index]

    bot.click(DriftAction.REVERT, user=DEMO_ADMIN, value=value_of(edited, DriftAction.REVERT))
    assert "already waiting for approval" in last_response(bot)

    for request in requests:
        bot.click(Action.APPROVE, user=DEMO_APPROVER, value=RequestRef(id=request.id or 0).encode())
    assert all(bot.deps.changes.require(r.id or 0).state == State.SUCCEEDED for r in requests)
    policy = bot.sandbox.policy(SEED_POLICY_ID)
    assert policy is not None and policy["maximumAllowedDeviceThreatLevel"] == "notConfigured"
    sales = bot.sandbox.group("Sales")["id"]  # type: ignore[index]
    assert sales not in {a["target"].get("groupId") for a in policy["assignments"]}

    result = poll(bot)
    assert result.resolved == 1 and result.reported == 0 and len(cards(bot)) == 1
    settled = block_text(cards(bot)[0].blocks)
    assert "back to the snapshot (reverted through" in settled and "Accept as the new baseline" not in settled


def test_accept_moves_the_baseline_and_the_bots_own_change_posts_nothing(make_bot):
    bot = drift_bot(make_bot)
    poll(bot)
    bot.sandbox.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, mobileThreatDefenseRemediationAction="wipe")
    poll(bot)
    [card] = cards(bot)

    bot.click(DriftAction.ACCEPT, user=DEMO_END_USER, value=value_of(card, DriftAction.ACCEPT))
    assert "Only mam-bot admins can accept changes made outside the bot" in last_response(bot)
    bot.click(DriftAction.ACCEPT, user=DEMO_ADMIN, value=value_of(card, DriftAction.ACCEPT))

    accepted = cards(bot)[0]
    assert "Accepted as the new baseline by" in block_text(accepted.blocks)
    assert not [b for b in accepted.blocks if b["type"] == "actions"]  # no buttons once settled
    assert open_reports(bot.deps.store) == {}
    assert poll(bot).reported == 0

    request = bot.deps.changes.file(EDIT, {"policy_id": SEED_POLICY_ID, "settings": {
        "maximumAllowedDeviceThreatLevel": {"before": "notConfigured", "after": "medium"}}},
        requester=DEMO_ADMIN, justification="watch the threat level")
    bot.click(Action.APPROVE, user=DEMO_APPROVER, value=RequestRef(id=request.id or 0).encode())
    assert bot.deps.changes.require(request.id or 0).state == State.SUCCEEDED
    result = poll(bot)
    assert result.reported == 0 and result.absorbed == 1 and len(cards(bot)) == 1


def test_a_late_audit_event_updates_the_card_in_place(make_bot):
    bot = drift_bot(make_bot)
    poll(bot)
    bot.sandbox.edit_policy_as(MEGAN.mail, SEED_POLICY_ID, description="quietly", audit_delay=timedelta(hours=1))
    poll(bot)
    [card] = cards(bot)
    assert "someone (no audit event yet)" in block_text(card.blocks) and MEGAN.mail not in block_text(card.blocks)

    bot.sandbox.deliver_late_audit_events()
    poll(bot)

    [again] = cards(bot)
    assert again.ts == card.ts and again.edits == 1
    assert MEGAN.mail in block_text(again.blocks) and "no audit event yet" not in block_text(again.blocks)


def test_the_android_toggle_switched_off_outside_is_the_enforcement_notice_only(make_bot):
    from bot.jobs import sweep_job

    bot = drift_bot(make_bot)
    assert sweep_job(bot.deps).enforcement == "on"
    poll(bot)
    bot.sandbox.set_connector_as(MEGAN.mail, androidMobileApplicationManagementEnabled=False)

    result = poll(bot)
    sweep_job(bot.deps)
    bot.deps.wait_idle()

    assert result.enforcement == "off" and result.reported == 0
    [notice] = cards(bot)
    assert "Threat-level enforcement is off" in block_text(notice.blocks)
    assert poll(bot).reported == 0 and len(cards(bot)) == 1


def test_hostile_names_are_inert_and_within_slacks_limits(make_bot):
    bot = drift_bot(make_bot)
    poll(bot)
    created = bot.sandbox.create_policy_as(HOSTILE[:300], HOSTILE[:256], maximumAllowedDeviceThreatLevel="low")
    bot.sandbox.set_connector_as(HOSTILE[:320], iosEnabled=False)
    poll(bot)

    messages = cards(bot)
    assert len(messages) == 2
    for message in messages:
        parsed = [b for b in message.blocks if b["type"] != "header"]  # a header is plain text: never parsed
        shown = message.text + block_text(parsed)
        assert "<!channel>" not in shown and "<@U1>" not in shown and "&lt;!channel&gt;" in shown
    policy_card = next(m for m in messages if created["id"] in block_text(m.blocks))
    assert value_of(policy_card, DriftAction.REVERT)  # Revert deletes it (through approval)
    assert "Revert: delete it" in str(policy_card.blocks)

    bot.sandbox.delete_policy_as(HOSTILE[:300], SEED_POLICY_ID)
    poll(bot)
    deleted = next(m for m in cards(bot) if SEED_POLICY_ID in block_text(m.blocks))
    text = block_text(deleted.blocks)
    assert "deleted policy can't be restored" in text and "drift_revert" not in str(deleted.blocks)
    assert value_of(deleted, DriftAction.ACCEPT)


def test_the_console_changes_the_tenant_outside_the_bot(make_bot):
    import io

    bot = drift_bot(make_bot)
    poll(bot)
    out = io.StringIO()
    session = bot.ws.session(out=out)
    session.send(f':portal policy "{SEED_POLICY_NAME}" maximumAllowedDeviceThreatLevel=medium --as {MEGAN.mail}')
    assert "was changed in the Intune portal" in out.getvalue()
    poll(bot)
    assert MEGAN.mail in block_text(cards(bot)[0].blocks)


def test_a_huge_change_stays_within_slacks_limits(make_bot):
    bot = drift_bot(make_bot)
    poll(bot)
    apps = [f"com.contoso.app{n:03d}.{'z' * 60}" for n in range(200)]
    bot.sandbox.edit_policy_as(HOSTILE[:320], SEED_POLICY_ID, displayName=HOSTILE, description=HOSTILE,
                               add_apps=apps, include=["Sales", "Finance", "MAM Pilot"])
    poll(bot)

    [card] = cards(bot)
    text = block_text(card.blocks)
    assert "Apps now" in text and "and 234 more" in text  # 39 + 200 apps: most counted
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in card.blocks if b["type"] == "section")
    assert len(card.blocks[0]["text"]["text"]) <= 150
    bot.click(DriftAction.REVERT, user=DEMO_ADMIN, value=value_of(card, DriftAction.REVERT))
    kinds = sorted(r.kind for r in bot.deps.changes.open_requests())
    assert kinds == ["policy_assign", EDIT]
