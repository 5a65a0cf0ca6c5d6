"""The threat sweep: which users' managed apps Defender's device levels block now, as episodes.

One sweep reads the Android app protection policies, indexes every Android device Defender
lists (Entra device id → level, a packed int each), then streams the managed app registrations a
page at a time and keeps only what matters: the (device, policy) pairs that block, and the users
still waiting for Defender (onboarding). Memory is bounded by the device index, not by the
registrations.

Blocks are *inferred* (Defender's level against the policy's maximum and action), which is how
Intune decides at the app's next check-in; the cards say so.

Episodes live in the database, so two sweeps, a restart or a new leader continue the same story:
an episode opens once (a unique key while open), each change bumps its version (each card edit
has its own outbox key), and it resolves once (a guarded UPDATE). A sweep that fails half-way
changes nothing: a partial read must not resolve blocks it merely didn't get to.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import insert, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.clock import Clock, as_utc, utc_clock
from bot.microsoft.errors import MicrosoftError
from bot.store.db import Store
from bot.store.index import Enforcement, EntraUserLink
from bot.store.watch import OPEN, RESOLVED, Episode, SweepRun, active_blocks, last_sweep
from bot.text import count
from workflows.applicability import (
    DeviceIndex,
    Key,
    Level,
    MachineInfo,
    PolicyRule,
    Registration,
    Verdict,
    applicable,
    decide,
    guid_key,
    key_text,
)
from workflows.connectors import PORTALS
from workflows.enforcement import OFF, Reading, reading, record, resume_announced
from workflows.licences import confirm_gaps, licence_gaps
from workflows.onboarding import (
    Found,
    PendingUser,
    SlackDirectory,
    SlackIds,
    WatchSettings,
    pending_user_ids,
    sync_cases,
    unlicensed_user_ids,
)
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
    "last_sweep",
    "run_threat_sweep",
    "snooze",
]

log = logging.getLogger(__name__)


# ---- one pass over the tenant ----------------------------------------------------------------------


def open_key(device: str, rule: PolicyRule) -> str:
    """One open episode per (device, policy); a warning is another story than a block (a policy switched
    from block to warn resolves the block, and the warning starts afresh with its own words)."""
    return f"{device}|{rule.id}|warn" if rule.action == "warn" else f"{device}|{rule.id}"


@dataclass
class Block:
    """One blocking (device, policy) pair as the sweep found it."""

    device_id: str
    rule: PolicyRule
    level: Level
    machine: MachineInfo | None
    users: set[str] = field(default_factory=set)
    apps: set[str] = field(default_factory=set)
    device_name: str = ""
    device_model: str = ""

    @property
    def open_key(self) -> str:
        return open_key(self.device_id, self.rule)


@dataclass
class Scan:
    rules: dict[str, PolicyRule]  # every Android policy, watching or not, by id
    index: DeviceIndex
    watch_users: Set[str] = frozenset()  # users with an open onboarding case
    blocks: dict[str, Block] = field(default_factory=dict)  # by open key
    pending: dict[str, PendingUser] = field(default_factory=dict)  # by Entra user id
    onboarded: set[str] = field(default_factory=set)  # watched users seen with an onboarded device
    registrations: int = 0
    android_registrations: int = 0
    warned: int = 0
    unmatched: int = 0


def scan_tenant(reader: TenantReader, settings: WatchSettings, watch_users: Set[str] = frozenset()) -> Scan:
    """Read the tenant once and return what blocks and who waits for Defender. Raises on a failed read."""
    rules = {p.id: PolicyRule.from_policy(p) for p in reader.android_policies()}
    watching = [r for r in rules.values() if r.watches_threats]
    scan = Scan(rules=rules, index=DeviceIndex(), watch_users=watch_users)
    if not watching:
        return scan  # nothing can block or need Defender: skip the two big reads
    for machine in reader.android_machines():
        scan.index.add(machine)
    members: dict[str, set[Key]] | None = None
    registered: set[Key] = set()
    for reg in reader.registrations():
        scan.registrations += 1
        if not reg.android:
            continue
        scan.android_registrations += 1
        if settings.nudge_unregistered and (user_key := guid_key(reg.user_id)) is not None:
            registered.add(user_key)
        if reg.applied is None and members is None:
            members = load_members(reader, watching)
        _take(scan, reg, applicable(reg, watching, members or {}))
    if settings.nudge_unregistered:
        members = members if members is not None else load_members(reader, watching)
        _add_unregistered(scan, watching, members, registered)
    return scan


def load_members(reader: TenantReader, rules: Iterable[PolicyRule]) -> dict[str, set[Key]]:
    """Each assigned group's transitive user members, streamed once per group (never once per user)."""
    members: dict[str, set[Key]] = {}
    for rule in rules:
        for group in rule.groups:
            if group not in members:
                members[group] = {k for k in map(guid_key, reader.group_member_ids(group)) if k is not None}
    return members


