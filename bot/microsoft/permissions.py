"""Which application permissions each feature needs, and a check of what the tokens grant.

`mam-bot check` prints `check_permissions(clients)`: one row per feature, with the permissions it
needs and those missing from the access tokens' `roles` claims (what admin consent really granted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from bot.microsoft.errors import DEFENDER, GRANT_LOCATIONS, GRAPH, MicrosoftError


class GrantedRoles(Protocol):
    """What the check reads: bot.microsoft.clients.MicrosoftClients, which imports this module."""

    def roles_for(self, api: str) -> set[str]: ...

# Graph application permissions (microsoft-graph.md §1 to §4).
SERVICE_CONFIG_READ = "DeviceManagementServiceConfig.Read.All"
SERVICE_CONFIG_WRITE = "DeviceManagementServiceConfig.ReadWrite.All"
APPS_READ = "DeviceManagementApps.Read.All"
APPS_WRITE = "DeviceManagementApps.ReadWrite.All"
CONFIG_WRITE = "DeviceManagementConfiguration.ReadWrite.All"
DEVICES_WRITE = "DeviceManagementManagedDevices.ReadWrite.All"
GROUP_READ = "Group.Read.All"
GROUP_MEMBER_READ = "GroupMember.Read.All"
USER_READ = "User.Read.All"
# Defender for Endpoint (WindowsDefenderATP) application permission (§5).
MACHINE_READ = "Machine.Read.All"

# Broader permissions that include a narrower one, so a tenant that granted those passes too.
_ALSO_SATISFIED_BY: dict[str, frozenset[str]] = {
    SERVICE_CONFIG_READ: frozenset({SERVICE_CONFIG_WRITE}),
    APPS_READ: frozenset({APPS_WRITE}),
    GROUP_READ: frozenset({"Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}),
    USER_READ: frozenset({"User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}),
    MACHINE_READ: frozenset({"Machine.ReadWrite.All"}),
}

API_SHORT = {GRAPH: "Microsoft Graph", DEFENDER: "WindowsDefenderATP"}


@dataclass(frozen=True)
class Requirement:
    api: str
    permission: str
    # Other permissions Microsoft documents for the same calls (any one of them will do).
    alternatives: tuple[str, ...] = ()
    # A lesser permission with which the feature still works, another (slower) way.
    fallback: str | None = None

    @property
    def label(self) -> str:
        either = " or ".join((self.permission, *self.alternatives))
        return f"{either} ({API_SHORT[self.api]})"

    def satisfied_by(self, roles: Iterable[str]) -> bool:
        granted = set(roles)
        return any(
            permission in granted or bool(granted & _ALSO_SATISFIED_BY.get(permission, frozenset()))
            for permission in (self.permission, *self.alternatives)
        )

    def fallback_satisfied_by(self, roles: Iterable[str]) -> bool:
        return self.fallback is not None and Requirement(self.api, self.fallback).satisfied_by(roles)


@dataclass(frozen=True)
class Feature:
    key: str
    name: str
    requirements: tuple[Requirement, ...]
    note: str = ""  # why a permission is needed, when the name doesn't say


def _g(permission: str, *alternatives: str, fallback: str | None = None) -> Requirement:
    return Requirement(GRAPH, permission, alternatives, fallback)


def _d(permission: str) -> Requirement:
    return Requirement(DEFENDER, permission)


# The watch reads the tenant's app protection registrations through Intune's report export
# (POST deviceManagement/reports/exportJobs), which Microsoft allows only with a ReadWrite permission
# (microsoft-graph.md §10). Without one it falls back to the paged registrations read, which
# DeviceManagementApps.Read.All allows, one page after another: slower in a large tenant.
_WATCH_EXPORT = _g(APPS_WRITE, CONFIG_WRITE, DEVICES_WRITE, fallback=APPS_READ)
_WATCH_NOTE = (
    f"Reads app protection status through Intune's report export, which needs {APPS_WRITE} (or "
    f"{CONFIG_WRITE} or {DEVICES_WRITE}); the bot writes nothing with it. Without it the watch falls back "
    f"to the slower paged read of registrations ({APPS_READ} only) and /mam status says so. "
    f"{USER_READ}: users' mail and licences. {GROUP_READ} (or {GROUP_MEMBER_READ}): the members of assigned "
    "groups, when Graph doesn't say which policies apply to a registration."
)
_WATCH_GROUPS = _g(GROUP_READ, GROUP_MEMBER_READ)

FEATURES: tuple[Feature, ...] = (
    Feature("connector-status", "Check the Defender for Endpoint connector", (_g(SERVICE_CONFIG_READ),)),
    Feature("connector-enable", "Turn on the connector's app protection setting",
            (_g(SERVICE_CONFIG_WRITE),)),
    Feature("policy-read", "List and show Android app protection policies", (_g(APPS_READ),)),
    Feature("policy-write", "Create and change Android app protection policies", (_g(APPS_WRITE),)),
    Feature("assignments", "Assign policies to groups", (_g(APPS_WRITE), _g(GROUP_READ))),
    Feature("group-lookup", "Find groups and count their members", (_g(GROUP_READ),)),
    Feature("threat-alerts", "Alert admins when a device's threat level blocks apps",
            (_d(MACHINE_READ), _g(APPS_READ), _WATCH_EXPORT, _g(USER_READ), _WATCH_GROUPS), note=_WATCH_NOTE),
    Feature("onboarding-nudges", "Nudge users to install and activate Defender",
            (_d(MACHINE_READ), _g(APPS_READ), _WATCH_EXPORT, _g(USER_READ), _WATCH_GROUPS), note=_WATCH_NOTE),
    Feature("drift", "Tell admins about policy changes made outside the bot",
            (_g(APPS_READ), _g(SERVICE_CONFIG_READ)),
            note=f"{APPS_READ}: the policies and Intune's audit log (who changed what); {SERVICE_CONFIG_READ}: "
                 "the connector."),
)

ALL_ROLES: dict[str, frozenset[str]] = {
    api: frozenset(r.permission for f in FEATURES for r in f.requirements if r.api == api)
    for api in (GRAPH, DEFENDER)
}


@dataclass(frozen=True)
class PermissionRow:
    key: str
    feature: str
    needed: tuple[str, ...]  # "DeviceManagementApps.Read.All (Microsoft Graph)", …
    missing: tuple[str, ...]  # not in the token, or unverifiable because the token couldn't be had
    problems: tuple[str, ...] = ()  # why a token could not be read (sign-in failed, no API host)
    # Of `missing`, those whose lesser fallback permission is granted: the feature works, another
    # (slower) way, e.g. the watch's paged registrations read instead of the report export.
    degraded: tuple[str, ...] = ()
    note: str = ""  # the feature's explanation of its permissions

    @property
    def ok(self) -> bool:
        return not self.missing and not self.problems


def read_roles(clients: GrantedRoles) -> tuple[dict[str, frozenset[str]], dict[str, MicrosoftError]]:
    """Sign in for each API once: the roles its token grants, or why there is no token.

    A failure here (SignInError: credentials, tenant, an unreachable sign-in host; ApiUnavailable:
    no host in this cloud) says nothing about permissions: `mam-bot check` reports it once, apart.
    """
    roles: dict[str, frozenset[str]] = {}
    problems: dict[str, MicrosoftError] = {}
    for api in (GRAPH, DEFENDER):
        try:
            roles[api] = frozenset(clients.roles_for(api))
        except MicrosoftError as exc:
            problems[api] = exc
    return roles, problems


def permission_rows(
    roles: Mapping[str, frozenset[str]], problems: Mapping[str, MicrosoftError] | None = None
) -> list[PermissionRow]:
    """Per feature: needed permissions, and those the tokens' roles don't carry."""
    problems = problems or {}
    rows = []
    for feature in FEATURES:
        missing = tuple(
            r.label for r in feature.requirements if r.api not in roles or not r.satisfied_by(roles[r.api])
        )
        reasons = tuple(dict.fromkeys(str(problems[r.api]) for r in feature.requirements if r.api in problems))
        degraded = tuple(
            r.label for r in feature.requirements
            if r.api in roles and not r.satisfied_by(roles[r.api]) and r.fallback_satisfied_by(roles[r.api])
        )
        rows.append(PermissionRow(
            key=feature.key,
            feature=feature.name,
            needed=tuple(r.label for r in feature.requirements),
            missing=missing,
            problems=reasons,
            degraded=degraded,
            note=feature.note,
        ))
    return rows


def check_permissions(clients: GrantedRoles) -> list[PermissionRow]:
    """Per feature: needed permissions, and those the app's tokens don't carry."""
    roles, problems = read_roles(clients)
    return permission_rows(roles, problems)


def where_to_grant(api: str) -> str:
    return GRANT_LOCATIONS[api]
