"""Microsoft Graph (beta and v1.0) endpoints the bot uses: MTD connector, app protection policies and
app registrations here; users and groups in bot.sandbox.directory, report export jobs in
bot.sandbox.exports."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.sandbox.audit import caller, connector_resource, modified, policy_resource, policy_view
from bot.sandbox.core import ApiError, Call, Reply, bad_request, graph_page, order_ids
from bot.sandbox.directory import DirectoryApi
from bot.sandbox.odata import Entity, Filter, QueryError, apply_select, compile_filter, parse_expand, parse_select
from bot.sandbox.schema import (
    CONNECTOR_BETA_ONLY,
    CONNECTOR_PROPERTIES,
    CONNECTOR_READ_ONLY,
    PARTNER_STATES_V1,
    POLICY_PROPERTIES,
    REGISTRATION_BETA_ONLY,
)

if TYPE_CHECKING:
    from bot.sandbox.state import TenantState

REGISTRATION_PROPERTIES = ("id", "createdDateTime", "lastSyncDateTime", "applicationVersion",
                           "managementSdkVersion", "platformVersion", "deviceType", "deviceTag", "deviceName",
                           "managedDeviceId", "azureADDeviceId", "deviceModel", "deviceManufacturer",
                           "flaggedReasons", "userId", "version", "patchVersion", "appIdentifier")


@dataclass(frozen=True)
class Route:
    methods: tuple[str, ...]
    pattern: re.Pattern[str]
    handler: str
    template: str
    area: str


def _route(methods: str, template: str, handler: str, area: str, regex: str | None = None) -> Route:
    pattern = regex or re.escape(template).replace(r"\{id\}", "(?P<id>[^/]+)")
    return Route(tuple(methods.split()), re.compile(pattern, re.IGNORECASE), handler, template, area)


_POLICIES = "deviceAppManagement/androidManagedAppProtections"
_CAST = r"(?:/(?P<cast>microsoft\.graph\.(?:user|group)))?"
ROUTES: tuple[Route, ...] = (
    _route("GET", "deviceManagement/mobileThreatDefenseConnectors", "list_connectors", "intune"),
    _route("GET PATCH DELETE", "deviceManagement/mobileThreatDefenseConnectors/{id}", "connector", "intune"),
    _route("GET POST", _POLICIES, "policies", "intune"),
    _route("GET PATCH DELETE", _POLICIES + "/{id}", "policy", "intune"),
    _route("POST", _POLICIES + "/{id}/targetApps", "target_apps", "intune"),
    _route("POST", "deviceAppManagement/managedAppPolicies/{id}/targetApps", "target_apps", "intune"),
    _route("POST", _POLICIES + "/{id}/assign", "assign", "intune"),
    _route("GET", _POLICIES + "/{id}/assignments", "policy_assignments", "intune"),
    _route("GET", _POLICIES + "/{id}/apps", "policy_apps", "intune"),
    _route("GET", "deviceAppManagement/managedAppRegistrations", "registrations", "intune"),
    _route("GET", "deviceAppManagement/managedAppRegistrations/{id}", "registration", "intune"),
    _route("GET", "users/{id}/managedAppRegistrations", "user_registrations", "intune"),
    _route("GET", "groups", "groups", "directory"),
    _route("GET", "groups/{id}/{relation}/$count", "members_count", "directory",
           r"groups/(?P<id>[^/]+)/(?P<relation>members|transitiveMembers)" + _CAST + r"/\$count"),
    _route("GET", "groups/{id}/{relation}", "members", "directory",
           r"groups/(?P<id>[^/]+)/(?P<relation>members|transitiveMembers)" + _CAST),
    _route("GET", "groups/{id}", "group", "directory"),
    _route("GET", "users", "users", "directory"),
    _route("GET", "users/{id}/{relation}", "member_of", "directory",
           r"users/(?P<id>[^/]+)/(?P<relation>memberOf|transitiveMemberOf)" + _CAST),
    _route("GET", "users/{id}", "user", "directory"),
    _route("GET POST", "deviceManagement/reports/exportJobs", "export_jobs", "intune"),
    _route("GET", "deviceManagement/reports/exportJobs/{id}", "export_job", "intune"),
    _route("GET", "deviceManagement/auditEvents", "audit_events", "intune"),
    _route("GET", "deviceManagement/auditEvents/{id}", "audit_event", "intune"),
    _route("POST", "$batch", "batch", "batch"),
)
# OData action casts (".../microsoft.graph.targetedManagedAppProtection/microsoft.graph.assign").
_ACTION_CAST = re.compile(
    r"/microsoft\.graph\.(?:targetedManagedAppProtection|managedAppProtection|managedAppPolicy)(?=/)",
    re.IGNORECASE)
_ACTION_NAME = re.compile(r"/microsoft\.graph\.(assign|targetApps)$", re.IGNORECASE)


def normalize_graph_path(path: str) -> str:
    path = _ACTION_CAST.sub("", path)
    return _ACTION_NAME.sub(r"/\1", path)


class GraphApi:
    def __init__(self, tenant: TenantState) -> None:
        self.tenant = tenant
        self.world = tenant.world
        self.config = tenant.config
        self._directory = DirectoryApi(tenant)

    def dispatch(self, handler: str, call: Call) -> Reply:
        for api in (self, self._directory, self.tenant.exports, self.tenant.audit):
            method: Callable[[Call], Reply] | None = getattr(api, "h_" + handler, None)
            if method is not None:
                return method(call)
        raise ApiError(500, "InternalServerError", f"The sandbox has no handler '{handler}'.")

    # ---- MTD connector ---------------------------------------------------------------------------

    def _render_connector(self, call: Call) -> dict[str, Any] | None:
        connector = self.tenant.connector_state()
        if connector is None:
            return None
        if not call.beta:
            connector = {k: v for k, v in connector.items() if k not in CONNECTOR_BETA_ONLY}
            if connector["partnerState"] not in PARTNER_STATES_V1:
                connector["partnerState"] = "unknownFutureValue"
        return connector

    def h_list_connectors(self, call: Call) -> Reply:
        connector = self._render_connector(call)
        return Reply(200, {
            "@odata.context": f"{call.root()}/$metadata#deviceManagement/mobileThreatDefenseConnectors",
            "value": [] if connector is None else [connector],
        })

    def h_connector(self, call: Call) -> Reply:
        connector = self._render_connector(call)
        wanted = call.args["id"]
        if connector is None or connector["id"].lower() != wanted.lower():
            raise ApiError(404, "ResourceNotFound",
                           f"The mobileThreatDefenseConnector with id '{wanted}' was not found.")
        before = self.tenant.connector_state() or {}
        if call.method == "DELETE":
            self.tenant.remove_connector()
            self.tenant.audit.record(caller(call.headers), connector_resource(before["id"]), "Delete",
                                     modified(before, {}))
            return Reply(204)
        if call.method == "PATCH":
            self.tenant.patch_connector(self._connector_changes(call))
            connector = self._render_connector(call)
            after = self.tenant.connector_state() or {}
            self.tenant.audit.record(caller(call.headers), connector_resource(before["id"]), "Patch",
                                     [c for c in modified(before, after) if c[0] != "lastHeartbeatDateTime"])
        context = f"{call.root()}/$metadata#deviceManagement/mobileThreatDefenseConnectors/$entity"
        return Reply(200, {"@odata.context": context, **(connector or {})})

    def _connector_changes(self, call: Call) -> dict[str, Any]:
        body = call.body
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        changes: dict[str, Any] = {}
        for name, value in body.items():
            if name.startswith("@") or name in CONNECTOR_READ_ONLY:
                continue
            known = CONNECTOR_PROPERTIES.get(name)
            if known is None or (not call.beta and name in CONNECTOR_BETA_ONLY):
                raise bad_request(
                    f"The property '{name}' does not exist on type "
                    "'microsoft.graph.mobileThreatDefenseConnector'. Make sure to only use property names "
                    "that are defined by the type or mark the type as open type.")
            kind = known[0]
            if kind == "Boolean" and not isinstance(value, bool):
                raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Boolean'.")
            if kind == "Int32" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Int32'.")
            changes[name] = value
        return changes

    # ---- app protection policies -----------------------------------------------------------------

    def _policy_context(self, call: Call, expand: set[str], entity: bool) -> str:
        shape = "(" + ",".join(f"{e}()" for e in sorted(expand)) + ")" if expand else ""
        return (f"{call.root()}/$metadata#deviceAppManagement/androidManagedAppProtections{shape}"
                + ("/$entity" if entity else ""))

    def _policy_options(self, call: Call) -> tuple[set[str], list[str] | None]:
        try:
            expand = parse_expand(call.param("$expand"), ("apps", "assignments", "deploymentSummary"),
                                  "microsoft.graph.androidManagedAppProtection")
            select = parse_select(call.param("$select"), POLICY_PROPERTIES,
                                  "microsoft.graph.androidManagedAppProtection")
        except QueryError as exc:
            raise bad_request(str(exc)) from None
        expand.discard("deploymentSummary")
        return expand, select

    def _render_policy(self, call: Call, policy_id: str, expand: set[str],
                       select: list[str] | None) -> Entity:
        store = self.tenant.policies_store
        entity = store.render(store.get(policy_id), call.beta, expand)
        if select is not None:
            entity = apply_select(entity, [*select, *sorted(expand)])
        return entity

    def h_policies(self, call: Call) -> Reply:
        store = self.tenant.policies_store
        if call.method == "POST":
            policy = store.create(call.body, call.beta)
            self._audit(call, policy.id, "Create", {}, policy_view(policy))
            entity = store.render(policy, call.beta)
            location = f"{call.root()}/deviceAppManagement/androidManagedAppProtections('{policy.id}')"
            return Reply(201, {"@odata.context": self._policy_context(call, set(), True), **entity},
                         {"Location": location})
        expand, select = self._policy_options(call)
        predicate = None
        if call.param("$filter"):
            try:
                predicate = compile_filter(call.param("$filter") or "", POLICY_PROPERTIES).predicate
            except QueryError as exc:
                raise bad_request(str(exc)) from None
        ids = list(store.items)
        ids = order_ids(call, ids, lambda i: store.items[i].props)

        def at(index: int) -> Entity | None:
            return store.render(store.items[ids[index]], call.beta, expand)

        return graph_page(call, size=len(ids), at=at, context=self._policy_context(call, expand, False),
                          page_size=self.config.graph_page_size, max_top=self.config.graph_max_top,
                          strict_top=False, predicate=predicate,
                          render=(lambda e: apply_select(e, [*select, *sorted(expand)])) if select else None)

    def h_policy(self, call: Call) -> Reply:
        store = self.tenant.policies_store
        policy_id = call.args["id"]
        if call.method == "DELETE":
            before = policy_view(store.get(policy_id))
            store.delete(policy_id)
            self._audit(call, policy_id, "Delete", before, {})
            return Reply(204)
        if call.method == "PATCH":
            before = policy_view(store.get(policy_id))
            policy = store.update(policy_id, call.body, call.beta)
            self._audit(call, policy.id, "Patch", before, policy_view(policy))
            if self.config.policy_patch_status == 204:
                return Reply(204)
            entity = store.render(policy, call.beta)
            return Reply(200, {"@odata.context": self._policy_context(call, set(), True), **entity})
        expand, select = self._policy_options(call)
        entity = self._render_policy(call, policy_id, expand, select)
        return Reply(200, {"@odata.context": self._policy_context(call, expand, True), **entity})

    def h_target_apps(self, call: Call) -> Reply:
        store = self.tenant.policies_store
        before = policy_view(store.get(call.args["id"]))
        store.target_apps(call.args["id"], call.body)
        self._audit(call, call.args["id"], "Action", before, policy_view(store.get(call.args["id"])), "TargetApps")
        return Reply(204)

    def h_assign(self, call: Call) -> Reply:
        store = self.tenant.policies_store
        before = policy_view(store.get(call.args["id"]))
        store.assign(call.args["id"], call.body)
        self._audit(call, call.args["id"], "Action", before, policy_view(store.get(call.args["id"])), "Assign")
        return Reply(204)

    def _audit(self, call: Call, policy_id: str, operation: str, before: dict[str, Any], after: dict[str, Any],
               action: str | None = None) -> None:
        """Intune's audit event of a successful write, by the calling app."""
        name = str(after.get("displayName") or before.get("displayName") or "")
        key = str(after.get("id") or before.get("id") or policy_id)
        self.tenant.audit.record(caller(call.headers), policy_resource(key, name), operation,
                                 modified(before, after), action=action)

    def h_policy_assignments(self, call: Call) -> Reply:
        store = self.tenant.policies_store
        policy = store.get(call.args["id"])
        items = store.render_assignments(policy, call.beta)
        context = (f"{call.root()}/$metadata#deviceAppManagement/androidManagedAppProtections('{policy.id}')"
                   "/assignments")
        return graph_page(call, size=len(items), at=items.__getitem__, context=context,
                          page_size=self.config.graph_page_size, max_top=self.config.graph_max_top,
                          strict_top=False)

    def h_policy_apps(self, call: Call) -> Reply:
        policy = self.tenant.policies_store.get(call.args["id"])
        items = copy.deepcopy(policy.apps)
        context = (f"{call.root()}/$metadata#deviceAppManagement/androidManagedAppProtections('{policy.id}')"
                   "/apps")
        return graph_page(call, size=len(items), at=items.__getitem__, context=context,
                          page_size=self.config.graph_page_size, max_top=self.config.graph_max_top,
                          strict_top=False)

    # ---- app registrations -----------------------------------------------------------------------

    def _registration_renderer(self, call: Call) -> Callable[[int], Entity]:
        try:
            expand = parse_expand(call.param("$expand"),
                                  ("appliedPolicies", "intendedPolicies", "operations"),
                                  "microsoft.graph.managedAppRegistration")
        except QueryError as exc:
            raise bad_request(str(exc)) from None
        world = self.world
        store = self.tenant.policies_store
        group_cache: dict[int, set[str]] = {}

        def render(index: int) -> Entity:
            entity = world.registration(index)
            if not call.beta:
                for key in REGISTRATION_BETA_ONLY:
                    entity.pop(key, None)
            if expand & {"appliedPolicies", "intendedPolicies"}:
                policies: list[Entity] = []
                package = entity["appIdentifier"].get("packageId")
                if package is not None:
                    owner = world.registration_owner(index)
                    groups = group_cache.get(owner)
                    if groups is None:
                        groups = {world.groups[g]["id"] for g in world.transitive_groups_of(owner)}
                        group_cache[owner] = groups
                    for policy in store.applied_to(groups, package):
                        props = policy.props
                        policies.append({"@odata.type": "#microsoft.graph.androidManagedAppProtection",
                                         "id": props["id"], "displayName": props["displayName"],
                                         "description": props["description"],
                                         "createdDateTime": props["createdDateTime"],
                                         "lastModifiedDateTime": props["lastModifiedDateTime"],
                                         "version": props["version"]})
                for name in ("appliedPolicies", "intendedPolicies"):
                    if name in expand:
                        entity[name] = copy.deepcopy(policies)
            if "operations" in expand:
                entity["operations"] = []
            return entity

        return render

    def _registration_filter(self, call: Call) -> Filter | None:
        text = call.param("$filter")
        if not text:
            return None
        try:
            return compile_filter(text, REGISTRATION_PROPERTIES)
        except QueryError as exc:
            raise bad_request(str(exc)) from None

    def h_registrations(self, call: Call) -> Reply:
        render = self._registration_renderer(call)
        flt = self._registration_filter(call)
        return graph_page(call, size=self.world.registration_count, at=render,
                          context=f"{call.root()}/$metadata#deviceAppManagement/managedAppRegistrations",
                          page_size=self.config.registrations_page_size, max_top=self.config.graph_max_top,
                          strict_top=False, predicate=flt.predicate if flt else None)

    def h_registration(self, call: Call) -> Reply:
        index = self.world.find_registration(call.args["id"])
        if index is None:
            raise ApiError(404, "ResourceNotFound",
                           f"The managedAppRegistration with id '{call.args['id']}' was not found.")
        context = f"{call.root()}/$metadata#deviceAppManagement/managedAppRegistrations/$entity"
        return Reply(200, {"@odata.context": context, **self._registration_renderer(call)(index)})

    def h_user_registrations(self, call: Call) -> Reply:
        user = self._directory.user_index(call.args["id"])
        indexes = self.world.registrations_of(user)
        render = self._registration_renderer(call)
        flt = self._registration_filter(call)
        return graph_page(call, size=len(indexes), at=lambda i: render(indexes[i]),
                          context=f"{call.root()}/$metadata#users('{call.args['id']}')/managedAppRegistrations",
                          page_size=self.config.registrations_page_size, max_top=self.config.graph_max_top,
                          strict_top=False, predicate=flt.predicate if flt else None)
