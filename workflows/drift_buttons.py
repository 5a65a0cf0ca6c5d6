"""The drift card's two buttons: "Accept as the new baseline" (`accept_drift`) and "Revert" (`revert_drift`,
which files the change requests `revert_plan` finds, through approval as usual).

They act on a report the poll (`workflows.drift`) opened, through its guarded report and snapshot writes, and
compare with `workflows.drift_compare`; the poll never needs them, so they live apart from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.clock import as_utc
from bot.errors import UserError
from bot.microsoft import CONNECTOR_WRITABLE_FLAGS
from bot.microsoft.errors import MicrosoftError
from bot.store.db import Store
from bot.store.drift import ACCEPTED, CHANGED, CREATED, DELETED, OPEN, DriftBaseline, DriftReport
from bot.store.models import ChangeRequest
from workflows.changes import OPEN_STATES, ChangeService
from workflows.connector_change import ANDROID_MAM
from workflows.connector_change import KIND as CONNECTOR_TOGGLE
from workflows.drift import drop_baseline, get_report, load_baselines, save_baseline, update_report
from workflows.drift_compare import CONNECTOR, POLICY, SELECTED, Difference, Seen, difference
from workflows.policy_changes import ASSIGN
from workflows.policy_edit import DELETE, EDIT, SETTINGS

__all__ = ["Revert", "accept_drift", "revert_drift", "revert_plan"]


# ---- the buttons ---------------------------------------------------------------------------------------


def accept_drift(store: Store, report_id: int, user: str, at: datetime) -> tuple[DriftReport | None, str]:
    """Make what the card shows the new snapshot; (the report as it is now, a note for the clicker or "")."""
    for _ in range(3):  # a poll may bump the version between our read and our write
        report = get_report(store, report_id)
        if report is None:
            return None, "I have no record of that change any more."
        if report.state != OPEN:
            return report, _already(report)
        closed = update_report(store, report, state=ACCEPTED, open_key=None, decided_by=user[:64], decided_at=at,
                         updated_at=at, resolution="accepted as the new baseline")
        if closed is None:
            continue
        if report.change == DELETED:
            drop_baseline(store, report.target_key)
        else:
            after = report.loaded("after")
            item = Seen(report.target_key, report.kind, report.object_id, report.name, after)
            base = load_baselines(store).get(report.target_key)
            save_baseline(store, base, _with_graph_marks(item, base), after, at, f"accepted by {user}")
        return closed, ""
    return get_report(store, report_id), "The card changed while you clicked; look at it again."


def _with_graph_marks(item: Seen, base: DriftBaseline | None) -> Seen:
    if base is None:
        return item
    return Seen(item.key, item.kind, item.id, item.name, item.state, base.last_modified, base.object_version)


def _already(report: DriftReport) -> str:
    if report.state == ACCEPTED:
        return "That change was already accepted as the new baseline."
    return f"That change is settled already: {report.resolution or report.state}."


@dataclass(frozen=True)
class Revert:
    """The change requests that put an object back to its snapshot, and what they can't put back."""

    requests: list[tuple[str, dict[str, Any]]]  # (kind, change) to file
    cannot: list[str]  # in words


def revert_plan(report: DriftReport) -> Revert:
    """Pure: from the snapshot (`before`) and what was seen (`after`); the audit log plays no part."""
    before, after = report.loaded("before"), report.loaded("after")
    if report.kind == CONNECTOR and report.change != CHANGED:
        return Revert([], ["the connector is set up and removed in the Defender portal, not by the bot"])
    if report.change == DELETED:
        return Revert([], ["a deleted policy can't be restored: accept it, or create it again with `/mam policy new`"])
    if report.kind == POLICY and report.change == CREATED:
        return Revert([(DELETE, {"policy_id": report.object_id, "policy_name": report.name})], [])
    change = difference(report.kind, before, after)
    if report.kind == CONNECTOR:
        flags = [(CONNECTOR_TOGGLE, {"flag": name, "value": bool(old)}) for name, (old, _new) in change.settings.items()
                 if name in CONNECTOR_WRITABLE_FLAGS and name != ANDROID_MAM]
        cannot = [f"{name} (change it on the connector's page in Intune)" for name in change.settings
                  if name not in CONNECTOR_WRITABLE_FLAGS]
        return Revert(list(flags), cannot)
    requests: list[tuple[str, dict[str, Any]]] = []
    settings = {name: {"before": new, "after": old} for name, (old, new) in change.settings.items() if name in SETTINGS}
    cannot = [f"{name} (the bot doesn't change it)" for name in change.settings if name not in SETTINGS]
    edit: dict[str, Any] = {"policy_id": report.object_id, "policy_name": report.name, "settings": settings}
    old_group = (before.get("settings") or {}).get("appGroupType") or SELECTED
    new_group = (after.get("settings") or {}).get("appGroupType") or SELECTED
    if old_group == SELECTED and set(before.get("apps") or []) != set(after.get("apps") or []):
        if new_group == SELECTED:
            edit["apps"] = {"before": list(after.get("apps") or []), "after": list(before.get("apps") or [])}
        else:
            cannot.append("the app list (its app group changed too: set the apps again once it is reverted)")
    if settings or "apps" in edit:
        requests.append((EDIT, edit))
    groups = _group_revert(before.get("assignments") or [], after.get("assignments") or [])
    if groups.get("include") or groups.get("exclude") or groups.get("remove"):
        requests.append((ASSIGN, {"policy_id": report.object_id, **groups}))
    cannot += _assignments_not_reverted(change)
    return Revert(requests, cannot)


