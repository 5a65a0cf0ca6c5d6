"""`/mam assign`'s licence line against the sandbox: how many of the group's members lack an Intune or a Defender
licence (read from `assignedPlans` by a licence refresh), or that licences were not checked yet.

The sandbox's cast: Nestor Wilke has no Defender plan, Isaiah Langer no Intune plan, Grady Archie's Defender
plan is Suspended; Lee Gu, Megan Bowen and Patti Fernandez hold both.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.local import DEMO_ADMIN, DEMO_APPROVER
from bot.sandbox import SEED_POLICY_ID, SEED_POLICY_NAME, SandboxConfig
from bot.sandbox.seed import CAST_GROUPS
from bot.store.index import LicenceRun
from commands import assignments
from commands.ids import Action, View
from tests.scenario.conftest import ack_json, block_text
from tests.scenario.test_double_submit import assign_state
from workflows.licences import last_licence_run, refresh_licences

GROUPS = {g.key or g.name: g.id for g in CAST_GROUPS}
WHY = "protect the second pilot ring (CHG0107)"
HOSTILE = "<!channel> & <@U1>"
NOT_CHECKED = "Licences not checked yet (`mam-bot jobs run licences`)."


def refresh(bot: Any) -> LicenceRun:
    settings = bot.deps.settings
    run = refresh_licences(reader=bot.deps.microsoft.graph.background(), store=bot.deps.store,
                           intune_plans=settings.mam_intune_plan_ids, defender_plans=settings.mam_defender_plan_ids,
                           now=bot.deps.now())
    assert run.ok, run.error
    return run


def responses(bot: Any) -> list[Any]:
    return [e for e in bot.slack.events if e.kind == "response"]


def answer_text(bot: Any) -> str:
    return block_text(responses(bot)[-1].blocks)


def rename_group(bot: Any, group_id: str, name: str) -> None:
    for found in bot.sandbox.world.groups:
        if found["id"] == group_id:
            found["displayName"] = name


def member_reads(bot: Any) -> int:
    """Reads of a group's member list (not its count): only the licence line reads the members."""
    return int(bot.sandbox.stats.requests[("GET", "/v1.0/groups/{id}/{relation}")])


def test_before_any_refresh_the_preview_says_licences_were_not_checked(bot):
    bot.command(f'assign "{SEED_POLICY_NAME}" "MAM Pilot Users"')
    text = answer_text(bot)
    assert "You are about to ask to assign" in text and NOT_CHECKED in text
    assert member_reads(bot) == 0  # no evidence, no reading: nobody is called unlicensed


def test_an_admin_without_the_approver_role_sees_who_lacks_a_licence_then_asks(bot):
    assert DEMO_ADMIN not in bot.deps.settings.mam_approvers
    refresh(bot)
    response, _ = bot.command(f'assign "{SEED_POLICY_NAME}" "MAM Pilot Users"')
    assert "Looking up" in ack_json(response)["text"]  # the ack says only that: the reading comes after it
    first, last = responses(bot)[-2:]
    assert "Checking the licences of the group's members" in block_text(first.blocks)
    text = block_text(last.blocks)
    assert "1 of 2 members lacks a licence and can't be protected (1 no Defender)." in text
    assert "direct member" in text and "include All Android Users" in text
    assert member_reads(bot) == 1

    button = next(b for b in last.blocks if b["type"] == "actions")["elements"][0]
    bot.click(Action.ASSIGN_REQUEST, value=button["value"])
    modal = bot.slack.views_open[-1]
    assert modal["callback_id"] == View.JUSTIFY
    bot.submit(View.JUSTIFY, values={"justification": WHY}, private_metadata=modal["private_metadata"])
    request = bot.deps.changes.open_requests()[0]
    assert request.requester == DEMO_ADMIN
    bot.click(Action.APPROVE, user=DEMO_ADMIN, value=str(request.id))  # not theirs to approve
    assert bot.deps.changes.open_requests()[0].id == request.id


def test_an_approver_who_is_not_an_admin_is_refused_before_anything_is_read(bot):
    refresh(bot)
    refused = ack_json(bot.command('assign "x" "MAM Pilot Users"', user=DEMO_APPROVER)[0])["text"]
    assert "Only mam-bot admins can run `/mam assign`." in refused
    assert member_reads(bot) == 0
    assert [e.text for e in responses(bot)] == [refused]  # the refusal, and nothing after it


