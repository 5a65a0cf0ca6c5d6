"""Long inputs end to end, every payload through the fake Slack's check of Slack's limits (tests/conftest.py
fails a test on any payload Slack would refuse): a 2,500-character justification, a 200-character group
name, 60 policies, long request and audit lists, and an App Home with many requests waiting."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.local import DEMO_ADMIN, DEMO_APPROVER
from bot.microsoft.models import AndroidPolicyDraft, ThreatLevel
from bot.sandbox import SEED_POLICY_ID, SEED_POLICY_NAME
from bot.slack_limits import MESSAGE_BLOCKS, block_problems, message_problems
from bot.store import ChangeRequest
from commands.ids import Action, View
from tests.scenario.conftest import ack_json, block_text
from tests.scenario.slack_requests import action_body
from workflows.changes import State
from workflows.policy_changes import ASSIGN

OTHER_ADMIN = "UAPPROV02"  # a second admin: allowed to click assignment buttons, but not someone else's
LONG_WHY = ("Pilot rollout of Defender threat signals for the mobile sales team (CHG0042); " * 40)[:2500]
LONG_GROUP = ("Contoso Mobile Sales EMEA pilot wave one for Defender threat signals on personal Android "
              "phones, including contractors and seasonal staff in Dublin, Lisbon and Madrid offices, "
              "phase A")[:200].ljust(200, "x")


def responses(bot) -> list[Any]:
    return [e for e in bot.slack.events if e.kind == "response"]


def newest_request(bot):
    [request, *_] = bot.deps.changes.open_requests()
    return request


def card(bot, user: str = DEMO_APPROVER):
    cards = [m for m in bot.slack.messages(user) if "Change request #" in m.text]
    assert cards, "no approval card"
    return cards[-1]


def approve_and_check(bot, request_id: int, group_id: str) -> None:
    bot.click(Action.APPROVE, user=DEMO_APPROVER, value=str(request_id))
    assert bot.deps.changes.require(request_id).state == State.SUCCEEDED
    assert group_id in {a["target"]["groupId"] for a in bot.sandbox.policy(SEED_POLICY_ID)["assignments"]}
    assert "Done" in block_text(card(bot).blocks)


def click_in(bot, message, action_id: str, value: str, *, user: str = DEMO_ADMIN) -> None:
    """A click on a button of an ephemeral `message`, with that message's response_url, by `user`."""
    url = bot.slack.new_response_url(channel=message.channel, user=user, original_ts=message.ts, kind="actions")
    bot.dispatch(action_body(action_id, user=user, response_url=url, value=value, channel=message.channel,
                             message_ts=message.ts, trigger_id=bot.slack.new_trigger_id(user)))


def rename_group(bot, name: str, new_name: str) -> str:
    """The first of the sandbox's groups called `name` gets `new_name`; returns its id."""
    [stored, *_] = [g for g in bot.sandbox.world.groups if g["displayName"] == name]
    stored["displayName"] = new_name
    return str(stored["id"])


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


# ---- a 2,500-character justification ----------------------------------------------------------------


def test_a_long_justification_on_the_command_line_is_filed_whole_and_executed(bot):
    pilot = str(bot.sandbox.group("MAM Pilot")["id"])
    bot.command(f'assign "{SEED_POLICY_NAME}" "MAM Pilot" --why "{LONG_WHY}"')

    filed = responses(bot)[-1]
    assert "Filed change request #" in block_text(filed.blocks)
    request = newest_request(bot)
    assert request.justification == LONG_WHY and request.requester == DEMO_ADMIN
    assert LONG_WHY[:500] in block_text(card(bot).blocks)  # the approval card shows it, within a section
    approve_and_check(bot, request.id, pilot)


