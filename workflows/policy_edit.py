"""Change kinds that edit and delete an existing Android app protection policy, each behind four eyes.

**Edit** (`EDIT`) carries only what changes, each setting with the value the requester saw ("before")
and the value asked for ("after"):

    {"policy_id": "T_…",
     "settings": {"maximumAllowedDeviceThreatLevel": {"before": "notConfigured", "after": "low"}},
     "apps": {"before": ["com.microsoft.office.outlook"], "after": ["com.microsoft.office.outlook",
                                                                    "com.contoso.expenses"]}}

`settings` may name any subset of `SETTABLE` (Graph's wire names and values; it may be empty when only
the apps change); `apps` (package ids) is absent when the apps stay. A form files it, and so can drift
detection, to put back what someone changed in the portal. `plan()` reads the policy: a setting already
at "after" is left out, one at neither value is refused (it is not what the requester saw). The card
shows before → after for each setting and the exact bodies: one PATCH with only the changed properties
(none when only the apps change), and `targetApps` only when the apps change.

`apply()` runs under the policy's lease and re-reads it first. If a setting (or the app list) about to
change is at neither its "before" nor its "after" value, someone changed it since approval: it raises
a `UserError` before writing anything, so the request ends *failed* with what was found, and nothing
is overwritten. Otherwise it writes what is still at "before" and leaves what is already at "after",
so running it again (a retry, a resumed run) writes nothing twice.

**Delete** (`DELETE`): `{"policy_id": "T_…"}`. The card says who the policy covers now (its groups by
name, with member counts for the first few) and that their apps lose this protection. `apply()`
re-reads: a policy already gone is a recorded no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.errors import UserError
from bot.microsoft import bodies
from bot.microsoft.errors import MicrosoftError, NotFound
from bot.microsoft.graph import POLICIES
from bot.microsoft.models import AndroidPolicy, AppGroupType, Group, TargetKind, split_flags
from bot.mrkdwn import cut_plain
from bot.text import count
from workflows.changes import GraphCall, Outcome, Plan
from workflows.execution import Execution
from workflows.policies import (
    ACTION_LABELS,
    APP_GROUP_LABELS,
    MANAGEMENT_LEVEL_LABELS,
    PACKAGE_EXAMPLE,
    PARTNER_PRIORITY_LABELS,
    THREAT_LEVEL_LABELS,
    apps_list_label,
    bad_package_ids,
    label,
)

EDIT = "policy_edit"
DELETE = "policy_delete"

SELECTED = AppGroupType.SELECTED_PUBLIC_APPS.value
NAME_SHOWN = 150  # a name or description in a card line; the target and title cut it too
GROUPS_COUNTED = 10  # member counts cost one Graph call per group: the delete card counts this many
GROUPS_NAMED = 25  # and names this many


class EditGraph(Protocol):
    def iter_android_policies(self) -> Iterable[AndroidPolicy]: ...

    def get_android_policy(self, policy_id: str) -> AndroidPolicy: ...

    def patch_android_policy(self, policy_id: str, changes: Mapping[str, Any]) -> None: ...

    def set_target_apps(self, policy_id: str, package_ids: Iterable[str], app_group_type: Any) -> None: ...

    def delete_android_policy(self, policy_id: str) -> None: ...

    def get_group(self, group_id: str) -> Group: ...

    def group_member_count(self, group_id: str) -> int: ...


# ---- the settings an edit may change --------------------------------------------------------------


def _text(value: Any) -> str:
    """Text as compared: stripped, and with one kind of line ending (Slack's inputs give `\n`, the portal `\r\n`)."""
    return "" if value is None else str(value).replace("\r\n", "\n").replace("\r", "\n").strip()


def _levels(value: Any) -> frozenset[str]:
    """A flags enum as a set; Graph's empty value and `unspecified` both mean every device type."""
    raw = ",".join(str(v) for v in value) if isinstance(value, list | tuple) else _text(value)
    return split_flags(raw) or frozenset({"unspecified"})


def _quoted(value: Any) -> str:
    text = _text(value)
    return f"'{cut_plain(text, NAME_SHOWN)}'" if text else "(none)"


def _show_levels(value: Any) -> str:
    order = list(MANAGEMENT_LEVEL_LABELS)
    chosen = sorted(_levels(value), key=lambda v: order.index(v) if v in order else len(order))
    return ", ".join(MANAGEMENT_LEVEL_LABELS.get(v, v) for v in chosen)


def _patched(name: str) -> Callable[[Any], Any]:
    """The value as the PATCH body will carry it (bodies.py checks it, ValueError in words)."""
    return lambda value: bodies.policy_patch_body({name: value})[name]


def _app_group(value: Any) -> str:
    return str(bodies.target_apps_body([], str(value))["appGroupType"])


@dataclass(frozen=True)
class Setting:
    name: str  # Graph's property name (androidManagedAppProtection, and the draft model's field)
    label: str  # what people read
    show: Callable[[Any], str]
    same: Callable[[Any, Any], bool]
    check: Callable[[Any], Any]  # the "after" value as it will be sent; ValueError in words
    patched: bool = True  # False: written with targetApps, not PATCH


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("displayName", "Name", _quoted, lambda a, b: _text(a) == _text(b), _patched("displayName")),
    Setting("description", "Description", _quoted, lambda a, b: _text(a) == _text(b), _patched("description")),
    Setting("maximumAllowedDeviceThreatLevel", "Max allowed device threat level",
            lambda v: label(THREAT_LEVEL_LABELS, v), lambda a, b: (a or "notConfigured") == (b or "notConfigured"),
            _patched("maximumAllowedDeviceThreatLevel")),
    Setting("mobileThreatDefenseRemediationAction", "Action above it", lambda v: label(ACTION_LABELS, v),
            lambda a, b: a == b, _patched("mobileThreatDefenseRemediationAction")),
    Setting("mobileThreatDefensePartnerPriority", "Primary MTD service",
            lambda v: label(PARTNER_PRIORITY_LABELS, v), lambda a, b: (a or None) == (b or None),
            _patched("mobileThreatDefensePartnerPriority")),
    Setting("targetedAppManagementLevels", "Device types", _show_levels, lambda a, b: _levels(a) == _levels(b),
            _patched("targetedAppManagementLevels")),
    Setting("appGroupType", "App group", lambda v: label(APP_GROUP_LABELS, v),
            lambda a, b: (a or SELECTED) == (b or SELECTED), _app_group, patched=False),
)}
SETTABLE: tuple[str, ...] = tuple(SETTINGS)
SHORT_LABELS = {"maximumAllowedDeviceThreatLevel": "threat level", "mobileThreatDefenseRemediationAction": "action",
                "mobileThreatDefensePartnerPriority": "primary MTD service",
                "targetedAppManagementLevels": "device types", "appGroupType": "app group", "displayName": "name",
                "description": "description"}
