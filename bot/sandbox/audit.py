"""Intune's audit log in the sandbox: every write to an app protection policy or the MDE connector is an
`auditEvent` (microsoft-graph.md §10), read back with `GET /{v1.0,beta}/deviceManagement/auditEvents`.

Who made a write: one that came through the Graph API carries the calling app as its actor (the `appid` or
`azp` claim of a JWT bearer, else `SANDBOX_APP_ID`: the static token the bot's sandbox clients send); one made
"in the portal" (`SandboxTenant.edit_policy_as`, the console's `:portal`, the served sandbox's
`/sandbox-admin/...` routes) carries a named admin signed in to the Intune portal.

Events can arrive late, as Intune's do: each becomes visible `delay` after it happened (`SandboxConfig.audit_delay`,
or per edit), on the tenant's clock; `deliver_late()` makes every one visible now. The list filters only on
`activityDateTime` (and a few documented properties); a DateTimeOffset literal must be unquoted and carry its zone.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from bot.sandbox.core import ApiError, Call, Reply, bad_request, graph_page
from bot.sandbox.ids import stable_guid
from bot.sandbox.odata import QueryError, compile_filter
from bot.sandbox.policies import Policy
from bot.sandbox.seed import stamp

# The app the bot's sandbox clients are (their static token names none): drift detection knows its own writes by it.
SANDBOX_APP_ID = "7b0c3d52-4a1e-4f6b-9d2c-5a6e8f0b1c37"
SANDBOX_APP_NAME = "mam-bot (sandbox)"
# What Intune records for an admin's edit in the Intune admin center.
PORTAL_APP_ID = "5926fc8e-304e-4f59-8bed-58ca97cc39a4"
PORTAL_APP_NAME = "Microsoft Intune portal extension"
PORTAL_ADMIN = "intune.admin@contoso.example"

POLICY_COMPONENT = "ManagedAppProtection"
POLICY_RESOURCE = "AndroidManagedAppProtection"
CONNECTOR_COMPONENT = "MobileThreatDefense"
CONNECTOR_RESOURCE = "MobileThreatDefenseConnector"

# Properties the list can be filtered on (Graph documents few); anything else is for the caller to filter.
FILTERABLE = ("activityDateTime", "activityType", "displayName", "id", "correlationId", "category")
_COMPARED_TIME = re.compile(r"activityDateTime\s+(?:eq|ne|gt|ge|lt|le)\s+(\S+)", re.IGNORECASE)
_ZONED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?Z$")
_ACTOR_BETA_ONLY = ("auditActorType", "userRoleScopeTags", "remoteTenantId", "remoteUserId")
_RESOURCE_BETA_ONLY = ("auditResourceType",)


def as_text(value: Any) -> str | None:
    """A property value as Intune's audit log shows it: a string (None stays null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(as_text(v)) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def modified(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(name, old, new) of each property that differs, as strings."""
    names = list(dict.fromkeys([*before, *after]))
    return [(n, as_text(before.get(n)), as_text(after.get(n))) for n in names if before.get(n) != after.get(n)]


def app_actor(app_id: str, app_name: str) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.auditActor", "type": "Application", "auditActorType": "Application",
            "userPermissions": [], "applicationId": app_id, "applicationDisplayName": app_name,
            "userPrincipalName": None, "servicePrincipalName": app_name, "ipAddress": None, "userId": None,
            "userRoleScopeTags": [], "remoteTenantId": None, "remoteUserId": None}


def admin_actor(upn: str, user_id: str | None) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.auditActor", "type": "ItPro", "auditActorType": "ItPro",
            "userPermissions": ["*"], "applicationId": PORTAL_APP_ID, "applicationDisplayName": PORTAL_APP_NAME,
            "userPrincipalName": upn, "servicePrincipalName": None, "ipAddress": "203.0.113.24",
            "userId": user_id or stable_guid("admin:" + upn.lower()),
            "userRoleScopeTags": [{"roleScopeTagId": "0", "displayName": "Default"}],
            "remoteTenantId": None, "remoteUserId": None}


