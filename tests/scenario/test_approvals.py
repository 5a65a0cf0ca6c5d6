"""Change requests through signed Slack requests: ask, approve by someone else, execute once, on record."""

from __future__ import annotations

from bot.local import DEMO_ADMIN, DEMO_APPROVER, DEMO_END_USER
from commands.ids import Action, View
from tests.scenario.conftest import ack_json, block_text
from workflows.changes import State
from workflows.connector_change import ANDROID_MAM

APPROVER2 = "UAPPROV02"
WHY = "turn on MAM threat signals for the pilot (CHG0042)"


def toggle(bot) -> bool:
    return bool(bot.sandbox.connector()[ANDROID_MAM])


def patches(bot) -> int:
    return bot.sandbox.stats.count("PATCH", "mobileThreatDefenseConnectors")


def request_enable(bot, user: str = DEMO_ADMIN) -> int:
    response, _ = bot.command(f"connectors enable-android {WHY}", user=user)
    assert "Filing a change request" in ack_json(response)["text"]
    filed = [e for e in bot.slack.events if e.kind == "response" and "Filed change request #" in e.text]
    assert filed, [e.text for e in bot.slack.events]
    return int(filed[-1].text.split("#")[1].split(":")[0])


def card(bot, user: str):
    """The newest approval card in an approver's DM, as Slack shows it now (edits applied)."""
    cards = [m for m in bot.slack.messages(user) if "Change request #" in m.text]
    assert cards, f"no approval card for {user}"
    return cards[-1]


def test_an_admin_asks_and_another_person_approves(bot):
    request_id = request_enable(bot)
    assert toggle(bot) is False
    pending = card(bot, DEMO_APPROVER)
    text = block_text(pending.blocks)
    assert "Waiting for approval" in text and WHY in text
    assert "PATCH /beta/deviceManagement/mobileThreatDefenseConnectors/" in text
    assert f'"{ANDROID_MAM}": true' in text
    assert any("waiting for approval" in m.text for m in bot.slack.messages(DEMO_ADMIN))

    bot.click(Action.APPROVE, user=DEMO_APPROVER, value=str(request_id))

    assert toggle(bot) is True and patches(bot) == 1
    done = card(bot, DEMO_APPROVER)
    assert done.ts == pending.ts  # edited in place, not reposted
    assert "Done" in block_text(done.blocks) and f"Approved by <@{DEMO_APPROVER}>" in block_text(done.blocks)
    assert not [b for b in done.blocks if b["type"] == "actions"]  # no buttons after the decision
    assert any("Done" in m.text for m in bot.slack.messages(DEMO_ADMIN))  # the requester's DM
    actions = [(r.actor, r.outcome) for r in bot.audit()]
    assert (DEMO_ADMIN, "pending") in actions and (DEMO_APPROVER, "approved") in actions
    assert ("mam-bot", "executing") in actions and ("mam-bot", "succeeded") in actions


def test_the_requester_cannot_approve_even_as_an_approver(make_bot):
    bot = make_bot(mam_approvers=[DEMO_ADMIN, DEMO_APPROVER])
    request_id = request_enable(bot)
    bot.click(Action.APPROVE, user=DEMO_ADMIN, value=str(request_id))
    refusal = [e for e in bot.slack.events if e.kind == "response"][-1]
    assert "so you can't approve it" in refusal.text
    assert toggle(bot) is False and bot.deps.changes.require(request_id).state == State.PENDING


def test_someone_who_is_not_an_approver_is_refused(bot):
    request_id = request_enable(bot)
    bot.click(Action.APPROVE, user=DEMO_END_USER, value=str(request_id))
    refusal = [e for e in bot.slack.events if e.kind == "response"][-1].text
    assert "Only approvers can approve change requests, and you are not one of them (MAM_APPROVERS)." in refusal
    assert toggle(bot) is False
    assert bot.audit()[-1].outcome == "refused"


def test_an_end_user_cannot_request_changes(bot):
    body = ack_json(bot.command(f"connectors enable-android {WHY}", user=DEMO_END_USER)[0])
    assert "Only mam-bot admins can ask to turn on Android app protection evaluation." in body["text"]
    assert bot.deps.changes.open_requests() == []


def test_the_same_approve_payload_delivered_twice_writes_once(bot):
    request_id = request_enable(bot)
    bot.click(Action.APPROVE, user=DEMO_APPROVER, value=str(request_id))
    bot.click(Action.APPROVE, user=DEMO_APPROVER, value=str(request_id))
    assert patches(bot) == 1
    assert "already" in [e for e in bot.slack.events if e.kind == "response"][-1].text


