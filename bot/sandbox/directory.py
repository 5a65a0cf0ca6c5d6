"""Microsoft Graph directory endpoints: users (with assignedPlans), groups, members and memberOf, under the
directory's advanced-query rules (ConsistencyLevel: eventual, $count, $search)."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from bot.sandbox.core import ApiError, Call, Reply, bad_request, graph_page, order_ids
from bot.sandbox.odata import Entity, Filter, QueryError, apply_select, compile_filter, compile_search, parse_select

if TYPE_CHECKING:
    from bot.sandbox.state import TenantState

USER_DEFAULT = ("businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
                "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id")
USER_PROPERTIES = (*USER_DEFAULT, "accountEnabled", "department", "companyName", "usageLocation",
                   "createdDateTime", "userType", "assignedPlans")
GROUP_PROPERTIES = ("id", "deletedDateTime", "classification", "createdDateTime", "description",
                    "displayName", "groupTypes", "isAssignableToRole", "mail", "mailEnabled", "mailNickname",
                    "membershipRule", "membershipRuleProcessingState", "onPremisesSyncEnabled",
                    "securityEnabled", "securityIdentifier", "visibility")

_LIGHT_USER = frozenset({"id", "assignedPlans"})
_USER_TYPE = "#microsoft.graph.user"
_GROUP_TYPE = "#microsoft.graph.group"


def _not_found(ref: str) -> ApiError:
    return ApiError(404, "Request_ResourceNotFound", f"Resource '{ref}' does not exist or one of its queried "
                    "reference-property objects are not present.")


def _query_error(exc: QueryError, resource: str, directory: bool) -> ApiError:
    if directory and exc.property_name:
        return bad_request(f"Unsupported or invalid query filter clause specified for property "
                           f"'{exc.property_name}' of resource '{resource}'.", "Request_UnsupportedQuery")
    return bad_request(str(exc), "Request_UnsupportedQuery" if directory else "BadRequest")


class DirectoryApi:
    def __init__(self, tenant: TenantState) -> None:
        self.tenant = tenant
        self.world = tenant.world
        self.config = tenant.config
        self._counts: OrderedDict[tuple[Any, ...], int] = OrderedDict()

    def user_index(self, ref: str) -> int:
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
        if flt is not None and flt.lambdas and not count:
            # Graph: a lambda on a collection (assignedPlans/any(...)) needs both the header and $count=true.
            raise bad_request("Filtering on a collection with any()/all() is an advanced query: add "
                              "$count=true to the header 'ConsistencyLevel: eventual'.", "Request_UnsupportedQuery")
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
            ids = order_ids(call, [str(i) for i in order], lambda i: world.groups[int(i)])
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
        fields = select or USER_DEFAULT
        lookups = flt.lookups if flt is not None and search is None else None
        light = flt is not None and search is None and flt.properties <= _LIGHT_USER
        if lookups and all(prop in ("id", "mail", "userPrincipalName") for prop, _ in lookups):
            # `mail eq 'x' or userPrincipalName eq 'x'`: a lookup per literal, not a scan of the directory
            found = (world.find_user(value) for _, value in lookups)
            rows = sorted({index for index in found if index is not None})
            size, at = len(rows), (lambda i: world.user(rows[i]))
        elif light and flt is not None:
            # A filter on id/assignedPlans alone (the licence query) reads only what it needs per user.
            size = world.user_count
            with_dates = "assigneddatetime" in (call.param("$filter") or "").lower()
            at = partial(self._light_user, with_id="id" in flt.properties, with_dates=with_dates)
        else:
            size, at = world.user_count, world.user

        def render(entity: Entity) -> Entity:
            index = entity.get("@sandbox.index")
            if index is None:
                return {f: entity.get(f) for f in fields}
            if not set(fields) <= _LIGHT_USER:
                full = world.user(index)
                return {f: full.get(f) for f in fields}
            light = {"id": world.user_id(index), "assignedPlans": world.licences.assigned_plans(index)}
            return {f: light[f] for f in fields}

        predicate = self._both(flt, search)
        key = (call.param("$filter"), call.param("$search"), world.licences.version)

        def total() -> int:
            # Graph answers @odata.count on every page; the sandbox counts a query once, not once a page.
            found = self._counts.get(key)
            if found is None:
                found = sum(1 for i in range(size) if predicate is None or predicate(at(i)))
                self._counts[key] = found
                while len(self._counts) > 64:
                    self._counts.popitem(last=False)
            return found

        return graph_page(call, size=size, at=at, context=f"{call.root()}/$metadata#users",
                          page_size=self.config.graph_page_size, max_top=self.config.graph_max_top,
                          strict_top=True, predicate=predicate, render=render, count=count, total=total)

    def _light_user(self, index: int, with_id: bool, with_dates: bool) -> Entity:
        licences = self.world.licences
        light: Entity = {"@sandbox.index": index, "assignedPlans": licences.assigned_plans(index) if with_dates
                         else licences.plan_states(index)}
        if with_id:
            light["id"] = self.world.user_id(index)
        return light

    def h_user(self, call: Call) -> Reply:
        index = self.user_index(call.args["id"])
        try:
            select = parse_select(call.param("$select"), USER_PROPERTIES, "microsoft.graph.user")
        except QueryError as exc:
            raise _query_error(exc, "User", directory=True) from None
        context = f"{call.root()}/$metadata#users/$entity"
        if select:
            context = f"{call.root()}/$metadata#users({','.join(select)})/$entity"
        return Reply(200, {"@odata.context": context, **self._render_user(index, select, typed=False)})

    def h_member_of(self, call: Call) -> Reply:
        user = self.user_index(call.args["id"])
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