TOP_LEVEL = frozenset({"policy_id", "settings", "apps", "policy_name"})


def current_settings(policy: AndroidPolicy) -> dict[str, Any]:
    """What an edit form or a drift check compares against: each settable property as Graph returned it."""
    return {name: getattr(policy, name) for name in SETTABLE}


# ---- reading a change ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delta:
    before: Any
    after: Any


@dataclass(frozen=True)
class AppsDelta:
    before: list[str]
    after: list[str]

    @property
    def added(self) -> list[str]:
        had = set(self.before)
        return [p for p in self.after if p not in had]

    @property
    def removed(self) -> list[str]:
        keeps = set(self.after)
        return [p for p in self.before if p not in keeps]

    def built_from(self, current: Sequence[str]) -> list[str]:
        """The whole new list from the current one: what is removed goes, what is added is appended."""
        removed = set(self.removed)
        kept = [p for p in dict.fromkeys(current) if p not in removed]
        return kept + [p for p in self.added if p not in set(kept)]


@dataclass(frozen=True)
class EditChange:
    policy_id: str
    settings: dict[str, Delta]
    apps: AppsDelta | None


def _package_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise UserError(f"The apps' {where} list must be a list of Android package ids.")
    return list(dict.fromkeys(p.strip() for p in value if p.strip()))


