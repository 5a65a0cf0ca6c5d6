"""Drift detection: changes made to the Android app protection policies and the MDE connector outside the bot.

Each poll (`run_drift_check`, every MAM_DRIFT_MINUTES) reads every Android app protection policy (its settings
the bot manages, apps and assignments, `lastModifiedDateTime`, `version`) and the connector, and compares them
with the snapshot in the database (`bot.store.drift`). The first poll takes the snapshot silently.

Who and when come from Intune's audit log (`GET deviceManagement/auditEvents`, filtered on the server only by
`activityDateTime ge <the last read minus an overlap>`, a UTC time; the rest is filtered here, and events are kept
by id because they arrive late). The bot's own changes are never reported: the snapshot moves on for what a
change request of the bot executed on that object since the last read wrote (its kind says which settings, apps
or groups), and for a change whose only audit actor is the bot's own app.

A change made by someone else opens one report, and one card in the alert channel through the outbox: who (the
actor's UPN, or "someone (no audit event yet)", edited in place when the event arrives), when, which object, each
setting old → new, apps and groups added and removed. The same drift seen again keeps its card (one open report
per object, its card edited when what is seen changes). "Accept as the new baseline" moves the snapshot;
"Revert" files change requests that restore the snapshot through approval (EDIT for settings and apps, ASSIGN
for groups, DELETE for a policy created outside the bot, a connector toggle per flag); the audit log's strings
are never used to rebuild a value. When the object is back to its snapshot the report resolves.

The connector's Android app protection toggle is the watch's business: switched outside the bot, it is recorded
as an enforcement reading (`workflows.enforcement.record`), whose notice says so, and no drift card is posted.

What is compared and who did it (the states, their difference, the bot's own changes, the audit log) is in
`workflows.drift_compare`; the buttons (Accept, Revert) are in `workflows.drift_buttons`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.clock import Clock, as_utc, utc_clock
from bot.microsoft.errors import MicrosoftError, NotFound
from bot.microsoft.models import AndroidPolicy, Group, MtdConnector
from bot.store.db import Store
from bot.store.drift import (
    CHANGED,
    CREATED,
    DELETED,
    OPEN,
    RESOLVED,
    DriftAuditEvent,
    DriftBaseline,
    DriftReport,
    DriftState,
)
from bot.store.index import Enforcement
from bot.text import count
from workflows.connector_change import ANDROID_MAM
from workflows.connectors import Portals
from workflows.drift_compare import (
    CONNECTOR,
    POLICY,
    SKEW,
    Attribution,
    BotChange,
    Seen,
    Touched,
    attribution,
    bot_changes,
    difference,
    event_row,
    fold,
    merge,
    observe,
)
from workflows.enforcement import OFF, current_enforcement, reading, record

__all__ = [
    "CHANGED", "CREATED", "DELETED", "OPEN", "RESOLVED", "DriftGraph", "DriftNotifier", "DriftReport", "DriftResult",
    "card_key", "drop_baseline", "get_report", "load_baselines", "open_reports", "run_drift_check", "save_baseline",
    "update_report", "version_key",
]

log = logging.getLogger(__name__)

AUDIT_OVERLAP = timedelta(minutes=15)  # audit events are read again this far back: they can arrive late
AUDIT_LOOKBACK = timedelta(days=7)  # never further back than this, however old an unattributed report is
AUDIT_KEPT = timedelta(days=30)  # audit events read are kept this long (dedupe by id, late attribution)
NO_EVENT = "someone (no audit event yet)"


# ---- ports ---------------------------------------------------------------------------------------------


class DriftGraph(Protocol):
    def iter_android_policies(self) -> Iterable[AndroidPolicy]: ...

    def get_mde_connector(self) -> MtdConnector | None: ...

    def iter_audit_events(self, since: datetime) -> Iterable[dict[str, Any]]: ...

    def get_group(self, group_id: str) -> Group: ...


class DriftNotifier(Protocol):
    """Renders and queues the cards (commands.drift.SlackDrift) under the keys given here."""

    def opened(self, report: DriftReport) -> None:
        """Post the card (`card_key(report)`); posting the same report again is a no-op."""

    def changed(self, report: DriftReport) -> None:
        """Edit the card to the report's current version (`version_key(report)`)."""

    def enforcement(self, row: Enforcement, channel: str) -> None:
        """The watch's enforcement notice, posted or edited (workflows.enforcement.notice_key)."""


