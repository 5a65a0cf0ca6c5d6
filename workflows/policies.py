"""Android app protection policies as an admin reads them (read side): labels, the list, the whole picture.

Graph's enum values are kept as strings on the models (a value added next month must not break a
read), so every label here falls back to the raw value it doesn't know.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

from bot.microsoft.errors import MicrosoftError
from bot.microsoft.errors import NotFound as GraphNotFound
from bot.microsoft.models import AndroidPolicy, Group, PolicyAssignment, TargetKind, split_flags
from workflows.resolve import Ambiguous, Found, NotFound, Resolution, resolve

log = logging.getLogger(__name__)

# Member counts cost one Graph call per group; beyond this many groups the picture goes without.
MEMBER_COUNTS_UP_TO = 10

THREAT_LEVEL_LABELS = {
    "secured": "no threat (secured)",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "notConfigured": "not configured",
}
ACTION_LABELS = {
    "block": "Block access",
    "wipe": "Wipe data",
    "warn": "Warn",
    "blockWhenSettingIsSupported": "Block when supported",
}
# "Android device administrator" is `mdm` by elimination: no source states it (microsoft-graph.md §2).
MANAGEMENT_LEVEL_LABELS = {
    "unspecified": "all device types",
    "androidEnterprise": "Android Enterprise",
    "mdm": "Android device administrator",
    "unmanaged": "unmanaged (MAM without enrollment)",
    "androidEnterpriseDedicatedDevicesWithAzureAdSharedMode": "Android Enterprise dedicated (shared mode)",
    "androidOpenSourceProjectUserAssociated": "AOSP user-associated",
    "androidOpenSourceProjectUserless": "AOSP userless",
}
APP_GROUP_LABELS = {
    "selectedPublicApps": "selected apps",
    "allCoreMicrosoftApps": "core Microsoft apps",
    "allMicrosoftApps": "all Microsoft apps",
    "allApps": "all apps",
}
PARTNER_PRIORITY_LABELS = {
    "defenderOverThirdPartyPartner": "Defender for Endpoint first",
    "thirdPartyPartnerOverDefender": "third-party MTD first",
}

# Package ids of Intune-protected Microsoft apps (microsoft-graph.md §8); in the order an admin
# looks for them, so the apps people care about come first in a long list.
FRIENDLY_APP_NAMES = {
    "com.microsoft.office.outlook": "Outlook",
    "com.microsoft.teams": "Teams",
    "com.microsoft.emmx": "Edge",
    "com.microsoft.office.word": "Word",
    "com.microsoft.office.excel": "Excel",
    "com.microsoft.office.powerpoint": "PowerPoint",
    "com.microsoft.skydrive": "OneDrive",
    "com.microsoft.sharepoint": "SharePoint",
    "com.microsoft.office.onenote": "OneNote",
    "com.microsoft.office.officehubrow": "Microsoft 365 (Office)",
    "com.microsoft.todos": "To Do",
    "com.microsoft.planner": "Planner",
    "com.microsoft.powerbim": "Power BI",
    "com.microsoft.msapps": "Power Apps",
    "com.microsoft.flow": "Power Automate",
    "com.microsoft.lists.public": "Lists",
    "com.microsoft.scmx": "Defender",
    "com.microsoft.stream": "Stream",
    "com.yammer.v1": "Viva Engage (Yammer)",
    "ols.microsoft.com.shiftr": "Shifts",
    "com.microsoft.office.officelens": "Office Lens",
    "com.microsoft.office.lync15": "Skype for Business",
    "com.microsoft.mobile.polymer": "Kaizala",
    "com.microsoft.whiteboard.publicpreview": "Whiteboard",
}
# Retired by Microsoft: no longer offered in the forms' app picker, but still named wherever a policy lists them.
RETIRED_APPS = frozenset({
    "com.microsoft.office.lync15",  # Skype for Business
    "com.microsoft.mobile.polymer",  # Kaizala
    "com.microsoft.office.officelens",  # Office Lens
})
# What the forms' app picker offers, in FRIENDLY_APP_NAMES' order.
PICKER_APPS = {package: name for package, name in FRIENDLY_APP_NAMES.items() if package not in RETIRED_APPS}
# App group types a form offers as "app sets" (Intune fills in their apps itself).
APP_SETS = {"allMicrosoftApps": "All Microsoft apps", "allCoreMicrosoftApps": "Core Microsoft apps"}

# Any other app is named by its Android package id (applicationId): letters, digits and underscores in two or
# more dot-separated parts, each starting with a letter.
ANDROID_PACKAGE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*(\.[a-zA-Z][a-zA-Z0-9_]*)+$")
PACKAGE_ID_MAX = 255
PACKAGE_EXAMPLE = "com.contoso.expenses"


def label(labels: dict[str, str], value: str | None, missing: str = "not set") -> str:
    if value is None or not value.strip():
        return missing
    return labels.get(value, value)


def threat_level_label(policy: AndroidPolicy) -> str:
    return label(THREAT_LEVEL_LABELS, policy.maximumAllowedDeviceThreatLevel)


def action_label(policy: AndroidPolicy) -> str:
    return label(ACTION_LABELS, policy.mobileThreatDefenseRemediationAction)


def management_level_labels(policy: AndroidPolicy) -> list[str]:
    """`targetedAppManagementLevels` is a flags enum (`"mdm,androidEnterprise"`)."""
    levels = split_flags(policy.targetedAppManagementLevels)
    if not levels:
        return [MANAGEMENT_LEVEL_LABELS["unspecified"]]
    order = list(MANAGEMENT_LEVEL_LABELS)
    ranked = sorted(levels, key=lambda v: order.index(v) if v in order else len(order))
    return [MANAGEMENT_LEVEL_LABELS.get(v, v) for v in ranked]


def ignores_defender(policy: AndroidPolicy) -> bool:
    """No maximum device threat level: Defender's risk signal never blocks, wipes or warns."""
    return (policy.maximumAllowedDeviceThreatLevel or "notConfigured") == "notConfigured"


