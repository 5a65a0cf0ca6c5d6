"""`/mam me`'s decisions (workflows.me) and its card (commands.me): who the person is, each device's state, and
what the card says about it, from rows in the database only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.microsoft.errors import ServiceUnavailable
from bot.microsoft.models import User
from bot.mrkdwn import Mrkdwn
from bot.slack_limits import MESSAGE_BLOCKS, message_problems
from bot.store import Store, create_store
from bot.store.index import OFF, ON, UNKNOWN, Enforcement, EntraUserLink, IndexRow, IndexRun, LicenceRun, UserLicence
from bot.store.watch import ONBOARDED, OPEN, PENDING, RESOLVED, Episode, OnboardingCase, SweepRun
from commands.blocks import SECTION_TEXT_MAX
from commands.me import StepsRef, example_app, me_blocks, me_summary, not_identified_text, steps_dm, steps_key
from tests.scenario.conftest import block_text
from workflows.entra_users import EntraUsers
from workflows.me import (
    DeviceState,
    Identity,
    MyView,
    NotIdentified,
    Why,
    decide,
    identify,
    my_view,
    open_episodes_of,
)

NOW = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
ANA = "aaaaaaaa-0000-0000-0000-000000000001"
BEN = "bbbbbbbb-0000-0000-0000-000000000002"
PHONE = "11111111-2222-3333-4444-555555555555"
TABLET = "66666666-7777-8888-9999-000000000000"
OUTLOOK, TEAMS, WORD = "com.microsoft.office.outlook", "com.microsoft.teams", "com.microsoft.office.word"
ME = Identity(ANA, "Ana Silva", "ana@contoso.example")


def row(device: str = PHONE, package: str = OUTLOOK, *, user: str = ANA, name: str = "Pixel 8",
        generation: int = 1, app_name: str = "") -> IndexRow:
    return IndexRow(generation=generation, user_id=user, email="ana@contoso.example", device_id=device,
                    device_name=name, device_model="Pixel 8", manufacturer="Google", app_name=app_name or package,
                    package=package, policies=json.dumps(["p1"]))


def episode(device: str = PHONE, *, action: str = "block", users: tuple[str, ...] = (ANA,), level: str = "high",
            maximum: str = "medium", policy: str = "Android BYOD", apps: tuple[str, ...] = (OUTLOOK,),
            state: str = OPEN) -> Episode:
    return Episode(device_id=device, policy_id=f"pol-{policy}",
                   open_key=f"{device}|{policy}" if state == OPEN else None, state=state, device_name="Pixel 8",
                   device_model="Google Pixel 8", policy_name=policy, maximum=maximum, action=action, level=level,
                   users=json.dumps([{"id": u, "name": "Ana Silva", "mail": "ana@contoso.example"} for u in users]),
                   apps=json.dumps(list(apps)), opened_at=NOW - timedelta(hours=3), last_seen_at=NOW)


def case(*devices: str, state: str = PENDING, kind: str = "registered") -> OnboardingCase:
    listed = [{"id": d, "name": "Pixel 8", "model": "Google Pixel 8"} for d in devices]
    return OnboardingCase(user_id=ANA, kind=kind, state=state, user_name="Ana Silva", devices=json.dumps(listed),
                          apps=json.dumps([TEAMS]), policies=json.dumps(["Android BYOD"]),
                          first_pending_at=NOW, last_pending_at=NOW)


def view(*, rows: list[IndexRow] | None = None, episodes: list[Episode] | None = None,
         onboarding: OnboardingCase | None = None, gap: str | None = None, enforcement: str = ON,
         swept: bool = True) -> MyView:
    return decide(ME, rows=rows if rows is not None else [row()], episodes=episodes or [], case=onboarding, gap=gap,
                  enforcement=enforcement, index_at=NOW - timedelta(minutes=25),
                  sweep_at=NOW - timedelta(minutes=10) if swept else None)


def text(blocks: list[dict[str, Any]]) -> str:
    return block_text(blocks)


def card(v: MyView) -> str:
    return text(me_blocks(v, NOW, card="abc123"))


# ---- each device's state -------------------------------------------------------------------------------


def test_an_open_block_says_which_app_which_policy_and_the_levels_and_what_to_do() -> None:
    v = view(rows=[row(), row(package=TEAMS)], episodes=[episode(apps=(OUTLOOK, TEAMS))])
    (device,) = v.devices
    assert device.state is DeviceState.BLOCKED and device.apps == ("Outlook", "Teams")
    assert device.short_id == "11111111…"
    (finding,) = device.findings
    assert (finding.policy, finding.level, finding.maximum, finding.apps) == (
        "Android BYOD", "high", "medium", ("Outlook", "Teams"))
    shown = card(v)
    assert "*Blocked:* Outlook and Teams won't let you in on this device" in shown
    assert "Defender rates this device *high* and the policy *Android BYOD* allows at most *medium*" in shown
    assert "open the *Microsoft Defender* app on this device and follow its recommendations" in shown
    assert "device `11111111…`" in shown and "Work apps: Outlook and Teams" in shown
    assert me_summary(v) == "Your devices: 1 device blocked"


def test_wipe_says_the_work_data_goes_at_the_next_check_in_instead_of_blocked() -> None:
    v = view(episodes=[episode(action="wipe")])
    assert v.devices[0].state is DeviceState.WIPED
    shown = card(v)
    assert "work data in Outlook is removed from this device at the app's next check-in" in shown
    assert "*Blocked:*" not in shown


def test_warn_says_the_app_warns_but_lets_you_in() -> None:
    v = view(episodes=[episode(action="warn")])
    assert v.devices[0].state is DeviceState.WARNED
    assert "Outlook warns you when you open it but lets you in" in card(v)


def test_the_worst_action_decides_when_two_policies_apply_to_one_device() -> None:
    v = view(episodes=[episode(action="warn", policy="A warn"), episode(action="block", policy="B block")])
    assert v.devices[0].state is DeviceState.BLOCKED
    assert [f.policy for f in v.devices[0].findings] == ["B block", "A warn"]


def test_waiting_for_defender_shows_the_nudges_steps_and_the_button() -> None:
    v = view(rows=[row(package=TEAMS)], onboarding=case(PHONE))
    assert v.devices[0].state is DeviceState.WAITING and v.onboarding
    shown = card(v)
    for expected in ("*Waiting for Defender:*", "stop at a setup screen", "Intune Company Portal",
                     "install *Microsoft Defender* from Google Play", "Open *Teams* and sign in with your work account",
                     "Finish Defender's onboarding", "Send me the steps again"):
        assert expected in shown, expected


def test_a_closed_or_onboarded_case_is_not_waiting() -> None:
    for state in (ONBOARDED, "closed", "stopped"):
        v = view(onboarding=case(PHONE, state=state))
        assert v.devices[0].state is DeviceState.OK and not v.onboarding


def test_an_unregistered_case_shows_the_steps_with_no_device() -> None:
    v = view(rows=[], onboarding=case(kind="unregistered"))
    assert v.devices == () and v.onboarding
    shown = card(v)
    assert "When you start using them on an Android phone or tablet" in shown and "Intune Company Portal" in shown


def test_a_licence_gap_cant_be_protected_and_is_not_given_the_steps() -> None:
    v = view(onboarding=case(PHONE), gap="no Defender licence")
    assert v.devices[0].state is DeviceState.UNPROTECTED and not v.onboarding
    shown = card(v)
    assert "your account has no Defender licence: ask IT" in shown
    assert "Send me the steps again" not in shown and "Intune Company Portal" not in shown


def test_ok_as_of_the_last_check_and_unchecked_before_any_sweep() -> None:
    v = view()
    assert v.devices[0].state is DeviceState.OK
    assert "*OK* as of the last check" in card(v)
    assert "Send me the steps again" in card(v)  # for a new phone
    assert view(swept=False).devices[0].state is DeviceState.UNCHECKED


def test_a_device_without_an_entra_device_id_cannot_be_matched_with_defender() -> None:
    v = view(rows=[row(device="", name="Xiaomi 13T"), row(device="", name="Xiaomi 13T", package=TEAMS)])
    (device,) = v.devices  # one device, both apps
    assert device.state is DeviceState.UNMATCHED and device.apps == ("Outlook", "Teams")
    shown = card(v)
    assert "the bot can't match this device with Defender" in shown and "device `" not in shown


def test_enforcement_off_tells_nobody_they_are_blocked_and_still_shows_the_steps() -> None:
    v = view(rows=[row(), row(device=TABLET, name="Tab S9")], episodes=[episode()], onboarding=case(TABLET),
             enforcement=OFF)
    states = {d.device_id: d.state for d in v.devices}
    assert states == {PHONE: DeviceState.AT_RISK, TABLET: DeviceState.WAITING}
    shown = card(v)
    assert "Intune is not currently enforcing the threat-level check on Android" in shown
    assert "your apps are not being blocked for it" in shown
    assert "Blocked" not in shown and "won't let you in" not in shown and "setup screen" not in shown
    assert "Intune Company Portal" in shown
    assert "blocked" not in me_summary(v)


def test_enforcement_unknown_counts_as_on() -> None:
    assert view(episodes=[episode()], enforcement=UNKNOWN).devices[0].state is DeviceState.BLOCKED


def test_no_rows_says_the_bot_knows_of_no_managed_apps_and_the_list_is_hourly() -> None:
    v = view(rows=[])
    assert v.devices == ()
    shown = card(v)
    assert "I know of no managed work apps for you" in shown and "refreshed hourly" in shown
    assert me_summary(v) == "Your work apps: I know of none for you yet"


def test_an_episode_or_a_case_for_a_device_the_index_lacks_still_shows_it() -> None:
    v = view(rows=[], episodes=[episode(device=TABLET)], onboarding=case(PHONE))
    assert {d.device_id: d.state for d in v.devices} == {TABLET: DeviceState.BLOCKED, PHONE: DeviceState.WAITING}
    assert next(d for d in v.devices if d.device_id == PHONE).apps == ("Teams",)  # the case's apps


def test_the_steps_name_outlook_when_they_have_it_else_their_first_app() -> None:
    assert example_app([TEAMS, OUTLOOK]) == OUTLOOK
    assert example_app([TEAMS, WORD]) == WORD  # the first package id, as the nudge picks
    assert example_app([]) == OUTLOOK


# ---- who is asking -------------------------------------------------------------------------------------


@dataclass
class Directory:
    """GraphClient's directory lookups, answered from a list of users."""

    users: list[User] = field(default_factory=list)
    down: bool = False
    asked: list[str] = field(default_factory=list)

    def find_users_by_email(self, email: str) -> list[User]:
        self.asked.append(email)
        if self.down:
            raise ServiceUnavailable("Microsoft Graph is unavailable (HTTP 503).", status=503)
        return [u for u in self.users if email.lower() in ((u.mail or "").lower(), (u.userPrincipalName or "").lower())]

    def iter_users(self) -> Iterator[User]:
        return iter(self.users)

    def count_users(self) -> int | None:
        return len(self.users)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = create_store(f"sqlite:///{tmp_path / 'me.db'}")
    yield made
    made.close()


