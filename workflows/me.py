"""`/mam me`: what the bot knows about one person's own devices and work apps, and what each device's state means.

Everything comes from the database: the registrations index (`workflows.index_store`), the open
block episodes and the onboarding case the threat sweep keeps (`bot.store.watch`), the licence table
(`workflows.licences`) and the enforcement row (`workflows.enforcement`). Nothing here asks Defender.

Who the person is comes first (`identify`): the mail address Slack shows for them must name exactly one
Entra user, or the answer is why the bot can't tell. The view (`my_view`) is then built for that user id
only; no caller can ask for anyone else's, because no function here takes anything but the id that
`identify` gave back. The decisions per device (`decide`) are pure, for the tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from sqlmodel import col, select

from bot.clock import as_utc
from bot.microsoft.errors import MicrosoftError
from bot.store.db import Store
from bot.store.index import OFF, IndexRow
from bot.store.watch import OPEN, PENDING, Episode, OnboardingCase, last_sweep
from workflows.enforcement import current_enforcement
from workflows.entra_users import Resolved
from workflows.index_store import current_run, rows_for_user
from workflows.licences import licence_gaps
from workflows.onboarding import find_case
from workflows.policies import app_label

__all__ = ["DeviceState", "Finding", "Identity", "MyDevice", "MyView", "NotIdentified", "Resolver", "Why",
           "decide", "identify", "my_view", "open_episodes_of"]

log = logging.getLogger(__name__)

WIPE = "wipe"
WARN = "warn"


# ---- who is asking -----------------------------------------------------------------------------------


class Resolver(Protocol):
    """`workflows.entra_users.EntraUsers`: a mail → the Entra users it names (kept in `entra_user_links`)."""

    def resolve_one(self, email: str) -> Resolved: ...


class Why(StrEnum):
    """Why the bot can't tell who someone is."""

    NO_EMAIL = "no email"  # Slack shows no email (a guest, or the app can't read email addresses)
    NOT_AN_EMAIL = "not an email"  # what Slack shows is no mail address
    NO_MATCH = "no match"  # no Entra user has it
    AMBIGUOUS = "ambiguous"  # two or more Entra users have it
    UNAVAILABLE = "unavailable"  # Microsoft's directory didn't answer


@dataclass(frozen=True)
class Identity:
    """The one Entra user a Slack user's mail names."""

    user_id: str  # lower case
    name: str
    email: str


@dataclass(frozen=True)
class NotIdentified:
    why: Why
    email: str = ""
    detail: str = ""  # for the log, never shown: Microsoft's words


def identify(email: str, users: Resolver) -> Identity | NotIdentified:
    """The Entra user whose mail (or UPN) is exactly the one Slack shows, if exactly one has it."""
    address = (email or "").strip()
    if not address:
        return NotIdentified(Why.NO_EMAIL)
    if "@" not in address:
        return NotIdentified(Why.NOT_AN_EMAIL, address)
    try:
        found = users.resolve_one(address)
    except MicrosoftError as exc:
        log.warning("/mam me: looking up a mail address failed: %s", exc)
        return NotIdentified(Why.UNAVAILABLE, address, str(exc))
    if found.matches > 1:
        return NotIdentified(Why.AMBIGUOUS, address)
    if found.matches == 1 and found.user_id:
        return Identity(found.user_id.strip().lower(), found.name or "", address)
    return NotIdentified(Why.NO_MATCH, address)


# ---- what the bot knows about them ----------------------------------------------------------------------


class DeviceState(StrEnum):
    BLOCKED = "blocked"  # an open block episode: the apps won't open
    WIPED = "wiped"  # the policy's action is wipe: the apps' work data goes at their next check-in
    WARNED = "warned"  # the policy's action is warn: the apps warn and let the person in
    AT_RISK = "at risk"  # above a policy's maximum, but Intune isn't enforcing the check now: not blocked
    WAITING = "waiting"  # a pending onboarding case lists it: Defender isn't set up on it
    UNPROTECTED = "unprotected"  # the account lacks a licence: it can't be protected (and isn't nudged)
    UNMATCHED = "unmatched"  # no Entra device id: the bot can't match it with Defender
    UNCHECKED = "unchecked"  # no threat sweep has run yet
    OK = "ok"  # as of the last sweep


# Worst first: a device with several episodes shows the worst of them.
_ACTION_ORDER = {"block": 0, "blockWhenSettingIsSupported": 0, WIPE: 1, WARN: 2}


@dataclass(frozen=True)
class Finding:
    """One open block episode on the device: which policy, and why."""

    policy: str
    apps: tuple[str, ...]  # friendly names
    level: str  # Defender's level for the device, Graph's spelling
    maximum: str  # the most the policy allows
    action: str  # block, wipe, warn, blockWhenSettingIsSupported
    since: datetime | None


@dataclass(frozen=True)
class MyDevice:
    device_id: str  # Entra device id, lower case; "" when the report had none
    name: str
    model: str
    apps: tuple[str, ...]  # friendly names, sorted
    state: DeviceState
    findings: tuple[Finding, ...] = ()

    @property
    def short_id(self) -> str:
        return self.device_id[:8] + ("…" if len(self.device_id) > 8 else "")