def read_edit(change: Mapping[str, Any]) -> EditChange:
    """The EDIT payload, checked: known settings with valid "after" values, package ids that are ids."""
    if not isinstance(change, Mapping):
        raise UserError("An edit names a policy and what changes in it.")
    extra = sorted(str(k) for k in change if k not in TOP_LEVEL)
    if extra:
        raise UserError(f"An edit carries policy_id, settings and apps, not {', '.join(extra)}.")
    policy_id = _text(change.get("policy_id"))
    if not policy_id:
        raise UserError("Which policy? The edit has no policy id.")
    raw = change.get("settings") or {}
    if not isinstance(raw, Mapping):
        raise UserError("An edit's settings map each setting to its before and after values.")
    unknown = [str(name) for name in raw if name not in SETTINGS]
    if unknown:
        known = "; ".join(f"{s.label} ({s.name})" for s in SETTINGS.values())
        raise UserError(f"The bot can't change {', '.join(unknown)} of an Android app protection policy; it changes: "
                        f"{known}. Apps are changed with the app list; groups with `/mam assign`.")
    settings: dict[str, Delta] = {}
    for name, delta in raw.items():
        setting = SETTINGS[name]
        if not isinstance(delta, Mapping) or "before" not in delta or "after" not in delta:
            raise UserError(f"The change to {setting.label.lower()} ({name}) needs its before and after values.")
        try:
            after = setting.check(delta["after"])
        except ValueError as exc:
            raise UserError(f"{setting.label}: {exc}.") from None
        if not setting.same(delta["before"], after):
            settings[name] = Delta(delta["before"], after)
    apps: AppsDelta | None = None
    if change.get("apps") is not None:
        raw_apps = change["apps"]
        if not isinstance(raw_apps, Mapping) or "before" not in raw_apps or "after" not in raw_apps:
            raise UserError("The apps' change needs the list before and the list after.")
        before, after = _package_list(raw_apps["before"], "before"), _package_list(raw_apps["after"], "after")
        wrong = bad_package_ids(after)
        if wrong:
            raise UserError(f"{', '.join(cut_plain(w, 80) for w in wrong[:5])}: not an Android package id; "
                            f"use ids like {PACKAGE_EXAMPLE}.")
        if set(before) != set(after):
            apps = AppsDelta(before, after)
    return EditChange(policy_id, settings, apps)


def _read_policy(graph: EditGraph, policy_id: str) -> AndroidPolicy:
    try:
        return graph.get_android_policy(policy_id)
    except NotFound:
        raise UserError(f"There is no Android app protection policy {policy_id} any more.") from None


# ---- edit ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """An edit held against the policy as it is now."""

    to_write: dict[str, Delta]  # still at "before"
    in_place: dict[str, Delta]  # already at "after"
    moved: dict[str, Any]  # at neither: what was found
    apps: str  # "write", "in place", "moved" or "" (no app change)
    found_apps: list[str]

    @property
    def writes_apps(self) -> bool:
        return self.apps == "write" or (self.apps in ("", "in place") and "appGroupType" in self.to_write)