def card_key(report: DriftReport) -> str:
    return f"drift:{report.id}:post"


def version_key(report: DriftReport) -> str:
    return f"drift:{report.id}:v{report.version}"


# ---- one poll ------------------------------------------------------------------------------------------


@dataclass
class DriftResult:
    started: datetime
    finished: datetime | None = None
    baseline: bool = False  # this poll took the first snapshot
    policies: int = 0
    connector: bool = False
    reported: int = 0  # new reports (cards)
    updated: int = 0  # reports whose card was edited (more changes, who did it)
    resolved: int = 0  # back to the snapshot
    absorbed: int = 0  # objects the bot itself changed: the snapshot moved on
    audit_events: int = 0  # audit events read this poll
    enforcement: str = ""  # on/off, when the connector's Android toggle was switched outside the bot
    audit_error: str = ""  # the audit log could not be read: changes are reported, who made them when it can
    requests: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        if not self.ok:
            return "drift check failed: " + "; ".join(self.errors)
        what = f"{count(self.policies, 'Android app protection policy', 'Android app protection policies')}" + (
            " and the connector" if self.connector else "")
        if self.baseline:
            return f"took the first snapshot of {what} ({count(self.requests, 'request')})"
        toggle = (f"; the connector's Android app protection toggle was switched outside the bot (enforcement "
                  f"{self.enforcement})" if self.enforcement else "")
        audit = (f"Intune's audit log could not be read ({self.audit_error})" if self.audit_error
                 else f"{count(self.audit_events, 'audit event')} read")
        return (f"compared {what}: {self.reported} new changes outside the bot, {self.updated} cards updated, "
                f"{self.resolved} back to the snapshot, {self.absorbed} changed by the bot{toggle}; "
                f"{audit}, {count(self.requests, 'request')}")


@dataclass
class _Poll:
    store: Store
    graph: DriftGraph
    notifier: DriftNotifier
    channel: str
    portals: Portals
    own_apps: frozenset[str]
    now: datetime
    last_poll: datetime
    result: DriftResult
    seen: dict[str, Seen]
    baselines: dict[str, DriftBaseline]
    reports: dict[str, DriftReport]
    events: list[DriftAuditEvent] = field(default_factory=list)
    bot: list[BotChange] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # group id → name, read once per poll

    def window(self, key: str) -> datetime:
        """The last read before a change of this object could have happened."""
        base, report = self.baselines.get(key), self.reports.get(key)
        start = as_utc(base.checked_at) if base is not None and base.checked_at else self.last_poll
        if report is not None and report.window_start is not None:
            start = min(start, as_utc(report.window_start))
        return start

    def touched(self, key: str, name: str) -> Touched:
        since = self.window(key) - SKEW
        wanted = {key, f"policy-name:{fold(name)}"} if name else {key}
        # a finished change the snapshot already took (its baseline names it) is not taken again: within the
        # skew, it would otherwise hide an admin's change to the same setting made just after it
        base = self.baselines.get(key)
        absorbed = {int(n) for n in re.findall(r"#(\d+)", base.updated_by)} if base is not None else set()
        touched = Touched()
        for change in self.bot:
            if change.key not in wanted or change.at < since:
                continue
            if change.request.state != "executing" and change.request.id in absorbed:
                continue
            touched.add(change.request)
        return touched