def test_quorum_of_two(make_bot):
    bot = make_bot(mam_approvers=[DEMO_APPROVER, APPROVER2], mam_approval_quorum=2)
    request_id = request_enable(bot)
    bot.click(Action.APPROVE, user=DEMO_APPROVER, value=str(request_id))
    assert toggle(bot) is False
    assert "1 of 2 approvals" in block_text(card(bot, APPROVER2).blocks)
    bot.click(Action.APPROVE, user=APPROVER2, value=str(request_id))
    assert toggle(bot) is True and patches(bot) == 1


def test_reject_asks_for_a_reason_and_tells_the_requester(bot):
    request_id = request_enable(bot)
    bot.click(Action.REJECT, user=DEMO_APPROVER, value=str(request_id))
    modal = bot.slack.views_open[-1]
    assert modal["callback_id"] == View.REJECT
    empty = ack_json(bot.submit(View.REJECT, user=DEMO_APPROVER, values={"reason": ""},
                                private_metadata=str(request_id)))
    assert empty["response_action"] == "errors" and "reason" in empty["errors"]
    bot.submit(View.REJECT, user=DEMO_APPROVER, values={"reason": "not during the change freeze"},
               private_metadata=str(request_id))
    assert bot.deps.changes.require(request_id).state == State.REJECTED
    assert "not during the change freeze" in block_text(card(bot, DEMO_APPROVER).blocks)
    assert any("Rejected" in m.text for m in bot.slack.messages(DEMO_ADMIN))
    assert toggle(bot) is False and patches(bot) == 0


def test_without_a_justification_the_command_opens_a_modal(bot):
    response, _ = bot.command("connectors enable-android")
    assert response.status == 200
    modal = bot.slack.views_open[-1]
    assert modal["callback_id"] == View.JUSTIFY
    too_short = ack_json(bot.submit(View.JUSTIFY, values={"justification": "x"},
                                    private_metadata=modal["private_metadata"]))
    assert too_short["response_action"] == "errors"
    bot.submit(View.JUSTIFY, values={"justification": WHY}, private_metadata=modal["private_metadata"])
    [request] = bot.deps.changes.open_requests()
    assert request.justification == WHY and request.requester == DEMO_ADMIN


def test_the_enable_button_on_the_connector_card_files_a_request(bot):
    bot.command("connectors")
    final = [e for e in bot.slack.events if e.kind == "response" and e.replaced][-1]
    assert "Enable (needs approval)" in block_text(final.blocks)
    bot.click(Action.CONNECTORS_ENABLE_ANDROID, user=DEMO_ADMIN)
    assert bot.slack.views_open[-1]["callback_id"] == View.JUSTIFY
    bot.click(Action.CONNECTORS_ENABLE_ANDROID, user=DEMO_APPROVER)  # approvers don't request changes
    assert "Only mam-bot admins can ask to turn on" in [e for e in bot.slack.events if e.kind == "response"][-1].text


def test_requests_cancel_and_audit_commands(bot):
    request_id = request_enable(bot)
    listing = block_text(ack_json(bot.command("requests", user=DEMO_APPROVER)[0])["blocks"])
    assert f"#{request_id}" in listing and "Waiting for approval" in listing
    bot.command(f"cancel {request_id}", user=DEMO_APPROVER)  # approvers are not admins: refused by role
    assert bot.deps.changes.require(request_id).state == State.PENDING
    bot.command(f"cancel {request_id}")
    assert bot.deps.changes.require(request_id).state == State.CANCELLED
    assert "Cancelled" in block_text(card(bot, DEMO_APPROVER).blocks)
    assert "Name the request by its number" in ack_json(bot.command("cancel soon")[0])["text"]
    unknown = ack_json(bot.command("cancel 999")[0])["text"]
    assert "There is no request #999" in unknown and "Cancelling" not in unknown
    audit = block_text(ack_json(bot.command("audit 5")[0])["blocks"])
    assert f"cancel #{request_id}" in audit


def test_approval_cards_go_to_the_approval_channel_when_set(make_bot):
    bot = make_bot(mam_approval_channel="C0APPROVE")
    request_id = request_enable(bot)
    posts = bot.slack.messages("C0APPROVE")
    assert len(posts) == 1 and f"Change request #{request_id}" in posts[0].text
    assert bot.slack.messages(DEMO_APPROVER) == []