def test_one_entra_user_with_the_slack_email_is_who_they_are(store: Store) -> None:
    graph = Directory([User(id=ANA.upper(), displayName="Ana Silva", mail="Ana@Contoso.example")])
    who = identify("ana@contoso.example", EntraUsers(store, graph, NOW))
    assert who == Identity(ANA, "Ana Silva", "ana@contoso.example")


def test_a_stranger_whose_email_matches_nobody_is_not_identified(store: Store) -> None:
    graph = Directory([User(id=ANA, displayName="Ana Silva", mail="ana@contoso.example")])
    who = identify("stranger@elsewhere.example", EntraUsers(store, graph, NOW))
    assert who == NotIdentified(Why.NO_MATCH, "stranger@elsewhere.example")
    said = not_identified_text(who)
    assert "I can't tell who you are" in said and "must be the same as your work account's" in said


def test_two_users_with_the_same_email_are_ambiguous(store: Store) -> None:
    graph = Directory([User(id=ANA, displayName="Ana Silva", mail="ana@contoso.example"),
                       User(id=BEN, displayName="Ben", userPrincipalName="ana@contoso.example")])
    who = identify("ana@contoso.example", EntraUsers(store, graph, NOW))
    assert isinstance(who, NotIdentified) and who.why is Why.AMBIGUOUS
    assert "more than one work account" in not_identified_text(who)


