"""Microsoft Graph (beta and v1.0) endpoints the bot uses: MTD connector, app protection policies,
app registrations, users and groups."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.sandbox.core import ApiError, Call, Reply, bad_request, graph_page
from bot.sandbox.odata import (
    Entity,
    Filter,
    QueryError,
    apply_select,
    compile_filter,
    compile_search,
    parse_expand,
    parse_select,
)
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

USER_DEFAULT = ("businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
                "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id")
USER_PROPERTIES = (*USER_DEFAULT, "accountEnabled", "department", "companyName", "usageLocation",
                   "createdDateTime", "userType")
GROUP_PROPERTIES = ("id", "deletedDateTime", "classification", "createdDateTime", "description",
                    "displayName", "groupTypes", "isAssignableToRole", "mail", "mailEnabled", "mailNickname",
                    "membershipRule", "membershipRuleProcessingState", "onPremisesSyncEnabled",
                    "securityEnabled", "securityIdentifier", "visibility")
REGISTRATION_PROPERTIES = ("id", "createdDateTime", "lastSyncDateTime", "applicationVersion",
                           "managementSdkVersion", "platformVersion", "deviceType", "deviceTag", "deviceName",
                           "managedDeviceId", "azureADDeviceId", "deviceModel", "deviceManufacturer",
                           "flaggedReasons", "userId", "version", "patchVersion", "appIdentifier")
_USER_TYPE = "#microsoft.graph.user"
_GROUP_TYPE = "#microsoft.graph.group"


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


def _not_found(ref: str) -> ApiError:
    return ApiError(404, "Request_ResourceNotFound", f"Resource '{ref}' does not exist or one of its queried "
                    "reference-property objects are not present.")


def _query_error(exc: QueryError, resource: str, directory: bool) -> ApiError:
    if directory and exc.property_name:
        return bad_request(f"Unsupported or invalid query filter clause specified for property "
                           f"'{exc.property_name}' of resource '{resource}'.", "Request_UnsupportedQuery")
    return bad_request(str(exc), "Request_UnsupportedQuery" if directory else "BadRequest")


class GraphApi:
    def __init__(self, tenant: TenantState) -> None:
        self.tenant = tenant
        self.world = tenant.world
        self.config = tenant.config

    def dispatch(self, handler: str, call: Call) -> Reply:
        method: Callable[[Call], Reply] = getattr(self, "h_" + handler)
        return method(call)

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
        if call.method == "DELETE":
            self.tenant.remove_connector()
            return Reply(204)
        if call.method == "PATCH":
            self.tenant.patch_connector(self._connector_changes(call))
            connector = self._render_connector(call)
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
        ids = self._ordered(call, ids, lambda i: store.items[i].props)

        def at(index: int) -> Entity | None:
            return store.render(store.items[ids[index]], call.beta, expand)

        return graph_page(call, size=len(ids), at=at, context=self._policy_context(call, expand, False),
                          page_size=self.config.graph_page_size, max_top=self.config.graph_max_top,
                          strict_top=False, predicate=predicate,
                          render=(lambda e: apply_select(e, [*select, *sorted(expand)])) if select else None)

    def _ordered(self, call: Call, ids: list[str], props: Callable[[str], Entity]) -> list[str]:
        order = call.param("$orderby")
        if not order:
            return ids
        parts = order.split()
        name = parts[0]
        descending = len(parts) > 1 and parts[1].lower() == "desc"
        if name not in ("displayName", "createdDateTime", "lastModifiedDateTime"):
            raise bad_request(f"The sandbox orders this collection only by displayName, createdDateTime or "
                              f"lastModifiedDateTime, not '{name}'.")
        return sorted(ids, key=lambda i: str(props(i).get(name) or "").casefold(), reverse=descending)

    def h_policy(self, call: Call) -> Reply:
        store = self.tenant.policies_store
        policy_id = call.args["id"]
        if call.method == "DELETE":
            store.delete(policy_id)
            return Reply(204)
        if call.method == "PATCH":
            policy = store.update(policy_id, call.body, call.beta)
            if self.config.policy_patch_status == 204:
                return Reply(204)
            entity = store.render(policy, call.beta)
            return Reply(200, {"@odata.context": self._policy_context(call, set(), True), **entity})
        expand, select = self._policy_options(call)
        entity = self._render_policy(call, policy_id, expand, select)
        return Reply(200, {"@odata.context": self._policy_context(call, expand, True), **entity})

    def h_target_apps(self, call: Call) -> Reply:
        self.tenant.policies_store.target_apps(call.args["id"], call.body)
        return Reply(204)

    def h_assign(self, call: Call) -> Reply:
        self.tenant.policies_store.assign(call.args["id"], call.body)
        return Reply(204)

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
        user = self._user_index(call.args["id"])
        indexes = self.world.registrations_of(user)
        render = self._registration_renderer(call)
        flt = self._registration_filter(call)
        return graph_page(call, size=len(indexes), at=lambda i: render(indexes[i]),
                          context=f"{call.root()}/$metadata#users('{call.args['id']}')/managedAppRegistrations",
                          page_size=self.config.registrations_page_size, max_top=self.config.graph_max_top,
                          strict_top=False, predicate=flt.predicate if flt else None)

    # ---- directory -------------------------------------------------------------------------------

    def _user_index(self, ref: str) -> int:
        index = self.world.find_user(ref)
        if index is None:
            raise _not_found(ref)
        return index

    def _group_index(self, ref: str) -> int:
        index = self.world.find_group(ref)
        if index is None:
            raise _not_found(ref)
        return index

    def _render_user(self, index: int, select: list[str] | None, typed: bool) -> Entity:
        user = self.world.user(index)
        fields = select if select is not None else USER_DEFAULT
        out: Entity = {"@odata.type": _USER_TYPE} if typed else {}
        out.update({name: user.get(name) for name in fields})
        return out

    def _render_group(self, index: int, select: list[str] | None, typed: bool) -> Entity:
        group = copy.deepcopy(self.world.groups[index])
        out: Entity = {"@odata.type": _GROUP_TYPE} if typed else {}
        out.update(group if select is None else {name: group.get(name) for name in select})
        return out

    def _directory_query(self, call: Call, properties: tuple[str, ...], resource: str,
                         type_name: str) -> tuple[Filter | None, Callable[[Entity], bool] | None,
                                                  list[str] | None, bool]:
        """Parse $filter, $search, $select and $count under the directory's advanced-query rules."""
        flt = None
        search = None
        try:
            if call.param("$filter"):
                flt = compile_filter(call.param("$filter") or "", properties)
            if call.param("$search") is not None:
                if not call.eventual:
                    raise bad_request("Request with $search query parameter only works through MSGraph "
                                      "with a special request header: 'ConsistencyLevel: eventual'",
                                      "Request_UnsupportedQuery")
                search = compile_search(call.param("$search") or "", ("displayName", "description", "mail",
                                                                      "mailNickname", "userPrincipalName"))
            select = parse_select(call.param("$select"), properties, type_name)
        except QueryError as exc:
            raise _query_error(exc, resource, directory=True) from None
        count = (call.param("$count") or "").lower() == "true"
        if (count or (flt is not None and flt.advanced)) and not call.eventual:
            raise bad_request("Operator or option requires advanced query capabilities: add the header "
                              "'ConsistencyLevel: eventual' and $count=true.", "Request_UnsupportedQuery")
        if call.param("$orderby") and (search is not None or flt is not None) and not call.eventual:
            raise bad_request("Sorting with $filter or $search requires 'ConsistencyLevel: eventual'.",
                              "Request_UnsupportedQuery")
        return flt, search, select, count

    @staticmethod
    def _both(flt: Filter | None, search: Callable[[Entity], bool] | None) -> Callable[[Entity], bool] | None:
        if flt is None:
            return search
        if search is None:
            return flt.predicate
        predicate = flt.predicate
        return lambda e: predicate(e) and search(e)

    def h_groups(self, call: Call) -> Reply:
        flt, search, select, count = self._directory_query(call, GROUP_PROPERTIES, "Group",
                                                           "microsoft.graph.group")
        world = self.world
        order = list(range(len(world.groups)))
        if call.param("$orderby"):
            ids = self._ordered(call, [str(i) for i in order], lambda i: world.groups[int(i)])
            order = [int(i) for i in ids]
        predicate = self._both(flt, search)
        return graph_page(call, size=len(order), at=lambda i: copy.deepcopy(world.groups[order[i]]),
                          context=f"{call.root()}/$metadata#groups", page_size=self.config.graph_page_size,
                          max_top=self.config.graph_max_top, strict_top=True, predicate=predicate,
                          render=(lambda e: apply_select(e, select)) if select else None, count=count)

    def h_group(self, call: Call) -> Reply:
        index = self._group_index(call.args["id"])
        try:
            select = parse_select(call.param("$select"), GROUP_PROPERTIES, "microsoft.graph.group")
        except QueryError as exc:
            raise _query_error(exc, "Group", directory=True) from None
        return Reply(200, {"@odata.context": f"{call.root()}/$metadata#groups/$entity",
                           **self._render_group(index, select, typed=False)})

    def _member_cast(self, call: Call) -> str | None:
        cast = (call.args.get("cast") or "").lower()
        return None if not cast else _USER_TYPE if cast.endswith(".user") else _GROUP_TYPE

    def h_members(self, call: Call) -> Reply:
        group = self._group_index(call.args["id"])
        transitive = call.args["relation"].lower() == "transitivemembers"
        members = self.world.member_refs(group, transitive)
        cast = self._member_cast(call)
        properties = tuple(dict.fromkeys((*USER_PROPERTIES, *GROUP_PROPERTIES)))
        flt, search, select, count = self._directory_query(call, properties, "DirectoryObject",
                                                           "microsoft.graph.directoryObject")

        def at(position: int) -> Entity | None:
            kind, index = members[position]
            if cast == _USER_TYPE and kind != "user":
                return None
            if cast == _GROUP_TYPE and kind != "group":
                return None
            if kind == "user":
                user = self.world.user(index)
                return {"@odata.type": _USER_TYPE, **user}
            return {"@odata.type": _GROUP_TYPE, **copy.deepcopy(self.world.groups[index])}

        def render(entity: Entity) -> Entity:
            fields = select
            if fields is None:
                fields = list(USER_DEFAULT) if entity["@odata.type"] == _USER_TYPE else list(GROUP_PROPERTIES)
            return {"@odata.type": entity["@odata.type"], **{f: entity.get(f) for f in fields}}

        suffix = f"/{call.args['cast']}" if call.args.get("cast") else ""
        return graph_page(call, size=len(members), at=at,
                          context=f"{call.root()}/$metadata#directoryObjects{suffix}",
                          page_size=self.config.graph_page_size, max_top=self.config.graph_max_top,
                          strict_top=True, predicate=self._both(flt, search), render=render, count=count)

    def h_members_count(self, call: Call) -> Reply:
        if not call.eventual:
            raise bad_request("Count is not currently supported without the header "
                              "'ConsistencyLevel: eventual'.", "Request_BadRequest")
        group = self._group_index(call.args["id"])
        transitive = call.args["relation"].lower() == "transitivemembers"
        members = self.world.member_refs(group, transitive)
        cast = self._member_cast(call)
        groups = sum(1 for kind, _ in members.cast if kind == "group")
        total = len(members)
        value = total if cast is None else groups if cast == _GROUP_TYPE else total - groups
        return Reply(200, str(value))

    def h_users(self, call: Call) -> Reply:
        flt, search, select, count = self._directory_query(call, USER_PROPERTIES, "User",
                                                           "microsoft.graph.user")
        world = self.world
        if flt is not None and flt.equals and flt.equals[0] in ("id", "mail", "userPrincipalName") \
                and search is None:
            index = world.find_user(flt.equals[1])
            rows = [index] if index is not None else []
            size, at = len(rows), (lambda i: world.user(rows[i]))
        else:
            size, at = world.user_count, world.user
        return graph_page(call, size=size, at=at, context=f"{call.root()}/$metadata#users",
                          page_size=self.config.graph_page_size, max_top=self.config.graph_max_top,
                          strict_top=True, predicate=self._both(flt, search),
                          render=lambda e: {f: e.get(f) for f in (select or USER_DEFAULT)}, count=count)

    def h_user(self, call: Call) -> Reply:
        index = self._user_index(call.args["id"])
        try:
            select = parse_select(call.param("$select"), USER_PROPERTIES, "microsoft.graph.user")
        except QueryError as exc:
            raise _query_error(exc, "User", directory=True) from None
        context = f"{call.root()}/$metadata#users/$entity"
        if select:
            context = f"{call.root()}/$metadata#users({','.join(select)})/$entity"
        return Reply(200, {"@odata.context": context, **self._render_user(index, select, typed=False)})

    def h_member_of(self, call: Call) -> Reply:
        user = self._user_index(call.args["id"])
        transitive = call.args["relation"].lower() == "transitivememberof"
        world = self.world
        groups = world.transitive_groups_of(user) if transitive else sorted(world.direct_groups_of(user))
        if call.args.get("cast") and call.args["cast"].lower().endswith(".user"):
            groups = []
        flt, search, select, count = self._directory_query(call, GROUP_PROPERTIES, "Group",
                                                           "microsoft.graph.group")
        return graph_page(call, size=len(groups),
                          at=lambda i: self._render_group(groups[i], None, typed=True),
                          context=f"{call.root()}/$metadata#directoryObjects",
                          page_size=self.config.graph_page_size, max_top=self.config.graph_max_top,
                          strict_top=True, predicate=self._both(flt, search),
                          render=(lambda e: apply_select(e, select)) if select else None, count=count)