def run_drift_check(*, graph: DriftGraph, store: Store, notifier: DriftNotifier, channel: str | None,
                    own_apps: Iterable[str], portals: Portals, now: Clock | datetime | None = None,
                    requests: Callable[[], int] | None = None) -> DriftResult:
    """One poll: read, compare with the snapshot, report what someone else changed (see the module's words)."""
    clock = utc_clock(now)
    counted = requests or (lambda: 0)
    before = counted()
    started = clock()
    result = DriftResult(started=started)
    try:
        seen = observe(graph.iter_android_policies(), graph.get_mde_connector())
    except MicrosoftError as exc:
        result.errors.append(f"reading the policies and the connector: {exc}")
        return _done(result, clock, counted() - before)
    result.policies = sum(1 for s in seen.values() if s.kind == POLICY)
    result.connector = any(s.kind == CONNECTOR for s in seen.values())
    state = _state(store)
    baselines = load_baselines(store)
    if state.baseline_at is None:
        for item in seen.values():
            save_baseline(store, baselines.get(item.key), item, item.state, started, "the first drift check")
        _set_state(store, baseline_at=started, last_poll_at=started)
        result.baseline = True
        return _done(result, clock, counted() - before)
    poll = _Poll(store, graph, notifier, channel or "", portals, frozenset(a.lower() for a in own_apps if a),
                 started, as_utc(state.last_poll_at) or started, result, seen, baselines, open_reports(store))
    keys = sorted(set(seen) | set(baselines) | set(poll.reports))
    earliest = min([poll.window(k) for k in keys] or [started])
    unexplained = [k for k in keys if _differs(poll, k) or (k in poll.reports and not poll.reports[k].loaded("actors"))]
    if unexplained:
        _read_audit(poll, min(poll.window(k) for k in unexplained))
    poll.events = _events_since(store, earliest - SKEW)
    poll.bot = bot_changes(store, earliest - SKEW)
    for key in keys:
        _reconcile(poll, key)
    for report in open_reports(store).values():  # heals a poll that stopped between recording and queuing
        if not report.card_key and poll.channel:  # seen before MAM_ALERT_CHANNEL was set: post it now
            report = update_report(store, report, channel=poll.channel, card_key=card_key(report)) or report
        _show(poll, report)
    _set_state(store, last_poll_at=started)
    _purge(store, started - AUDIT_KEPT)
    return _done(result, clock, counted() - before)


def _done(result: DriftResult, clock: Clock, requests: int) -> DriftResult:
    result.finished = clock()
    result.requests = requests
    log.info("drift check: %s", result.summary())
    return result


def _differs(poll: _Poll, key: str) -> bool:
    """Something new to attribute: the object differs from its snapshot, or from what its open report shows."""
    base, live, report = poll.baselines.get(key), poll.seen.get(key), poll.reports.get(key)
    if report is not None:
        return json.dumps(live.state if live else {}, sort_keys=True) != report.after
    if base is None or live is None:
        return base is not live
    return not difference(live.kind, base.snapshot, live.state).empty


def _read_audit(poll: _Poll, earliest: datetime) -> None:
    """Intune's audit events since the last read, or the earliest window still to explain, minus the overlap
    (late events); the resources we hold only."""
    since = max(min(poll.last_poll, earliest) - AUDIT_OVERLAP, poll.now - AUDIT_LOOKBACK)
    wanted = {s.id.lower() for s in poll.seen.values()} | {b.object_id.lower() for b in poll.baselines.values()} | {
        r.object_id.lower() for r in poll.reports.values()}
    rows: list[DriftAuditEvent] = []
    try:
        for item in poll.graph.iter_audit_events(since):
            poll.result.audit_events += 1
            row = event_row(item, poll.own_apps, poll.now)
            if row is not None and wanted & set(json.loads(row.resource_ids)):
                rows.append(row)
    except MicrosoftError as exc:
        # the changes are still reported, as by "someone": who did it is told when a read works again
        log.warning("drift check: could not read Intune's audit log: %s", exc)
        poll.result.audit_error = str(exc)[:500]
        _set_state(poll.store, audit_since=since, audit_read_at=poll.now, audit_error=str(exc)[:1000])
        return
    _keep_events(poll.store, rows)
    _set_state(poll.store, audit_since=since, audit_read_at=poll.now, audit_error="")