def test_every_member_licensed_and_each_kind_of_gap(bot):
    refresh(bot)
    bot.command(f'assign "{SEED_POLICY_ID}" "{GROUPS["Executives"]}"')
    assert ":white_check_mark: All 2 members hold an Intune and a Defender licence." in answer_text(bot)
    # Sales is nested: Isaiah (no Intune) directly; Adele in Sales EMEA; Alex and Grady (Defender suspended)
    # in Sales AMER. Transitive members count, not the 3 direct ones.
    bot.command(f'assign "{SEED_POLICY_ID}" "{GROUPS["Sales"]}"')
    text = answer_text(bot)
    assert "(3 direct members)" in text
    assert ":warning: 2 of 4 members lack a licence and can't be protected (1 no Intune, 1 no Defender)." in text


def test_a_licence_taken_away_shows_after_the_next_refresh(bot):
    refresh(bot)
    lee = next(u for u in bot.sandbox.users if u["displayName"] == "Lee Gu")
    bot.sandbox.set_licence(lee["id"], "INTUNE_A", "Suspended")
    bot.command(f'assign "{SEED_POLICY_NAME}" "MAM Pilot Users"')
    assert "1 of 2 members lacks a licence" in answer_text(bot)  # the table is as of the last refresh
    refresh(bot)
    bot.command(f'assign "{SEED_POLICY_NAME}" "MAM Pilot Users"')
    assert "2 of 2 members lack a licence and can't be protected (1 no Intune, 1 no Defender)." in answer_text(bot)


def test_a_large_group_is_read_up_to_the_cap(bot, monkeypatch):
    refresh(bot)
    group = GROUPS["All Android Users"]  # Adele, Alex, Megan, Lee, Nestor (no Defender), Isaiah (no Intune), …
    monkeypatch.setattr(assignments, "MEMBER_CAP", 3)
    bot.command(f'assign "{SEED_POLICY_ID}" "{group}"')
    assert "The first 3 members hold an Intune and a Defender licence (the group has more)." in answer_text(bot)
    monkeypatch.setattr(assignments, "MEMBER_CAP", 6)
    bot.command(f'assign "{SEED_POLICY_ID}" "{group}"')
    assert ("At least 2 of 6+ members lack a licence and can't be protected (1 no Intune, 1 no Defender; only the "
            "first 6 were checked).") in answer_text(bot)


def test_with_a_reason_the_filed_answer_keeps_the_licence_line(bot):
    refresh(bot)
    bot.command(f'assign "{SEED_POLICY_NAME}" "MAM Pilot Users" --why "{WHY}"')
    text = answer_text(bot)
    assert "Filed change request #" in text and "1 of 2 members lacks a licence" in text


def test_exclusions_and_removals_show_no_licence_line(bot):
    refresh(bot)
    bot.command(f'assign "{SEED_POLICY_NAME}" "MAM Pilot Users" --exclude')
    assert "licence" not in answer_text(bot).lower()
    bot.command(f'unassign "{SEED_POLICY_NAME}" Executives')
    assert "licence" not in answer_text(bot).lower() and member_reads(bot) == 0


@pytest.mark.parametrize("status", [403, 503])
def test_members_that_cant_be_read_leave_the_preview_working(make_bot, status):
    group = GROUPS["MAM Pilot Users"]
    route = f"/v1.0/groups/{group}/transitiveMembers"
    config = SandboxConfig(forbid={route}) if status == 403 else SandboxConfig(fail={route: [503] * 10})
    bot = make_bot(config)
    refresh(bot)
    bot.command(f'assign "{SEED_POLICY_NAME}" "{group}"')
    last = responses(bot)[-1]
    text = block_text(last.blocks)
    assert "Licences not checked: the group's members couldn't be read:" in text
    assert any(b["type"] == "actions" for b in last.blocks)  # "Ask for approval…" is still there


