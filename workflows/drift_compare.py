"""What drift detection compares, and who made a change: the states, their difference, the bot's own changes
and Intune's audit log.

`observe` turns what Graph read into states (`policy_state`, `connector_state`) and `difference` compares a
snapshot with one, setting by setting; `Touched` and `merge` take out what change requests of the bot wrote
(`bot_changes` finds them); `event_row` and `attribution` read the audit log for who else changed an object.
Small types and pure functions but one read of the change requests. The poll (`workflows.drift`) and the buttons
(`workflows.drift_buttons`) both build on them, so they live apart from either.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlmodel import col, select

from bot.clock import as_utc
from bot.microsoft.models import AndroidPolicy, MtdConnector, PolicyAssignment, TargetKind
from bot.store.db import Store
from bot.store.drift import DriftAuditEvent
from bot.store.models import ChangeRequest
from workflows.connector_change import KIND as CONNECTOR_TOGGLE
from workflows.policy_changes import ASSIGN
from workflows.policy_edit import EDIT, SETTINGS, current_settings

__all__ = [
    "CONNECTOR", "POLICY", "SELECTED", "SKEW", "Attribution", "BotChange", "Difference", "Seen", "Touched",
    "attribution", "bot_changes", "connector_state", "difference", "event_row", "fold", "merge", "observe",
    "policy_key", "policy_state", "same_setting",
]

POLICY = "policy"
CONNECTOR = "connector"
SELECTED = "selectedPublicApps"
SKEW = timedelta(minutes=2)  # between Intune's clock, ours and when a write lands
# what the connector's drift compares: its settings, not the service's state or heartbeat
CONNECTOR_SETTINGS: tuple[str, ...] = tuple(
    name for name in MtdConnector.model_fields if name not in ("id", "lastHeartbeatDateTime", "partnerState"))
_TIME = TypeAdapter(datetime)


# ---- what is compared ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One policy or the connector as this poll read it."""

    key: str
    kind: str
    id: str
    name: str
    state: dict[str, Any]
    last_modified: str = ""
    version: str = ""
    connector: MtdConnector | None = None


def policy_key(policy_id: str) -> str:
    return f"{POLICY}:{policy_id.lower()}"


def fold(name: str) -> str:
    return " ".join(name.split()).casefold()


def _assignment(assignment: PolicyAssignment) -> dict[str, Any]:
    target = assignment.target
    if target.groupId:
        kind = "exclude" if target.is_exclusion else "include"
    else:
        kind = {TargetKind.ALL_LICENSED_USERS.value: "allLicensedUsers",
                TargetKind.ALL_DEVICES.value: "allDevices"}.get(target.odata_type, target.odata_type.rsplit(".", 1)[-1])
    narrowed = target.assignment_filter
    return {"target": kind, "groupId": target.groupId.lower() if target.groupId else None,
            "filter": f"{narrowed[0]}:{narrowed[1]}" if narrowed else None,
            "policySet": assignment.sourceId if assignment.from_policy_set else None}


def _sort_key(entry: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(entry.get("groupId") or ""), str(entry.get("target")), str(entry.get("filter") or ""))


def policy_state(policy: AndroidPolicy) -> dict[str, Any]:
    return {"settings": json.loads(json.dumps(current_settings(policy), default=str)),
            "apps": sorted(set(policy.package_ids)),
            "assignments": sorted((_assignment(a) for a in policy.assignments), key=_sort_key)}


def connector_state(connector: MtdConnector) -> dict[str, Any]:
    return {"settings": {name: getattr(connector, name) for name in CONNECTOR_SETTINGS}, "apps": None,
            "assignments": None}


def observe(policies: Iterable[AndroidPolicy], connector: MtdConnector | None) -> dict[str, Seen]:
    seen: dict[str, Seen] = {}
    for policy in policies:
        modified = as_utc(policy.lastModifiedDateTime)
        seen[policy_key(policy.id)] = Seen(policy_key(policy.id), POLICY, policy.id, policy.displayName,
                                           policy_state(policy), modified.isoformat() if modified else "",
                                           policy.version or "")
    if connector is not None:
        key = f"{CONNECTOR}:{connector.id.lower()}"
        seen[key] = Seen(key, CONNECTOR, connector.id, "Microsoft Defender for Endpoint connector",
                         connector_state(connector), connector=connector)
    return seen


