"""Onboarding nudges: DM users whose managed app waits for Defender on their device, until it doesn't.

The threat sweep decides who is pending (`sync_cases`); this module decides who gets which
message when: a first nudge, a reminder every few days, at most `max_nudges`, a thank-you once
Defender lists the device as onboarded, nothing after "Stop reminding me", and nothing at all
outside the configured working hours. The clock is passed in; nothing here waits on real time
except the pacing between Slack email lookups (`sleep`, injectable too).

Slack user ids come from `users.lookupByEmail` (about 50 a minute), cached in the database, a
limited number per run: a 5,000-user first run spreads its lookups over the following runs.
"""

from __future__ import annotations

import json
import logging
import time as time_module
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, insert, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.clock import utcnow
from bot.microsoft.errors import MicrosoftError
from bot.microsoft.models import User
from bot.settings import DEFENDER_PLANS, INTUNE_PLANS
from bot.store.db import Store
from bot.store.watch import (
    CLOSED,
    ONBOARDED,
    PENDING,
    STOPPED,
    UNLICENSED,
    NudgeLog,
    OnboardingCase,
    SlackUserLink,
    as_utc,
    nudges_sent,
    pending_onboardings,
)

__all__ = ["NotTheRecipient", "NudgeResult", "WatchSettings", "mark_done", "nudges_sent",
           "pending_onboardings", "run_onboarding_nudges", "stop_nudges", "sync_cases"]

log = logging.getLogger(__name__)

DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


# ---- settings ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchSettings:
    """The watch's knobs (threat sweep and nudges), with the defaults the issue asks for."""

    digest_threshold: int = 10  # more new (or resolved) episodes than this in one sweep: one digest
    digest_top: int = 10  # entries listed on a digest card; the CSV has them all
    dm_blocked_users: bool = False  # DM users whose app is blocked, and again when it's over
    nudge_unregistered: bool = False  # nudge assigned users who have no registration yet
    reminder_every: timedelta = timedelta(days=3)
    max_nudges: int = 3  # the first nudge included
    done_grace: timedelta = timedelta(days=1)  # "Done" holds reminders this long for Defender to catch up
    timezone: str = "Europe/London"
    work_start: time = time(9, 0)
    work_end: time = time(17, 0)
    work_days: frozenset[int] = frozenset(range(5))  # Monday = 0
    lookups_per_run: int = 50  # users.lookupByEmail calls per run (Tier 3: about 50 a minute)
    lookup_interval: float = 1.2  # seconds between two lookups
    not_found_recheck: timedelta = timedelta(days=7)  # ask Slack again about a mail it didn't know
    defender_page_size: int = 10_000
    applied_policies: bool = True  # ask Graph for each registration's appliedPolicies
    cloud: str = "global"  # which admin portals the cards link to
    intune_plans: tuple[str, ...] = INTUNE_PLANS  # service plans that license Intune / Defender (MAM_*_PLAN_IDS):
    defender_plans: tuple[str, ...] = DEFENDER_PLANS  # a gap the licence listing found is re-read against them

    @classmethod
    def from_settings(cls, settings: Any) -> WatchSettings:
        """From the bot's Settings; a variable the Settings class doesn't (yet) have keeps its default."""
        base = cls()

        def get(name: str, default: Any) -> Any:
            value = getattr(settings, name, None)
            return default if value is None or value == "" else value

        start, end = parse_hours(get("mam_work_hours", f"{base.work_start:%H:%M}-{base.work_end:%H:%M}"))
        days = get("mam_work_days", base.work_days)
        cloud = get("mam_cloud", base.cloud)
        return cls(
            digest_threshold=int(get("mam_alert_digest_threshold", base.digest_threshold)),
            dm_blocked_users=bool(get("mam_alert_dm_users", base.dm_blocked_users)),
            nudge_unregistered=bool(get("mam_nudge_unregistered", base.nudge_unregistered)),
            reminder_every=timedelta(days=float(get("mam_nudge_reminder_days", base.reminder_every.days))),
            max_nudges=int(get("mam_nudge_max", base.max_nudges)),
            timezone=str(get("mam_timezone", base.timezone)),
            work_start=start,
            work_end=end,
            work_days=parse_days(days) if isinstance(days, str) else frozenset(days),
            lookups_per_run=int(get("mam_slack_lookups_per_run", base.lookups_per_run)),
            cloud=str(getattr(cloud, "value", cloud)),
            intune_plans=tuple(get("mam_intune_plan_ids", base.intune_plans)),
            defender_plans=tuple(get("mam_defender_plan_ids", base.defender_plans)),
        )

    def within_working_hours(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.timezone))
        return local.weekday() in self.work_days and self.work_start <= local.time() < self.work_end