def test_no_email_and_graph_down_are_said_in_words(store: Store) -> None:
    graph = Directory(down=True)
    assert identify("", EntraUsers(store, graph, NOW)) == NotIdentified(Why.NO_EMAIL)
    assert graph.asked == []
    assert "Slack doesn't show me an email address for you" in not_identified_text(NotIdentified(Why.NO_EMAIL))
    who = identify("ana@contoso.example", EntraUsers(store, graph, NOW))
    assert isinstance(who, NotIdentified) and who.why is Why.UNAVAILABLE
    assert "can't check who you are right now" in not_identified_text(who)
    assert isinstance(identify("not-a-mail", EntraUsers(store, graph, NOW)), NotIdentified)


def test_the_cached_link_answers_without_asking_graph(store: Store) -> None:
    with store.session() as session:
        session.add(EntraUserLink(email="ana@contoso.example", user_id=ANA, matches=1, name="Ana Silva",
                                  resolved_at=NOW - timedelta(hours=1)))
        session.commit()
    graph = Directory(down=True)
    assert identify("ana@contoso.example", EntraUsers(store, graph, NOW)) == ME
    assert graph.asked == []


# ---- from the database ----------------------------------------------------------------------------------


def add(store: Store, *items: Any) -> None:
    with store.session() as session:
        for item in items:
            session.add(item)
        session.commit()


