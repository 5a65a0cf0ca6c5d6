"""Android app protection policies: validation as Graph does it, targetApps, assign (full replace)."""

from __future__ import annotations

import copy
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.sandbox.core import ApiError, bad_request
from bot.sandbox.ids import stable_guid, stable_hex
from bot.sandbox.schema import (
    ALL_MICROSOFT_APPS,
    ANDROID_APP_ID_TYPE,
    ANDROID_POLICY_TYPE,
    ASSIGNMENT_BETA_ONLY,
    ASSIGNMENT_TARGET_TYPES,
    CORE_MICROSOFT_APPS,
    ENUMS,
    FLAGS_ENUMS,
    POLICY_DEFAULTS,
    POLICY_NAVIGATION,
    POLICY_PROPERTIES,
    POLICY_PROPERTIES_V1,
    POLICY_SERVER_SET,
    TARGET_BETA_ONLY,
)
from bot.sandbox.seed import stamp

_TYPE_NAME = "microsoft.graph.androidManagedAppProtection"
_DURATION = re.compile(r"^-?P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
_GROUP_TARGET = "#microsoft.graph.groupAssignmentTarget"
_EXCLUDE_TARGET = "#microsoft.graph.exclusionGroupAssignmentTarget"
_ALL_USERS_TARGET = "#microsoft.graph.allLicensedUsersAssignmentTarget"


def _unknown_property(name: str) -> ApiError:
    return bad_request(
        f"The property '{name}' does not exist on type '{_TYPE_NAME}'. Make sure to only use property names "
        "that are defined by the type or mark the type as open type.")


def _check_value(name: str, kind: str, nullable: bool, value: Any) -> None:
    if value is None:
        if not nullable:
            raise bad_request(
                f"A null value was found for the property named '{name}', which has the expected type "
                f"'{_edm(kind)}[Nullable=False]'. The expected type '{_edm(kind)}[Nullable=False]' does not "
                "allow null values.")
        return
    if kind.startswith("Collection("):
        inner = kind[len("Collection("):-1]
        if not isinstance(value, list):
            raise bad_request(f"Cannot convert the value of property '{name}' to the expected type "
                              f"'Collection({_edm(inner)})'.")
        for item in value:
            _check_value(name, inner, False, item)
        return
    wrong = False
    if kind == "Boolean":
        wrong = not isinstance(value, bool)
    elif kind == "Int32":
        wrong = isinstance(value, bool) or not isinstance(value, int) or not -2**31 <= value < 2**31
    elif kind in ("String", "DateTimeOffset"):
        wrong = not isinstance(value, str)
    elif kind == "Duration":
        wrong = not isinstance(value, str) or not _DURATION.match(value)
    elif kind == "keyValuePair":
        wrong = not isinstance(value, dict) or set(value) - {"name", "value", "@odata.type"} != set()
    elif not isinstance(value, str):
        wrong = True
    elif kind in ENUMS:
        members = ENUMS[kind]
        parts = [p.strip() for p in value.split(",")] if kind in FLAGS_ENUMS else [value]
        if not all(p in members for p in parts) or not parts:
            raise bad_request(f"Cannot convert the literal '{value}' to the expected type "
                              f"'microsoft.graph.{kind}'.")
    if wrong:
        raise bad_request(f"Cannot convert the literal '{value}' to the expected type '{_edm(kind)}' "
                          f"for the property '{name}'.")


def _edm(kind: str) -> str:
    edm = ("Boolean", "Int32", "String", "Duration", "DateTimeOffset")
    return f"Edm.{kind}" if kind in edm else f"microsoft.graph.{kind}"


def managed_app(package: str) -> dict[str, Any]:
    version = zlib.crc32(package.encode())
    signed = version - 2**32 if version >= 2**31 else version
    return {
        "@odata.type": "#microsoft.graph.managedMobileApp",
        "id": f"{package}.android",
        "version": str(signed),
        "mobileAppIdentifier": {"@odata.type": ANDROID_APP_ID_TYPE, "packageId": package},
    }


@dataclass
class Policy:
    props: dict[str, Any]
    apps: list[dict[str, Any]] = field(default_factory=list)
    assignments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.props["id"])

    def packages(self) -> set[str]:
        return {a["mobileAppIdentifier"]["packageId"] for a in self.apps}