def parse_hours(text: str) -> tuple[time, time]:
    """`09:00-17:00` → (09:00, 17:00)."""
    try:
        start, end = (time.fromisoformat(part.strip()) for part in text.split("-", 1))
    except ValueError:
        raise ValueError(f"working hours must look like 09:00-17:00, not {text!r}") from None
    if end <= start:
        raise ValueError(f"working hours must end after they start: {text!r}")
    return start, end


def parse_days(text: str) -> frozenset[int]:
    """`mon-fri`, `mon,wed,fri` or `sun-thu` → weekday numbers (Monday = 0)."""
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        try:
            a, b = DAYS[first[:3]], DAYS[(last or first)[:3]]
        except KeyError:
            raise ValueError(f"working days must look like mon-fri or mon,wed,fri, not {text!r}") from None
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


# ---- Slack user ids by email, cached ----------------------------------------------------------------


class DirectoryThrottled(Exception):
    """Slack answered users.lookupByEmail with 429: no more lookups this run."""


class SlackDirectory(Protocol):
    def lookup_email(self, email: str) -> str | None:
        """The Slack user id with this email, None when there is none; DirectoryThrottled on 429."""


class Found(StrEnum):
    YES = "found"
    NO = "no_slack_account"
    LATER = "deferred"  # not looked up yet: over this run's budget, or Slack said slow down


class SlackIds:
    """Email → Slack user id for one run: the cache first, then at most `lookups_per_run` paced lookups."""

    def __init__(self, store: Store, directory: SlackDirectory | None, settings: WatchSettings, now: datetime,
                 sleep: Callable[[float], None] = time_module.sleep) -> None:
        self._store = store
        self._directory = directory
        self._settings = settings
        self._now = now
        self._sleep = sleep
        self._cache: dict[str, SlackUserLink] = {}
        self.done = 0
        self.deferred = 0
        self.slept = 0.0  # seconds of pacing so far: a long run must not drift past the end of the day
        self._throttled = False

    def preload(self, emails: Iterable[str]) -> None:
        wanted = sorted({e.strip().lower() for e in emails if e and e.strip()} - set(self._cache))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            with self._store.session() as session:
                for link in session.exec(select(SlackUserLink).where(col(SlackUserLink.email).in_(chunk))):
                    self._cache[link.email] = link

    def resolve(self, email: str) -> tuple[Found, str]:
        email = email.strip().lower()
        if not email:
            return Found.NO, ""
        if email not in self._cache:
            self.preload([email])
        link = self._cache.get(email)
        if link is not None:
            if link.slack_user_id:
                return Found.YES, link.slack_user_id
            looked = as_utc(link.looked_up_at)
            if looked is not None and looked + self._settings.not_found_recheck > self._now:
                return Found.NO, ""
        if self._directory is None or self._throttled or self.done >= self._settings.lookups_per_run:
            self.deferred += 1
            return Found.LATER, ""
        if self.done:
            self._sleep(self._settings.lookup_interval)
            self.slept += self._settings.lookup_interval
        try:
            slack_id = self._directory.lookup_email(email)
        except DirectoryThrottled:
            self._throttled = True
            self.deferred += 1
            return Found.LATER, ""
        self.done += 1
        self._remember(email, slack_id)
        return (Found.YES, slack_id) if slack_id else (Found.NO, "")

    def _remember(self, email: str, slack_id: str | None) -> None:
        with self._store.session() as session:
            link = session.get(SlackUserLink, email) or SlackUserLink(email=email, looked_up_at=self._now)
            link.slack_user_id = slack_id
            link.looked_up_at = self._now
            session.add(link)
            session.commit()
            session.refresh(link)
        self._cache[email] = link


# ---- who is pending: written by the sweep ------------------------------------------------------------


@dataclass
class PendingUser:
    """One user's registrations that wait for Defender, as one sweep found them."""

    devices: dict[str, tuple[str, str]] = field(default_factory=dict)  # device id → (name, model)
    apps: set[str] = field(default_factory=set)
    policies: set[str] = field(default_factory=set)
    kind: str = "registered"


@dataclass
class CaseSync:
    opened: int = 0
    reopened: int = 0
    onboarded: int = 0
    closed: int = 0
    pending: int = 0