def _take(scan: Scan, reg: Registration, rules: list[PolicyRule]) -> None:
    if not rules:
        return
    if reg.device_id is None:
        scan.unmatched += 1  # no Entra device id: nothing to join Defender on
        return
    user = (reg.user_id or "").lower()
    level = scan.index.level(reg.device_id)
    if level is None:
        if not user:
            return  # nobody to nudge
        pending = scan.pending.setdefault(user, PendingUser())
        pending.devices[reg.device_id.lower()] = (reg.device_name or "", _model(reg))
        if reg.package:
            pending.apps.add(reg.package)
        pending.policies.update(r.name for r in rules)
        return
    if user in scan.watch_users:
        scan.onboarded.add(user)
    for rule in rules:
        verdict = decide(level, rule.maximum, rule.action)
        if verdict is Verdict.WARNED:
            scan.warned += 1  # an episode too: the card and the DM say "warns", never "blocked"
        if verdict not in (Verdict.BLOCKED, Verdict.WARNED):
            continue
        device = key_text(guid_key(reg.device_id) or reg.device_id)
        block = scan.blocks.get(open_key(device, rule))
        if block is None:
            block = Block(device, rule, level, scan.index.details(reg.device_id),
                          device_name=reg.device_name or "", device_model=_model(reg))
            scan.blocks[block.open_key] = block
        if reg.user_id:
            block.users.add(reg.user_id.lower())
        if reg.package:
            block.apps.add(reg.package)


def _add_unregistered(scan: Scan, rules: list[PolicyRule], members: Mapping[str, Set[Key]],
                      registered: Set[Key]) -> None:
    """Assigned users with no Android registration yet (all-users assignments can't be listed this way)."""
    for rule in rules:
        excluded: set[Key] = set().union(*(members.get(g, set()) for g in rule.exclude_groups))
        for group in rule.include_groups:
            for user in members.get(group, ()):
                if user in registered or user in excluded:
                    continue
                pending = scan.pending.setdefault(key_text(user), PendingUser(kind="unregistered"))
                pending.policies.add(rule.name)


def _model(reg: Registration) -> str:
    return " ".join(p for p in (reg.manufacturer, reg.device_model) if p)


# ---- episodes ----------------------------------------------------------------------------------------


class AlertNotifier(Protocol):
    """Renders and queues what the sweep decided (commands.adapters.SlackAlerts); keys come from here."""

    def opened(self, episode: Episode, channel: str) -> None: ...

    def changed(self, episode: Episode) -> None: ...

    def resolved(self, episode: Episode) -> None: ...

    def snooze_over(self, episode: Episode) -> None: ...

    def digest(self, key: str, channel: str, kind: str, episodes: list[Episode], run: SweepRun) -> None: ...

    def user_blocked(self, key: str, slack_user: str, episode: Episode) -> None: ...

    def user_unblocked(self, key: str, slack_user: str, episode: Episode) -> None: ...

    def enforcement(self, row: Enforcement, channel: str) -> None:
        """Post the enforcement notice, or edit it in place (workflows.enforcement.notice_key)."""


def episode_key(episode: Episode) -> str:
    return f"alert:{episode.device_id}:{episode.policy_id}:{episode.id}"


def card_key(episode: Episode) -> str:
    return f"{episode_key(episode)}:post"


def version_key(episode: Episode) -> str:
    return f"{episode_key(episode)}:v{episode.version}"


def resolved_key(episode: Episode) -> str:
    return f"{episode_key(episode)}:resolved"


def snooze_over_key(episode: Episode) -> str:
    return f"{episode_key(episode)}:snooze-over:{episode.snoozes}"


def digest_key(run_id: int, kind: str) -> str:
    return f"alert-digest:{run_id}:{kind}"


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