def _keep_events(store: Store, rows: list[DriftAuditEvent]) -> None:
    for row in rows:
        with store.session() as session:
            if session.get(DriftAuditEvent, row.id) is not None:
                continue
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                log.debug("audit event %s was kept by another drift check first", row.id)


def _events_since(store: Store, since: datetime) -> list[DriftAuditEvent]:
    with store.session() as session:
        return list(session.exec(select(DriftAuditEvent).where(col(DriftAuditEvent.activity_at) >= since)
                                 .order_by(col(DriftAuditEvent.activity_at))))


def _purge(store: Store, before: datetime) -> None:
    table = DriftAuditEvent.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        conn.execute(delete(table).where(table.c.seen_at < before))


def _reconcile(poll: _Poll, key: str) -> None:
    base, live, report = poll.baselines.get(key), poll.seen.get(key), poll.reports.get(key)
    source = live or base or report
    assert source is not None
    object_id = source.object_id if isinstance(source, DriftBaseline | DriftReport) else source.id
    name = live.name if live is not None else (base.name if base is not None else report.name if report else "")
    touched = poll.touched(key, name)
    who = attribution(poll.events, object_id, poll.window(key))
    if live is None and base is None:
        if report is not None:  # created outside the bot, then deleted again before anyone decided
            _close(poll, report, RESOLVED, "it no longer exists")
        return
    if base is None:
        assert live is not None
        if touched.everything or (who.ours and not who.actors and report is None):
            save_baseline(poll.store, None, live, live.state, poll.now, _by(touched, "created by the bot"))
            poll.result.absorbed += 1
            if report is not None:
                _close(poll, report, RESOLVED, "now part of the snapshot")
            return
        if report is not None:
            _refresh(poll, report, live, {}, live.state, CREATED, who)
        else:
            _open(poll, live, CREATED, {}, live.state, who, key)
        return
    if live is None:
        if touched.everything or (who.ours and not who.actors and report is None):
            drop_baseline(poll.store, key)
            poll.result.absorbed += 1
            if report is not None:
                _close(poll, report, RESOLVED, "deleted by the bot")
            return
        gone = Seen(key, base.kind, base.object_id, base.name, {})
        if report is not None:
            _refresh(poll, report, gone, base.snapshot, {}, DELETED, who)
        else:
            _open(poll, gone, DELETED, base.snapshot, {}, who, key)
        return
    merged = merge(base.snapshot, live.state, touched)
    if live.kind == CONNECTOR:
        merged = _enforcement(poll, merged, live, touched)
    change = difference(live.kind, merged, live.state)
    if change.empty:
        save_baseline(poll.store, base, live, live.state, poll.now,
                       _by(touched, "") if touched.any or merged != base.snapshot else "")
        if touched.any and not difference(live.kind, base.snapshot, live.state).empty:
            poll.result.absorbed += 1
        if report is not None:
            filed = report.loaded("revert_requests")
            how = f" (reverted through {', '.join(f'#{n}' for n in filed)})" if filed else ""
            _close(poll, report, RESOLVED, f"back to the snapshot{how}")
        return
    if report is None and who.ours and not who.actors and not touched.any:
        # the bot's own app wrote it (the audit log says so), though no change request of this bot ran
        save_baseline(poll.store, base, live, live.state, poll.now, "the bot's own app (audit log)")
        poll.result.absorbed += 1
        return
    save_baseline(poll.store, base, live, merged, poll.now, _by(touched, "") if touched.any else "")
    if report is not None:
        _refresh(poll, report, live, merged, live.state, CHANGED, who)
    else:
        _open(poll, live, CHANGED, merged, live.state, who, key)