def test_a_long_justification_survives_a_pick_list_and_only_its_author_may_pick(make_bot):
    bot = make_bot(mam_admins=[DEMO_ADMIN, OTHER_ADMIN])
    bot.command(f'assign "{SEED_POLICY_NAME}" Contractors --why "{LONG_WHY}"')
    answer = responses(bot)[-1]
    assert "Several groups match *Contractors*" in block_text(answer.blocks)
    picks = buttons(answer.blocks)
    assert picks and all(len(b["value"]) <= 64 for b in picks)  # an id, not the request
    message = bot.slack.message(answer.channel, answer.ts)

    click_in(bot, message, picks[0]["action_id"], picks[0]["value"], user=OTHER_ADMIN)
    assert "Only the person who asked can use this button" in responses(bot)[-1].text
    assert bot.deps.changes.open_requests() == []

    click_in(bot, message, picks[0]["action_id"], picks[0]["value"])
    request = newest_request(bot)
    assert request.justification == LONG_WHY
    group_id = picks[0]["action_id"].rsplit(":", 1)[1]
    approve_and_check(bot, request.id, group_id)


def test_a_long_justification_typed_in_the_form_after_the_confirmation(bot):
    bot.command(f'assign "{SEED_POLICY_NAME}" "Sales EMEA"')
    confirm = responses(bot)[-1]
    [ask] = buttons(confirm.blocks)
    assert ask["action_id"] == Action.ASSIGN_REQUEST and len(ask["value"]) <= 64
    click_in(bot, bot.slack.message(confirm.channel, confirm.ts), Action.ASSIGN_REQUEST, ask["value"])
    modal = bot.slack.views_open[-1]
    assert modal["callback_id"] == View.JUSTIFY
    bot.submit(View.JUSTIFY, values={"justification": LONG_WHY}, private_metadata=modal["private_metadata"])
    request = newest_request(bot)
    assert request.justification == LONG_WHY
    approve_and_check(bot, request.id, str(bot.sandbox.group("Sales EMEA")["id"]))


def test_a_reason_longer_than_a_request_keeps_is_refused_in_words(bot):
    body = ack_json(bot.command(f'assign "{SEED_POLICY_NAME}" "MAM Pilot" --why "{"x" * 3001}"')[0])
    assert "at most 3,000 characters; this one has 3,001" in body["text"]
    assert bot.deps.changes.open_requests() == []


def test_a_button_from_before_drafts_or_an_expired_one_says_so(bot):
    bot.click(Action.ASSIGN_REQUEST, value='{"p": "policy", "g": "group", "m": "include", "w": ""}')
    assert "This button has expired" in responses(bot)[-1].text
    assert bot.slack.views_open == []


# ---- a 200-character group name ------------------------------------------------------------------------


def test_a_200_character_group_name_works_end_to_end(bot):
    group_id = rename_group(bot, "MAM Pilot", LONG_GROUP)
    assert len(LONG_GROUP) == 200

    bot.command(f'assign "{SEED_POLICY_NAME}" "{LONG_GROUP}"')
    confirm = responses(bot)[-1]
    assert LONG_GROUP in block_text(confirm.blocks)
    [ask] = buttons(confirm.blocks)
    click_in(bot, bot.slack.message(confirm.channel, confirm.ts), Action.ASSIGN_REQUEST, ask["value"])
    modal = bot.slack.views_open[-1]
    bot.submit(View.JUSTIFY, values={"justification": LONG_WHY}, private_metadata=modal["private_metadata"])

    request = newest_request(bot)
    assert LONG_GROUP in request.title
    assert LONG_GROUP in card(bot).text or LONG_GROUP in block_text(card(bot).blocks)
    approve_and_check(bot, request.id, group_id)
    assert LONG_GROUP in block_text(card(bot).blocks)


def test_a_200_character_group_name_in_the_picker_and_the_pick_list(bot):
    rename_group(bot, "Contractors", "Contractors " + "y" * 188)  # the sandbox has two groups of that name
    rename_group(bot, "Contractors", "Contractors " + "z" * 188)
    options = ack_json(bot.options(Action.PICK_GROUP, "Contractors"))["options"]  # checked by the fake
    assert options and all(len(o["text"]["text"]) <= 75 for o in options)
    bot.command(f'assign "{SEED_POLICY_NAME}" Contractors')
    picks = buttons(responses(bot)[-1].blocks)
    assert len(picks) == 2 and all(len(b["text"]["text"]) <= 75 for b in picks)


# ---- 60 policies ----------------------------------------------------------------------------------------


def add_policies(bot, names: list[str]) -> None:
    graph = bot.deps.microsoft.graph
    for name in names:
        graph.create_android_policy(AndroidPolicyDraft(
            displayName=name, maximumAllowedDeviceThreatLevel=ThreatLevel.LOW,
            packageIds=("com.microsoft.office.outlook",)))