def test_a_hostile_group_name_stays_inert_beside_the_licence_line(bot):
    refresh(bot)
    group = GROUPS["MAM Pilot Users"]
    rename_group(bot, group, HOSTILE)
    bot.command(f'assign "{SEED_POLICY_ID}" "{group}"')
    assert last_licence_run(bot.deps.store) is not None
    for event in responses(bot):
        sent = block_text(event.blocks) + "\n" + str(getattr(event, "text", "") or "")
        assert "<!channel>" not in sent and "<@U1>" not in sent, sent
    text = answer_text(bot)
    assert "&lt;!channel&gt; &amp; &lt;@U1&gt;" in text
    assert "1 of 2 members lacks a licence and can't be protected (1 no Defender)." in text


# ---- the approver's card ----------------------------------------------------------------------------------


def approver_card(bot: Any) -> str:
    cards = [m for m in bot.slack.messages(DEMO_APPROVER) if "Change request #" in m.text]
    assert cards, "no approval card reached the approver"
    return block_text(cards[-1].blocks)


def test_the_approvers_card_says_who_lacks_a_licence(bot):
    refresh(bot)
    bot.command(f'assign "{SEED_POLICY_NAME}" "MAM Pilot Users" --why "{WHY}"')
    card = approver_card(bot)
    assert "Before you approve" in card
    assert "MAM Pilot Users: 1 of 2 members lacks a licence and can't be protected (1 no Defender)." in card
    request = bot.deps.changes.open_requests()[0]
    bot.click(Action.APPROVE, user=DEMO_APPROVER, value=str(request.id))
    assert "1 of 2 members lacks a licence" in approver_card(bot)  # as filed, on every edit of the card


def test_the_form_path_files_the_same_line(bot):
    """Without arguments the form files the request with no preview: the card is where the licences show."""
    refresh(bot)
    bot.command("assign")
    modal = bot.slack.views_open[-1]
    assert modal["callback_id"] == View.ASSIGN
    bot.submit_state(View.ASSIGN, view_id=str(modal["id"]), state=assign_state(bot, group="Executives"))
    bot.deps.wait_idle()
    assert "Executives: All 2 members hold an Intune and a Defender licence." in approver_card(bot)


def test_before_any_refresh_the_card_says_licences_were_not_checked_and_reads_no_member(bot):
    bot.command(f'assign "{SEED_POLICY_NAME}" "MAM Pilot Users" --why "{WHY}"')
    assert f"MAM Pilot Users: {NOT_CHECKED}" in approver_card(bot)
    assert member_reads(bot) == 0


def test_exclusions_file_no_licence_line(bot):
    refresh(bot)
    bot.command(f'assign "{SEED_POLICY_NAME}" "MAM Pilot Users" --exclude --why "{WHY}"')
    assert "Before you approve" not in approver_card(bot)


def test_unreadable_members_are_said_on_the_card_and_the_request_is_still_filed(make_bot):
    group = GROUPS["MAM Pilot Users"]
    bot = make_bot(SandboxConfig(forbid={f"/v1.0/groups/{group}/transitiveMembers"}))
    refresh(bot)
    bot.command(f'assign "{SEED_POLICY_NAME}" "{group}" --why "{WHY}"')
    assert "Licences not checked: the group's members couldn't be read:" in approver_card(bot)
    assert len(bot.deps.changes.open_requests()) == 1


def test_a_hostile_group_name_stays_inert_on_the_card(bot):
    refresh(bot)
    group = GROUPS["MAM Pilot Users"]
    rename_group(bot, group, HOSTILE)
    bot.command(f'assign "{SEED_POLICY_ID}" "{group}" --why "{WHY}"')
    card = approver_card(bot)
    assert "<!channel>" not in card and "<@U1>" not in card
    assert "&lt;!channel&gt; &amp; &lt;@U1&gt;: 1 of 2 members lacks a licence" in card


def test_a_group_name_of_3000_characters_leaves_the_licence_sentence_on_the_card(bot):
    refresh(bot)
    group = GROUPS["MAM Pilot Users"]
    rename_group(bot, group, "<!channel>&" * 300)
    bot.command(f'assign "{SEED_POLICY_ID}" "{group}" --why "{WHY}"')
    card = approver_card(bot)
    assert "<!channel>" not in card
    assert "…: 1 of 2 members lacks a licence and can't be protected (1 no Defender)." in card