@dataclass(frozen=True)
class MyView:
    identity: Identity
    devices: tuple[MyDevice, ...]
    index_at: datetime | None  # when the registrations index was last refreshed; None: never
    sweep_at: datetime | None  # the last threat sweep; None: none has run
    enforcement: str  # on, off, unknown
    gap: str | None = None  # "no Defender licence", …: the account can't be protected
    onboarding: bool = False  # Defender waits to be set up: show the steps
    packages: tuple[str, ...] = field(default=())  # every package the person's apps are known by, sorted

    @property
    def enforced(self) -> bool:
        """False only when the bot knows Intune isn't evaluating Defender's level now (unknown counts as on)."""
        return self.enforcement != OFF

    def having(self, *states: DeviceState) -> list[MyDevice]:
        return [d for d in self.devices if d.state in states]


def open_episodes_of(store: Store, user_id: str) -> list[Episode]:
    """Open episodes whose users include exactly this Entra user id."""
    wanted = user_id.strip().lower()
    if not wanted:
        return []
    query = select(Episode).where(Episode.state == OPEN, col(Episode.users).contains(wanted, autoescape=True))
    with store.session() as session:
        found = list(session.exec(query))
    return [e for e in found if any(str(u.get("id", "")).lower() == wanted for u in e.user_list)]


def my_view(store: Store, who: Identity) -> MyView:
    """Everything `/mam me` shows for `who`, read from the database."""
    run = current_run(store)
    rows = rows_for_user(store, who.user_id)
    case = find_case(store, who.user_id)
    sweep = last_sweep(store)
    return decide(
        who, rows=rows, episodes=open_episodes_of(store, who.user_id), case=case,
        gap=licence_gaps(store, [who.user_id]).get(who.user_id),
        enforcement=current_enforcement(store).state,
        index_at=(run.finished_at or run.started_at) if run is not None else None,
        sweep_at=sweep.finished_at if sweep is not None else None,
    )


@dataclass
class _Draft:
    device_id: str
    name: str
    model: str
    apps: set[str] = field(default_factory=set)
    episodes: list[Episode] = field(default_factory=list)
    waiting: bool = False


def decide(who: Identity, *, rows: Sequence[IndexRow], episodes: Iterable[Episode], case: OnboardingCase | None,
           gap: str | None, enforcement: str, index_at: datetime | None, sweep_at: datetime | None) -> MyView:
    """Pure: each device the person has (index rows, their open episodes, their pending onboarding case) and
    its state, worst evidence first: no device id, an open episode, a licence gap, waiting for Defender, OK."""
    drafts: dict[str, _Draft] = {}
    packages: set[str] = set()

    def draft(device_id: str, name: str, model: str) -> _Draft:
        key = device_id.strip().lower() or f"unmatched:{name}|{model}"
        if key not in drafts:
            drafts[key] = _Draft(device_id.strip().lower(), name, model)
        found = drafts[key]
        found.name, found.model = found.name or name, found.model or model
        return found

    for row in rows:
        d = draft(row.device_id, row.device_name, " ".join(p for p in (row.manufacturer, row.device_model) if p))
        if row.package:
            packages.add(row.package)
            d.apps.add(app_label(row.package))
        elif row.app_name:
            d.apps.add(row.app_name)
    for episode in episodes:
        d = draft(episode.device_id, episode.device_name, episode.device_model)
        d.episodes.append(episode)
        packages.update(episode.app_list)
        d.apps.update(app_label(p) for p in episode.app_list)
    pending = case is not None and case.state == PENDING
    if pending and case is not None:
        packages.update(case.app_list)
        for listed in case.device_list:
            d = draft(str(listed.get("id") or ""), str(listed.get("name") or ""), str(listed.get("model") or ""))
            d.waiting = True
            if not d.apps:
                d.apps.update(app_label(p) for p in case.app_list)

    enforced = enforcement != OFF
    devices = [_device(d, enforced=enforced, gap=gap, swept=sweep_at is not None) for d in drafts.values()]
    order = list(DeviceState)
    devices.sort(key=lambda d: (order.index(d.state), d.name.casefold(), d.device_id))
    return MyView(identity=who, devices=tuple(devices), index_at=as_utc(index_at), sweep_at=as_utc(sweep_at),
                  enforcement=enforcement, gap=gap, onboarding=pending and not gap,
                  packages=tuple(sorted(packages)))


def _device(d: _Draft, *, enforced: bool, gap: str | None, swept: bool) -> MyDevice:
    findings = tuple(sorted((Finding(
        policy=e.policy_name, apps=tuple(sorted(app_label(p) for p in e.app_list)), level=e.level,
        maximum=e.maximum, action=e.action, since=as_utc(e.opened_at)) for e in d.episodes),
        key=lambda f: (_ACTION_ORDER.get(f.action, 0), f.policy)))
    state = _state(d, findings, enforced=enforced, gap=gap, swept=swept)
    return MyDevice(device_id=d.device_id, name=d.name, model=d.model, apps=tuple(sorted(d.apps, key=str.casefold)),
                    state=state, findings=findings)


def _state(d: _Draft, findings: tuple[Finding, ...], *, enforced: bool, gap: str | None, swept: bool) -> DeviceState:
    if not d.device_id:
        return DeviceState.UNMATCHED
    if findings:
        if not enforced:
            return DeviceState.AT_RISK
        worst = findings[0].action
        return DeviceState.WIPED if worst == WIPE else DeviceState.WARNED if worst == WARN else DeviceState.BLOCKED
    if gap:
        return DeviceState.UNPROTECTED
    if d.waiting:
        return DeviceState.WAITING
    return DeviceState.OK if swept else DeviceState.UNCHECKED