@dataclass
class _Changes:
    new: list[Episode] = field(default_factory=list)
    changed: list[Episode] = field(default_factory=list)
    resolved: list[Episode] = field(default_factory=list)
    snooze_over: list[Episode] = field(default_factory=list)




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
    people = _people(reader, store, scan, result)
    changes = _reconcile(store, scan, people, at)
    result.new_episodes, result.updated_episodes = len(changes.new), len(changes.changed)
    result.resolved_episodes, result.active_blocks = len(changes.resolved), _blocking(scan)
    _announce(store, notifier, changes, run, settings, alert_channel, result, resumed=turn.row.resume_pending)
    if turn.row.resume_pending:
        resume_announced(store)
    if settings.dm_blocked_users:
        _dm_users(store, notifier, directory, changes, settings, at, sleep)
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


def _people(reader: TenantReader, store: Store, scan: Scan, result: SweepResult) -> dict[str, dict[str, str]]:
    """Name and mail of each blocked user: from open episodes where known, then from the mails the index
    resolved (entra_user_links), else Graph (20 to a batch, or one directory listing when that is fewer)."""
    known: dict[str, dict[str, str]] = {}
    table = Episode.__table__  # type: ignore[attr-defined]
    with store.engine.connect() as conn:
        for (users,) in conn.execute(sa_select(table.c.users).where(table.c.state == OPEN)):
            for person in json.loads(users or "[]"):
                if person.get("mail") or person.get("name"):
                    known[person["id"].lower()] = person
    wanted = sorted({u for b in scan.blocks.values() for u in b.users} - set(known))
    known.update(_resolved_by_index(store, wanted))
    wanted = [u for u in wanted if u not in known]
    if wanted:
        try:
            for user_id, user in reader.get_users(wanted).items():
                known[user_id.lower()] = {"id": user_id.lower(), "name": user.displayName or "",
                                          "mail": (user.mail or user.userPrincipalName or "").lower()}
        except MicrosoftError as exc:
            result.errors.append(f"reading blocked users' names: {exc}")
    return known


def _resolved_by_index(store: Store, user_ids: list[str]) -> dict[str, dict[str, str]]:
    """People the index's refresh already looked up by mail: no second directory read for their names."""
    links = EntraUserLink.__table__  # type: ignore[attr-defined]
    found: dict[str, dict[str, str]] = {}
    with store.engine.connect() as conn:
        for start in range(0, len(user_ids), 500):
            chunk = user_ids[start:start + 500]
            query = sa_select(links.c.user_id, links.c.email, links.c.name).where(
                links.c.user_id.in_(chunk), links.c.matches == 1)
            for user_id, email, name in conn.execute(query):
                found[user_id.lower()] = {"id": user_id.lower(), "name": name or "", "mail": email}
    return found


def _fields(block: Block, people: Mapping[str, dict[str, str]]) -> dict[str, Any]:
    """The columns an episode takes from this sweep's view of it."""
    users = [people.get(u, {"id": u, "name": "", "mail": ""}) for u in sorted(block.users)]
    machine = block.machine
    return {
        "machine_id": machine.machine_id if machine else "",
        "device_name": (block.device_name or (machine.name if machine else "") or "")[:256],
        "device_model": block.device_model[:256],
        "policy_name": block.rule.name[:256],
        "maximum": block.rule.maximum.wire,
        "action": block.rule.action,
        "level": block.level.wire,
        "risk_score": (machine.risk_score if machine else "") or "",
        "users": json.dumps(users, sort_keys=True),
        "apps": json.dumps(sorted(block.apps)),
        "defender_last_seen": machine.last_seen if machine else None,
    }


_SHOWN = ("machine_id", "device_name", "device_model", "policy_name", "maximum", "action", "level", "users", "apps")