def final_blocks(bot, url: str) -> list[dict[str, Any]]:
    assert bot.slack.response_url_uses(url) == 1
    return [e for e in responses(bot) if e.replaced][-1].blocks


def test_sixty_policies_list_within_a_message_and_say_how_to_see_the_rest(bot):
    add_policies(bot, [f"Pilot wave {i:02}" for i in range(30)] + [f"Sales wave {i:02}" for i in range(29)])
    assert len(bot.sandbox.policies) == 60

    _, url = bot.command("policy list")
    blocks = final_blocks(bot, url)
    assert len(blocks) <= MESSAGE_BLOCKS and block_problems(blocks) == []
    text = block_text(blocks)
    assert "60 policies" in text
    assert "…and 13 more: `/mam policy list &lt;part of a name&gt;` narrows it down" in text

    _, url = bot.command("policy list sales wave")
    blocks = final_blocks(bot, url)
    text = block_text(blocks)
    assert "29 policies with “sales wave” in the name" in text and "more:" not in text
    assert "Sales wave 28" in text and "Pilot wave" not in text

    _, url = bot.command("policy list nothing like this")
    assert "No Android app protection policy has *nothing like this* in its name" in block_text(final_blocks(bot, url))


# ---- long lists: /mam requests, /mam audit, App Home -------------------------------------------------------


def file_requests(bot, n: int) -> None:
    """`n` pending requests with long titles, straight into the store (filing each through Graph and the
    outbox's one-post-a-second pace would take a second apiece; the lists only read the rows)."""
    now = datetime.now(UTC)
    with bot.deps.store.session() as session:
        for i in range(n):
            session.add(ChangeRequest(kind=ASSIGN, title=f"Assign {SEED_POLICY_NAME} to {LONG_GROUP} ({i + 1})",
                                      requester=DEMO_ADMIN, justification=LONG_WHY, state=State.PENDING.value,
                                      created_at=now, expires_at=now + timedelta(days=1)))
        session.commit()


def test_many_open_requests_are_listed_within_limits_with_a_more_line(bot):
    file_requests(bot, 24)
    body = ack_json(bot.command("requests", user=DEMO_APPROVER)[0])
    assert message_problems(body) == []
    text = block_text(body["blocks"])
    assert "#24 " in text and "…and " in text and "more: `mam-bot audit export` records every request." in text
    shown = text.count(":hourglass_flowing_sand:")
    more = int(text.split("…and ")[1].split(" more")[0])
    assert shown + more == 24


def test_a_long_audit_list_fits_and_says_how_many_are_left_out(bot):
    for i in range(60):
        bot.deps.audit.record(actor=DEMO_ADMIN, action=f"assign <&> {i} " + "&" * 110, outcome="refused",
                              detail="<" * 300)
    body = ack_json(bot.command("audit 50")[0])
    assert message_problems(body) == []
    assert all(len(b["text"]["text"]) <= 3000 for b in body["blocks"] if b["type"] == "section")
    text = block_text(body["blocks"])
    left = int(text.split("…and ")[1].split(" older")[0])
    shown = int(text.split("*Last ")[1].split(" audit")[0])
    assert left > 0 and shown + left == 50
    assert "`mam-bot audit export --format csv|jsonl` has the whole log" in text


def test_app_home_lists_what_waits_and_how_many_more(bot):
    file_requests(bot, 14)
    bot.event({"type": "app_home_opened", "user": DEMO_APPROVER, "channel": "D0HOME", "tab": "home",
               "event_ts": str(time.time())})
    bot.deps.wait_idle()
    home = bot.slack.home(DEMO_APPROVER)
    assert home is not None
    text = block_text(home["blocks"])
    assert "*Waiting for approval*" in text and "#14 " in text
    waiting = text.split("*Waiting for approval*")[1]
    shown = waiting.split("…and ")[0].count(":hourglass_flowing_sand:")
    more = int(waiting.split("…and ")[1].split(" more")[0])
    assert 0 < shown <= 10 and shown + more == 14  # ten at most, fewer when long titles fill the section
    assert "more: `/mam requests` lists the open requests, and each has its approval card." in waiting