def app_count(policy: AndroidPolicy) -> int:
    # the list carries `apps` expanded; `deployedAppCount` covers a read without it
    return len(policy.apps) or policy.deployedAppCount or 0


def app_label(package: str) -> str:
    """An app's name where the bot knows it, else its package id."""
    return FRIENDLY_APP_NAMES.get(package, package)


def is_package_id(text: str) -> bool:
    """An Android package id, as Intune takes it for an app of any publisher."""
    return len(text) <= PACKAGE_ID_MAX and ANDROID_PACKAGE.fullmatch(text) is not None


def split_package_ids(text: str) -> list[str]:
    """What a person typed (comma- or newline-separated) as separate, trimmed words, each once, in order."""
    words = (w.strip() for w in re.split(r"[,\n\r]+", text or ""))
    return list(dict.fromkeys(w for w in words if w))


def bad_package_ids(packages: Iterable[str]) -> list[str]:
    return [p for p in packages if not is_package_id(p)]


def apps_list_label(packages: Iterable[str], shown: int = 10) -> str:
    """`Outlook, Teams, com.contoso.expenses and 3 more`: known apps by name (best known first), others by
    package id (sorted)."""
    unique = list(dict.fromkeys(packages))
    order = list(FRIENDLY_APP_NAMES)
    known = sorted((p for p in unique if p in FRIENDLY_APP_NAMES), key=order.index)
    names = [FRIENDLY_APP_NAMES[p] for p in known] + sorted(p for p in unique if p not in FRIENDLY_APP_NAMES)
    if not names:
        return "none"
    rest = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {rest} more" if rest > 0 else "")


def apps_label(policy: AndroidPolicy) -> str:
    """`3 apps`, or the app group and its size: `all Microsoft apps (39)`."""
    count = app_count(policy)
    group = policy.appGroupType or "selectedPublicApps"
    if group == "selectedPublicApps":
        return "no apps" if count == 0 else f"{count} app{'s' if count != 1 else ''}"
    return f"{label(APP_GROUP_LABELS, group)} ({count})"


def app_names(policy: AndroidPolicy) -> list[str]:
    """Friendly names where known, best known first; other package ids as they are, sorted."""
    packages = list(dict.fromkeys(policy.package_ids))
    order = list(FRIENDLY_APP_NAMES)
    known = sorted((p for p in packages if p in FRIENDLY_APP_NAMES), key=order.index)
    unknown = sorted(p for p in packages if p not in FRIENDLY_APP_NAMES)
    return [FRIENDLY_APP_NAMES[p] for p in known] + unknown


def is_exclusion(assignment: PolicyAssignment) -> bool:
    return assignment.target.odata_type == TargetKind.EXCLUSION_GROUP


def assignment_counts(policy: AndroidPolicy) -> tuple[int, int]:
    """(included, excluded) targets; "all users" and "all devices" count as included."""
    excluded = sum(1 for a in policy.assignments if is_exclusion(a))
    return len(policy.assignments) - excluded, excluded


# ---- the list ---------------------------------------------------------------------------------------


class PolicyReader(Protocol):
    def iter_android_policies(self) -> Iterator[AndroidPolicy]: ...

    def get_android_policy(self, policy_id: str) -> AndroidPolicy: ...