def _reconcile(store: Store, scan: Scan, people: Mapping[str, dict[str, str]], at: datetime) -> _Changes:
    changes = _Changes()
    table = Episode.__table__  # type: ignore[attr-defined]
    columns = [table.c[name] for name in ("id", "open_key", "version", "device_id", "policy_id", *_SHOWN)]
    with store.engine.connect() as conn:  # rows, not ORM objects: thousands may be open
        open_now = {row.open_key: row for row in conn.execute(sa_select(*columns).where(table.c.state == OPEN))}
    fresh: list[dict[str, Any]] = []
    unchanged: list[int] = []
    for key, block in scan.blocks.items():
        values = _fields(block, people)
        episode = open_now.pop(key, None)
        if episode is None:
            fresh.append({**values, "device_id": block.device_id, "policy_id": block.rule.id, "open_key": key,
                          "state": OPEN, "opened_at": at, "last_seen_at": at, "version": 0})
            continue
        assert episode.id is not None
        if all(getattr(episode, name) == values[name] for name in _SHOWN):
            unchanged.append(episode.id)
            continue
        with store.engine.begin() as conn:
            done = conn.execute(update(table).where(
                table.c.id == episode.id, table.c.version == episode.version, table.c.state == OPEN,
            ).values(**values, version=episode.version + 1, last_seen_at=at))
        if done.rowcount:
            changes.changed.append(_load(store, episode.id))
    changes.new = _insert_new(store, fresh)
    for episode in open_now.values():
        values = {"resolution": _resolution(episode, scan)[:256], "resolved_at": at}
        level = scan.index.level(episode.device_id)
        if level is not None:
            # the compact index keeps levels, not Defender's word for them: don't show a stale one
            values["level"], values["risk_score"] = level.wire, ""
        with store.engine.begin() as conn:
            done = conn.execute(update(table).where(table.c.id == episode.id, table.c.state == OPEN).values(
                **values, state=RESOLVED, open_key=None, version=episode.version + 1))
        if done.rowcount:
            changes.resolved.append(_load(store, episode.id))
    for start in range(0, len(unchanged), 500):
        with store.engine.begin() as conn:
            conn.execute(update(table).where(table.c.id.in_(unchanged[start:start + 500])).values(last_seen_at=at))
    changes.snooze_over = _snoozes_over(store, at)
    return changes


def _insert_new(store: Store, rows: list[dict[str, Any]]) -> list[Episode]:
    """Open new episodes: all at once, or one by one when another sweep opened some of them first."""
    if not rows:
        return []
    table = Episode.__table__  # type: ignore[attr-defined]
    keys = [r["open_key"] for r in rows]
    try:
        with store.engine.begin() as conn:
            conn.execute(insert(table), rows)
    except IntegrityError:
        mine: list[str] = []
        for row in rows:
            try:
                with store.engine.begin() as conn:
                    conn.execute(insert(table).values(**row))
                mine.append(row["open_key"])
            except IntegrityError:
                log.info("episode %s was opened by another sweep", row["open_key"])
        keys = mine
    opened = _open_by_key(store, keys)
    return [opened[k] for k in keys if k in opened]


def _open_by_key(store: Store, keys: list[str]) -> dict[str, Episode]:
    found: dict[str, Episode] = {}
    with store.session() as session:
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            for e in session.exec(select(Episode).where(col(Episode.open_key).in_(chunk))):
                found[e.open_key or ""] = e
    return found


def _load(store: Store, episode_id: int | None) -> Episode:
    with store.session() as session:
        episode = session.get(Episode, episode_id)
        assert episode is not None
        return episode


def _resolution(episode: Any, scan: Scan) -> str:
    rule = scan.rules.get(episode.policy_id)
    level = scan.index.level(episode.device_id)
    if rule is None:
        return "the policy was deleted"
    if episode.action == "warn" and rule.action != "warn":
        return f"the policy no longer warns (maximum {rule.maximum.wire}, action {rule.action})"
    if episode.action != "warn" and not rule.blocks:
        return f"the policy no longer blocks (maximum {rule.maximum.wire}, action {rule.action})"
    if level is not None and level <= rule.maximum:
        return f"back within the limit (device {level.wire}, allowed up to {rule.maximum.wire})"
    if level is None:
        return "Defender no longer lists the device as onboarded"
    return "the policy no longer applies to the app on this device"


def back_within_limit(episode: Episode) -> bool:
    return episode.resolution.startswith("back within the limit")


def _snoozes_over(store: Store, at: datetime) -> list[Episode]:
    """Open, unacknowledged episodes whose snooze ran out: each surfaces once, then the snooze is cleared."""
    table = Episode.__table__  # type: ignore[attr-defined]
    with store.session() as session:
        due = list(session.exec(select(Episode).where(
            Episode.state == OPEN, col(Episode.snoozed_until).is_not(None), col(Episode.snoozed_until) <= at,
            Episode.acknowledged_by == "")))
    over: list[Episode] = []
    for episode in due:
        with store.engine.begin() as conn:
            done = conn.execute(update(table).where(
                table.c.id == episode.id, table.c.version == episode.version,
            ).values(snoozed_until=None, version=episode.version + 1))
        if done.rowcount:
            over.append(_load(store, episode.id))
    return over