@dataclass(frozen=True)
class Difference:
    """What differs between a snapshot and what was seen, setting by setting."""

    settings: dict[str, tuple[Any, Any]]
    apps_added: tuple[str, ...] = ()
    apps_removed: tuple[str, ...] = ()
    groups_added: tuple[dict[str, Any], ...] = ()
    groups_removed: tuple[dict[str, Any], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.settings or self.apps_added or self.apps_removed or self.groups_added
                    or self.groups_removed)


def same_setting(kind: str, name: str, before: Any, after: Any) -> bool:
    if kind == POLICY and name in SETTINGS:
        return bool(SETTINGS[name].same(before, after))
    return bool(before == after)


def difference(kind: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> Difference:
    """Pure: `before` and `after` are states as `policy_state`/`connector_state` make them."""
    old, new = dict(before.get("settings") or {}), dict(after.get("settings") or {})
    settings = {name: (old.get(name), new.get(name)) for name in dict.fromkeys([*old, *new])
                if not same_setting(kind, name, old.get(name), new.get(name))}
    apps_added: tuple[str, ...] = ()
    apps_removed: tuple[str, ...] = ()
    if (old.get("appGroupType") or SELECTED) == (new.get("appGroupType") or SELECTED) == SELECTED:
        had, has = set(before.get("apps") or []), set(after.get("apps") or [])
        apps_added, apps_removed = tuple(sorted(has - had)), tuple(sorted(had - has))
    was = {json.dumps(a, sort_keys=True): a for a in before.get("assignments") or []}
    now = {json.dumps(a, sort_keys=True): a for a in after.get("assignments") or []}
    added = tuple(sorted((now[k] for k in now.keys() - was.keys()), key=_sort_key))
    removed = tuple(sorted((was[k] for k in was.keys() - now.keys()), key=_sort_key))
    return Difference(settings, apps_added, apps_removed, added, removed)


# ---- the bot's own changes -----------------------------------------------------------------------------


@dataclass
class Touched:
    """What change requests of the bot wrote to one object since some moment: that much is not drift."""

    everything: bool = False
    settings: set[str] = field(default_factory=set)
    after: dict[str, Any] = field(default_factory=dict)  # what the bot's latest edit wrote to each setting
    apps: bool = False
    groups: set[str] = field(default_factory=set)
    requests: list[int] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.everything or self.settings or self.apps or self.groups)

    def add(self, request: ChangeRequest) -> None:
        try:
            change = json.loads(request.change or "{}")
        except ValueError:
            change = {}
        if request.id is not None:
            self.requests.append(request.id)
        if request.kind == ASSIGN:
            self.groups |= {str(g).lower() for k in ("include", "exclude", "remove") for g in change.get(k) or []}
        elif request.kind == EDIT:
            settings = change.get("settings") or {}
            self.settings |= set(settings)
            self.after.update({name: delta["after"] for name, delta in settings.items()
                               if isinstance(delta, dict) and "after" in delta})
            self.apps = self.apps or change.get("apps") is not None or "appGroupType" in (change.get("settings") or {})
        elif request.kind == CONNECTOR_TOGGLE:
            self.settings.add(str(change.get("flag", "")))
        else:  # a creation, a deletion, or a kind this code doesn't know: all of it is the bot's
            self.everything = True


def merge(snapshot: Mapping[str, Any], live: Mapping[str, Any], touched: Touched) -> dict[str, Any]:
    """The snapshot with what the bot wrote taken from what is seen now."""
    if touched.everything:
        return json.loads(json.dumps(live))
    settings = dict(snapshot.get("settings") or {})
    for name in touched.settings:
        if name not in (live.get("settings") or {}):
            continue
        seen, setting = live["settings"][name], SETTINGS.get(name)
        if name in touched.after and setting is not None and not setting.same(seen, touched.after[name]):
            settings[name] = touched.after[name]  # not what the bot wrote: someone changed it since, which is drift
        else:
            settings[name] = seen
    apps = live.get("apps") if touched.apps else snapshot.get("apps")
    assignments = snapshot.get("assignments")
    if touched.groups and assignments is not None:
        kept = [a for a in assignments if str(a.get("groupId") or "") not in touched.groups]
        moved = [a for a in live.get("assignments") or [] if str(a.get("groupId") or "") in touched.groups]
        assignments = sorted([*kept, *moved], key=_sort_key)
    return {"settings": settings, "apps": apps, "assignments": assignments}