def _read_against(edit: EditChange, policy: AndroidPolicy) -> Reading:
    now = current_settings(policy)
    to_write: dict[str, Delta] = {}
    in_place: dict[str, Delta] = {}
    moved: dict[str, Any] = {}
    for name, delta in edit.settings.items():
        same = SETTINGS[name].same
        if same(now[name], delta.after):
            in_place[name] = delta
        elif same(now[name], delta.before):
            to_write[name] = delta
        else:
            moved[name] = now[name]
    apps, found = "", list(policy.package_ids)
    # under an app set (all or core Microsoft apps) Intune chooses the apps: a list asked for with it is moot
    if edit.apps is not None and _group_after(edit, policy) == SELECTED:
        apps = ("in place" if set(found) == set(edit.apps.after)
                else "write" if set(found) == set(edit.apps.before) else "moved")
    return Reading(to_write, in_place, moved, apps, found)


def _group_after(edit: EditChange, policy: AndroidPolicy) -> str:
    delta = edit.settings.get("appGroupType")
    return str(delta.after) if delta is not None else (policy.appGroupType or SELECTED)


def _apps_to_send(edit: EditChange, policy: AndroidPolicy) -> list[str]:
    """targetApps replaces the list: the whole new one, built from the current one."""
    current = list(policy.package_ids)
    if edit.apps is not None:
        return edit.apps.built_from(current)
    return current if _group_after(edit, policy) == SELECTED else []  # an app set: Intune fills it in


def _setting_line(name: str, delta: Delta, side: str) -> str:
    setting = SETTINGS[name]
    return f"{setting.label}: {setting.show(delta.before if side == 'before' else delta.after)}"


def _apps_lines(apps: AppsDelta) -> tuple[str, str]:
    before = f"Apps ({len(apps.before)}): {apps_list_label(apps.before)}"
    parts = []
    if apps.added:
        parts.append(f"add {apps_list_label(apps.added, shown=15)}")
    if apps.removed:
        parts.append(f"remove {apps_list_label(apps.removed, shown=15)}")
    return before, f"Apps ({len(apps.after)}): {'; '.join(parts)}"


def _title_part(name: str, delta: Delta) -> str:
    if name in ("displayName", "description"):
        return f"{SHORT_LABELS[name]} changed" if name == "description" else f"renamed to {_quoted(delta.after)}"
    setting = SETTINGS[name]
    return f"{SHORT_LABELS[name]} {setting.show(delta.before)} → {setting.show(delta.after)}"


