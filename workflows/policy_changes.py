"""Change kinds for Android app protection policies: create one, and change its group assignments.

Both re-read the tenant when they run, so running one again (a retry, or a restart after a crash)
finishes the job instead of doing it twice: a creation finds its policy again by its unique name,
and an assignment change applies only its delta to the assignment set as it is now (`assign`
replaces the whole set, so everything else is written back as it was).

The card is the call: every body a plan shows comes from the function the executor's call uses
(`bodies.policy_create_body` of the same bare draft, `bodies.target_apps_body`,
`bodies.assignment_change`), so approvers read the bodies that are sent, all-users and all-devices
targets and assignment filters included. Assignments a policy set made are not written back, and
the card says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from bot.clock import as_utc
from bot.errors import UserError
from bot.microsoft import bodies
from bot.microsoft.bodies import AssignmentChange
from bot.microsoft.errors import MicrosoftError, NotFound
from bot.microsoft.graph import POLICIES
from bot.microsoft.models import (
    AndroidPolicy,
    AndroidPolicyDraft,
    AppGroupType,
    Group,
    PolicyAssignment,
    TargetKind,
)
from bot.mrkdwn import cut_plain
from bot.text import count
from workflows.changes import GraphCall, Outcome, Plan
from workflows.execution import Execution
from workflows.policies import ACTION_LABELS, APP_GROUP_LABELS, MANAGEMENT_LEVEL_LABELS, THREAT_LEVEL_LABELS, label

CREATE = "policy_create"
ASSIGN = "policy_assign"


class PolicyGraph(Protocol):
    def iter_android_policies(self) -> Iterable[AndroidPolicy]: ...

    def get_android_policy(self, policy_id: str) -> AndroidPolicy: ...

    def create_android_policy(self, draft: AndroidPolicyDraft) -> AndroidPolicy: ...

    def set_target_apps(self, policy_id: str, package_ids: Iterable[str], app_group_type: Any) -> None: ...

    def get_assignments(self, policy_id: str) -> list[PolicyAssignment]: ...

    def change_assignments(self, policy_id: str, *, include: Sequence[str] = (), exclude: Sequence[str] = (),
                           remove: Sequence[str] = ()) -> Any: ...

    def write_assignments(self, policy_id: str, change: AssignmentChange) -> None: ...

    def delete_android_policy(self, policy_id: str) -> None: ...

    def get_group(self, group_id: str) -> Group: ...


def _fold(name: str) -> str:
    return " ".join(name.split()).casefold()


def find_policy_by_name(graph: PolicyGraph, name: str) -> AndroidPolicy | None:
    wanted = _fold(name)
    return next((p for p in graph.iter_android_policies() if _fold(p.displayName) == wanted), None)


def _group_names(graph: PolicyGraph, group_ids: Iterable[str]) -> dict[str, str]:
    names = {}
    for group_id in group_ids:
        try:
            names[group_id] = graph.get_group(group_id).displayName or group_id
        except NotFound:
            raise UserError(f"There is no group with id {group_id} (deleted?).") from None
    return names


_EVERYONE = {TargetKind.ALL_LICENSED_USERS.value: "all licensed users", TargetKind.ALL_DEVICES.value: "all devices"}


def _describe(assignment: PolicyAssignment, names: Mapping[str, str]) -> str:
    """One assignment as approvers read it: whom, its filter, and its policy set when a policy set made it."""
    target = assignment.target
    if target.groupId:
        text = ("exclude " if target.is_exclusion else "include ") + names.get(target.groupId, target.groupId)
    else:
        text = "include " + _EVERYONE.get(target.odata_type, target.odata_type.rsplit(".", 1)[-1])
    if target.assignment_filter:
        filter_id, mode = target.assignment_filter
        text += f" (filter {filter_id}: {mode})"
    if assignment.from_policy_set:
        text += f" (from policy set {assignment.sourceId})" if assignment.sourceId else " (from a policy set)"
    return text


def _assignment_lines(assignments: Iterable[PolicyAssignment], names: Mapping[str, str]) -> str:
    return ", ".join(_describe(a, names) for a in assignments) or "no groups"


def _left_alone(change: AssignmentChange, names: Mapping[str, str]) -> str:
    """What the card and the result say of the assignments a policy set made (none: nothing)."""
    n = len(change.left_alone)
    if not n:
        return ""
    come, are, it = ("comes", "is", "it") if n == 1 else ("come", "are", "them")
    return (f"{count(n, 'assignment')} {come} from a policy set and {are} left alone: "
            f"{_assignment_lines(change.left_alone, names)}. The bot does not write {it} back (not in the assign "
            f"body): the policy set manages {it}. Microsoft's docs don't say what assign does with {it}.")


def _assignment_change(change: Any, current: Iterable[PolicyAssignment], what: str) -> AssignmentChange:
    """`bodies.assignment_change` for a change request: a set it can't write is refused with why."""
    try:
        return bodies.assignment_change(current, include=list(change.get("include", [])),
                                        exclude=list(change.get("exclude", [])),
                                        remove=list(change.get("remove", [])))
    except ValueError as exc:
        raise UserError(f"Can't write back the assignments of {what}: {exc}. Nothing was changed.") from None