@dataclass(frozen=True)
class BotChange:
    key: str  # the request's target key, lower case ("policy:<id>", "connector:<id>", "policy-name:<name>")
    at: datetime
    request: ChangeRequest


def bot_changes(store: Store, since: datetime) -> list[BotChange]:
    """Change requests of the bot that wrote (or may be writing) since `since`: executing, succeeded, or failed
    after recording an intent to write. A run that failed before writing (e.g. "changed since approval") wrote
    nothing, so whatever changed there is someone else's."""
    with store.session() as session:
        rows = list(session.exec(select(ChangeRequest).where(
            (col(ChangeRequest.executed_at) >= since) | (col(ChangeRequest.state) == "executing"))))
    wrote = [r for r in rows if r.state in ("executing", "succeeded") or (r.state == "failed" and r.intent)]
    return sorted((BotChange((r.target_key or "").lower(), as_utc(r.executed_at) or since, r) for r in wrote),
                  key=lambda change: change.at)


# ---- the audit log -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribution:
    actors: list[dict[str, str]]  # who else than the bot, from the audit log
    events: list[str]
    changed_at: datetime | None
    ours: bool  # the bot's own app wrote to it in the window too


def event_row(item: Mapping[str, Any], own_apps: frozenset[str], at: datetime) -> DriftAuditEvent | None:
    event_id = str(item.get("id") or "").strip().lower()
    try:
        when = as_utc(_TIME.validate_python(item.get("activityDateTime")))
    except ValidationError:
        return None
    if not event_id or len(event_id) > 64:
        return None
    resources = [r for r in item.get("resources") or [] if isinstance(r, dict)]
    raw_actor = item.get("actor")
    actor: Mapping[str, Any] = raw_actor if isinstance(raw_actor, dict) else {}
    app_id = str(actor.get("applicationId") or "").strip().lower()
    properties = [str(p.get("displayName") or "")[:200] for r in resources for p in r.get("modifiedProperties") or []
                  if isinstance(p, dict)]
    return DriftAuditEvent(
        id=event_id, activity_at=when, component=str(item.get("componentName") or "")[:128],
        activity=str(item.get("activity") or item.get("activityType") or "")[:256],
        operation=str(item.get("activityOperationType") or "")[:32],
        resource_ids=json.dumps(sorted({str(r.get("resourceId") or "").strip().lower() for r in resources} - {""})),
        properties=json.dumps(properties[:100]), actor_type=str(actor.get("type") or "")[:64],
        actor_app_id=app_id[:64], actor_app=str(actor.get("applicationDisplayName") or "")[:256],
        actor_upn=str(actor.get("userPrincipalName") or "")[:320], ours=bool(app_id) and app_id in own_apps,
        seen_at=at)


def attribution(events: Iterable[DriftAuditEvent], resource_id: str, since: datetime) -> Attribution:
    wanted = resource_id.lower()
    actors: dict[tuple[str, str], dict[str, str]] = {}
    ids: list[str] = []
    latest: datetime | None = None
    ours = False
    for event in events:
        at = as_utc(event.activity_at)
        if at < since - SKEW or wanted not in json.loads(event.resource_ids or "[]"):
            continue
        if event.ours:
            ours = True
            continue
        ids.append(event.id)
        actors.setdefault((event.actor_upn.lower(), event.actor_app_id), {
            "upn": event.actor_upn, "app": event.actor_app, "app_id": event.actor_app_id, "type": event.actor_type})
        latest = at if latest is None or at > latest else latest
    return Attribution(list(actors.values()), sorted(ids), latest, ours)

