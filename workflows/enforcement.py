"""Is Intune evaluating Defender's threat level in Android app protection right now? The watch asks first.

A block the bot infers is only true while Intune takes Defender's signal into account: the MDE
connector must be `enabled`, its heartbeat within the unresponsiveness threshold, and its Android
app protection toggle (`androidMobileApplicationManagementEnabled`) on. Every sweep reads the
connector and records the answer here (one row); when it is off, nobody is told they are blocked
(workflows.threat_sweep), nudges that promise a setup screen are held (workflows.onboarding), and
`/mam blocked`, App Home and `/mam status` say so with the fix.

The alert channel gets one notice per stretch off, edited in place as the reason changes and when
enforcement comes back; the first sweep after that announces what it finds as one digest. The
drift detection reuses `record` when the toggle is switched off outside the bot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from bot.microsoft.models import MtdConnector
from bot.store.db import Store
from bot.store.index import OFF, ON, UNKNOWN, Enforcement
from workflows.connectors import Portals, Status, evaluate

__all__ = ["OFF", "ON", "UNKNOWN", "Enforcement", "EnforcementNotifier", "Reading", "Transition",
           "current_enforcement", "notice_key", "notice_post_key", "reading", "record"]

log = logging.getLogger(__name__)

DECIDING_CHECKS = ("connection", "heartbeat", "android_mam")  # workflows.connectors check keys


@dataclass(frozen=True)
class Reading:
    """What one read of the connector says about enforcement, in words."""

    state: str  # ON or OFF
    reason: str = ""
    fix: str = ""
    link: str = ""


def reading(connector: MtdConnector | None, *, now: datetime, portals: Portals) -> Reading:
    """Pure: ON only when the connection is enabled, its heartbeat within the threshold and the Android
    app protection toggle on; otherwise OFF with each failing check's words and the first one's fix."""
    report = evaluate(connector, now=now, portals=portals)
    failing = [c for c in report.checks if c.key in DECIDING_CHECKS and c.status is Status.FAIL]
    if not failing:
        return Reading(ON)
    reason = " ".join(f"{c.title}: {c.detail}" for c in failing)
    first = failing[0]
    return Reading(OFF, reason=reason[:1000], fix=(first.fix or "")[:1000], link=(first.link or "")[:1000])


def current_enforcement(store: Store) -> Enforcement:
    """The last recorded state (UNKNOWN before any sweep read the connector)."""
    with store.session() as session:
        row = session.get(Enforcement, 1)
        return row if row is not None else Enforcement()


@dataclass(frozen=True)
class Transition:
    """What changed with one reading: the row after it, and what the notice must do."""

    row: Enforcement
    went_off: bool = False  # a new stretch off: post a new notice
    came_on: bool = False  # back on after a stretch off: edit the notice; `row.resume_pending` asks for one digest
    changed_while_off: bool = False  # still off, another reason or count: edit the notice

    @property
    def notice_due(self) -> bool:
        return self.went_off or self.came_on or self.changed_while_off


def record(store: Store, seen: Reading, *, at: datetime, suppressed: int = 0, channel: str | None = None) -> Transition:
    """Write one reading; a guarded UPDATE (by version) so two sweeps never both announce the same change."""
    for _ in range(3):
        before = current_enforcement(store)
        was = before.state
        went_off = seen.state == OFF and was != OFF
        came_on = seen.state == ON and was == OFF
        changed = seen.state == OFF and was == OFF and (
            before.reason != seen.reason or before.suppressed != suppressed)
        values: dict[str, object] = {
            "state": seen.state, "reason": seen.reason, "fix": seen.fix, "link": seen.link, "checked_at": at,
            "suppressed": suppressed if seen.state == OFF else 0, "version": before.version + 1,
        }
        if was != seen.state:
            values["changed_at"] = at
        if went_off:
            values.update(off_since=at, notice_round=before.notice_round + 1, notice_version=0,
                          notice_channel=channel or "", resume_pending=False)
        elif seen.state == OFF and not before.notice_channel and channel:
            values.update(notice_channel=channel, notice_version=0)  # a channel set while off: post it now
            changed = True
        elif came_on or changed:
            values["notice_version"] = before.notice_version + 1
        if came_on:
            values.update(resumed_at=at, resume_pending=True)
        if _write(store, before, values):
            row = current_enforcement(store)
            return Transition(row, went_off=went_off, came_on=came_on, changed_while_off=changed)
    return Transition(current_enforcement(store))


def resume_announced(store: Store) -> None:
    """The sweep after enforcement came back on has queued its one digest: later sweeps announce as usual.
    Until then `resume_pending` stays set, so a sweep that died before announcing hands the digest on."""
    table = Enforcement.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == 1, table.c.resume_pending.is_(True)).values(
            resume_pending=False, version=table.c.version + 1))


def _write(store: Store, before: Enforcement, values: dict[str, object]) -> bool:
    table = Enforcement.__table__  # type: ignore[attr-defined]
    _ensure_row(store)
    with store.engine.begin() as conn:
        done = conn.execute(update(table).where(table.c.id == 1, table.c.version == before.version).values(**values))
    return bool(done.rowcount)


def _ensure_row(store: Store) -> None:
    """The one row, created by whichever sweep gets there first (another one racing it is fine)."""
    with store.session() as session:
        if session.get(Enforcement, 1) is not None:
            return
        session.add(Enforcement(id=1))
        try:
            session.commit()
        except IntegrityError:
            log.debug("another sweep created the enforcement row first")


# ---- the notice in the alert channel ------------------------------------------------------------------


def notice_post_key(row: Enforcement) -> str:
    return f"enforcement:{row.notice_round}:post"


def notice_key(row: Enforcement) -> str:
    """The key of this version of the notice: the first posts it, each later one edits it."""
    return notice_post_key(row) if row.notice_version == 0 else f"enforcement:{row.notice_round}:v{row.notice_version}"


class EnforcementNotifier(Protocol):
    """Renders and queues the notice (commands.adapters.SlackAlerts): post it, or edit it in place."""

    def enforcement(self, row: Enforcement, channel: str) -> None: ...