def _bare(draft: AndroidPolicyDraft) -> AndroidPolicyDraft:
    """What the create call sends: the policy without its apps (targetApps sets them next)."""
    return draft.model_copy(update={"packageIds": (), "appGroupType": AppGroupType.SELECTED_PUBLIC_APPS})


def _has_apps(draft: AndroidPolicyDraft) -> bool:
    return bool(draft.packageIds) or draft.appGroupType is not AppGroupType.SELECTED_PUBLIC_APPS


# ---- create ---------------------------------------------------------------------------------------


class PolicyCreate:
    name = CREATE

    def __init__(self, graph: PolicyGraph, now: Any) -> None:
        self.graph = graph
        self.now = now

    def plan(self, change: Mapping[str, Any]) -> Plan:
        draft = AndroidPolicyDraft.model_validate(change["draft"])
        include, exclude = list(change.get("include", [])), list(change.get("exclude", []))
        existing = find_policy_by_name(self.graph, draft.displayName)
        if existing is not None:
            raise UserError(f"An Android app protection policy called '{existing.displayName}' already exists "
                            f"({existing.id}); choose another name.")
        names = _group_names(self.graph, [*include, *exclude])
        # the bodies `apply` sends, from the same builders: a new policy has no assignments yet
        assignment = _assignment_change(change, [], f"new policy '{draft.displayName}'")
        calls = [GraphCall("POST", POLICIES, bodies.policy_create_body(_bare(draft)))]
        if _has_apps(draft):
            calls.append(GraphCall("POST", f"{POLICIES}/{{new id}}/targetApps",
                                   bodies.target_apps_body(draft.packageIds, draft.appGroupType)))
        if include or exclude:
            calls.append(GraphCall("POST", f"{POLICIES}/{{new id}}/assign", assignment.body))
        apps = (count(len(draft.packageIds), "app") if draft.appGroupType is AppGroupType.SELECTED_PUBLIC_APPS
                else label(APP_GROUP_LABELS, draft.appGroupType.value))
        device_types = ", ".join(label(MANAGEMENT_LEVEL_LABELS, v.value) for v in draft.targetedAppManagementLevels)
        threat = label(THREAT_LEVEL_LABELS, draft.maximumAllowedDeviceThreatLevel.value)
        after = (f"policy '{draft.displayName}': above {threat}"
                 f" → {label(ACTION_LABELS, draft.mobileThreatDefenseRemediationAction.value)}; "
                 f"{device_types}; {apps}; groups: {_assignment_lines(assignment.after, names)}")
        wipes = draft.mobileThreatDefenseRemediationAction.value == "wipe"
        return Plan(
            # what approvers read first: a wipe removes work data, so it says so before anything else
            title=(f"WIPES work app data above {threat}: " if wipes else "")
            + f"Create Android app protection policy '{draft.displayName}'",
            target=f"new policy '{draft.displayName}'",
            change={**change, "group_names": names, "requested_at": as_utc(self.now()).isoformat()},
            snapshot={"existing": None},
            calls=calls,
            before=f"no policy called '{draft.displayName}'",
            after=after,
            key=f"policy-name:{_fold(draft.displayName)}",
        )

    def apply(self, change: Mapping[str, Any], snapshot: Mapping[str, Any], run: Execution) -> Outcome:
        draft = AndroidPolicyDraft.model_validate(change["draft"])
        include, exclude = list(change.get("include", [])), list(change.get("exclude", []))
        drift: list[str] = []
        policy = find_policy_by_name(self.graph, draft.displayName)
        created_now = False
        if policy is not None:
            requested = datetime.fromisoformat(change["requested_at"])
            if policy.createdDateTime is None or as_utc(policy.createdDateTime) < requested:
                raise UserError(f"A policy called '{policy.displayName}' ({policy.id}) was created by someone "
                                "else since this request; nothing was changed. File a new request with another name.")
            drift.append(f"found policy {policy.id} from an earlier attempt by its name; completed it")
        else:
            run.intend({"create": draft.displayName})
            policy = self.graph.create_android_policy(_bare(draft))
            created_now = True
        steps = [f"created policy {policy.id}" if created_now else f"policy {policy.id} exists"]
        try:
            if _has_apps(draft):
                run.intend({"create": draft.displayName, "policy": policy.id, "step": "targetApps"})
                self.graph.set_target_apps(policy.id, draft.packageIds, draft.appGroupType)
                steps.append("attached its apps")
            if include or exclude:
                run.intend({"create": draft.displayName, "policy": policy.id, "step": "assign"})
                self.graph.change_assignments(policy.id, include=include, exclude=exclude)
                steps.append(f"assigned it to {count(len(include) + len(exclude), 'group')}")
        except MicrosoftError as exc:
            raise UserError(self._rollback(policy, created_now, steps, exc)) from exc
        return Outcome(True, f"Created '{draft.displayName}' ({policy.id}): {'; '.join(steps)}.", drift)

    def _rollback(self, policy: AndroidPolicy, created_now: bool, steps: list[str], exc: MicrosoftError) -> str:
        """Nothing half-done stays silent: remove what this attempt created, or say exactly what exists."""
        if created_now:
            try:
                self.graph.delete_android_policy(policy.id)
                return (f"{exc} After '{'; '.join(steps)}' the next step failed, so the new policy was deleted "
                        "again: nothing is left in the tenant. Retry runs the whole change again.")
            except MicrosoftError as cleanup:
                return (f"{exc} The policy {policy.id} exists ({'; '.join(steps)}) and could not be removed "
                        f"({cleanup}). Retry completes it; or delete it in Intune.")
        return (f"{exc} The policy {policy.id} exists ({'; '.join(steps)}); Retry completes it.")