def sync_cases(store: Store, pending: Mapping[str, PendingUser], onboarded: Set[str], now: datetime, *,
               unlicensed: Mapping[str, PendingUser] | None = None) -> CaseSync:
    """Make the onboarding cases match one complete sweep.

    `unlicensed` users wait too but lack an Intune or Defender licence: their cases are kept in the
    `unlicensed` state (never nudged) and become pending again, in the same round, once licensed.

    A pending case that is no longer pending became `onboarded` when the sweep saw one of the user's
    devices onboarded (a thank-you is then due if they were nudged), else `closed` (the app or the
    policy went away). A closed or onboarded case that turns pending again reopens as a new round;
    a stopped one stays stopped.
    """
    for attempt in range(2):
        try:
            return _sync_cases(store, pending, onboarded, now, unlicensed or {})
        except IntegrityError:
            if attempt:
                raise
            log.info("onboarding cases changed under this sweep (another leader?); syncing again")
    raise AssertionError("unreachable")


def _sync_cases(store: Store, pending: Mapping[str, PendingUser], onboarded: Set[str], now: datetime,
                unlicensed: Mapping[str, PendingUser]) -> CaseSync:
    # Core statements in one transaction, not ORM objects: a first sweep can open 10,000+ cases.
    table = OnboardingCase.__table__  # type: ignore[attr-defined]
    sync = CaseSync(pending=len(pending))
    fresh: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    reopened: list[dict[str, Any]] = []
    waiting = {**{u: (p, PENDING) for u, p in pending.items()}, **{u: (p, UNLICENSED) for u, p in unlicensed.items()}}
    with store.engine.begin() as conn:
        cases = {row.user_id: row for row in conn.execute(sa_select(
            table.c.user_id, table.c.state, table.c.kind, table.c.devices, table.c.apps, table.c.policies))}
        for user_id, (found, state) in waiting.items():
            values = {"b_user": user_id, "kind": found.kind, "apps": json.dumps(sorted(found.apps)),
                      "policies": json.dumps(sorted(found.policies)), "state": state,
                      "devices": json.dumps([{"id": d, "name": n, "model": m}
                                             for d, (n, m) in sorted(found.devices.items())])}
            case = cases.get(user_id)
            if case is not None and case.state == STOPPED:
                values["state"] = STOPPED  # a stopped case stays stopped; its details are still kept current
            if case is None:
                fresh.append(values)
            elif case.state in (ONBOARDED, CLOSED):
                reopened.append(values)
            elif (case.devices, case.apps, case.policies, case.kind, case.state) != (
                    values["devices"], values["apps"], values["policies"], found.kind, values["state"]):
                changed.append(values)
        gone = [u for u, case in cases.items() if case.state in (PENDING, UNLICENSED) and u not in waiting]
        done = [u for u in gone if u in onboarded]
        closed = [u for u in gone if u not in onboarded]
        for chunk in _chunks(fresh):
            conn.execute(insert(table), [{
                "user_id": v["b_user"], "kind": v["kind"], "state": v["state"], "round": 1, "user_name": "",
                "user_mail": "", "devices": v["devices"], "apps": v["apps"], "policies": v["policies"],
                "first_pending_at": now, "last_pending_at": now, "nudges_sent": 0, "slack_user_id": "",
            } for v in chunk])
        by_user = table.c.user_id == bindparam("b_user")
        details = {"kind": bindparam("kind"), "devices": bindparam("devices"), "apps": bindparam("apps"),
                   "policies": bindparam("policies"), "state": bindparam("state"), "last_pending_at": now}
        for chunk in _chunks(changed):
            conn.execute(update(table).where(by_user).values(**details), chunk)
        for chunk in _chunks(reopened):
            conn.execute(update(table).where(by_user).values(
                **details, round=table.c.round + 1, nudges_sent=0, first_pending_at=now,
                last_nudge_at=None, paused_until=None, done_at=None, thanked_at=None, onboarded_at=None,
                closed_at=None), chunk)
        for chunk in _chunks(done):
            conn.execute(update(table).where(table.c.user_id.in_(chunk)).values(state=ONBOARDED, onboarded_at=now))
        for chunk in _chunks(closed):
            conn.execute(update(table).where(table.c.user_id.in_(chunk)).values(state=CLOSED, closed_at=now))
    sync.opened, sync.reopened, sync.onboarded, sync.closed = len(fresh), len(reopened), len(done), len(closed)
    return sync