def test_my_view_reads_only_this_users_rows_episodes_and_case(store: Store) -> None:
    add(store, IndexRun(id=1, started_at=NOW - timedelta(hours=1), finished_at=NOW - timedelta(minutes=50), ok=True,
                        source="export"))
    add(store, row(), row(package=TEAMS), row(device=TABLET, user=BEN, name="Ben's tablet"),
        episode(), episode(device=TABLET, users=(BEN,), policy="Ben's"),
        episode(device=TABLET, users=(ANA,), policy="gone", state=RESOLVED),
        SweepRun(started_at=NOW - timedelta(minutes=12), finished_at=NOW - timedelta(minutes=10), ok=True),
        Enforcement(state=ON))
    v = my_view(store, ME)
    assert [(d.device_id, d.state) for d in v.devices] == [(PHONE, DeviceState.BLOCKED)]
    assert v.devices[0].apps == ("Outlook", "Teams") and v.sweep_at == NOW - timedelta(minutes=10)
    assert v.index_at is not None and v.gap is None and v.enforcement == ON
    assert [e.policy_name for e in open_episodes_of(store, ANA.upper())] == ["Android BYOD"]
    assert "Ben" not in card(v)


def test_my_view_reads_the_licence_gap_and_enforcement(store: Store) -> None:
    add(store, LicenceRun(started_at=NOW, finished_at=NOW, ok=True), UserLicence(user_id=ANA, intune=True,
                                                                                 defender=False, checked_at=NOW),
        Enforcement(state=OFF, reason="the connector is off"))
    v = my_view(store, ME)
    assert v.gap == "no Defender licence" and v.enforcement == OFF and v.devices == ()


def test_an_episode_naming_the_user_id_in_someone_elses_name_is_not_theirs(store: Store) -> None:
    hostile = episode(users=(BEN,))
    hostile.users = json.dumps([{"id": BEN, "name": f"me {ANA}", "mail": f"{ANA}@evil.example"}])
    add(store, hostile)
    assert open_episodes_of(store, ANA) == []


# ---- the card's limits and the button -------------------------------------------------------------------


def test_hostile_names_are_inert_and_long_ones_cut_within_slacks_limits() -> None:
    hostile = "<!channel> & <@U1>"
    rows = [row(device=f"{n:08d}-0000-0000-0000-000000000000", name=hostile + "x" * 3000) for n in range(40)]
    v = decide(Identity(ANA, hostile, "ana@contoso.example"), rows=rows, episodes=[episode(policy=hostile * 50)],
               case=None, gap=None, enforcement=ON, index_at=NOW, sweep_at=NOW)
    blocks = me_blocks(v, NOW, card="abc123")
    assert len(blocks) <= MESSAGE_BLOCKS
    assert message_problems({"text": me_summary(v), "blocks": blocks}) == []
    shown = text(blocks)
    assert "<!channel>" not in shown and "<@U1>" not in shown and "&lt;!channel&gt; &amp; &lt;@U1&gt;" in shown
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= SECTION_TEXT_MAX
    assert "…and 26 more devices: 26 OK." in shown
    assert isinstance(me_summary(v), Mrkdwn)


def test_the_button_names_no_one_and_the_dm_is_keyed_by_card_and_clicker() -> None:
    blocks = me_blocks(view(), NOW, card="abc123")
    value = next(e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"])
    assert StepsRef.decode(value) == StepsRef(card="abc123", app=OUTLOOK)
    assert ANA not in value and "U" not in json.loads(value)["card"]
    assert steps_key("U1", "abc123") != steps_key("U2", "abc123")
    dm_text, dm_blocks = steps_dm(TEAMS)
    assert "Open *Teams* and sign in with your work account" in text(dm_blocks) and dm_text