def caller(headers: httpx.Headers) -> dict[str, Any]:
    """The actor of a Graph write: the app a JWT bearer names (`appid`, `azp`), else the bot's sandbox app."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    claims = _claims(token.strip()) if scheme.lower() == "bearer" else {}
    app_id = claims.get("appid") or claims.get("azp")
    if isinstance(app_id, str) and app_id.strip():
        name = claims.get("app_displayname")
        return app_actor(app_id.strip(), name if isinstance(name, str) and name else app_id.strip())
    return app_actor(SANDBOX_APP_ID, SANDBOX_APP_NAME)


def _claims(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return payload if isinstance(payload, dict) else {}


@dataclass
class Resource:
    """What an event is about: one policy or the connector."""

    id: str
    name: str
    type: str
    component: str
    category: str


def policy_resource(policy_id: str, name: str) -> Resource:
    return Resource(policy_id, name, POLICY_RESOURCE, POLICY_COMPONENT, "Application")


def connector_resource(connector_id: str) -> Resource:
    return Resource(connector_id, "Microsoft Defender for Endpoint", CONNECTOR_RESOURCE, CONNECTOR_COMPONENT, "Other")


@dataclass
class _Event:
    body: dict[str, Any]  # as beta returns it
    at: datetime
    visible_at: datetime


class AuditTrail:
    """The tenant's audit events, newest last; the Graph list handler is `h_audit_events`."""

    def __init__(self, seed: int, clock: Callable[[], datetime], *, delay: timedelta = timedelta(0),
                 page_size: int = 50, max_top: int = 999) -> None:
        self._seed = seed
        self._clock = clock
        self.delay = delay
        self.page_size = page_size
        self.max_top = max_top
        self._events: list[_Event] = []
        self._lock = threading.Lock()

    # ---- writing -------------------------------------------------------------------------------

    def record(self, actor: dict[str, Any], resource: Resource, operation: str,
               changes: Iterable[tuple[str, str | None, str | None]], *, delay: timedelta | None = None,
               correlation_id: str | None = None, action: str | None = None) -> dict[str, Any]:
        """One event: `operation` is Create, Patch, Delete or Action (`action` names the action: Assign,
        TargetApps); `changes` are (property, old, new) strings."""
        now = self._clock()
        with self._lock:
            number = len(self._events) + 1
            verb = action or operation
            body: dict[str, Any] = {
                "@odata.type": "#microsoft.graph.auditEvent",
                "id": stable_guid(f"audit:{self._seed}:{number}"),
                "displayName": f"{verb} {resource.type}",
                "componentName": resource.component,
                "actor": dict(actor),
                "activity": f"{verb} {resource.type}",
                "activityDateTime": stamp(now),
                "activityType": f"{verb} {resource.type}",
                "activityOperationType": operation,
                "activityResult": "Success",
                "correlationId": correlation_id or stable_guid(f"audit-correlation:{self._seed}:{number}"),
                "category": resource.category,
                "resources": [{
                    "@odata.type": "#microsoft.graph.auditResource",
                    "displayName": resource.name,
                    "modifiedProperties": [
                        {"@odata.type": "#microsoft.graph.auditProperty", "displayName": name, "oldValue": old,
                         "newValue": new} for name, old, new in changes],
                    "type": resource.type,
                    "auditResourceType": resource.type,
                    "resourceId": resource.id,
                }],
            }
            wait = self.delay if delay is None else delay
            self._events.append(_Event(body, now, now + max(wait, timedelta(0))))
            return json.loads(json.dumps(body))

    def deliver_late(self) -> int:
        """Every event not visible yet becomes visible now; returns how many were waiting."""
        now = self._clock()
        with self._lock:
            waiting = [e for e in self._events if e.visible_at > now]
            for event in waiting:
                event.visible_at = now
            return len(waiting)

    # ---- reading -------------------------------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event recorded, visible or not yet, oldest first (beta shape)."""
        with self._lock:
            return [json.loads(json.dumps(e.body)) for e in self._events]

    def visible(self, beta: bool = True) -> list[dict[str, Any]]:
        """The events a GET lists now, in the order they happened."""
        now = self._clock()
        with self._lock:
            shown = sorted((e for e in self._events if e.visible_at <= now), key=lambda e: e.at)
            return [_render(e.body, beta) for e in shown]

    def h_audit_events(self, call: Call) -> Reply:
        predicate = None
        text = call.param("$filter")
        if text:
            _check_times(text)
            try:
                predicate = compile_filter(text, FILTERABLE).predicate
            except QueryError as exc:
                name = exc.property_name
                if name is not None:
                    raise bad_request(f"Filtering auditEvents on '{name}' is not supported; filter on "
                                      f"activityDateTime and read the rest.") from None
                raise bad_request(str(exc)) from None
        items = self.visible(call.beta)
        context = f"{call.root()}/$metadata#deviceManagement/auditEvents"
        return graph_page(call, size=len(items), at=items.__getitem__, context=context, page_size=self.page_size,
                          max_top=self.max_top, strict_top=False, predicate=predicate)

    def h_audit_event(self, call: Call) -> Reply:
        wanted = call.args["id"].lower()
        for event in self.visible(call.beta):
            if event["id"] == wanted:
                context = f"{call.root()}/$metadata#deviceManagement/auditEvents/$entity"
                return Reply(200, {"@odata.context": context, **event})
        raise ApiError(404, "ResourceNotFound", f"The auditEvent with id '{call.args['id']}' was not found.")


