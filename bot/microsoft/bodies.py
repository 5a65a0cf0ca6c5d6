"""Every request body the bot sends to Microsoft, and nothing else.

Keeping them in one module lets `tests/contract/test_graph_contract.py` feed each builder every
enum value and hold the result against Microsoft's beta schema (property names, enum members,
`@odata.type`s). A new body goes here, with a case in that test, or the test fails.
Builders validate their input and raise ValueError with a sentence a Slack user can read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from bot.microsoft.models import (
    AndroidPolicyDraft,
    AppGroupType,
    AppManagementLevel,
    AssignmentFilterType,
    AssignmentTarget,
    MtdConnector,
    PartnerPriority,
    PolicyAssignment,
    RemediationAction,
    TargetKind,
    ThreatLevel,
)

ANDROID_POLICY_TYPE = "#microsoft.graph.androidManagedAppProtection"
ANDROID_APP_IDENTIFIER_TYPE = "#microsoft.graph.androidMobileAppIdentifier"
MAX_BATCH_REQUESTS = 20

# The connector's booleans an admin may set. PATCH sends all of them back (read-modify-write):
# a public tool reports that this endpoint replaces state rather than merging it.
CONNECTOR_WRITABLE_FLAGS: tuple[str, ...] = (
    "allowPartnerToCollectIOSApplicationMetadata",
    "allowPartnerToCollectIOSPersonalApplicationMetadata",
    "allowPartnerToCollectIosCertificateMetadata",
    "allowPartnerToCollectIosPersonalCertificateMetadata",
    "androidDeviceBlockedOnMissingPartnerData",
    "androidEnabled",
    "androidMobileApplicationManagementEnabled",
    "grantMobileThreatDefensePartnerRole",
    "iosDeviceBlockedOnMissingPartnerData",
    "iosEnabled",
    "iosMobileApplicationManagementEnabled",
    "launchMobileThreatDefensePartnerOnSetupEnabled",
    "macDeviceBlockedOnMissingPartnerData",
    "macEnabled",
    "microsoftDefenderForEndpointAttachEnabled",
    "partnerUnsupportedOsVersionBlocked",
    "windowsDeviceBlockedOnMissingPartnerData",
    "windowsEnabled",
    "windowsMobileApplicationManagementEnabled",
)

# What `patch_android_policy` may change; apps go through targetApps, groups through assign.
POLICY_PATCHABLE: tuple[str, ...] = (
    "displayName",
    "description",
    "maximumAllowedDeviceThreatLevel",
    "mobileThreatDefenseRemediationAction",
    "mobileThreatDefensePartnerPriority",
    "targetedAppManagementLevels",
)

_PACKAGE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$")

E = TypeVar("E", bound=StrEnum)


def _member(enum: type[E], value: object, what: str) -> E:
    try:
        return enum(str(value))
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise ValueError(f"{value!r} is not a {what}; expected one of {allowed}") from None


def flags_value(levels: Iterable[AppManagementLevel | str] | str) -> str:
    """appManagementLevel members as Graph wants a flags enum: comma-separated, in declared order."""
    items = levels.split(",") if isinstance(levels, str) else list(levels)
    chosen = {_member(AppManagementLevel, str(item).strip(), "device management type") for item in items}
    if not chosen:
        raise ValueError("choose at least one device management type")
    if AppManagementLevel.UNSPECIFIED in chosen and len(chosen) > 1:
        raise ValueError("'unspecified' already means every device type; don't combine it with others")
    return ",".join(m.value for m in AppManagementLevel if m in chosen)


def package_ids(values: Iterable[str]) -> list[str]:
    """Android package ids, trimmed and de-duplicated in order; a malformed one raises."""
    seen: dict[str, None] = {}
    for raw in values:
        value = raw.strip()
        if not _PACKAGE_ID.match(value):
            raise ValueError(f"{raw!r} is not an Android package id (like com.microsoft.office.outlook)")
        seen.setdefault(value, None)
    return list(seen)


# ---- mobileThreatDefenseConnector ---------------------------------------------------------------


def connector_patch_body(current: MtdConnector, changes: Mapping[str, bool]) -> dict[str, Any]:
    """PATCH body: every writable boolean as read, with `changes` applied."""
    unknown = sorted(set(changes) - set(CONNECTOR_WRITABLE_FLAGS))
    if unknown:
        raise ValueError(f"not a writable connector setting: {', '.join(unknown)}")
    not_bool = sorted(name for name, value in changes.items() if not isinstance(value, bool))
    if not_bool:
        raise ValueError(f"connector settings are true or false: {', '.join(not_bool)}")
    body: dict[str, Any] = {}
    for name in CONNECTOR_WRITABLE_FLAGS:
        value = changes.get(name, getattr(current, name))
        if value is not None:  # absent in what we read: this tenant's schema may not have it
            body[name] = value
    return body


# ---- androidManagedAppProtection ----------------------------------------------------------------


def policy_create_body(draft: AndroidPolicyDraft) -> dict[str, Any]:
    """POST body for a new policy; apps follow with `targetApps` (see target_apps_body)."""
    body: dict[str, Any] = {
        "@odata.type": ANDROID_POLICY_TYPE,
        "displayName": draft.displayName.strip(),
        "description": draft.description,
        "maximumAllowedDeviceThreatLevel": _member(
            ThreatLevel, draft.maximumAllowedDeviceThreatLevel, "device threat level"
        ).value,
        "mobileThreatDefenseRemediationAction": _member(
            RemediationAction, draft.mobileThreatDefenseRemediationAction, "remediation action"
        ).value,
        "targetedAppManagementLevels": flags_value(draft.targetedAppManagementLevels),
        "appGroupType": _member(AppGroupType, draft.appGroupType, "app group type").value,
    }
    if not body["displayName"]:
        raise ValueError("the policy needs a name")
    if draft.mobileThreatDefensePartnerPriority is not None:
        body["mobileThreatDefensePartnerPriority"] = _member(
            PartnerPriority, draft.mobileThreatDefensePartnerPriority, "partner priority"
        ).value
    return body


def policy_patch_body(changes: Mapping[str, Any]) -> dict[str, Any]:
    """PATCH body with only the changed properties (Graph merges a policy PATCH)."""
    if not changes:
        raise ValueError("nothing to change")
    unknown = sorted(set(changes) - set(POLICY_PATCHABLE))
    if unknown:
        raise ValueError(
            f"the bot doesn't change {', '.join(unknown)}; it changes {', '.join(POLICY_PATCHABLE)}"
        )
    body: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "displayName":
            if not isinstance(value, str) or not value.strip():
                raise ValueError("the policy needs a name")
            body[name] = value.strip()
        elif name == "description":
            if value is not None and not isinstance(value, str):
                raise ValueError("the description is text")
            body[name] = value
        elif name == "maximumAllowedDeviceThreatLevel":
            body[name] = _member(ThreatLevel, value, "device threat level").value
        elif name == "mobileThreatDefenseRemediationAction":
            body[name] = _member(RemediationAction, value, "remediation action").value
        elif name == "mobileThreatDefensePartnerPriority":
            body[name] = None if value is None else _member(PartnerPriority, value, "partner priority").value
        elif name == "targetedAppManagementLevels":
            body[name] = flags_value(value)
    return body


def target_apps_body(packages: Iterable[str], app_group_type: AppGroupType | str) -> dict[str, Any]:
    """`targetApps` action body: the whole app list (it replaces the policy's apps) and group type."""
    return {
        "apps": [
            {"mobileAppIdentifier": {"@odata.type": ANDROID_APP_IDENTIFIER_TYPE, "packageId": package}}
            for package in package_ids(packages)
        ],
        "appGroupType": _member(AppGroupType, app_group_type, "app group type").value,
    }


def _target_body(target: AssignmentTarget) -> dict[str, Any]:
    kind = _member(TargetKind, target.odata_type, "assignment target type")
    out: dict[str, Any] = {"@odata.type": kind.value}
    if kind in (TargetKind.GROUP, TargetKind.EXCLUSION_GROUP):
        if not target.groupId:
            raise ValueError("a group assignment needs a group id")
        out["groupId"] = target.groupId
    filter_type = _member(
        AssignmentFilterType,
        target.deviceAndAppManagementAssignmentFilterType or AssignmentFilterType.NONE,
        "assignment filter type",
    )
    if target.deviceAndAppManagementAssignmentFilterId and filter_type is not AssignmentFilterType.NONE:
        # A read-modify-write must carry filters through, or re-posting the set would drop them.
        out["deviceAndAppManagementAssignmentFilterId"] = target.deviceAndAppManagementAssignmentFilterId
        out["deviceAndAppManagementAssignmentFilterType"] = filter_type.value
    return out


def assign_body(assignments: Iterable[PolicyAssignment | AssignmentTarget]) -> dict[str, Any]:
    """`assign` action body: the complete assignment set (the action replaces, never adds).

    Targets only, each with its filter. An assignment a policy set made is refused: the bot leaves those to
    their policy set (`assignment_change` sets them apart) and sends no `source` it would have to guess."""
    items: list[dict[str, Any]] = []
    seen: set[tuple[str, str | None]] = set()
    for entry in assignments:
        assignment = entry if isinstance(entry, PolicyAssignment) else PolicyAssignment(target=entry)
        if assignment.from_policy_set:
            raise ValueError(f"the assignment {assignment.id or assignment.target.groupId or ''} comes from policy "
                             f"set {assignment.sourceId or '?'}; the bot leaves those to their policy set")
        if assignment.target.key in seen:
            continue
        seen.add(assignment.target.key)
        items.append({"target": _target_body(assignment.target)})
    groups = [(i["target"]["@odata.type"], i["target"]["groupId"].lower()) for i in items
              if "groupId" in i["target"]]
    included = {group for kind, group in groups if kind == TargetKind.GROUP}
    excluded = {group for kind, group in groups if kind == TargetKind.EXCLUSION_GROUP}
    both = included & excluded
    if both:
        raise ValueError(f"a group can't be both included and excluded: {', '.join(sorted(both))}")
    return {"assignments": items}


@dataclass(frozen=True)
class AssignmentChange:
    """Group changes applied to an assignment set as read, and the `assign` body that writes it.

    `assign` replaces the whole set, so `after` is everything the bot writes back: every direct assignment as
    read (all-users and all-devices targets, filters and their types included) with the change applied.
    `left_alone` are the assignments a policy set made: not written back, not in `body`. The approval card
    shows `body` and the executor posts `body`: the card is the call.
    """

    before: list[PolicyAssignment]
    after: list[PolicyAssignment]
    left_alone: list[PolicyAssignment]
    body: dict[str, Any]

    @property
    def changes_nothing(self) -> bool:
        """The direct assignments would be written back exactly as they are."""
        return self.after == [a for a in self.before if not a.from_policy_set]


def _unique(group_ids: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for group_id in group_ids:
        seen.setdefault(group_id.strip().lower(), group_id.strip())
    return [g for g in seen.values() if g]


def assignment_change(current: Iterable[PolicyAssignment], *, include: Iterable[str] = (),
                      exclude: Iterable[str] = (), remove: Iterable[str] = ()) -> AssignmentChange:
    """The one function that changes an assignment set: include, exclude or remove groups, keep the rest.

    A group already included (or excluded) stays as it is, filter and all; a group moving between include and
    exclude gets one entry, the new one. Assignments from a policy set are set apart (`left_alone`)."""
    before = list(current)
    adds, drops, gone = _unique(include), _unique(exclude), {g.lower() for g in _unique(remove)}
    both = {g.lower() for g in adds} & {g.lower() for g in drops}
    if both:
        raise ValueError(f"a group can't be both included and excluded: {', '.join(sorted(both))}")
    wanted = {g.lower(): TargetKind.GROUP for g in adds} | {g.lower(): TargetKind.EXCLUSION_GROUP for g in drops}
    left_alone = [a for a in before if a.from_policy_set]
    kept: list[PolicyAssignment] = []
    in_place: set[str] = set()
    for assignment in before:
        if assignment.from_policy_set:
            continue
        group = (assignment.target.groupId or "").lower()
        if group and group in gone:
            continue
        if group and group in wanted:
            if assignment.target.odata_type != wanted[group]:
                continue  # moves between include and exclude: the new entry replaces it
            in_place.add(group)
        kept.append(assignment)
    after = kept + [PolicyAssignment(target=AssignmentTarget.include_group(g)) for g in adds
                    if g.lower() not in in_place] + [
        PolicyAssignment(target=AssignmentTarget.exclude_group(g)) for g in drops if g.lower() not in in_place]
    return AssignmentChange(before=before, after=after, left_alone=left_alone, body=assign_body(after))


# ---- JSON batching ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchRequest:
    """One request inside a `$batch`; `url` is relative to the version root (`/users/{id}`)."""

    id: str
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


def batch_body(requests: Sequence[BatchRequest]) -> dict[str, Any]:
    """`$batch` envelope (at most 20 requests, ids unique, URLs relative)."""
    if not requests:
        raise ValueError("an empty batch")
    if len(requests) > MAX_BATCH_REQUESTS:
        raise ValueError(f"a batch holds at most {MAX_BATCH_REQUESTS} requests, not {len(requests)}")
    ids = [r.id for r in requests]
    if len(set(ids)) != len(ids):
        raise ValueError("batch request ids must be unique")
    out = []
    for r in requests:
        if not r.url.startswith("/") or "://" in r.url:
            raise ValueError(f"batch URLs are relative to the version root: {r.url!r}")
        item: dict[str, Any] = {"id": r.id, "method": r.method.upper(), "url": r.url}
        if r.headers:
            item["headers"] = dict(r.headers)
        out.append(item)
    return {"requests": out}