def _announce(store: Store, notifier: AlertNotifier, changes: _Changes, run: SweepRun, settings: WatchSettings,
              channel: str | None, result: SweepResult, *, resumed: bool = False) -> None:
    """Cards one by one, or one digest when a sweep brings more than the threshold at once, or any
    number just after enforcement came back on: what was true all along is one message, not a flood."""
    assert run.id is not None
    if channel and (len(changes.new) > settings.digest_threshold or (resumed and len(changes.new) > 1)):
        kind = "resumed" if resumed else "new"
        key = digest_key(run.id, kind)
        _mark(store, changes.new, digest_key=key)
        notifier.digest(key, channel, kind, changes.new, run)
        result.digests += 1
    elif channel:
        for episode in changes.new:
            _mark(store, [episode], card_key=card_key(episode))
            notifier.opened(episode, channel)
    for episode in changes.changed:
        notifier.changed(episode)
    if channel and len(changes.resolved) > settings.digest_threshold:
        # One digest instead of N edits and N thread replies; a card left behind heals when clicked.
        key = digest_key(run.id, "resolved")
        _mark(store, changes.resolved, resolved_in_digest=True)
        notifier.digest(key, channel, "resolved", changes.resolved, run)
        result.digests += 1
    else:
        for episode in changes.resolved:
            notifier.resolved(episode)
    for episode in changes.snooze_over:
        notifier.snooze_over(episode)


def _mark(store: Store, episodes: list[Episode], **values: Any) -> None:
    """Set the same columns on some episodes, in the database and on the objects in hand."""
    table = Episode.__table__  # type: ignore[attr-defined]
    ids = [e.id for e in episodes]
    for episode in episodes:
        for name, value in values.items():
            setattr(episode, name, value)
    for start in range(0, len(ids), 500):
        with store.engine.begin() as conn:
            conn.execute(update(table).where(table.c.id.in_(ids[start:start + 500])).values(**values))


def _dm_users(store: Store, notifier: AlertNotifier, directory: SlackDirectory | None, changes: _Changes,
              settings: WatchSettings, at: datetime, sleep: Callable[[float], None]) -> None:
    """Tell each affected user their app is blocked, and again when it's over (setting: dm_blocked_users)."""
    ids = SlackIds(store, directory, settings, at, sleep)
    mails = [u.get("mail", "") for e in (*changes.new, *changes.resolved) for u in e.user_list]
    ids.preload(mails)
    for kind, episodes in (("blocked", changes.new), ("unblocked", changes.resolved)):
        for episode in episodes:
            for person in episode.user_list:
                found, slack_id = ids.resolve(person.get("mail", ""))
                if found is not Found.YES:
                    continue
                key = f"block-dm:{episode.id}:{person['id']}:{kind}"
                if kind == "blocked":
                    notifier.user_blocked(key, slack_id, episode)
                else:
                    notifier.user_unblocked(key, slack_id, episode)


# ---- the buttons ----------------------------------------------------------------------------------------


def get_episode(store: Store, episode_id: int) -> Episode | None:
    with store.session() as session:
        return session.get(Episode, episode_id)


def acknowledge(store: Store, episode_id: int, user: str, at: datetime) -> Episode | None:
    """Record who acknowledged an open episode (first one wins); the card shows it."""
    return _button(store, episode_id, lambda e: not e.acknowledged_by,
                   acknowledged_by=user[:64], acknowledged_at=at, snoozed_until=None)


def snooze(store: Store, episode_id: int, user: str, hours: int, at: datetime) -> Episode | None:
    """Quiet an open episode for `hours`; if still blocked then, the sweep raises it again in its thread."""
    episode = get_episode(store, episode_id)
    snoozes = (episode.snoozes if episode else 0) + 1
    return _button(store, episode_id, lambda e: True, snoozed_until=at + timedelta(hours=hours),
                   snoozed_by=user[:64], snoozes=snoozes)


def _button(store: Store, episode_id: int, applies: Callable[[Episode], bool], **values: Any) -> Episode | None:
    table = Episode.__table__  # type: ignore[attr-defined]
    for _ in range(3):  # a sweep may bump the version between our read and our write
        episode = get_episode(store, episode_id)
        if episode is None or episode.state != OPEN or not applies(episode):
            return episode
        with store.engine.begin() as conn:
            done = conn.execute(update(table).where(
                table.c.id == episode_id, table.c.version == episode.version, table.c.state == OPEN,
            ).values(**values, version=episode.version + 1))
        if done.rowcount:
            return get_episode(store, episode_id)
    return get_episode(store, episode_id)


def opened_for(episode: Episode, at: datetime) -> timedelta:
    """How long the episode lasted (or has lasted)."""
    end = as_utc(episode.resolved_at) or at
    start = as_utc(episode.opened_at) or at
    return max(timedelta(0), end - start)