def _check_times(text: str) -> None:
    """activityDateTime compares with an unquoted UTC literal (`2026-03-03T10:00:00Z`): a quoted one is a
    string, and one without its zone is not a DateTimeOffset."""
    for found in _COMPARED_TIME.finditer(text):
        literal = found.group(1).rstrip(")")
        if literal.startswith("'"):
            raise bad_request(f"A binary operator with incompatible types was detected. Found operand types "
                              f"'Edm.DateTimeOffset' and 'Edm.String' for the operator kind "
                              f"'{found.group(0).split()[1]}' (write the time unquoted: {literal.strip(chr(39))}).")
        if not _ZONED.match(literal):
            raise bad_request(f"The DateTimeOffset literal '{literal}' has no time zone: give a UTC time ending in "
                              "Z, e.g. 2026-03-03T10:00:00Z.")


def _render(body: dict[str, Any], beta: bool) -> dict[str, Any]:
    out = json.loads(json.dumps(body))
    if not beta:
        for key in _ACTOR_BETA_ONLY:
            out["actor"].pop(key, None)
        for resource in out["resources"]:
            for key in _RESOURCE_BETA_ONLY:
                resource.pop(key, None)
    return out


# ---- what a write changed ------------------------------------------------------------------------------

_VOLATILE = frozenset({"lastModifiedDateTime", "version", "createdDateTime", "deployedAppCount", "isAssigned"})


def policy_view(policy: Policy | None) -> dict[str, Any]:
    """A policy's properties as the audit log compares them: settings, its apps and its assignments."""
    if policy is None:
        return {}
    view = {k: v for k, v in policy.props.items() if k not in _VOLATILE}
    view["apps"] = sorted(policy.packages())
    view["assignments"] = sorted(_assignment_text(a["target"]) for a in policy.assignments)
    return view


def _assignment_text(target: dict[str, Any]) -> str:
    kind = str(target.get("@odata.type", "")).rsplit(".", 1)[-1]
    group = target.get("groupId")
    return f"{kind}:{group}" if group else kind


def policy_changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    return modified(before, after)