def _by(touched: Touched, default: str) -> str:
    if touched.requests:
        return "the bot's change " + ", ".join(f"#{n}" for n in touched.requests[:10])
    return default


def _enforcement(poll: _Poll, merged: dict[str, Any], live: Seen, touched: Touched) -> dict[str, Any]:
    """The Android app protection toggle switched outside the bot: an enforcement reading (its notice says
    so), never a drift card; the snapshot takes it."""
    before = (merged.get("settings") or {}).get(ANDROID_MAM)
    after = live.state["settings"].get(ANDROID_MAM)
    if bool(before) == bool(after) or ANDROID_MAM in touched.settings or touched.everything:
        return merged
    seen = reading(live.connector, now=poll.now, portals=poll.portals)
    current = current_enforcement(poll.store)
    suppressed = current.suppressed if current.state == OFF and seen.state == OFF else 0
    turn = record(poll.store, seen, at=poll.now, suppressed=suppressed, channel=poll.channel or None)
    if turn.row.notice_channel and turn.row.notice_round:
        poll.notifier.enforcement(turn.row, turn.row.notice_channel)
    poll.result.enforcement = seen.state
    settings = {**merged["settings"], ANDROID_MAM: after}
    return {**merged, "settings": settings}


# ---- reports -------------------------------------------------------------------------------------------


def _names(poll: _Poll, before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, str]:
    """Names of the groups the card mentions (read once per poll; a deleted group says so)."""
    ids = {str(a.get("groupId")) for s in (before, after) for a in s.get("assignments") or [] if a.get("groupId")}
    for group_id in sorted(ids - set(poll.names))[:50]:
        try:
            poll.names[group_id] = poll.graph.get_group(group_id).displayName or group_id
        except NotFound:
            poll.names[group_id] = f"{group_id} (deleted group)"
        except MicrosoftError as exc:
            log.warning("drift check: could not read group %s: %s", group_id, exc)
            poll.names[group_id] = group_id
    return {g: poll.names[g] for g in sorted(ids) if g in poll.names}


def _values(poll: _Poll, item: Seen, change: str, before: Mapping[str, Any], after: Mapping[str, Any],
            who: Attribution) -> dict[str, Any]:
    return {"change": change, "name": item.name[:512], "before": json.dumps(before, sort_keys=True),
            "after": json.dumps(after, sort_keys=True), "names": json.dumps(_names(poll, before, after)),
            "actors": json.dumps(who.actors), "events": json.dumps(who.events), "changed_at": who.changed_at}


def _open(poll: _Poll, item: Seen, change: str, before: Mapping[str, Any], after: Mapping[str, Any],
          who: Attribution, key: str) -> None:
    values = _values(poll, item, change, before, after, who)
    if values["changed_at"] is None and change != DELETED and item.last_modified:
        modified = as_utc(datetime.fromisoformat(item.last_modified))
        values["changed_at"] = modified if modified >= poll.window(key) - SKEW else None
    with poll.store.session() as session:
        report = DriftReport(target_key=key, open_key=key, kind=item.kind, object_id=item.id[:256],
                             window_start=poll.window(key), detected_at=poll.now, updated_at=poll.now,
                             channel=poll.channel, state=OPEN, **values)
        session.add(report)
        try:
            session.flush()
            report.card_key = card_key(report) if poll.channel else ""
            session.commit()
        except IntegrityError:
            session.rollback()
            log.info("drift check: another check opened the report of %s first", key)
            return
        session.refresh(report)
    poll.result.reported += 1
    poll.reports[key] = report
    _show(poll, report)


