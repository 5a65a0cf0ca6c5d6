"""Edits made outside the bot, as an admin in the Intune portal makes them: the tenant changes and Intune's audit
log names that admin (bot.sandbox.audit). `SandboxTenant.edit_policy_as`, `create_policy_as`, `delete_policy_as`
and `set_connector_as` call these; so do the console's `:portal` and the served sandbox's `/sandbox-admin/...`
routes (`admin_request`), which are not Graph routes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from bot.sandbox.audit import (
    PORTAL_ADMIN,
    admin_actor,
    connector_resource,
    modified,
    policy_resource,
    policy_view,
)
from bot.sandbox.core import ApiError
from bot.sandbox.ids import stable_guid
from bot.sandbox.policies import Policy, PolicyStore, managed_app
from bot.sandbox.schema import ANDROID_POLICY_TYPE, CONNECTOR_PROPERTIES, CONNECTOR_READ_ONLY

if TYPE_CHECKING:
    from bot.sandbox.tenant import SandboxTenant

ADMIN_PATH = "/sandbox-admin/"
_GROUP = "#microsoft.graph.groupAssignmentTarget"
_EXCLUDE = "#microsoft.graph.exclusionGroupAssignmentTarget"
T = TypeVar("T")


class PortalError(ValueError):
    """The edit can't be made (unknown policy or group, a value Intune refuses): nothing was changed."""


def _fold(name: str) -> str:
    return " ".join(name.split()).casefold()


def find_policy(store: PolicyStore, ref: str) -> Policy:
    """A policy by id, or by its display name when exactly one policy has it."""
    try:
        return store.get(ref)
    except ApiError:
        named = [p for p in store.items.values() if _fold(str(p.props.get("displayName", ""))) == _fold(ref)]
    if len(named) != 1:
        raise PortalError(f"no policy {ref!r}" if not named else f"{len(named)} policies are called {ref!r}; "
                          "give the id")
    return named[0]


def _api(write: Callable[[], T]) -> T:
    try:
        return write()
    except ApiError as exc:
        raise PortalError(exc.message) from None


def _actor(tenant: SandboxTenant, admin: str) -> dict[str, Any]:
    upn = admin.strip() or PORTAL_ADMIN
    user = tenant.user(upn)
    if user is None:
        return admin_actor(upn, None)
    return admin_actor(str(user.get("userPrincipalName") or upn), str(user["id"]))


def _group_id(tenant: SandboxTenant, ref: str) -> str:
    group = tenant.group(ref)
    if group is None:
        raise PortalError(f"no group {ref!r} (give its id, or a name only one group has)")
    return str(group["id"]).lower()


def edit_policy(tenant: SandboxTenant, admin: str, ref: str, *, settings: Mapping[str, Any],
                apps: Iterable[str] | None = None, add_apps: Iterable[str] = (), remove_apps: Iterable[str] = (),
                include: Iterable[str] = (), exclude: Iterable[str] = (), remove_groups: Iterable[str] = (),
                delay: timedelta | None = None) -> dict[str, Any]:
    """One save in the portal: settings (a PATCH), apps (targetApps) and groups (assign), each its own event."""
    store = tenant.policies_store
    policy = find_policy(store, ref)
    actor = _actor(tenant, admin)
    correlation = stable_guid(f"portal:{policy.id}:{len(tenant.audit.events)}")
    include_ids = [_group_id(tenant, g) for g in include]
    exclude_ids = [_group_id(tenant, g) for g in exclude]
    remove_ids = [_group_id(tenant, g) for g in remove_groups]
    added, dropped = list(add_apps), set(remove_apps)

    def record(operation: str, before: dict[str, Any], action: str | None = None) -> None:
        after = policy_view(policy)
        tenant.audit.record(actor, policy_resource(policy.id, str(policy.props.get("displayName", ""))), operation,
                            modified(before, after), delay=delay, correlation_id=correlation, action=action)

    if settings:
        before = policy_view(policy)
        _api(lambda: store.update(policy.id, dict(settings), True))
        record("Patch", before)
    if apps is not None or added or dropped:
        packages = list(apps) if apps is not None else sorted(policy.packages())
        packages = [p for p in packages if p not in dropped] + [p for p in added if p not in packages]
        before = policy_view(policy)
        body = {"apps": [managed_app(p) for p in packages], "appGroupType": "selectedPublicApps"}
        _api(lambda: store.target_apps(policy.id, body))
        record("Action", before, "TargetApps")
    if include_ids or exclude_ids or remove_ids:
        touched = {*include_ids, *exclude_ids, *remove_ids}
        kept = [dict(a["target"]) for a in policy.assignments if str(a["target"].get("groupId") or "") not in touched]
        targets = kept + [{"@odata.type": _GROUP, "groupId": g} for g in include_ids] + [
            {"@odata.type": _EXCLUDE, "groupId": g} for g in exclude_ids]
        before = policy_view(policy)
        _api(lambda: store.assign(policy.id, {"assignments": [{"target": t} for t in targets]}))
        record("Action", before, "Assign")
    return store.render(policy, True, {"apps", "assignments"})


