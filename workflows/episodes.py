"""Episodes: a (device, policy) block (or warning) from the sweep that first saw it to the one that saw it end.

Episodes live in the database, so two sweeps, a restart or a new leader continue the same story:
an episode opens once (a unique key while open), each change bumps its version (each card edit
has its own outbox key), and it resolves once (a guarded UPDATE). `reconcile` makes them match one
complete scan, `announce` queues the cards, digests and DMs, and the buttons (Acknowledge, Snooze)
change them here too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import insert, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.clock import as_utc
from bot.microsoft.errors import MicrosoftError
from bot.microsoft.models import User
from bot.store.db import Store
from bot.store.index import Enforcement, EntraUserLink
from bot.store.watch import OPEN, RESOLVED, Episode, SweepRun
from workflows.onboarding import (
    Found,
    SlackDirectory,
    SlackIds,
    WatchSettings,
)
from workflows.scan import Block, Scan

log = logging.getLogger(__name__)


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
class Changes:
    """What one reconcile changed, for `announce`."""

    new: list[Episode] = field(default_factory=list)
    changed: list[Episode] = field(default_factory=list)
    resolved: list[Episode] = field(default_factory=list)
    snooze_over: list[Episode] = field(default_factory=list)


class UserReader(Protocol):
    def get_users(self, ids: Iterable[str]) -> dict[str, User]: ...


def people(reader: UserReader, store: Store, scan: Scan, errors: list[str]) -> dict[str, dict[str, str]]:
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
            errors.append(f"reading blocked users' names: {exc}")
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


def reconcile(store: Store, scan: Scan, people: Mapping[str, dict[str, str]], at: datetime) -> Changes:
    changes = Changes()
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


def announce(store: Store, notifier: AlertNotifier, changes: Changes, run: SweepRun, settings: WatchSettings,
             channel: str | None, *, resumed: bool = False) -> int:
    """Cards one by one, or one digest when a sweep brings more than the threshold at once, or any
    number just after enforcement came back on: what was true all along is one message, not a flood.
    Returns how many digests it queued."""
    assert run.id is not None
    digests = 0
    if channel and (len(changes.new) > settings.digest_threshold or (resumed and len(changes.new) > 1)):
        kind = "resumed" if resumed else "new"
        key = digest_key(run.id, kind)
        _mark(store, changes.new, digest_key=key)
        notifier.digest(key, channel, kind, changes.new, run)
        digests += 1
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
        digests += 1
    else:
        for episode in changes.resolved:
            notifier.resolved(episode)
    for episode in changes.snooze_over:
        notifier.snooze_over(episode)
    return digests


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


def dm_users(store: Store, notifier: AlertNotifier, directory: SlackDirectory | None, changes: Changes,
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