def _refresh(poll: _Poll, report: DriftReport, item: Seen, before: Mapping[str, Any], after: Mapping[str, Any],
             change: str, who: Attribution) -> None:
    """The same drift seen again keeps its card; the card is edited when what is seen (or who did it) changed."""
    values = _values(poll, item, change, before, after, who)
    if not who.actors:  # keep who an earlier read named (an event read before, purged since)
        values.update(actors=report.actors, events=report.events, changed_at=report.changed_at)
    if values["changed_at"] is None:
        values["changed_at"] = report.changed_at
    current = {k: getattr(report, k) for k in values}
    if {k: v for k, v in current.items() if k != "changed_at"} == {
            k: v for k, v in values.items() if k != "changed_at"}:
        return
    updated = update_report(poll.store, report, updated_at=poll.now, **values)
    if updated is not None:
        poll.result.updated += 1
        poll.reports[report.target_key] = updated
        poll.notifier.changed(updated)


def _close(poll: _Poll, report: DriftReport, state: str, resolution: str) -> None:
    closed = update_report(poll.store, report, state=state, open_key=None, resolution=resolution[:1000],
                     updated_at=poll.now)
    if closed is not None:
        poll.result.resolved += 1
        poll.reports.pop(report.target_key, None)
        poll.notifier.changed(closed)


def _show(poll: _Poll, report: DriftReport) -> None:
    """Queue the card as the report has it; the keys make this a no-op when it was queued already."""
    if not report.card_key:
        return
    poll.notifier.opened(report)
    if report.version:
        poll.notifier.changed(report)


def update_report(store: Store, report: DriftReport, **values: Any) -> DriftReport | None:
    """A guarded UPDATE (by version): a button and a poll never both write the same version."""
    table = DriftReport.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        done = conn.execute(update(table).where(table.c.id == report.id, table.c.version == report.version)
                            .values(**values, version=report.version + 1))
    return get_report(store, report.id or 0) if done.rowcount else None


def get_report(store: Store, report_id: int) -> DriftReport | None:
    with store.session() as session:
        return session.get(DriftReport, report_id, populate_existing=True)


def open_reports(store: Store) -> dict[str, DriftReport]:
    with store.session() as session:
        rows = session.exec(select(DriftReport).where(col(DriftReport.state) == OPEN))
        return {r.target_key: r for r in rows}


# ---- snapshot and state --------------------------------------------------------------------------------


def _state(store: Store) -> DriftState:
    with store.session() as session:
        row = session.get(DriftState, 1)
        if row is not None:
            return row
        session.add(DriftState(id=1))
        try:
            session.commit()
        except IntegrityError:
            log.debug("another drift check created the state row first")
    with store.session() as session:
        found = session.get(DriftState, 1)
        assert found is not None
        return found


def _set_state(store: Store, **values: Any) -> None:
    table = DriftState.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == 1).values(**values, version=table.c.version + 1))


def load_baselines(store: Store) -> dict[str, DriftBaseline]:
    with store.session() as session:
        return {b.key: b for b in session.exec(select(DriftBaseline))}


def save_baseline(store: Store, base: DriftBaseline | None, item: Seen, state: Mapping[str, Any], at: datetime,
                   by: str) -> None:
    """The object's snapshot: `state`, and what Graph said of it now (name, lastModifiedDateTime, version)."""
    text = json.dumps(state, sort_keys=True)
    with store.session() as session:
        row = session.get(DriftBaseline, item.key)
        if row is None:
            row = DriftBaseline(key=item.key, kind=item.kind, object_id=item.id[:256], updated_at=at,
                                updated_by=by[:200] or "the drift check")
        elif row.state != text:
            row.updated_at, row.updated_by = at, (by or row.updated_by)[:200]
        row.state, row.name = text, item.name[:512]
        row.last_modified, row.object_version = item.last_modified[:64], item.version[:128]
        row.checked_at, row.version = at, row.version + 1
        session.add(row)
        try:
            session.commit()
        except IntegrityError:
            log.debug("another drift check saved the snapshot of %s first", item.key)


def drop_baseline(store: Store, key: str) -> None:
    table = DriftBaseline.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        conn.execute(delete(table).where(table.c.key == key))