class PolicyEdit:
    name = EDIT

    def __init__(self, graph: EditGraph) -> None:
        self.graph = graph

    def plan(self, change: Mapping[str, Any]) -> Plan:
        edit = read_edit(change)
        policy = _read_policy(self.graph, edit.policy_id)
        reading = _read_against(edit, policy)
        if reading.moved or reading.apps == "moved":
            raise UserError(f"'{cut_plain(policy.displayName, NAME_SHOWN)}' is not as the request saw it: "
                            f"{'; '.join(self._moved_lines(edit, reading))}. Open the form again to start from "
                            "what it has now.")
        group_after = _group_after(edit, policy)
        if edit.apps is not None and group_after != SELECTED and "appGroupType" not in edit.settings:
            raise UserError(f"Apps are picked one by one only for selected apps; this policy protects "
                            f"{label(APP_GROUP_LABELS, group_after)}, whose apps Intune chooses. Change its app "
                            "group to selected apps too.")
        settings = reading.to_write  # what is already at "after" is left out
        apps = edit.apps if reading.apps == "write" else None
        if not settings and apps is None:
            raise UserError(f"'{cut_plain(policy.displayName, NAME_SHOWN)}' already has these settings: there is "
                            "nothing to change.")
        pruned = EditChange(edit.policy_id, settings, apps)
        self._refuse_a_taken_name(pruned, policy)
        path = f"{POLICIES}/{policy.id}"
        patch = {name: delta.after for name, delta in settings.items() if SETTINGS[name].patched}
        calls: list[GraphCall] = []
        if patch:
            calls.append(GraphCall("PATCH", path, bodies.policy_patch_body(patch)))
        if apps is not None or "appGroupType" in settings:
            calls.append(GraphCall("POST", f"{path}/targetApps",
                                   bodies.target_apps_body(_apps_to_send(pruned, policy), group_after)))
        before = [_setting_line(n, d, "before") for n, d in settings.items()]
        after = [_setting_line(n, d, "after") for n, d in settings.items()]
        if apps is not None:
            apps_before, apps_after = _apps_lines(apps)
            before.append(apps_before)
            after.append(apps_after)
        parts = [_title_part(n, d) for n, d in settings.items()]
        if apps is not None:
            parts.append(f"apps: {len(apps.added)} added, {len(apps.removed)} removed")
        wipes = settings.get("mobileThreatDefenseRemediationAction")
        threat = settings.get("maximumAllowedDeviceThreatLevel")
        level = threat.after if threat is not None else policy.maximumAllowedDeviceThreatLevel
        shown_name = cut_plain(policy.displayName, NAME_SHOWN)
        title = ((f"WIPES work app data above {label(THREAT_LEVEL_LABELS, level)}: "
                  if wipes is not None and wipes.after == "wipe" else "")
                 + f"Edit '{shown_name}': {', '.join(parts)}")
        payload: dict[str, Any] = {
            "policy_id": policy.id, "policy_name": policy.displayName,
            "settings": {n: {"before": d.before, "after": d.after} for n, d in settings.items()},
        }
        if apps is not None:
            payload["apps"] = {"before": apps.before, "after": apps.after}
        return Plan(
            title=cut_plain(title, 500),
            target=cut_plain(f"policy '{shown_name}' ({policy.id})", 500),
            change=payload,
            snapshot={"settings": current_settings(policy), "apps": reading.found_apps},
            calls=calls,
            before="\n".join(before),
            after="\n".join(after),
            key=f"policy:{policy.id.lower()}",
        )

    def apply(self, change: Mapping[str, Any], snapshot: Mapping[str, Any], run: Execution) -> Outcome:
        """Under the policy's lease: re-read; stop on a setting changed since approval; write what remains."""
        edit = read_edit(change)
        try:
            policy = self.graph.get_android_policy(edit.policy_id)
        except NotFound:
            raise UserError(f"The policy {edit.policy_id} ('{change.get('policy_name', '')}') no longer exists: "
                            "nothing was changed.") from None
        reading = _read_against(edit, policy)
        if reading.moved or reading.apps == "moved":
            raise UserError("Changed since approval, so nothing was written (it would overwrite someone else's "
                            f"change): {'; '.join(self._moved_lines(edit, reading))}. File a new request if the "
                            "change is still needed.")
        name = cut_plain(policy.displayName, NAME_SHOWN)
        drift = [f"{SETTINGS[n].label} was already {SETTINGS[n].show(d.after)} (left as it is)"
                 for n, d in reading.in_place.items()]
        if reading.apps == "in place":
            drift.append("the apps were already as approved (left as they are)")
        patch = {n: d.after for n, d in reading.to_write.items() if SETTINGS[n].patched}
        done: list[str] = []
        try:
            if patch:
                run.intend({"patch": patch, "policy": policy.id})
                self.graph.patch_android_policy(policy.id, patch)
                done.append("; ".join(_setting_line(n, reading.to_write[n], "after") for n in patch))
            if reading.writes_apps:
                pending = EditChange(edit.policy_id, reading.to_write, edit.apps if reading.apps == "write" else None)
                packages, group = _apps_to_send(pending, policy), _group_after(pending, policy)
                run.intend({"targetApps": packages, "appGroupType": group, "policy": policy.id})
                self.graph.set_target_apps(policy.id, packages, group)
                done.append(f"apps: {label(APP_GROUP_LABELS, group)}"
                            + (f" ({len(packages)})" if group == SELECTED else ""))
        except MicrosoftError as exc:
            wrote = f" It had written: {'; '.join(done)}." if done else " Nothing was written."
            raise UserError(f"{exc.message}{wrote} Retry writes what is still missing.") from exc
        if not done:
            return Outcome(False, f"'{name}' already had every approved setting: no change made.", drift)
        return Outcome(True, f"Changed '{name}' ({policy.id}): {'; '.join(done)}.", drift)

    def _moved_lines(self, edit: EditChange, reading: Reading) -> Iterator[str]:
        for name, found in reading.moved.items():
            setting, delta = SETTINGS[name], edit.settings[name]
            yield (f"{setting.label} is now {setting.show(found)} (the request saw {setting.show(delta.before)}, "
                   f"to become {setting.show(delta.after)})")
        if reading.apps == "moved" and edit.apps is not None:
            yield (f"the apps are now {apps_list_label(reading.found_apps)} (the request saw "
                   f"{apps_list_label(edit.apps.before)})")

    def _refuse_a_taken_name(self, edit: EditChange, policy: AndroidPolicy) -> None:
        rename = edit.settings.get("displayName")
        if rename is None:
            return
        wanted = " ".join(_text(rename.after).split()).casefold()
        for other in self.graph.iter_android_policies():
            if other.id.lower() != policy.id.lower() and " ".join(other.displayName.split()).casefold() == wanted:
                taken = cut_plain(other.displayName, NAME_SHOWN)
                raise UserError(f"Another Android app protection policy is called '{taken}' ({other.id}); "
                                "choose another name.")