@dataclass(frozen=True)
class PolicyPage:
    """The first `limit` policies Graph returned (those whose name contains `query`, when given), and
    how many there are in all."""

    policies: list[AndroidPolicy]
    total: int
    ignoring_defender: int
    query: str = ""
    """Part of a name the list was narrowed to; "" for every policy."""

    @property
    def more(self) -> int:
        return self.total - len(self.policies)


def list_policies(graph: PolicyReader, *, limit: int, query: str = "") -> PolicyPage:
    """Streams the policies a page at a time; only the first `limit` are kept, the rest counted.

    With a `query`, only policies whose name contains it (any case, any spacing) are listed and counted.
    """
    wanted = " ".join(query.split()).casefold()
    shown: list[AndroidPolicy] = []
    total = ignoring = 0
    for policy in graph.iter_android_policies():
        if wanted and wanted not in " ".join((policy.displayName or "").split()).casefold():
            continue
        total += 1
        ignoring += ignores_defender(policy)
        if len(shown) < limit:
            shown.append(policy)
    return PolicyPage(shown, total, ignoring, " ".join(query.split()))


# ---- one policy, the whole picture -------------------------------------------------------------------


class GroupReader(Protocol):
    def get_group(self, group_id: str) -> Group: ...

    def group_member_count(self, group_id: str) -> int: ...


class PolicyGraph(PolicyReader, GroupReader, Protocol):
    """What `/mam policy show` reads."""


@dataclass(frozen=True)
class AssignedTarget:
    """One assignment as an admin reads it: a group by name (or its id when it is gone)."""

    name: str | None
    group_id: str | None
    excluded: bool
    found: bool = True
    members: int | None = None


@dataclass(frozen=True)
class PolicyDetail:
    policy: AndroidPolicy
    targets: list[AssignedTarget] = field(default_factory=list)
    partly_matched: str | None = None  # what the admin typed, when it was only part of the name

    @property
    def apps(self) -> list[str]:
        return app_names(self.policy)


PolicyLookup = PolicyDetail | Ambiguous[AndroidPolicy] | NotFound


def find_policy(graph: PolicyReader, query: str) -> Resolution[AndroidPolicy]:
    """By id or name; a tenant has tens of policies, so reading them all to compare names is cheap."""
    return resolve(query, graph.iter_android_policies())


def show_policy(graph: PolicyGraph, query: str) -> PolicyLookup:
    found = find_policy(graph, query)
    if not isinstance(found, Found):
        return found
    detail = describe_policy(graph, found.item)
    return detail if found.exact else replace(detail, partly_matched=query)


def show_policy_by_id(graph: PolicyGraph, policy_id: str) -> PolicyDetail | NotFound:
    """For a button that names the policy by id: it may have been deleted since the button was drawn."""
    if not policy_id.strip():
        return NotFound(policy_id)
    try:
        policy = graph.get_android_policy(policy_id)
    except GraphNotFound:
        return NotFound(policy_id)
    return describe_policy(graph, policy)


def describe_policy(graph: GroupReader, policy: AndroidPolicy, *,
                    member_counts_up_to: int = MEMBER_COUNTS_UP_TO) -> PolicyDetail:
    """The policy with its assigned groups by name; included first, then excluded."""
    targets = [_target(graph, a) for a in sorted(policy.assignments, key=is_exclusion)]
    countable = [i for i, t in enumerate(targets) if t.found and t.group_id][:member_counts_up_to]
    for i in countable:
        targets[i] = replace(targets[i], members=_member_count(graph, targets[i].group_id or ""))
    return PolicyDetail(policy, targets)


_EVERYONE = {
    TargetKind.ALL_LICENSED_USERS.value: "all licensed users",
    TargetKind.ALL_DEVICES.value: "all devices",
}


def _target(graph: GroupReader, assignment: PolicyAssignment) -> AssignedTarget:
    target = assignment.target
    excluded = is_exclusion(assignment)
    if not target.groupId:
        name = _EVERYONE.get(target.odata_type, target.odata_type.rsplit(".", 1)[-1])
        return AssignedTarget(name, None, excluded)
    try:
        group = graph.get_group(target.groupId)
    except GraphNotFound:
        # Intune keeps assignments to deleted groups; they reach nobody.
        return AssignedTarget(None, target.groupId, excluded, found=False)
    return AssignedTarget(group.displayName or group.id, group.id, excluded)


def _member_count(graph: GroupReader, group_id: str) -> int | None:
    # A nicety: the picture is complete without it, so a failure here must not hide the policy.
    try:
        return graph.group_member_count(group_id)
    except MicrosoftError as exc:
        log.info("no member count for group %s: %s", group_id, exc)
        return None
