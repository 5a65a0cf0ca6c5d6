"""Onboarding nudges on an injected clock: cadence, working hours, lookups, stop/done, thank-you."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.microsoft.models import User
from bot.store import Store, create_store
from bot.store.watch import NudgeLog, OnboardingCase, SlackUserLink, nudges_sent, pending_onboardings
from workflows.onboarding import (
    DirectoryThrottled,
    NudgeResult,
    PendingUser,
    WatchSettings,
    find_case,
    mark_done,
    parse_days,
    parse_hours,
    run_onboarding_nudges,
    stop_nudges,
    sync_cases,
)

# Tuesday 3 March 2026, 10:00 in London (GMT, so also 10:00 UTC).
TUESDAY_10 = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
ANNA, BEN, CARA = "aaaaaaaa-0000-0000-0000-000000000001", "bbbbbbbb-0000-0000-0000-000000000002", \
    "cccccccc-0000-0000-0000-000000000003"
MAILS = {ANNA: "anna@contoso.example", BEN: "ben@contoso.example", CARA: "cara@contoso.example"}
SLACK = {"anna@contoso.example": "UANNA0001", "ben@contoso.example": "UBEN00001"}  # Cara has no Slack account


@dataclass
class Directory:
    known: dict[str, str] = field(default_factory=lambda: dict(SLACK))
    asked: list[str] = field(default_factory=list)
    throttle_after: int | None = None

    def lookup_email(self, email: str) -> str | None:
        if self.throttle_after is not None and len(self.asked) >= self.throttle_after:
            raise DirectoryThrottled(email)
        self.asked.append(email)
        return self.known.get(email)


@dataclass
class Users:
    asked: list[list[str]] = field(default_factory=list)

    def get_users(self, ids: Any) -> dict[str, User]:
        wanted = list(ids)
        self.asked.append(wanted)
        return {i: User(id=i, displayName=MAILS[i].split("@")[0].title(), mail=MAILS[i]) for i in wanted}


@dataclass
class Notifier:
    sent: list[tuple[str, str, int]] = field(default_factory=list)  # (key, slack user, number; 0 = thanks)
    keys: set[str] = field(default_factory=set)

    def nudge(self, key: str, slack_user: str, case: OnboardingCase, number: int, of: int) -> None:
        if key not in self.keys:  # the outbox: a key is sent once
            self.keys.add(key)
            self.sent.append((key, slack_user, number))

    def thank(self, key: str, slack_user: str, case: OnboardingCase) -> None:
        if key not in self.keys:
            self.keys.add(key)
            self.sent.append((key, slack_user, 0))


@dataclass
class Run:
    store: Store
    directory: Directory = field(default_factory=Directory)
    users: Users = field(default_factory=Users)
    notifier: Notifier = field(default_factory=Notifier)
    sleeps: list[float] = field(default_factory=list)

    def __call__(self, at: datetime, settings: WatchSettings | None = None) -> NudgeResult:
        return run_onboarding_nudges(store=self.store, users=self.users, directory=self.directory,
                                     notifier=self.notifier, settings=settings or WatchSettings(), now=at,
                                     sleep=self.sleeps.append)

    def pending(self, *users: str, at: datetime = TUESDAY_10, onboarded: set[str] | None = None) -> None:
        found = {u: PendingUser(devices={f"dev-{u[:4]}": ("Pixel 8", "Google Pixel 8")},
                                apps={"com.microsoft.office.outlook"}, policies={"MTD"}) for u in users}
        sync_cases(self.store, found, onboarded or set(), at)

    def numbers(self, slack_user: str) -> list[int]:
        return [n for _, who, n in self.notifier.sent if who == slack_user]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    store = create_store(f"sqlite:///{tmp_path / 'nudges.db'}")
    yield Run(store)
    store.close()


def test_working_hours_and_days_are_parsed() -> None:
    assert parse_hours("09:00-17:30") == (time(9), time(17, 30))
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("sun-thu") == frozenset({6, 0, 1, 2, 3})
    assert parse_days("Mon,Wed,Fri") == frozenset({0, 2, 4})
    with pytest.raises(ValueError, match="09:00-17:00"):
        parse_hours("nine to five")
    with pytest.raises(ValueError, match="mon-fri"):
        parse_days("weekdays")


@pytest.mark.parametrize(("moment", "inside"), [
    (datetime(2026, 3, 3, 9, 0, tzinfo=UTC), True),  # Tuesday 09:00 GMT
    (datetime(2026, 3, 3, 8, 59, tzinfo=UTC), False),
    (datetime(2026, 3, 3, 17, 0, tzinfo=UTC), False),  # the end is not inside
    (datetime(2026, 7, 7, 8, 30, tzinfo=UTC), True),  # 09:30 BST
    (datetime(2026, 7, 7, 16, 30, tzinfo=UTC), False),  # 17:30 BST
    (datetime(2026, 3, 7, 11, 0, tzinfo=UTC), False),  # Saturday
])
def test_working_hours_are_in_the_configured_time_zone(moment: datetime, inside: bool) -> None:
    assert WatchSettings().within_working_hours(moment) is inside


def test_a_first_nudge_then_a_reminder_every_few_days_at_most_three(run: Run) -> None:
    run.pending(ANNA)
    assert run(TUESDAY_10).sent == 1
    assert run(TUESDAY_10 + timedelta(hours=2)).sent == 0  # same day: nothing
    assert run(TUESDAY_10 + timedelta(days=2, hours=23)).reminded == 0
    friday = TUESDAY_10 + timedelta(days=3)
    assert run(friday).reminded == 1
    monday = friday + timedelta(days=3)
    assert run(monday).reminded == 1
    assert run(monday + timedelta(days=3)).reminded == 0
    assert run(monday + timedelta(days=30)).reminded == 0
    assert run.numbers("UANNA0001") == [1, 2, 3]
    assert nudges_sent(run.store, TUESDAY_10) == 3


def test_nothing_is_sent_outside_working_hours_and_it_goes_out_next_morning(run: Run) -> None:
    run.pending(ANNA)
    evening = TUESDAY_10.replace(hour=19)
    result = run(evening)
    assert (result.sent, result.skipped_outside_hours) == (0, 1)
    assert result.lookups_done == 1  # the lookup still happens, so the morning run is ready
    saturday = datetime(2026, 3, 7, 10, tzinfo=UTC)
    assert run(saturday).skipped_outside_hours == 1
    assert run(datetime(2026, 3, 9, 9, 0, tzinfo=UTC)).sent == 1  # Monday 09:00
    assert run.notifier.sent and run.directory.asked == ["anna@contoso.example"]


def test_reminders_wait_for_working_hours_too(run: Run) -> None:
    run.pending(ANNA)
    run(TUESDAY_10)
    friday_night = TUESDAY_10 + timedelta(days=3, hours=12)
    assert run(friday_night).reminded == 0
    assert run(TUESDAY_10 + timedelta(days=6)).reminded == 1  # Monday 10:00


def test_stop_reminding_me_stops_this_round_and_later_ones(run: Run) -> None:
    run.pending(ANNA)
    run(TUESDAY_10)
    case = stop_nudges(run.store, ANNA, TUESDAY_10 + timedelta(hours=1))
    assert case is not None and case.state == "stopped"
    assert run(TUESDAY_10 + timedelta(days=3)).reminded == 0
    run.pending(ANNA, at=TUESDAY_10 + timedelta(days=4))  # still pending in the next sweep
    assert run(TUESDAY_10 + timedelta(days=7)).sent == 0
    assert run.numbers("UANNA0001") == [1]
    assert mark_done(run.store, ANNA, TUESDAY_10).state == "stopped"  # type: ignore[union-attr]


def test_done_holds_reminders_while_defender_catches_up(run: Run) -> None:
    run.pending(ANNA)
    run(TUESDAY_10)
    mark_done(run.store, ANNA, TUESDAY_10 + timedelta(days=2, hours=23), WatchSettings(done_grace=timedelta(days=1)))
    assert run(TUESDAY_10 + timedelta(days=3)).reminded == 0  # held
    assert run(TUESDAY_10 + timedelta(days=6)).reminded == 1  # Monday: Defender still doesn't list it


def test_a_thank_you_once_the_device_is_onboarded_and_only_after_a_nudge(run: Run) -> None:
    run.pending(ANNA, BEN)
    run(TUESDAY_10.replace(hour=19))  # outside hours: nobody nudged yet
    run(TUESDAY_10 + timedelta(days=1))  # Wednesday: both nudged
    stop_nudges(run.store, BEN, TUESDAY_10 + timedelta(days=1, hours=1))
    run.pending(at=TUESDAY_10 + timedelta(days=1, hours=2), onboarded={ANNA, BEN})
    assert find_case(run.store, ANNA).state == "onboarded"  # type: ignore[union-attr]
    result = run(TUESDAY_10 + timedelta(days=1, hours=3))
    assert result.thanked == 1  # Ben asked to be left alone
    assert run(TUESDAY_10 + timedelta(days=2)).thanked == 0
    assert run.numbers("UANNA0001") == [1, 0] and run.numbers("UBEN00001") == [1]
    assert pending_onboardings(run.store) == 0


def test_a_case_that_goes_away_without_onboarding_is_closed_and_can_reopen(run: Run) -> None:
    run.pending(ANNA)
    run(TUESDAY_10)
    run.pending(at=TUESDAY_10 + timedelta(hours=1))  # the app was removed: no longer pending, not onboarded
    assert find_case(run.store, ANNA).state == "closed"  # type: ignore[union-attr]
    assert run(TUESDAY_10 + timedelta(days=1)).thanked == 0
    run.pending(ANNA, at=TUESDAY_10 + timedelta(days=63))  # a new phone: a new round of nudges
    assert run(TUESDAY_10 + timedelta(days=63)).sent == 1
    assert [k for k, _, _ in run.notifier.sent] == [f"nudge:{ANNA}:r1:n1", f"nudge:{ANNA}:r2:n1"]


def test_users_without_a_slack_account_are_counted_and_not_asked_again_soon(run: Run) -> None:
    run.pending(ANNA, CARA)
    result = run(TUESDAY_10)
    assert (result.sent, result.no_slack_account, result.lookups_done) == (1, 1, 2)
    assert run(TUESDAY_10 + timedelta(days=1)).no_slack_account == 1
    assert run.directory.asked == ["anna@contoso.example", "cara@contoso.example"]  # cached, both ways
    run.directory.known["cara@contoso.example"] = "UCARA0001"
    assert run(TUESDAY_10 + timedelta(days=8)).sent == 1  # asked again after a week
    with run.store.session() as session:
        assert len(list(session.exec(select(SlackUserLink)))) == 2


def test_first_lookups_are_spread_over_runs_and_paced(run: Run) -> None:
    people = [f"dddddddd-0000-0000-0000-{n:012d}" for n in range(5)]
    MAILS.update({p: f"user{n}@contoso.example" for n, p in enumerate(people)})
    run.directory.known.update({f"user{n}@contoso.example": f"UUSER{n:04d}" for n in range(5)})
    run.pending(*people)
    settings = WatchSettings(lookups_per_run=2, lookup_interval=1.2)
    first = run(TUESDAY_10, settings)
    assert (first.sent, first.lookups_done, first.lookups_deferred) == (2, 2, 3)
    assert run.sleeps == [1.2]  # paced between lookups, on the injected sleep
    second = run(TUESDAY_10 + timedelta(minutes=5), settings)
    assert (second.sent, second.lookups_done, second.lookups_deferred) == (2, 2, 1)
    assert run(TUESDAY_10 + timedelta(minutes=10), settings).sent == 1
    assert [len(ids) for ids in run.users.asked] == [4, 1]  # mails read only as lookups can use them, once


def test_a_throttled_lookup_defers_the_rest_of_the_run(run: Run) -> None:
    run.pending(ANNA, BEN)
    run.directory.throttle_after = 1
    result = run(TUESDAY_10)
    assert (result.sent, result.lookups_done, result.lookups_deferred) == (1, 1, 1)
    run.directory.throttle_after = None
    assert run(TUESDAY_10 + timedelta(minutes=5)).sent == 1


def test_two_leaders_running_the_same_nudge_send_it_once(run: Run, tmp_path: Path) -> None:
    run.pending(ANNA)
    other = Run(create_store(f"sqlite:///{tmp_path / 'nudges.db'}"), notifier=run.notifier)
    assert run(TUESDAY_10).sent + other(TUESDAY_10).sent == 1
    with run.store.session() as session:
        assert len(list(session.exec(select(NudgeLog)))) == 1
    assert len(run.notifier.sent) == 1


def test_settings_come_from_the_bots_settings_where_it_has_them() -> None:
    from types import SimpleNamespace

    from bot.settings import Cloud

    settings = WatchSettings.from_settings(SimpleNamespace(
        mam_work_hours="08:30-16:00", mam_work_days="sun-thu", mam_timezone="Asia/Jerusalem",
        mam_alert_digest_threshold=5, mam_alert_dm_users=True, mam_nudge_reminder_days=2, mam_nudge_max=4,
        mam_cloud=Cloud.GCC_HIGH))
    assert (settings.work_start, settings.work_end) == (time(8, 30), time(16))
    assert settings.work_days == parse_days("sun-thu")
    assert (settings.timezone, settings.digest_threshold, settings.dm_blocked_users) == ("Asia/Jerusalem", 5, True)
    assert (settings.reminder_every, settings.max_nudges, settings.cloud) == (timedelta(days=2), 4, "gcc-high")
    assert WatchSettings.from_settings(SimpleNamespace()) == WatchSettings()


def test_a_run_paced_past_the_end_of_the_day_sends_nothing_after_it(run: Run) -> None:
    people = [f"eeeeeeee-0000-0000-0000-{n:012d}" for n in range(3)]
    MAILS.update({p: f"late{n}@contoso.example" for n, p in enumerate(people)})
    run.directory.known.update({f"late{n}@contoso.example": f"ULATE{n:04d}" for n in range(3)})
    run.pending(*people)
    result = run(TUESDAY_10.replace(hour=16, minute=59, second=58), WatchSettings(lookup_interval=1.2))
    assert (result.sent, result.skipped_outside_hours) == (2, 1)  # the third lookup ends at 17:00:00.4