# ---- assignments ----------------------------------------------------------------------------------


def _current(assignments: Iterable[PolicyAssignment]) -> list[dict[str, Any]]:
    return [{"groupId": a.target.groupId, "exclude": a.target.is_exclusion}
            for a in assignments if a.target.groupId]


def _same_set(assignments: Any, current: list[dict[str, Any]]) -> bool:
    if not isinstance(assignments, list):
        return False
    return ({(str(a.get("groupId", "")).lower(), bool(a.get("exclude"))) for a in assignments}
            == {(a["groupId"].lower(), a["exclude"]) for a in current})


NOTE_NAME_MAX = 80


class PolicyAssignments:
    """`licences`, given a group id, says how many of its members lack a licence (`workflows.licences.
    licence_note`): the approver's card says it for each group the change includes."""

    name = ASSIGN

    def __init__(self, graph: PolicyGraph, licences: Callable[[str], str] | None = None) -> None:
        self.graph = graph
        self.licences = licences

    def plan(self, change: Mapping[str, Any]) -> Plan:
        policy_id = str(change["policy_id"])
        include, exclude = list(change.get("include", [])), list(change.get("exclude", []))
        remove = list(change.get("remove", []))
        try:
            policy = self.graph.get_android_policy(policy_id)
        except NotFound:
            raise UserError(f"There is no Android app protection policy {policy_id} any more.") from None
        raw = self.graph.get_assignments(policy_id)
        names = _group_names(self.graph, {a.target.groupId for a in raw if a.target.groupId}
                             | {*include, *exclude, *remove})
        self._refuse_policy_set_groups(raw, remove, names)
        # the body `apply` posts comes from this same function, on the set as it is then
        planned = _assignment_change(change, raw, f"'{policy.displayName}'")
        if planned.changes_nothing:
            raise UserError("The policy's assignments already look like that: there is nothing to change.")
        reach = [*planned.after, *planned.left_alone]
        if reach and all(a.target.is_exclusion for a in reach):
            raise UserError(f"After this change '{policy.displayName}' would have excluded groups only, which protects "
                            "nobody: excluded groups only take people out of the groups a policy is assigned to. "
                            "Assign it to a group first: `/mam assign \"policy name\" \"group name\"`.")
        path = f"{POLICIES}/{policy_id}"
        verbs = ([f"include {names[g]}" for g in include] + [f"exclude {names[g]}" for g in exclude]
                 + [f"remove {names[g]}" for g in remove])
        left_alone = _left_alone(planned, names)
        return Plan(
            title=f"Change the groups of '{policy.displayName}': {', '.join(verbs)}",
            target=f"policy '{policy.displayName}' ({policy_id})",
            change={**change, "policy_name": policy.displayName, "group_names": names},
            snapshot={"assignments": _current(raw), "policy_set_assignments": len(planned.left_alone)},
            calls=[GraphCall("GET", f"{path}/assignments"), GraphCall("POST", f"{path}/assign", planned.body)],
            before=_assignment_lines(raw, names),
            after=_assignment_lines(planned.after, names) + (f". {left_alone}" if left_alone else ""),
            key=f"policy:{policy_id.lower()}",
            # the name cut short: however long it is, the licence sentence after it stays on the card
            notes=tuple(f"{cut_plain(names[g], NOTE_NAME_MAX)}: {self.licences(g)}" for g in include)
            if self.licences else (),
        )

    def apply(self, change: Mapping[str, Any], snapshot: Mapping[str, Any], run: Execution) -> Outcome:
        """Under the policy's lease: re-read the set, apply this change's delta, write the whole set back."""
        policy_id = str(change["policy_id"])
        include, exclude = list(change.get("include", [])), list(change.get("exclude", []))
        remove = list(change.get("remove", []))
        raw = self.graph.get_assignments(policy_id)
        current = _current(raw)
        names = dict(change.get("group_names", {}))
        for group_id in {a["groupId"] for a in current} - set(names):  # added by someone else meanwhile
            try:
                names[group_id] = self.graph.get_group(group_id).displayName or group_id
            except NotFound:
                names[group_id] = f"{group_id} (deleted group)"
        touched = {g.lower() for g in (*include, *exclude, *remove)}
        drift = self._drift(snapshot.get("assignments", []), current, names, touched)
        found = _assignment_lines(raw, names)
        planned = _assignment_change(change, raw, f"'{change.get('policy_name', policy_id)}'")
        left_alone = _left_alone(planned, names)
        if left_alone:
            drift.append(left_alone)
        if planned.changes_nothing:
            direct = _current(a for a in raw if not a.from_policy_set)
            if _same_set(run.earlier_intent.get("assignments"), direct):  # the stopped run's own write
                return Outcome(True, f"Found {found}: the earlier run of this change wrote it before it stopped.",
                               drift)
            return Outcome(False, f"Found {found}: already as approved, no change made.", drift)
        run.intend({"assignments": _current(planned.after)})
        self.graph.write_assignments(policy_id, planned)
        return Outcome(True, f"Found {found}; wrote {_assignment_lines(planned.after, names)} "
                             f"('{change.get('policy_name', policy_id)}').", drift)

    @staticmethod
    def _refuse_policy_set_groups(raw: list[PolicyAssignment], remove: list[str], names: Mapping[str, str]) -> None:
        """Removing a group that only a policy set assigns would change nothing the bot writes: say where it is."""
        direct = {a.target.groupId.lower() for a in raw if a.target.groupId and not a.from_policy_set}
        by_set = {a.target.groupId.lower() for a in raw if a.target.groupId and a.from_policy_set}
        only_set = [g for g in remove if g.lower() in by_set and g.lower() not in direct]
        if only_set:
            raise UserError(f"{', '.join(names.get(g, g) for g in only_set)} is assigned by a policy set, which the "
                            "bot leaves alone: change it in that policy set in Intune.")

    @staticmethod
    def _drift(before: list[dict[str, Any]], now: list[dict[str, Any]], names: Mapping[str, str],
               touched: set[str]) -> list[str]:
        """What changed since the request in groups this change does not touch (those it sets itself)."""
        then = {(a["groupId"].lower(), a["exclude"]) for a in before if a["groupId"].lower() not in touched}
        current = {(a["groupId"].lower(), a["exclude"]) for a in now if a["groupId"].lower() not in touched}
        label = {g.lower(): n for g, n in names.items()}
        notes = [f"{'exclusion of' if ex else 'assignment to'} {label.get(g, g)} was added since the request (kept)"
                 for g, ex in sorted(current - then)]
        notes += [f"{'exclusion of' if ex else 'assignment to'} {label.get(g, g)} was removed since the request "
                  "(left removed)" for g, ex in sorted(then - current)]
        return notes