def _group_revert(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, list[str]]:
    def groups(entries: list[dict[str, Any]]) -> dict[str, str]:
        return {str(a["groupId"]): str(a["target"]) for a in entries if a.get("groupId") and not a.get("policySet")}

    was, now = groups(before), groups(after)
    return {"include": sorted(g for g, how in was.items() if how == "include" and now.get(g) != "include"),
            "exclude": sorted(g for g, how in was.items() if how == "exclude" and now.get(g) != "exclude"),
            "remove": sorted(g for g in now if g not in was)}


def _assignments_not_reverted(change: Difference) -> list[str]:
    """Assignments ASSIGN can't put back: all users or devices, assignment filters, policy sets."""
    out = []
    for entry in (*change.groups_added, *change.groups_removed):
        if not entry.get("groupId"):
            out.append(f"the assignment to {entry.get('target')} (change it in Intune)")
        elif entry.get("filter") or entry.get("policySet"):
            out.append(f"the assignment filter or policy set of group {entry.get('groupId')} (change it in Intune)")
    return list(dict.fromkeys(out))


def revert_drift(store: Store, changes: ChangeService, report_id: int, user: str, at: datetime,
                 *, channel: str = "") -> tuple[DriftReport, list[ChangeRequest], list[str]]:
    """File the change requests that restore the snapshot (approved as usual); UserError in words when there is
    nothing to revert or a revert is already waiting. Returns the report, the requests filed and what can't be
    reverted."""
    report = get_report(store, report_id)
    if report is None:
        raise UserError("I have no record of that change any more.")
    if report.state != OPEN:
        raise UserError(_already(report))
    waiting = [n for n in report.loaded("revert_requests") if _is_open(changes, n)]
    if waiting:
        raise UserError(f"A revert is already waiting for approval: {', '.join(f'#{n}' for n in waiting)}.")
    plan = revert_plan(report)
    if not plan.requests:
        raise UserError(("Nothing here can be reverted by the bot: " + "; ".join(plan.cannot) + ".")
                        if plan.cannot else "There is nothing to revert: it matches the snapshot.")
    claimed = update_report(store, report, reverted_by=user[:64], reverted_at=at, updated_at=at)
    if claimed is None:
        raise UserError("The card changed while you clicked; look at it again and click Revert once more.")
    when = as_utc(claimed.window_start)
    why = (f"Revert a change made outside mam-bot to {'the connector' if report.kind == CONNECTOR else 'policy'} "
           f"'{report.name[:200]}' (drift report #{report.id}): put back the snapshot the bot held"
           + (f" at {when:%Y-%m-%d %H:%M} UTC" if when else "") + ".")
    filed: list[ChangeRequest] = []
    try:
        for kind, change in plan.requests:
            filed.append(changes.file(kind, change, requester=user, justification=why, origin_channel=channel))
    except (UserError, MicrosoftError) as exc:
        _record_filed(store, claimed, filed, user if filed else "")
        reason = exc.message if isinstance(exc, UserError) else str(exc)
        if not filed:
            raise UserError(f"Nothing was filed: {reason}") from exc
        raise UserError(f"Filed {', '.join(f'#{r.id}' for r in filed)}, but not the rest: {reason}") from exc
    done = _record_filed(store, claimed, filed, user) or claimed
    return done, filed, plan.cannot


def _record_filed(store: Store, report: DriftReport, filed: list[ChangeRequest], user: str) -> DriftReport | None:
    for _ in range(3):
        current = get_report(store, report.id or 0)
        if current is None:
            return None
        ids = [*current.loaded("revert_requests"), *(r.id for r in filed)]
        done = update_report(store, current, revert_requests=json.dumps(ids), reverted_by=user[:64])
        if done is not None:
            return done
    return None


def _is_open(changes: ChangeService, request_id: int) -> bool:
    request = changes.get(request_id)
    return request is not None and request.state in {s.value for s in OPEN_STATES}