def _chunks(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def unlicensed_user_ids(store: Store) -> set[str]:
    """Users already kept apart for lack of a licence (as of the last sweep)."""
    with store.session() as session:
        return set(session.exec(select(OnboardingCase.user_id).where(OnboardingCase.state == UNLICENSED)))


def pending_user_ids(store: Store) -> set[str]:
    """Users the sweep should watch for onboarding (to tell onboarded from gone)."""
    with store.session() as session:
        return set(session.exec(select(OnboardingCase.user_id).where(
            col(OnboardingCase.state).in_((PENDING, UNLICENSED)))))


# ---- the nudge run -------------------------------------------------------------------------------------


class UserReader(Protocol):
    def get_users(self, ids: Iterable[str]) -> dict[str, User]: ...


class NudgeNotifier(Protocol):
    def nudge(self, key: str, slack_user: str, case: OnboardingCase, number: int, of: int) -> None: ...

    def thank(self, key: str, slack_user: str, case: OnboardingCase) -> None: ...


@dataclass
class NudgeResult:
    started: datetime
    finished: datetime | None = None
    due: int = 0
    sent: int = 0  # first nudges
    reminded: int = 0
    thanked: int = 0
    skipped_outside_hours: int = 0
    no_slack_account: int = 0
    lookups_done: int = 0
    lookups_deferred: int = 0
    held: int = 0  # nudges and reminders held (see `held_because`)
    held_because: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        held = f"{self.held} held ({self.held_because}); " if self.held_because else ""
        return (f"{held}{self.sent} nudges, {self.reminded} reminders, {self.thanked} thank-yous; "
                f"{self.skipped_outside_hours} held outside working hours, {self.no_slack_account} without "
                f"a Slack account, {self.lookups_done} lookups ({self.lookups_deferred} deferred)")


def nudge_key(case: OnboardingCase, number: int) -> str:
    return f"nudge:{case.user_id}:r{case.round}:n{number}"


def thanks_key(case: OnboardingCase) -> str:
    return f"nudge:{case.user_id}:r{case.round}:thanks"


def run_onboarding_nudges(
    *,
    store: Store,
    users: UserReader | None,
    directory: SlackDirectory | None,
    notifier: NudgeNotifier,
    settings: WatchSettings | None = None,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time_module.sleep,
    hold: str = "",
) -> NudgeResult:
    """Send the nudges, reminders and thank-yous due at `now`; every message goes through the notifier
    (the outbox) under a key of its own, so a rerun, a restart or a second leader never sends one twice.
    Email lookups run outside working hours too: by the time the day starts the cache is warm.

    `hold` (why, in words) holds every nudge and reminder, thank-yous still go: a nudge promises that
    the app stops at a setup screen until Defender is set up, which is untrue while Intune isn't
    evaluating Defender's signal (workflows.enforcement)."""
    settings = settings or WatchSettings()
    now = (now or utcnow()).astimezone(UTC)  # SQLite keeps no zone: everything written is UTC
    result = NudgeResult(started=now, held_because=hold)
    cases = _due_cases(store, settings, now)
    if hold:
        result.held = sum(1 for c in cases if c.state == PENDING)
        cases = [c for c in cases if c.state != PENDING]
    result.due = len(cases)
    asked = _fill_mail(store, users, cases, result, limit=2 * settings.lookups_per_run)
    ids = SlackIds(store, directory, settings, now, sleep)
    ids.preload(c.user_mail for c in cases)
    for case in cases:
        if not case.user_mail and case.user_id not in asked:
            ids.deferred += 1  # its mail is read in a later run, when a lookup can follow
            continue
        status, slack_id = ids.resolve(case.user_mail)
        if status is Found.NO:
            result.no_slack_account += 1
            continue
        if status is Found.LATER:
            continue
        if not settings.within_working_hours(now + timedelta(seconds=ids.slept)):
            result.skipped_outside_hours += 1
            continue
        try:
            _send(store, notifier, settings, case, slack_id, now, result)
        except Exception as exc:  # one user's failure must not stop the others
            log.exception("nudge for %s failed", case.user_id)
            result.errors.append(f"{case.user_id}: {exc}")
    result.lookups_done, result.lookups_deferred = ids.done, ids.deferred
    result.finished = now
    return result


def _due_cases(store: Store, settings: WatchSettings, now: datetime) -> list[OnboardingCase]:
    c = OnboardingCase
    not_paused = or_(col(c.paused_until).is_(None), col(c.paused_until) <= now)
    first = and_(col(c.state) == PENDING, col(c.nudges_sent) == 0, not_paused)
    reminder = and_(col(c.state) == PENDING, col(c.nudges_sent) > 0, col(c.nudges_sent) < settings.max_nudges,
                    col(c.last_nudge_at) <= now - settings.reminder_every, not_paused)
    thanks = and_(col(c.state) == ONBOARDED, col(c.nudges_sent) > 0, col(c.thanked_at).is_(None),
                  col(c.stopped_at).is_(None))
    query = select(c).where(or_(first, reminder, thanks)).order_by(col(c.first_pending_at), col(c.user_id))
    with store.session() as session:
        return list(session.exec(query))


def _fill_mail(store: Store, users: UserReader | None, cases: list[OnboardingCase], result: NudgeResult,
               limit: int) -> set[str]:
    """Mail and name from Graph for cases that don't have them yet (20 users to a $batch).

    Only as many as this run can look up in Slack: a case without a mail has never been looked up,
    so reading 5,000 mails when 50 lookups fit in a run would spend quota for nothing.
    """
    missing = [c for c in cases if not c.user_mail][:limit]
    if not missing or users is None:
        return set()
    try:
        found = users.get_users(c.user_id for c in missing)
    except MicrosoftError as exc:
        result.errors.append(f"reading users: {exc}")
        return set()
    by_id = {k.lower(): v for k, v in found.items()}
    with store.session() as session:
        for case in missing:
            user = by_id.get(case.user_id)
            if user is None:
                continue
            case.user_mail = (user.mail or user.userPrincipalName or "").lower()
            case.user_name = user.displayName or ""
            session.add(case)
        session.commit()
    return {c.user_id for c in missing}


def _send(store: Store, notifier: NudgeNotifier, settings: WatchSettings, case: OnboardingCase, slack_id: str,
          now: datetime, result: NudgeResult) -> None:
    # The message is queued before the row records it: a crash in between resends under the same
    # outbox key (a no-op), never skips the message.
    if case.state == ONBOARDED:
        notifier.thank(thanks_key(case), slack_id, case)
        if _guarded(store, case, thanked_at=now, slack_user_id=slack_id):
            _log(store, case, slack_id, "thanks", 0, now)
            result.thanked += 1
        return
    number = case.nudges_sent + 1
    notifier.nudge(nudge_key(case, number), slack_id, case, number, settings.max_nudges)
    if _guarded(store, case, nudges_sent=number, last_nudge_at=now, slack_user_id=slack_id):
        kind = "nudge" if number == 1 else "reminder"
        _log(store, case, slack_id, kind, number, now)
        if number == 1:
            result.sent += 1
        else:
            result.reminded += 1


def _guarded(store: Store, case: OnboardingCase, **values: Any) -> bool:
    """Record a message only if nobody else recorded it first (same round, count and state)."""
    table = OnboardingCase.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        done = conn.execute(update(table).where(
            table.c.user_id == case.user_id, table.c.round == case.round,
            table.c.nudges_sent == case.nudges_sent, table.c.state == case.state,
        ).values(**values))
    return bool(done.rowcount)


def _log(store: Store, case: OnboardingCase, slack_id: str, kind: str, number: int, now: datetime) -> None:
    with store.session() as session:
        session.add(NudgeLog(user_id=case.user_id, slack_user_id=slack_id, kind=kind, number=number, at=now))
        session.commit()


# ---- the buttons -----------------------------------------------------------------------------------------


def find_case(store: Store, user_id: str) -> OnboardingCase | None:
    with store.session() as session:
        return session.get(OnboardingCase, user_id.lower())


class NotTheRecipient(Exception):
    """A reminder's button was pressed by someone other than the person it was sent to."""


def mark_done(store: Store, user_id: str, now: datetime, settings: WatchSettings | None = None, *,
              recipient: str | None = None) -> OnboardingCase | None:
    """"Done": hold reminders while Defender reports the device (the sweep sends the thank-you).
    With `recipient`, only the Slack user the reminders went to may do it (NotTheRecipient)."""
    settings = settings or WatchSettings()
    return _set(store, user_id, recipient, done_at=now, paused_until=now + settings.done_grace)


def stop_nudges(store: Store, user_id: str, now: datetime, *, recipient: str | None = None) -> OnboardingCase | None:
    """"Stop reminding me": no more nudges or reminders for this user, this round or later ones."""
    return _set(store, user_id, recipient, state=STOPPED, stopped_at=now)


def _set(store: Store, user_id: str, recipient: str | None, **values: Any) -> OnboardingCase | None:
    with store.session() as session:
        case = session.get(OnboardingCase, user_id.lower())
        if case is None:
            return None
        # who pressed is checked before anything changes, against the case's own record of whom it DMed
        if recipient is not None and case.slack_user_id != recipient:
            raise NotTheRecipient(user_id)
        if case.state == STOPPED and values.get("state") != STOPPED:
            return case
        for name, value in values.items():
            setattr(case, name, value)
        session.add(case)
        session.commit()
        session.refresh(case)
        return case