class PolicyStore:
    def __init__(self, seed: int, now: Callable[[], datetime], group_exists: Callable[[str], bool]) -> None:
        self._seed = seed
        self._created = 0
        self._now = now
        self._group_exists = group_exists
        self.items: dict[str, Policy] = {}
        self._writes = 0

    # ---- reading ---------------------------------------------------------------------------------

    def get(self, policy_id: str) -> Policy:
        for key, policy in self.items.items():
            if key.lower() == policy_id.lower():
                return policy
        raise ApiError(404, "ResourceNotFound",
                       f"The androidManagedAppProtection with id '{policy_id}' was not found.")

    def render(self, policy: Policy, beta: bool,
               expand: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
        props = policy.props
        if not beta:
            props = {k: v for k, v in props.items() if k in POLICY_PROPERTIES_V1}
        out: dict[str, Any] = {"@odata.type": ANDROID_POLICY_TYPE, **copy.deepcopy(props)}
        if "assignments" in expand:
            out["assignments"] = self.render_assignments(policy, beta)
        if "apps" in expand:
            out["apps"] = copy.deepcopy(policy.apps)
        return out

    def render_assignments(self, policy: Policy, beta: bool) -> list[dict[str, Any]]:
        out = copy.deepcopy(policy.assignments)
        if not beta:
            for item in out:
                for key in ASSIGNMENT_BETA_ONLY:
                    item.pop(key, None)
                for key in TARGET_BETA_ONLY:
                    item["target"].pop(key, None)
        return out

    # ---- writing ---------------------------------------------------------------------------------

    def _touch(self, policy: Policy) -> None:
        self._writes += 1
        moment = self._now()
        policy.props["lastModifiedDateTime"] = stamp(moment)
        tail = stable_hex(f"version:{policy.id}:{self._writes}", 12)
        policy.props["version"] = f'"{tail[:8]}-0000-0d00-0000-{stable_hex(tail, 12)}"'

    def _validate(self, body: Any, beta: bool, creating: bool) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        allowed = POLICY_PROPERTIES if beta else {k: v for k, v in POLICY_PROPERTIES.items()
                                                   if k in POLICY_PROPERTIES_V1}
        changes: dict[str, Any] = {}
        for name, value in body.items():
            if name == "@odata.type":
                if value != ANDROID_POLICY_TYPE:
                    raise bad_request(f"The entity type '{str(value).lstrip('#')}' is not compatible with "
                                      f"the base type '{_TYPE_NAME}' of the given entity set.")
                continue
            if name.startswith("@") or "@odata." in name:
                continue
            if name in POLICY_NAVIGATION:
                continue
            if name not in allowed:
                raise _unknown_property(name)
            kind, nullable = allowed[name]
            _check_value(name, kind, nullable, value)
            if name in POLICY_SERVER_SET:
                continue
            changes[name] = copy.deepcopy(value)
        if creating:
            name = changes.get("displayName")
            if not isinstance(name, str) or not name.strip():
                raise bad_request("The property 'displayName' is required and must not be empty.")
        return changes

    def create(self, body: Any, beta: bool, policy_id: str | None = None) -> Policy:
        changes = self._validate(body, beta, creating=True)
        props = copy.deepcopy(POLICY_DEFAULTS)
        moment = stamp(self._now())
        self._created += 1
        new_id = policy_id or "T_" + stable_guid(f"policy:{self._seed}:{self._created}")
        props.update(changes)
        props.update({"id": new_id, "createdDateTime": moment, "lastModifiedDateTime": moment,
                      "isAssigned": False, "deployedAppCount": 0})
        policy = Policy(props)
        self._touch(policy)
        policy.props["lastModifiedDateTime"] = moment
        if isinstance(body, dict) and isinstance(body.get("apps"), list):
            # Deep insert of apps on create, as powershell-intune-samples does.
            self._set_apps(policy, self._parse_apps(body["apps"]), None)
        self.items[new_id] = policy
        return policy

    def update(self, policy_id: str, body: Any, beta: bool) -> Policy:
        policy = self.get(policy_id)
        changes = self._validate(body, beta, creating=False)
        if "displayName" in changes and not str(changes["displayName"]).strip():
            raise bad_request("The property 'displayName' must not be empty.")
        policy.props.update(changes)
        self._touch(policy)
        return policy

    def delete(self, policy_id: str) -> None:
        policy = self.get(policy_id)
        del self.items[policy.id]

    def _parse_apps(self, apps: Any) -> list[str]:
        if not isinstance(apps, list):
            raise bad_request("The parameter 'apps' must be a collection of managedMobileApp.")
        packages: list[str] = []
        for app in apps:
            ident = app.get("mobileAppIdentifier") if isinstance(app, dict) else None
            if not isinstance(ident, dict):
                raise bad_request("Each app needs a mobileAppIdentifier.")
            kind = ident.get("@odata.type")
            if kind != ANDROID_APP_ID_TYPE:
                raise bad_request(f"The app identifier type '{kind}' cannot target an Android policy; use "
                                  f"'{ANDROID_APP_ID_TYPE}'.")
            package = ident.get("packageId")
            if not isinstance(package, str) or not package.strip():
                raise bad_request("androidMobileAppIdentifier.packageId is required.")
            if package not in packages:
                packages.append(package)
        return packages

    def _set_apps(self, policy: Policy, packages: list[str], group_type: str | None) -> None:
        if group_type == "allCoreMicrosoftApps":
            packages = list(CORE_MICROSOFT_APPS)
        elif group_type in ("allMicrosoftApps", "allApps"):
            packages = list(ALL_MICROSOFT_APPS)
        policy.apps = [managed_app(p) for p in sorted(packages)]
        policy.props["appGroupType"] = group_type or "selectedPublicApps"
        policy.props["deployedAppCount"] = len(policy.apps)

    def target_apps(self, policy_id: str, body: Any) -> None:
        policy = self.get(policy_id)
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        for key in body:
            if key not in ("apps", "appGroupType"):
                raise bad_request(f"The parameter '{key}' in the request payload is not a valid parameter "
                                  "for the operation 'targetApps'.")
        group_type = body.get("appGroupType")
        if group_type is not None:
            _check_value("appGroupType", "targetedManagedAppGroupType", True, group_type)
        packages = self._parse_apps(body.get("apps", []) or [])
        if group_type in (None, "selectedPublicApps") and "apps" not in body:
            raise bad_request("The parameter 'apps' is missing.")
        self._set_apps(policy, packages, group_type)
        self._touch(policy)

    def assign(self, policy_id: str, body: Any) -> None:
        policy = self.get(policy_id)
        if not isinstance(body, dict) or "assignments" not in body:
            raise bad_request("The parameter 'assignments' is missing.")
        for key in body:
            if key != "assignments":
                raise bad_request(f"The parameter '{key}' in the request payload is not a valid parameter "
                                  "for the operation 'assign'.")
        items = body["assignments"]
        if not isinstance(items, list):
            raise bad_request("The parameter 'assignments' must be a collection.")
        stored: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for item in items:
            target = item.get("target") if isinstance(item, dict) else None
            if not isinstance(target, dict):
                raise bad_request("Each assignment needs a target.")
            kind = target.get("@odata.type")
            if kind not in ASSIGNMENT_TARGET_TYPES:
                raise bad_request(f"'{kind}' is not a valid deviceAndAppManagementAssignmentTarget type.")
            group_id = target.get("groupId")
            if kind in (_GROUP_TARGET, _EXCLUDE_TARGET):
                if not isinstance(group_id, str) or not self._group_exists(group_id):
                    raise bad_request(f"The group '{group_id}' does not exist in the directory.")
                group_id = group_id.lower()
            filter_type = target.get("deviceAndAppManagementAssignmentFilterType", "none")
            _check_value("deviceAndAppManagementAssignmentFilterType",
                         "deviceAndAppManagementAssignmentFilterType", False, filter_type)
            key = (str(kind), str(group_id))
            if key in seen:
                continue
            seen.add(key)
            rendered_target: dict[str, Any] = {
                "@odata.type": kind,
                "deviceAndAppManagementAssignmentFilterId":
                    target.get("deviceAndAppManagementAssignmentFilterId"),
                "deviceAndAppManagementAssignmentFilterType": filter_type,
            }
            if group_id is not None:
                rendered_target["groupId"] = group_id
            suffix = "excl" if kind == _EXCLUDE_TARGET else "incl"
            stored.append({
                "@odata.type": "#microsoft.graph.targetedManagedAppPolicyAssignment",
                "id": f"{group_id or kind.rsplit('.', 1)[-1]}_{suffix}",
                "source": "direct",
                "sourceId": None,
                "target": rendered_target,
            })
        policy.assignments = stored
        policy.props["isAssigned"] = bool(stored)
        self._touch(policy)

    # ---- effect ----------------------------------------------------------------------------------

    def applied_to(self, group_ids: set[str], package: str) -> list[Policy]:
        """Policies whose assignments reach a user in these groups and which target this app."""
        out: list[Policy] = []
        for policy in self.items.values():
            included = excluded = False
            for assignment in policy.assignments:
                target = assignment["target"]
                kind = target["@odata.type"]
                in_group = target.get("groupId") in group_ids
                if kind == _ALL_USERS_TARGET or (kind == _GROUP_TARGET and in_group):
                    included = True
                elif kind == _EXCLUDE_TARGET and in_group:
                    excluded = True
            if included and not excluded and package in policy.packages():
                out.append(policy)
        return out
