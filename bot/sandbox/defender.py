"""Microsoft Defender for Endpoint API: machines, with $filter, $top/$skip paging and logon users."""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from bot.sandbox.core import ApiError, Call, Reply
from bot.sandbox.odata import Entity, Filter, QueryError, compile_filter

if TYPE_CHECKING:
    from bot.sandbox.state import TenantState

# The properties Defender documents as filterable on GET /api/machines.
FILTERABLE = ("computerDnsName", "id", "version", "deviceValue", "aadDeviceId", "machineTags", "lastSeen",
              "exposureLevel", "onboardingStatus", "lastIpAddress", "healthStatus", "osPlatform", "riskScore",
              "rbacGroupId")

ROUTES: tuple[tuple[tuple[str, ...], re.Pattern[str], str, str], ...] = (
    (("GET",), re.compile(r"machines", re.IGNORECASE), "machines", "machines"),
    (("GET",), re.compile(r"machines/(?P<id>[^/]+)/logonusers", re.IGNORECASE), "logon_users",
     "machines/{id}/logonusers"),
    (("GET",), re.compile(r"machines/(?P<id>[^/]+)", re.IGNORECASE), "machine", "machines/{id}"),
)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


class DefenderApi:
    """Paging is by $skip over the filtered list; resume points are cached so each page costs O(page)."""

    def __init__(self, tenant: TenantState) -> None:
        self.tenant = tenant
        self.world = tenant.world
        self.config = tenant.config
        self._resume: OrderedDict[tuple[str, int], dict[int, int]] = OrderedDict()

    def dispatch(self, handler: str, call: Call) -> Reply:
        if handler == "machines":
            return self.h_machines(call)
        if handler == "machine":
            return self.h_machine(call)
        return self.h_logon_users(call)

    def _context(self, call: Call, suffix: str = "Machines") -> str:
        return f"{call.base}/api/$metadata#{suffix}"

    def _int_param(self, call: Call, name: str, default: int) -> int:
        text = call.param(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise bad_request(f"Invalid value '{text}' for query option {name}.") from None
        if value < 0:
            raise bad_request(f"Invalid value '{text}' for query option {name}.")
        return value

    def h_machines(self, call: Call) -> Reply:
        world = self.world
        maximum = self.config.defender_max_top
        top = self._int_param(call, "$top", maximum)
        if top > maximum:
            raise bad_request(f"The limit of '{maximum}' for Top query has been exceeded. "
                              f"The value from the incoming request is '{top}'.")
        skip = self._int_param(call, "$skip", 0)
        text = call.param("$filter") or ""
        flt: Filter | None = None
        if text:
            try:
                flt = compile_filter(text, FILTERABLE)
            except QueryError as exc:
                raise bad_request(f"Invalid filter clause: {exc}") from None
        if not world.has_machines():
            # Defender documents 404 when the tenant has no recently seen machines at all.
            raise ApiError(404, "ResourceNotFound", "No machines were found in the tenant.")

        if flt is not None and flt.equals and flt.equals[0] in ("id", "aadDeviceId"):
            raw = world.find_machine(flt.equals[1])
            machine = world.machine(raw) if raw is not None else None
            rows = [machine] if machine is not None and flt.predicate(machine) else []
            body: dict[str, Any] = {"@odata.context": self._context(call), "value": rows[skip:skip + top]}
            return Reply(200, body)

        predicate = flt.predicate if flt is not None else None
        items, more = self._scan(text, predicate, skip, top)
        body = {"@odata.context": self._context(call)}
        body["value"] = items
        if more:
            body["@odata.nextLink"] = self._next_link(call, skip + top, top)
        return Reply(200, body)

    def _next_link(self, call: Call, skip: int, top: int) -> str:
        replaced = [(k, v) for k, v in call.query if k.lower().lstrip("$") not in ("skip", "top")]
        replaced += [("$top", str(top)), ("$skip", str(skip))]
        keep = Call(call.method, call.service, call.version, call.path, replaced, call.headers, None,
                    call.base)
        return keep.link({})

    def _scan(self, key: str, predicate: Any, skip: int, top: int) -> tuple[list[Entity], bool]:
        world = self.world
        marks = self._resume_marks(key)
        start_match = max((m for m in marks if m <= skip), default=0)
        raw = marks.get(start_match, 0)
        matched = start_match
        size = world.machine_raw_count
        items: list[Entity] = []
        while raw < size and len(items) < top:
            machine = world.machine(raw)
            raw += 1
            if machine is None or (predicate is not None and not predicate(machine)):
                continue
            if matched >= skip:
                items.append(machine)
            matched += 1
        marks[matched] = raw
        more = False
        while raw < size:
            machine = world.machine(raw)
            if machine is not None and (predicate is None or predicate(machine)):
                more = True
                break
            raw += 1
        return items, more

    def _resume_marks(self, key: str) -> dict[int, int]:
        cache_key = (key.strip().lower(), self.world.machines_version)
        marks = self._resume.get(cache_key)
        if marks is None:
            marks = {0: 0}
            self._resume[cache_key] = marks
            while len(self._resume) > 32:
                self._resume.popitem(last=False)
        else:
            self._resume.move_to_end(cache_key)
        return marks

    def _machine_or_404(self, call: Call) -> tuple[int, Entity]:
        ref = call.args["id"]
        raw = self.world.find_machine(ref) if len(ref) == 40 else None
        machine = self.world.machine(raw) if raw is not None else None
        if raw is None or machine is None:
            raise ApiError(404, "ResourceNotFound", f"Machine {ref} was not found")
        return raw, machine

    def h_machine(self, call: Call) -> Reply:
        _raw, machine = self._machine_or_404(call)
        return Reply(200, {"@odata.context": self._context(call, "Machines/$entity"), **machine})

    def h_logon_users(self, call: Call) -> Reply:
        raw, machine = self._machine_or_404(call)
        owner = self.world.device_meta(raw).owner
        value = []
        if owner is not None:
            user = self.world.user(owner)
            value.append({
                "id": user["userPrincipalName"],
                "accountName": user["mail"].split("@", 1)[0],
                "accountDomain": user["mail"].split("@", 1)[1],
                "accountSid": None,
                "firstSeen": machine["firstSeen"],
                "lastSeen": machine["lastSeen"],
                "logonTypes": "Interactive",
                "logOnMachinesCount": 1,
                "isDomainAdmin": False,
                "isOnlyNetworkUser": False,
            })
        return Reply(200, {"@odata.context": self._context(call, "Users"), "value": value})