# ---- delete -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    """Who a policy reaches now, in words for the card."""

    lines: list[str]
    people: int  # direct members of the included groups counted
    counted_all: bool  # False: some included groups were not counted (the cap, or a count that failed)
    everyone: str = ""  # "all licensed users" / "all devices" when the policy is assigned to them

    def text(self) -> str:
        if not self.lines:
            return "it is assigned to no group, so it covers nobody now"
        head = f"covers now: {'; '.join(self.lines)}"
        if self.everyone:
            return head
        total = count(self.people, "direct member")
        return f"{head} ({total if self.counted_all else f'at least {total}'} in its included groups)"


def coverage(graph: EditGraph, policy: AndroidPolicy, *, counted: int = GROUPS_COUNTED,
             named: int = GROUPS_NAMED) -> Coverage:
    """Its groups by name, included first, with member counts for the first `counted` (one call each)."""
    lines: list[str] = []
    people, counted_all, everyone, reads = 0, True, "", 0
    ordered = sorted(policy.assignments, key=lambda a: a.target.is_exclusion)
    for n, assignment in enumerate(ordered):
        target = assignment.target
        verb = "excludes" if target.is_exclusion else "includes"
        if not target.groupId:
            whom = {TargetKind.ALL_LICENSED_USERS.value: "all licensed users",
                    TargetKind.ALL_DEVICES.value: "all devices"}.get(target.odata_type, target.odata_type)
            everyone = everyone or whom
            lines.append(f"{verb} {whom}")
            continue
        if n >= named:
            counted_all = counted_all and target.is_exclusion
            continue
        try:
            group_name = graph.get_group(target.groupId).displayName or target.groupId
        except NotFound:
            lines.append(f"{verb} group {target.groupId} (deleted: reaches nobody)")
            continue
        if target.is_exclusion:
            lines.append(f"{verb} {cut_plain(group_name, NAME_SHOWN)}")
            continue
        members = None
        if reads < counted:
            reads += 1
            try:
                members = graph.group_member_count(target.groupId)
            except MicrosoftError:
                members = None
        if members is None:
            counted_all = False
            lines.append(f"{verb} {cut_plain(group_name, NAME_SHOWN)} (not counted)")
        else:
            people += members
            lines.append(f"{verb} {cut_plain(group_name, NAME_SHOWN)} ({count(members, 'member')})")
    rest = len(ordered) - named
    if rest > 0:
        lines.append(f"and {count(rest, 'more group')}")
    return Coverage(lines, people, counted_all, everyone)


