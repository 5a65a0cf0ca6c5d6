"""The threat sweep: which users' managed apps Defender's device levels block now, as episodes.

One sweep reads the Android app protection policies, indexes every Android device Defender
lists (Entra device id → level, a packed int each), then streams the managed app registrations a
page at a time and keeps only what matters: the (device, policy) pairs that block, and the users
still waiting for Defender (onboarding). Memory is bounded by the device index, not by the
registrations.

Blocks are *inferred* (Defender's level against the policy's maximum and action), which is how
Intune decides at the app's next check-in; the cards say so.

One sweep: the connector (workflows.enforcement), one scan of the tenant (workflows.scan), then the
episodes made to match it and announced (workflows.episodes). A sweep that fails half-way changes
nothing: a partial read must not resolve blocks it merely didn't get to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from bot.clock import Clock, utc_clock
from bot.microsoft.errors import MicrosoftError
from bot.store.db import Store
from bot.store.index import Enforcement
from bot.store.watch import Episode, SweepRun, active_blocks, last_sweep
from bot.text import count
from workflows.connectors import PORTALS
from workflows.enforcement import OFF, Reading, reading, record, resume_announced
from workflows.episodes import (
    AlertNotifier,
    acknowledge,
    announce,
    card_key,
    dm_users,
    people,
    reconcile,
    snooze,
    version_key,
)
from workflows.licences import confirm_gaps, licence_gaps
from workflows.onboarding import (
    PendingUser,
    SlackDirectory,
    WatchSettings,
    pending_user_ids,
    sync_cases,
    unlicensed_user_ids,
)
from workflows.scan import Scan, scan_tenant
from workflows.tenant_reader import MicrosoftReader, TenantReader

if TYPE_CHECKING:
    from bot.microsoft.defender import DefenderClient
    from bot.microsoft.graph import GraphClient
    from bot.store.audit import AuditLog

__all__ = [
    "AlertNotifier",
    "Episode",
    "MicrosoftReader",
    "SweepResult",
    "SweepRun",
    "TenantReader",
    "WatchSettings",
    "acknowledge",
    "active_blocks",
    "card_key",
    "last_sweep",
    "run_threat_sweep",
    "snooze",
    "version_key",
]

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    started: datetime
    finished: datetime | None = None
    sweep_id: int | None = None
    devices_scanned: int = 0
    registrations_scanned: int = 0
    android_registrations: int = 0
    active_blocks: int = 0
    new_episodes: int = 0
    updated_episodes: int = 0
    resolved_episodes: int = 0
    pending_onboarding: int = 0
    warned: int = 0
    unmatched: int = 0
    digests: int = 0
    requests: int = 0
    policies: int | None = None  # Android app protection policies read (None: the sweep didn't get that far)
    watching_policies: int = 0  # of those, the ones with a maximum device threat level
    source: str = ""  # where the registrations came from: export or paged (the index), graph (live)
    enforcement: str = ""  # on or off, as this sweep read the connector
    suppressed: int = 0  # blocks not claimed because Intune isn't evaluating Defender's signal
    unlicensed: int = 0  # waiting users without an Intune or Defender licence: not nudged
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        if self.ok and self.policies is not None and self.watching_policies == 0:
            return ("nothing to watch: no Android app protection policy sets a maximum device threat level "
                    f"({count(self.policies, 'policy', 'policies')} read), so no device can block an app; "
                    f"Defender was not read ({count(self.requests, 'request')}). `/mam policy new` creates one.")
        source = f" ({self.source})" if self.source else ""
        scanned = f"{self.devices_scanned} Android devices, {self.registrations_scanned} registrations{source}"
        unlicensed = f", {self.unlicensed} without a licence" if self.unlicensed else ""
        if self.enforcement == OFF:
            return (f"threat-level enforcement is OFF in Intune, so nobody is blocked for it: {scanned}, "
                    f"{self.suppressed} devices would block an app if it were on, {self.pending_onboarding} pending "
                    f"onboarding{unlicensed}, {self.requests} requests")
        return (f"{scanned}, {self.active_blocks} blocked ({self.new_episodes} new, {self.updated_episodes} changed, "
                f"{self.resolved_episodes} resolved), {self.pending_onboarding} pending onboarding{unlicensed}, "
                f"{self.requests} requests")



def run_threat_sweep(
    *,
    graph: GraphClient | None = None,
    defender: DefenderClient | None = None,
    reader: TenantReader | None = None,
    store: Store,
    notifier: AlertNotifier,
    settings: WatchSettings | None = None,
    alert_channel: str | None = None,
    now: Clock | datetime | None = None,
    requests: Callable[[], int] | None = None,
    directory: SlackDirectory | None = None,
    audit: AuditLog | None = None,
    worker: str = "",
    sleep: Callable[[float], None] = time.sleep,
) -> SweepResult:
    """Sweep once; give the Graph and Defender clients (background profile) or a `reader`."""
    settings = settings or WatchSettings()
    clock = utc_clock(now)
    if reader is None:
        if graph is None or defender is None:
            raise ValueError("run_threat_sweep needs graph and defender clients, or a reader")
        reader = MicrosoftReader(graph, defender, page_size=settings.defender_page_size,
                                 applied_policies=settings.applied_policies)
    counted = requests or (lambda: 0)
    before = counted()
    started = clock()
    run = _start_run(store, started, worker)
    assert run.id is not None
    result = SweepResult(started=started, sweep_id=run.id)
    try:
        # The connector first: a block is only true while Intune evaluates Defender's signal.
        seen = reading(reader.mde_connector(), now=started, portals=PORTALS.get(settings.cloud, PORTALS["global"]))
        scan = scan_tenant(reader, settings, pending_user_ids(store))
    except MicrosoftError as exc:
        # A partial read must not resolve what it merely didn't get to: change nothing.
        log.warning("threat sweep %s failed: %s", run.id, exc)
        result.errors.append(str(exc))
        return _finish(store, run, result, clock, counted() - before, audit)
    result.source = reader.source
    _count(result, scan)
    at = clock()
    unlicensed = _leave_out_unlicensed(store, scan, reader, settings, at)
    result.unlicensed = len(unlicensed)
    result.enforcement = seen.state
    if seen.state == OFF:
        return _while_off(store, notifier, scan, seen, unlicensed, run, result, alert_channel, at,
                          lambda: _finish(store, run, result, clock, counted() - before, audit))
    turn = record(store, seen, at=at, channel=alert_channel)
    _notice(notifier, turn.row)
    known = people(reader, store, scan, result.errors)
    changes = reconcile(store, scan, known, at)
    result.new_episodes, result.updated_episodes = len(changes.new), len(changes.changed)
    result.resolved_episodes, result.active_blocks = len(changes.resolved), _blocking(scan)
    result.digests += announce(store, notifier, changes, run, settings, alert_channel,
                               resumed=turn.row.resume_pending)
    if turn.row.resume_pending:
        resume_announced(store)
    if settings.dm_blocked_users:
        dm_users(store, notifier, directory, changes, settings, at, sleep)
    sync = sync_cases(store, scan.pending, scan.onboarded, at, unlicensed=unlicensed)
    result.pending_onboarding = sync.pending
    return _finish(store, run, result, clock, counted() - before, audit)


def _leave_out_unlicensed(store: Store, scan: Scan, reader: TenantReader, settings: WatchSettings,
                          at: datetime) -> dict[str, PendingUser]:
    """Waiting users without an Intune or Defender licence can't onboard: they are kept apart, never nudged.
    Those the daily listing newly says lack one are re-read first: someone licensed since is not unlicensed."""
    gaps = licence_gaps(store, scan.pending)
    if gaps and settings.intune_plans and settings.defender_plans:
        already = unlicensed_user_ids(store)
        fresh = {u: g for u, g in gaps.items() if u not in already}
        confirmed = confirm_gaps(store, reader, fresh, intune_plans=settings.intune_plans,
                                 defender_plans=settings.defender_plans, now=at)
        gaps = {**{u: g for u, g in gaps.items() if u in already}, **confirmed}
    return {user: scan.pending.pop(user) for user in list(scan.pending) if user in gaps}


def _while_off(store: Store, notifier: AlertNotifier, scan: Scan, seen: Reading, unlicensed: dict[str, PendingUser],
               run: SweepRun, result: SweepResult, channel: str | None, at: datetime,
               finish: Callable[[], SweepResult]) -> SweepResult:
    """Intune isn't evaluating Defender's signal: nobody is blocked for it. Episodes stay as they were
    (neither new cards nor resolutions: the next sweep with enforcement on picks up from there), the
    blocks that would be are only counted, and the notice says why and how to fix it."""
    result.suppressed = len({b.device_id for b in scan.blocks.values() if b.rule.action != "warn"})
    turn = record(store, seen, at=at, suppressed=result.suppressed, channel=channel)
    _notice(notifier, turn.row)
    sync = sync_cases(store, scan.pending, scan.onboarded, at, unlicensed=unlicensed)
    result.pending_onboarding = sync.pending
    log.info("threat sweep %s: enforcement off (%s); %d blocks not claimed", run.id, seen.reason, result.suppressed)
    return finish()


def _notice(notifier: AlertNotifier, row: Enforcement) -> None:
    """Queue the notice as the row has it, every sweep: its outbox key is the same until something changes,
    so this is a no-op then, and a sweep that died between recording a change and queuing it is made good."""
    if row.notice_channel and row.notice_round:
        notifier.enforcement(row, row.notice_channel)


def _blocking(scan: Scan) -> int:
    """(device, policy) pairs that block or wipe; warnings are counted apart."""
    return sum(1 for b in scan.blocks.values() if b.rule.action != "warn")


def _start_run(store: Store, started: datetime, worker: str) -> SweepRun:
    with store.session() as session:
        run = SweepRun(started_at=started, worker=worker[:255])
        session.add(run)
        session.commit()
        session.refresh(run)
        return run


def _count(result: SweepResult, scan: Scan) -> None:
    result.policies = len(scan.rules)
    result.watching_policies = sum(1 for rule in scan.rules.values() if rule.watches_threats)
    result.devices_scanned = scan.index.machines
    result.registrations_scanned = scan.registrations
    result.android_registrations = scan.android_registrations
    result.warned, result.unmatched = scan.warned, scan.unmatched
    result.pending_onboarding = len(scan.pending)


def _finish(store: Store, run: SweepRun, result: SweepResult, clock: Clock, requests: int,
            audit: AuditLog | None) -> SweepResult:
    result.finished = clock()
    result.requests = requests
    with store.session() as session:
        row = session.get(SweepRun, run.id)
        assert row is not None
        row.finished_at, row.ok = result.finished, result.ok
        row.devices, row.registrations = result.devices_scanned, result.registrations_scanned
        row.android_registrations, row.active_blocks = result.android_registrations, result.active_blocks
        row.new_episodes, row.updated_episodes = result.new_episodes, result.updated_episodes
        row.resolved_episodes, row.pending_onboarding = result.resolved_episodes, result.pending_onboarding
        row.warned, row.unmatched, row.requests = result.warned, result.unmatched, result.requests
        row.digests, row.error = result.digests, "; ".join(result.errors)[:2000]
        row.source, row.enforcement = result.source[:16], result.enforcement[:16]
        row.suppressed, row.unlicensed = result.suppressed, result.unlicensed
        session.add(row)
        session.commit()
    if audit is not None:
        audit.record(actor="mam-bot", action="threat sweep", outcome="ok" if result.ok else "failed",
                     target=f"sweep {run.id}", detail=result.summary() if result.ok else row.error)
    return result

