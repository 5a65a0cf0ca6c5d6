"""Who holds an Intune licence and a Defender for Endpoint licence: read daily (and on demand), kept in the store.

Android app protection with Defender's threat level needs both an enabled Intune service plan and an enabled
Defender for Endpoint service plan. `users/{id}/licenseDetails` doesn't work with application permissions, so
a refresh asks Graph, plan by plan, for the users whose `assignedPlans` hold it enabled (`LicenceReader`),
and replaces the `user_licences` table with the union per product in one transaction. A failed read leaves
the table as it was.

`licence_gaps` answers for a set of users; until one refresh has succeeded it answers nobody, so no one is
called unlicensed on no evidence. `group_licences` does it for a group's members (the `/mam assign` preview).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import delete, insert
from sqlmodel import col, select

from bot.clock import as_utc
from bot.microsoft.errors import MicrosoftError, PermissionDenied
from bot.microsoft.permissions import USER_READ
from bot.store import Store
from bot.store.index import LicenceRun, UserLicence
from bot.text import count

log = logging.getLogger(__name__)

INSERT_CHUNK = 2000  # rows per INSERT while replacing the table
QUERY_CHUNK = 500  # ids per IN (…) while reading it
GROUP_MEMBER_CAP = 20_000  # members `group_licences` reads at most; beyond, it says "at least"
JOB_COMMAND = "mam-bot jobs run licences"


class LicenceReader(Protocol):
    """What a refresh reads: the ids of the users holding one service plan enabled (`capabilityStatus`
    Enabled; disabled or suspended plans are the reader's to leave out)."""

    def iter_user_ids_with_plan(self, service_plan_id: str) -> Iterable[str]: ...


class MemberReader(Protocol):
    """A group's transitive user members, ids only."""

    def iter_group_member_ids(self, group_id: str) -> Iterable[str]: ...


class Gap(StrEnum):
    NO_INTUNE = "no Intune licence"
    NO_DEFENDER = "no Defender licence"
    NEITHER = "no Intune or Defender licence"


def gap_text(gap: Gap) -> str:
    """"can't be protected: no Intune licence", and so on."""
    return f"can't be protected: {gap.value}"


# ---- refreshing -----------------------------------------------------------------------------------


def refresh_licences(*, reader: LicenceReader, store: Store, intune_plans: Sequence[str],
                     defender_plans: Sequence[str], now: datetime,
                     requests: Callable[[], int] | None = None) -> LicenceRun:
    """Read who holds each plan, union per product, and replace `user_licences` wholesale (one transaction);
    the run is recorded either way. A Microsoft error leaves the table as it was and the run not ok."""
    counted = requests or (lambda: 0)
    before = counted()
    started = as_utc(now)
    clock = time.monotonic()

    def finished() -> datetime:
        return started + timedelta(seconds=time.monotonic() - clock)

    run = LicenceRun(started_at=started)
    missing = [name for name, plans in (("MAM_INTUNE_PLAN_IDS", intune_plans),
                                        ("MAM_DEFENDER_PLAN_IDS", defender_plans))
               if not any(p.strip() for p in plans)]
    if missing:
        run.error = f"Licences were not read: {' and '.join(missing)} name no service plan."
        return _record_failure(store, run, finished(), counted() - before)
    try:
        intune = _holders(reader, intune_plans)
        defender = _holders(reader, defender_plans)
    except MicrosoftError as exc:
        log.warning("licence refresh failed: %s", exc)
        run.error = _error_text(exc)[:2000]
        return _record_failure(store, run, finished(), counted() - before)
    run.ok = True
    run.intune_users, run.defender_users = len(intune), len(defender)
    run.requests = counted() - before
    rows = [{"user_id": user_id, "intune": user_id in intune, "defender": user_id in defender, "checked_at": started}
            for user_id in sorted(intune | defender)]
    table: Any = UserLicence.__table__  # type: ignore[attr-defined]
    with store.session() as session:
        session.execute(delete(table))
        for start in range(0, len(rows), INSERT_CHUNK):
            session.execute(insert(table), rows[start:start + INSERT_CHUNK])
        run.finished_at = finished()
        session.add(run)
        session.commit()
    log.info("%s", licence_job_summary(run))
    return run


def _holders(reader: LicenceReader, plans: Sequence[str]) -> set[str]:
    held: set[str] = set()
    for plan in dict.fromkeys(p.strip().lower() for p in plans if p.strip()):
        held.update(user_id.strip().lower() for user_id in reader.iter_user_ids_with_plan(plan) if user_id.strip())
    return held


def _error_text(exc: MicrosoftError) -> str:
    text = str(exc)
    refused = isinstance(exc, PermissionDenied) or exc.status in (401, 403)
    if refused and USER_READ not in text:
        text += (f" Reading users' licences (their assignedPlans) needs the Microsoft Graph application "
                 f"permission {USER_READ}.")
    return f"Licences were not read: {text}"


def _record_failure(store: Store, run: LicenceRun, finished_at: datetime, requests: int) -> LicenceRun:
    run.ok, run.finished_at, run.requests = False, finished_at, requests
    with store.session() as session:
        session.add(run)
        session.commit()
    return run


def last_licence_run(store: Store) -> LicenceRun | None:
    """The newest licence refresh that succeeded."""
    with store.session() as session:
        query = (select(LicenceRun).where(col(LicenceRun.ok).is_(True))
                 .order_by(col(LicenceRun.started_at).desc(), col(LicenceRun.id).desc()).limit(1))
        return session.exec(query).first()


def licence_job_summary(run: LicenceRun) -> str:
    """One line for the job's log and `jobs run`."""
    return run.summary()


# ---- answering ------------------------------------------------------------------------------------


def licence_gaps(store: Store, user_ids: Iterable[str]) -> dict[str, Gap]:
    """The licence each of `user_ids` (Entra ids, any case; answered lower-cased) lacks; those holding both are
    left out. Users the table doesn't have hold neither. Empty until a refresh has succeeded."""
    if last_licence_run(store) is None:
        return {}
    wanted = list(dict.fromkeys(u.strip().lower() for u in user_ids if u and u.strip()))
    gaps: dict[str, Gap] = {}
    with store.session() as session:
        for start in range(0, len(wanted), QUERY_CHUNK):
            chunk = wanted[start:start + QUERY_CHUNK]
            held = {row.user_id: row for row in session.exec(
                select(UserLicence).where(col(UserLicence.user_id).in_(chunk)))}
            for user_id in chunk:
                row = held.get(user_id)
                gap = _gap(row.intune if row else False, row.defender if row else False)
                if gap is not None:
                    gaps[user_id] = gap
    return gaps


class PlanReader(Protocol):
    def enabled_plans(self, ids: Iterable[str]) -> Mapping[str, frozenset[str]]: ...


CONFIRM_AT_MOST = 400  # users re-read one by one per call (20 $batch requests); the rest keep the listing's word


def confirm_gaps(store: Store, reader: PlanReader, gaps: Mapping[str, Gap], *, intune_plans: Sequence[str],
                 defender_plans: Sequence[str], now: datetime) -> dict[str, Gap]:
    """Re-read the licences of people the last listing (up to a day old) says lack one, before anyone calls
    them unlicensed: someone licensed since is not. Their rows are updated; what still lacks is returned.
    When the read fails, the listing's answer stands."""
    asked = sorted(gaps)[:CONFIRM_AT_MOST]
    if not asked:
        return dict(gaps)
    try:
        plans = reader.enabled_plans(asked)
    except MicrosoftError as exc:
        log.info("couldn't confirm %d licence gaps (%s); the last licence read stands", len(asked), exc)
        return dict(gaps)
    intune, defender = {p.lower() for p in intune_plans}, {p.lower() for p in defender_plans}
    held = {user.lower(): (bool(p & intune), bool(p & defender)) for user, p in plans.items()}
    with store.engine.begin() as conn:
        table = UserLicence.__table__  # type: ignore[attr-defined]
        conn.execute(delete(table).where(table.c.user_id.in_(list(held))))
        rows = [{"user_id": u, "intune": i, "defender": d, "checked_at": now} for u, (i, d) in held.items() if i or d]
        if rows:
            conn.execute(insert(table), rows)
    confirmed = dict(gaps)
    for user, (has_intune, has_defender) in held.items():
        gap = _gap(has_intune, has_defender)
        if gap is None:
            confirmed.pop(user, None)
        else:
            confirmed[user] = gap
    return confirmed


def _gap(intune: bool, defender: bool) -> Gap | None:
    if intune and defender:
        return None
    if intune:
        return Gap.NO_DEFENDER
    return Gap.NO_INTUNE if defender else Gap.NEITHER


@dataclass(frozen=True)
class GroupLicences:
    """How many of a group's members lack a licence; `checked` False: no licence refresh has succeeded yet."""

    checked: bool
    members: int = 0  # members read
    more: bool = False  # the group has more than `members`: the read stopped at the cap
    no_intune: int = 0  # lacking only Intune
    no_defender: int = 0  # lacking only Defender
    neither: int = 0

    @property
    def lacking(self) -> int:
        return self.no_intune + self.no_defender + self.neither

    def text(self) -> str:
        """One sentence: "12 of 340 members lack a licence and can't be protected (9 no Intune, 3 no Defender)"."""
        if not self.checked:
            return f"Licences not checked yet (`{JOB_COMMAND}`)."
        if not self.members:
            return "The group has no user members to check licences for."
        first = f"; only the first {self.members:,} were checked" if self.more else ""
        if not self.lacking:
            if self.more:
                return f"The first {self.members:,} members hold an Intune and a Defender licence (the group has more)."
            everyone = "The one member holds" if self.members == 1 else f"All {self.members:,} members hold"
            return f"{everyone} an Intune and a Defender licence."
        parts = [f"{n:,} {what}" for n, what in ((self.no_intune, "no Intune"), (self.no_defender, "no Defender"),
                                                 (self.neither, "neither")) if n]
        if self.more:
            return (f"At least {self.lacking:,} of {self.members:,}+ members lack a licence and can't be protected "
                    f"({', '.join(parts)}{first}).")
        verb = "lacks" if self.lacking == 1 else "lack"
        return (f"{self.lacking:,} of {count(self.members, 'member')} {verb} a licence and can't be protected "
                f"({', '.join(parts)}).")


def group_licences(store: Store, graph: MemberReader, group_id: str, *, cap: int = GROUP_MEMBER_CAP) -> GroupLicences:
    """The licence gaps among a group's transitive user members (at most `cap` read). Members aren't read at
    all while no licence refresh has succeeded. A MicrosoftError reading them propagates."""
    if last_licence_run(store) is None:
        return GroupLicences(checked=False)
    read: dict[str, None] = {}
    more = False
    for member in graph.iter_group_member_ids(group_id):
        member = member.strip().lower()
        if member and member not in read:
            if len(read) >= cap:
                more = True
                break
            read[member] = None
    gaps = licence_gaps(store, read)
    tally = {gap: 0 for gap in Gap}
    for gap in gaps.values():
        tally[gap] += 1
    return GroupLicences(checked=True, members=len(read), more=more, no_intune=tally[Gap.NO_INTUNE],
                         no_defender=tally[Gap.NO_DEFENDER], neither=tally[Gap.NEITHER])


def licence_note(store: Store, graph: MemberReader, group_id: str) -> str:
    """`group_licences` in one sentence, for a change request's approver; a failed read says so instead."""
    try:
        return group_licences(store, graph, group_id).text()
    except MicrosoftError as exc:
        return f"{MEMBERS_UNREAD} {exc.message}"


MEMBERS_UNREAD = "Licences not checked: the group's members couldn't be read:"

__all__ = [
    "GROUP_MEMBER_CAP", "MEMBERS_UNREAD", "Gap", "GroupLicences", "LicenceReader", "MemberReader", "gap_text",
    "group_licences", "last_licence_run", "licence_gaps", "licence_job_summary", "licence_note", "refresh_licences",
]