def _policy_line(policy: AndroidPolicy) -> str:
    return (f"max threat level {label(THREAT_LEVEL_LABELS, policy.maximumAllowedDeviceThreatLevel)}, "
            f"{label(ACTION_LABELS, policy.mobileThreatDefenseRemediationAction)} above it; "
            f"apps: {_apps_of(policy)}")


def _apps_of(policy: AndroidPolicy) -> str:
    group = policy.appGroupType or SELECTED
    if group == SELECTED:
        listed = apps_list_label(policy.package_ids, shown=8)
        return f"{count(len(policy.package_ids), 'app')}: {listed}" if policy.package_ids else "no apps"
    return f"{label(APP_GROUP_LABELS, group)} ({count(len(policy.package_ids), 'app')})"


def _assignment_keys(policy: AndroidPolicy) -> list[list[Any]]:
    return sorted([[a.target.odata_type, (a.target.groupId or "").lower()] for a in policy.assignments])


class PolicyDelete:
    name = DELETE

    def __init__(self, graph: EditGraph) -> None:
        self.graph = graph

    def plan(self, change: Mapping[str, Any]) -> Plan:
        policy_id = _text(change.get("policy_id"))
        if not policy_id:
            raise UserError("Which policy? The request has no policy id.")
        policy = _read_policy(self.graph, policy_id)
        covered = coverage(self.graph, policy)
        shown_name = cut_plain(policy.displayName, NAME_SHOWN)
        return Plan(
            title=cut_plain(f"DELETE Android app protection policy '{shown_name}'", 500),
            target=cut_plain(f"policy '{shown_name}' ({policy.id})", 500),
            change={"policy_id": policy.id, "policy_name": policy.displayName},
            snapshot={"settings": current_settings(policy), "apps": list(policy.package_ids),
                      "assignments": _assignment_keys(policy)},
            calls=[GraphCall("DELETE", f"{POLICIES}/{policy.id}")],
            before=f"'{shown_name}': {_policy_line(policy)}; {covered.text()}",
            after=(f"no policy '{shown_name}': the people it covers now lose this protection in its apps "
                   f"({_apps_of(policy)}) unless another policy covers them"),
            key=f"policy:{policy.id.lower()}",
        )

    def apply(self, change: Mapping[str, Any], snapshot: Mapping[str, Any], run: Execution) -> Outcome:
        policy_id = _text(change.get("policy_id"))
        name = cut_plain(str(change.get("policy_name") or policy_id), NAME_SHOWN)
        try:
            policy = self.graph.get_android_policy(policy_id)
        except NotFound:
            if run.earlier_intent.get("delete") == policy_id:
                return Outcome(True, f"Deleted '{name}' ({policy_id}): the earlier run of this change deleted it "
                                     "before it stopped.")
            return Outcome(False, f"'{name}' ({policy_id}) was already gone: nothing to delete.")
        if (snapshot.get("assignments") is not None and _assignment_keys(policy) != snapshot["assignments"]
                and not run.earlier_intent.get("delete")):
            # the approver approved taking protection away from whom the card named: it covers others now
            raise UserError(f"Changed since approval, so nothing was deleted: '{name}': its groups changed since the "
                            "request, so it covers other people than the card said. File the delete again to see "
                            "who it covers now.")
        drift = []
        if _text(policy.displayName) != _text(change.get("policy_name")):  # the same policy (by id), renamed
            drift.append(f"it was renamed since the request, to '{cut_plain(policy.displayName, NAME_SHOWN)}'")
        run.intend({"delete": policy.id})
        try:
            self.graph.delete_android_policy(policy.id)
        except NotFound:
            return Outcome(False, f"'{name}' ({policy.id}) was deleted by someone else meanwhile: nothing to delete.",
                           drift)
        return Outcome(True, f"Deleted '{name}' ({policy.id}).", drift)