def create_policy(tenant: SandboxTenant, admin: str, name: str, settings: Mapping[str, Any],
                  delay: timedelta | None = None) -> dict[str, Any]:
    store = tenant.policies_store
    body = {"@odata.type": ANDROID_POLICY_TYPE, **settings, "displayName": name}
    policy = _api(lambda: store.create(body, True))
    tenant.audit.record(_actor(tenant, admin), policy_resource(policy.id, name), "Create",
                        modified({}, policy_view(policy)), delay=delay)
    return store.render(policy, True, {"apps", "assignments"})


def delete_policy(tenant: SandboxTenant, admin: str, ref: str, delay: timedelta | None = None) -> str:
    store = tenant.policies_store
    policy = find_policy(store, ref)
    before = policy_view(policy)
    store.delete(policy.id)
    tenant.audit.record(_actor(tenant, admin), policy_resource(policy.id, str(before.get("displayName", ""))),
                        "Delete", modified(before, {}), delay=delay)
    return policy.id


def set_connector(tenant: SandboxTenant, admin: str, fields: Mapping[str, Any],
                  delay: timedelta | None = None) -> dict[str, Any]:
    """The Intune connector page's toggles and threshold, saved by an admin."""
    before = tenant.connector_state()
    if before is None:
        raise PortalError("there is no Defender for Endpoint connector in this tenant")
    for name, value in fields.items():
        kind = CONNECTOR_PROPERTIES.get(name, ("", False))[0]
        if kind not in ("Boolean", "Int32") or name in CONNECTOR_READ_ONLY:
            raise PortalError(f"{name!r} is not a setting an admin can change on the connector")
        if (kind == "Boolean") != isinstance(value, bool) or (kind == "Int32" and not isinstance(value, int)):
            raise PortalError(f"{name} takes {'true or false' if kind == 'Boolean' else 'a whole number'}")
    tenant.patch_connector(dict(fields))
    after = tenant.connector_state() or {}
    changes = [c for c in modified(before, after) if c[0] != "lastHeartbeatDateTime"]
    tenant.audit.record(_actor(tenant, admin), connector_resource(str(before["id"])), "Patch", changes, delay=delay)
    return after


# ---- the served sandbox's admin routes -------------------------------------------------------------------


def admin_request(tenant: SandboxTenant, method: str, path: str, content: bytes) -> tuple[int, dict[str, Any]]:
    """`POST /sandbox-admin/portal/policy` (edit), `.../policy/create`, `.../policy/delete`,
    `.../portal/connector` and `/sandbox-admin/audit/deliver`: (status, JSON answer)."""
    route = path[len(ADMIN_PATH):].strip("/").lower()
    routes = ("portal/policy", "portal/policy/create", "portal/policy/delete", "portal/connector", "audit/deliver")
    if route not in routes:
        return 404, {"error": f"no sandbox admin route {path!r}; there are: "
                              + ", ".join(ADMIN_PATH + r for r in routes)}
    if method != "POST":
        return 405, {"error": "sandbox admin routes take POST"}
    try:
        body = json.loads(content or b"{}")
    except ValueError:
        return 400, {"error": "the body must be a JSON object"}
    if not isinstance(body, dict):
        return 400, {"error": "the body must be a JSON object"}
    try:
        return 200, _admin_route(tenant, route, body)
    except (PortalError, TypeError) as exc:
        return 400, {"error": str(exc)}


def _admin_route(tenant: SandboxTenant, route: str, body: dict[str, Any]) -> dict[str, Any]:
    admin = str(body.get("admin") or PORTAL_ADMIN)
    delay = timedelta(seconds=float(body["auditDelaySeconds"])) if body.get("auditDelaySeconds") else None
    settings = body.get("settings") or {}
    if not isinstance(settings, dict):
        raise PortalError("settings must be a JSON object")
    if route == "audit/deliver":
        return {"delivered": tenant.deliver_late_audit_events()}
    if route == "portal/connector":
        return {"connector": tenant.set_connector_as(admin, audit_delay=delay, **settings)}
    if route == "portal/policy/create":
        return {"policy": tenant.create_policy_as(admin, str(body.get("displayName") or ""), audit_delay=delay,
                                                  **settings)}
    ref = str(body.get("policy") or "")
    if route == "portal/policy/delete":
        return {"deleted": tenant.delete_policy_as(admin, ref, audit_delay=delay)}
    return {"policy": tenant.edit_policy_as(
        admin, ref, apps=_strings(body, "apps") if "apps" in body else None, add_apps=_strings(body, "addApps"),
        remove_apps=_strings(body, "removeApps"), include=_strings(body, "include"),
        exclude=_strings(body, "exclude"), remove_groups=_strings(body, "removeGroups"), audit_delay=delay,
        **settings)}


def _strings(body: Mapping[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PortalError(f"{key} must be a list of strings")
    return list(value)
