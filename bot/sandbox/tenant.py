"""The sandbox tenant: one router for Graph and Defender paths, plus the knobs tests and demos turn."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx

from bot.sandbox import defender as defender_module
from bot.sandbox import graph as graph_module
from bot.sandbox import portal
from bot.sandbox.audit import AuditTrail
from bot.sandbox.config import ConnectorConfig, SandboxConfig
from bot.sandbox.control import Answered, RiskChange, Rule, SandboxStats, WriteHold, WriteRequest
from bot.sandbox.core import ApiError, Call, Reply, bad_request
from bot.sandbox.defender import DefenderApi
from bot.sandbox.exports import DOWNLOADS_PATH, ExportJobs
from bot.sandbox.graph import GraphApi, normalize_graph_path
from bot.sandbox.ids import stable_guid
from bot.sandbox.policies import PolicyStore
from bot.sandbox.schema import CONNECTOR_PROPERTIES, MDE_CONNECTOR_ID
from bot.sandbox.seed import (
    CAST_GROUPS,
    SEED_POLICY_ID,
    SEED_POLICY_NAME,
    World,
    stamp,
)
from bot.sandbox.throttle import Throttler
from bot.sandbox.views import TenantViews

NEVER = "0001-01-01T00:00:00Z"
_GRAPH_JSON = ("application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; "
               "charset=utf-8")
_DEFENDER_JSON = "application/json; odata.metadata=minimal; charset=utf-8"
_KEY_SYNTAX = re.compile(r"([A-Za-z]+)\('([^']*)'\)")
_BATCH_FIELDS = ("id", "method", "url")
_WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
_DEFAULT_HEARTBEAT_AGE: dict[str, timedelta | None] = {
    "enabled": timedelta(minutes=4),
    "unresponsive": timedelta(days=9),
    "error": timedelta(days=2),
    "available": None,
    "unavailable": None,
    "notSetUp": None,
}
_STATUS_TEXT = {
    400: ("BadRequest", "The request is invalid."),
    401: ("InvalidAuthenticationToken", "Access token validation failure."),
    403: ("Forbidden", "Access is denied."),
    404: ("ResourceNotFound", "The resource was not found."),
    409: ("Conflict", "The request conflicts with the current state of the resource."),
    429: ("TooManyRequests", "Too many requests; retry after the interval in the Retry-After header."),
    500: ("InternalServerError", "An internal server error occurred."),
    502: ("BadGateway", "The gateway received an invalid response."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable. Please retry after a short delay."),
    504: ("GatewayTimeout", "The gateway timed out."),
}
_PERMISSIONS = {
    "devicemanagement/reports": ("DeviceManagementApps.ReadWrite.All", "DeviceManagementApps.ReadWrite.All, "
                                 "DeviceManagementConfiguration.ReadWrite.All, "
                                 "DeviceManagementManagedDevices.ReadWrite.All"),
    "deviceappmanagement": ("DeviceManagementApps.Read.All", "DeviceManagementApps.ReadWrite.All"),
    "users": ("DeviceManagementApps.Read.All", "DeviceManagementApps.ReadWrite.All"),
    "devicemanagement/auditevents": ("DeviceManagementApps.Read.All", "DeviceManagementApps.ReadWrite.All"),
    "devicemanagement": ("DeviceManagementServiceConfig.Read.All",
                         "DeviceManagementServiceConfig.ReadWrite.All"),
}


class SandboxTenant(TenantViews):
    """A simulated Microsoft tenant answering Graph (beta, v1.0) and Defender for Endpoint calls."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._clock: Callable[[], datetime] = self.config.clock or (lambda: datetime.now(UTC))
        anchor = self.config.now or self._clock()
        # Whole seconds, so two tenants built with the same `now` render identical timestamps.
        self.world = World(self.config, anchor.replace(microsecond=0))
        self.stats = SandboxStats()
        self._lock = threading.RLock()
        self._request_number = 0
        self._throttler = Throttler(self.config.throttle)
        self._fail = [Rule.parse(k, v) for k, v in self.config.fail.items()]
        self._forbid = [Rule.parse(k) for k in self.config.forbid]
        self.policies_store = PolicyStore(self.config.seed, self._clock, self._group_exists)
        self.audit = AuditTrail(self.config.seed, self._clock, delay=self.config.audit_delay,
                                page_size=self.config.audit_page_size, max_top=self.config.graph_max_top)
        self._connector: dict[str, Any] | None = None
        self._heartbeat_age: timedelta | None = None
        self._seed_connector(self.config.connector_config())
        self._seed_policy()
        self._monotonic = self.config.monotonic_clock()
        self.exports = ExportJobs(self, self._monotonic, self._clock)
        self._graph = GraphApi(self)
        self._defender = DefenderApi(self)
        self._hold: WriteHold | None = None
        self._latency_rng = random.Random(f"latency:{self.config.seed}")
        self._latency_lock = threading.Lock()
        self._risk_changes: list[RiskChange] = []

    def close(self) -> None:
        """Stop export jobs being built and delete their temporary files (also done when garbage-collected)."""
        self.exports.close()

    def __enter__(self) -> SandboxTenant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transport -------------------------------------------------------------------------------

    def transport(self) -> httpx.BaseTransport:
        """An in-process transport: give it to httpx.Client(transport=...)."""
        return httpx.MockTransport(self.handle)

    def hold_writes(self, timeout: float = 60.0) -> WriteHold:
        """From now on every write (POST, PATCH, PUT, DELETE; not `$batch` envelopes, not report export jobs,
        which change nothing) waits before it is
        applied, until the hold is released or `timeout` seconds pass; reads go on meanwhile. For a write
        in flight on purpose: a bot stopped during an execution, a replica that dies mid-change."""
        hold = WriteHold(timeout)
        self._hold = hold
        return hold

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one HTTP request as Graph or Defender would. Safe to call from many threads.

        The configured latency is slept first, outside every lock, so concurrent requests overlap.
        Export downloads (/sandbox-downloads/...) skip latency, auth, quotas and the statistics."""
        if request.url.path.startswith(DOWNLOADS_PATH):
            return self._download(request)
        if request.url.path.startswith(portal.ADMIN_PATH):
            with self._lock:
                status, answer = portal.admin_request(self, request.method.upper(), request.url.path, request.read())
            return httpx.Response(status, json=answer, request=request)
        self._sleep_latency()
        hold = self._hold
        path = request.url.path
        writes = (request.method.upper() in _WRITE_METHODS and not path.endswith("$batch")
                  and not path.rstrip("/").lower().endswith("/reports/exportjobs"))
        # outside the lock: reads and other calls go on while a held write waits
        if hold is not None and writes and not hold.wait_here() and self._hold is hold:
            self._hold = None
        content = request.read()
        base = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"
        query = parse_qsl(request.url.query.decode("utf-8"), keep_blank_values=True)
        with self._lock:
            reply, service = self._process(request.method.upper(), request.url.path, query, request.headers,
                                           content, base)
        return self._response(reply, service, request)

    def _sleep_latency(self) -> None:
        latency, jitter = self.config.latency_ms, self.config.latency_jitter_ms
        if latency <= 0 and jitter <= 0:
            return
        with self._latency_lock:
            delay = latency + (self._latency_rng.uniform(-jitter, jitter) if jitter > 0 else 0.0)
        if delay > 0:
            time.sleep(delay / 1000.0)

    def _download(self, request: httpx.Request) -> httpx.Response:
        method = request.method.upper()
        if method not in ("GET", "HEAD"):
            return httpx.Response(405, text="The HTTP method is not allowed on a download.", request=request)
        status = None
        with self._lock:
            for rule in self._fail:
                if rule.matches_download(method, request.url.path) and rule.statuses:
                    status = rule.statuses.popleft()
                    break
            if any(rule.matches_download(method, request.url.path) for rule in self._forbid):
                status = 403
            self.stats.downloads += 1
        return self.exports.download(request, status if status is not None and status >= 400 else None)

    def _response(self, reply: Reply, service: str, request: httpx.Request) -> httpx.Response:
        headers = dict(reply.headers)
        if reply.body is None:
            content = b""
        elif isinstance(reply.body, str):
            content = reply.body.encode()
            headers["Content-Type"] = "text/plain"
        else:
            content = json.dumps(reply.body, separators=(",", ":"), ensure_ascii=False).encode()
            headers["Content-Type"] = _DEFENDER_JSON if service == "defender" else _GRAPH_JSON
        return httpx.Response(reply.status, headers=headers, content=content, request=request)

    # ---- the router ------------------------------------------------------------------------------

    def _process(self, method: str, raw_path: str, query: list[tuple[str, str]], headers: httpx.Headers,
                 content: bytes, base: str, inner: bool = False) -> tuple[Reply, str]:
        request_id = self._next_request_id()
        client_request_id = headers.get("client-request-id") or request_id
        path = _KEY_SYNTAX.sub(r"\1/\2", raw_path).rstrip("/")
        segments = path.lstrip("/").split("/", 1)
        version = segments[0].lower() if segments[0] != "v1.0" else "v1.0"
        rest = segments[1] if len(segments) > 1 else ""
        service = "defender" if version == "api" else "graph"
        try:
            route_key, area, handler, args, rest = self._match(method, version, rest)
        except ApiError as exc:
            self.stats.requests[(method, "<unmatched>")] += 1
            return self._finish(self._error_reply(exc, service, request_id, client_request_id), request_id,
                                client_request_id, service, (method, raw_path, inner)), service
        self.stats.requests[(method, route_key)] += 1
        call = Call(method, service, version, rest, query, headers, None, base, args, route_key)
        try:
            reply = self._guarded(call, area, handler, path, content, inner)
        except ApiError as exc:
            reply = self._error_reply(exc, service, request_id, client_request_id)
        if 200 <= reply.status < 300 and method in _WRITE_METHODS and area != "batch" \
                and handler != "export_jobs":
            self.stats.writes += 1
            self.stats.write_log.append((method, route_key))
            self.stats.write_requests.append(WriteRequest(method, raw_path, call.body))
        return self._finish(reply, request_id, client_request_id, service, (method, raw_path, inner)), service

    def _next_request_id(self) -> str:
        self._request_number += 1
        return stable_guid(f"request:{self.config.seed}:{self._request_number}")

    def _finish(self, reply: Reply, request_id: str, client_request_id: str, service: str,
                call: tuple[str, str, bool] | None = None) -> Reply:
        """`call`: (method, path, inside a $batch); the answer is recorded in `stats.answers` unless it is
        inside a batch."""
        self.stats.statuses[reply.status] += 1
        if reply.status == 429:
            self.stats.throttled += 1
        reply.headers.setdefault("request-id", request_id)
        reply.headers.setdefault("client-request-id", client_request_id)
        reply.headers.setdefault("Date", self._clock().strftime("%a, %d %b %Y %H:%M:%S GMT"))
        if call is not None and not call[2]:
            self.stats.answers.append(Answered(call[0], call[1], reply.status, client_request_id,
                                               reply.headers["request-id"]))
        return reply

    def _match(self, method: str, version: str, rest: str) -> tuple[str, str, str, dict[str, str], str]:
        if version in ("beta", "v1.0"):
            rest = normalize_graph_path(rest)
            routes = [(r.methods, r.pattern, r.handler, r.template, r.area) for r in graph_module.ROUTES]
        elif version == "api":
            routes = [(m, p, h, t, "defender") for m, p, h, t in defender_module.ROUTES]
        else:
            raise ApiError(400, "BadRequest", f"Invalid version: '{version}'.")
        for methods, pattern, handler, template, area in routes:
            found = pattern.fullmatch(rest)
            if found is None:
                continue
            if method not in methods:
                raise ApiError(405, "BadRequest",
                               f"The HTTP method '{method}' is not allowed on this resource.")
            args = {k: v for k, v in found.groupdict().items() if v is not None}
            return f"/{version}/{template}", area, handler, args, rest
        first_unknown = _first_unknown_segment(rest, [t for _m, _p, _h, t, _a in routes]) or version
        if version == "api":
            raise ApiError(404, "ResourceNotFound", f"The resource '/api/{rest}' does not exist.")
        raise ApiError(400, "BadRequest", f"Resource not found for the segment '{first_unknown}'.")

    def _guarded(self, call: Call, area: str, handler: str, path: str, content: bytes, inner: bool) -> Reply:
        if self.config.require_auth and not _has_bearer(call.headers):
            if call.service == "defender":
                raise ApiError(401, "Unauthorized",
                               "Authorization header is missing or is not a bearer token.")
            raise ApiError(401, "InvalidAuthenticationToken", "Access token is empty.")
        version_less = f"/{call.path}" if call.service == "graph" else None
        for rule in self._forbid:
            if rule.matches(call.method, path, version_less):
                raise self._forbidden(call, area)
        if area != "batch":
            wait = self._throttler.check(area, call.method in _WRITE_METHODS)
            if wait is not None:
                code, message = _STATUS_TEXT[429]
                raise ApiError(429, code, message, {"Retry-After": str(wait)})
        for rule in self._fail:
            if rule.matches(call.method, path, version_less) and rule.statuses:
                status = rule.statuses.popleft()
                if status >= 400:
                    code, message = _STATUS_TEXT.get(status, ("Error", f"Scripted failure {status}."))
                    extra = {"Retry-After": "1"} if status in (429, 503) else {}
                    raise ApiError(status, code, message, extra)
                break
        if content:
            try:
                call.body = json.loads(content)
            except ValueError:
                raise bad_request("Unable to read JSON request payload. Please ensure Content-Type header "
                                  "is set and payload is of valid JSON format.") from None
        if area == "batch":
            if inner:
                raise bad_request("A $batch request cannot be nested inside another $batch request.")
            return self._batch(call)
        if call.service == "defender":
            return self._defender.dispatch(handler, call)
        return self._graph.dispatch(handler, call)

    def _forbidden(self, call: Call, area: str) -> ApiError:
        if call.service == "defender":
            return ApiError(403, "Forbidden", "The application does not have any of the required application "
                            "roles (Machine.Read.All, Machine.ReadWrite.All) to access the resource.")
        if area == "directory":
            return ApiError(403, "Authorization_RequestDenied",
                            "Insufficient privileges to complete the operation.")
        head = call.path.split("/", 1)[0].lower()
        if call.path.lower().startswith("devicemanagement/reports"):
            head = "devicemanagement/reports"
        elif call.path.lower().startswith("devicemanagement/auditevents"):
            head = "devicemanagement/auditevents"
        read, write = _PERMISSIONS.get(head, _PERMISSIONS["deviceappmanagement"])
        scopes = write if call.method in _WRITE_METHODS else f"{read}, {write}"
        return ApiError(403, "Forbidden", "Application is not authorized to perform this operation. "
                        f"Application must have one of the following scopes: {scopes}")

    def _error_reply(self, exc: ApiError, service: str, request_id: str, client_request_id: str) -> Reply:
        if service == "defender":
            body: dict[str, Any] = {"error": {"code": exc.code, "message": exc.message, "target": request_id}}
        else:
            body = {"error": {"code": exc.code, "message": exc.message, "innerError": {
                "date": self._clock().strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id,
            }}}
        return Reply(exc.status, body, dict(exc.headers))

    # ---- $batch ----------------------------------------------------------------------------------

    def _batch(self, call: Call) -> Reply:
        body = call.body
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise bad_request("Invalid batch payload format.")
        if len(requests) > 20:
            raise bad_request("The number of batch requests exceeds the limit of 20.")
        seen: set[str] = set()
        for item in requests:
            fields_ok = isinstance(item, dict) and all(isinstance(item.get(k), str) for k in _BATCH_FIELDS)
            if not fields_ok:
                raise bad_request("Each batch request needs 'id', 'method' and 'url' strings.")
            if item["id"] in seen:
                raise bad_request(f"Batch request id '{item['id']}' is used more than once.")
            seen.add(item["id"])
            inner_headers = {k.lower(): v for k, v in (item.get("headers") or {}).items()}
            if "body" in item and "content-type" not in inner_headers:
                raise bad_request(f"Batch request '{item['id']}' has a body but no Content-Type header.")
        statuses: dict[str, int] = {}
        responses: list[dict[str, Any]] = []
        for item in requests:
            depends = item.get("dependsOn") or []
            if any(statuses.get(d, 424) >= 400 for d in depends):
                statuses[item["id"]] = 424
                failed = {"error": {"code": "FailedDependency",
                                    "message": "A request this one depends on failed."}}
                responses.append({"id": item["id"], "status": 424,
                                  "headers": {"Content-Type": "application/json"}, "body": failed})
                continue
            reply = self._inner(call, item)
            statuses[item["id"]] = reply.status
            entry: dict[str, Any] = {"id": item["id"], "status": reply.status, "headers": {
                k: v for k, v in reply.headers.items() if k.lower() in ("retry-after", "location")}}
            if reply.body is not None:
                is_text = isinstance(reply.body, str)
                entry["headers"]["Content-Type"] = "text/plain" if is_text else _GRAPH_JSON
                entry["body"] = reply.body
            responses.append(entry)
        return Reply(200, {"responses": responses})

    def _inner(self, call: Call, item: dict[str, Any]) -> Reply:
        url: str = item["url"]
        if "://" in url:
            request_id = self._next_request_id()
            return self._error_reply(bad_request("Batch request URLs must be relative, e.g. /users/{id}."),
                                     "graph", request_id, request_id)
        path, _, query_text = url.partition("?")
        headers = httpx.Headers({k: v for k, v in call.headers.items() if k.lower() in ("authorization",)})
        for key, value in (item.get("headers") or {}).items():
            headers[key] = str(value)
        content = json.dumps(item["body"]).encode() if "body" in item else b""
        query = parse_qsl(query_text, keep_blank_values=True)
        reply, _service = self._process(item["method"].upper(), f"/{call.version}/{path.lstrip('/')}", query,
                                        headers, content, call.base, inner=True)
        return reply

    # ---- connector -------------------------------------------------------------------------------

    def _seed_connector(self, config: ConnectorConfig | None) -> None:
        if config is None:
            return
        state = config.partner_state
        active = state in ("enabled", "unresponsive", "error")
        connector: dict[str, Any] = {name: False for name, (kind, _) in CONNECTOR_PROPERTIES.items()
                                     if kind == "Boolean"}
        connector.update({
            "id": MDE_CONNECTOR_ID,
            "androidEnabled": active,
            "iosEnabled": active,
            "windowsEnabled": active,
            "androidMobileApplicationManagementEnabled": config.android_mam_enabled,
            "partnerUnresponsivenessThresholdInDays": 7,
            "partnerState": state,
            "lastHeartbeatDateTime": NEVER,
        })
        ordered = {name: connector.get(name) for name in CONNECTOR_PROPERTIES}
        self._connector = ordered
        self._heartbeat_age = config.heartbeat_age if config.heartbeat_age is not None \
            else _DEFAULT_HEARTBEAT_AGE.get(state)
        if config.fields:
            self.set_connector(**config.fields)

    def connector_state(self) -> dict[str, Any] | None:
        with self._lock:
            if self._connector is None:
                return None
            connector = dict(self._connector)
            if self._heartbeat_age is not None:
                connector["lastHeartbeatDateTime"] = stamp(self._clock() - self._heartbeat_age)
            return connector

    def connector(self, connector_id: str = MDE_CONNECTOR_ID) -> dict[str, Any] | None:
        """The connector as a beta GET returns it, or None when absent."""
        state = self.connector_state()
        return state if state is not None and state["id"].lower() == connector_id.lower() else None

    def patch_connector(self, changes: dict[str, Any]) -> None:
        with self._lock:
            if self._connector is not None:
                self._connector.update(changes)

    def set_connector(self, **fields: Any) -> None:
        """Change the connector as the service would (partnerState, heartbeat, toggles); creates it if absent.

        `lastHeartbeatDateTime` (datetime or str) pins the heartbeat; `heartbeat_age` (timedelta) keeps it
        that far behind the clock; a new `partnerState` without either takes that state's usual heartbeat.
        """
        with self._lock:
            if self._connector is None:
                self._seed_connector(ConnectorConfig(partner_state=fields.get("partnerState", "enabled")))
            assert self._connector is not None
            heartbeat_set = False
            for name, value in fields.items():
                if name == "heartbeat_age":
                    self._heartbeat_age = value
                    heartbeat_set = True
                elif name == "lastHeartbeatDateTime":
                    self._heartbeat_age = None
                    self._connector[name] = stamp(value) if isinstance(value, datetime) else value
                    heartbeat_set = True
                elif name in CONNECTOR_PROPERTIES:
                    self._connector[name] = value
                else:
                    raise ValueError(f"unknown connector field {name!r}")
            if "partnerState" in fields and not heartbeat_set:
                self._heartbeat_age = _DEFAULT_HEARTBEAT_AGE.get(fields["partnerState"])
                if self._heartbeat_age is None:
                    self._connector["lastHeartbeatDateTime"] = NEVER

    def remove_connector(self) -> None:
        with self._lock:
            self._connector = None

    # ---- edits outside the bot: an admin in the Intune portal (bot.sandbox.portal) ----------------

    def edit_policy_as(self, admin: str, policy: str, *, apps: list[str] | None = None, add_apps: Iterable[str] = (),
                       remove_apps: Iterable[str] = (), include: Iterable[str] = (), exclude: Iterable[str] = (),
                       remove_groups: Iterable[str] = (), audit_delay: timedelta | None = None,
                       **settings: Any) -> dict[str, Any]:
        """Change a policy (by id, or a name only it has) as `admin` (a UPN) would in the Intune portal: settings
        (Graph property names), its apps (`apps` replaces them; `add_apps`/`remove_apps` package ids) and groups
        (`include`/`exclude`/`remove_groups`, ids or names). Intune's audit log names the admin; its events are
        visible after `audit_delay` (default `SandboxConfig.audit_delay`). PortalError: nothing was changed."""
        with self._lock:
            return portal.edit_policy(self, admin, policy, settings=settings, apps=apps, add_apps=add_apps,
                                      remove_apps=remove_apps, include=include, exclude=exclude,
                                      remove_groups=remove_groups, delay=audit_delay)

    def create_policy_as(self, admin: str, name: str, *, audit_delay: timedelta | None = None,
                         **settings: Any) -> dict[str, Any]:
        """A new Android app protection policy made by `admin` in the portal."""
        with self._lock:
            return portal.create_policy(self, admin, name, settings, audit_delay)

    def delete_policy_as(self, admin: str, policy: str, *, audit_delay: timedelta | None = None) -> str:
        """Delete a policy (by id or a name only it has) as `admin`; returns its id."""
        with self._lock:
            return portal.delete_policy(self, admin, policy, audit_delay)

    def set_connector_as(self, admin: str, *, audit_delay: timedelta | None = None, **fields: Any) -> dict[str, Any]:
        """Save the Intune connector page as `admin`: its toggles (e.g.
        androidMobileApplicationManagementEnabled=False) and partnerUnresponsivenessThresholdInDays."""
        with self._lock:
            return portal.set_connector(self, admin, fields, audit_delay)

    def deliver_late_audit_events(self) -> int:
        """Audit events still held back (`audit_delay`) become visible now; returns how many."""
        return self.audit.deliver_late()

    @property
    def audit_events(self) -> list[dict[str, Any]]:
        """Every audit event recorded so far, visible or not yet, oldest first (beta shape)."""
        return self.audit.events

    # ---- policies --------------------------------------------------------------------------------

    def _group_exists(self, group_id: str) -> bool:
        return self.world.find_group(group_id) is not None

    def _seed_policy(self) -> None:
        store = self.policies_store
        policy = store.create({
            "@odata.type": "#microsoft.graph.androidManagedAppProtection",
            "displayName": SEED_POLICY_NAME,
            "description": "Baseline app protection for personal Android devices",
            "targetedAppManagementLevels": "unmanaged",
            "allowedOutboundDataTransferDestinations": "managedApps",
            "allowedOutboundClipboardSharingLevel": "managedAppsWithPasteIn",
            "dataBackupBlocked": True,
            "saveAsBlocked": True,
            "printBlocked": True,
            "screenCaptureBlocked": True,
            "managedBrowserToOpenLinksRequired": True,
            "managedBrowser": "microsoftEdge",
            "minimumPinLength": 6,
            "simplePinBlocked": True,
            "allowedDataStorageLocations": ["oneDriveForBusiness", "sharePoint"],
            "maximumAllowedDeviceThreatLevel": "notConfigured",
            "mobileThreatDefenseRemediationAction": "block",
        }, beta=True, policy_id=SEED_POLICY_ID)
        store.target_apps(policy.id, {"appGroupType": "allMicrosoftApps"})
        groups = {spec.name: spec.id for spec in CAST_GROUPS}
        store.assign(policy.id, {"assignments": [
            {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget",
                        "groupId": groups["All Android Users"]}},
            {"target": {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget",
                        "groupId": groups["Executives"]}},
        ]})
        anchor = self.world.anchor
        policy.props["createdDateTime"] = stamp(anchor - timedelta(days=210, hours=3), 1)
        policy.props["lastModifiedDateTime"] = stamp(anchor - timedelta(days=35, hours=5), 4)


def _first_unknown_segment(path: str, templates: list[str]) -> str:
    """The segment where `path` leaves every known route, for Graph's "Resource not found" message."""
    segments = path.split("/")
    best = 0
    for template in templates:
        known = template.split("/")
        matched = 0
        for have, want in zip(segments, known, strict=False):
            if not (want.startswith("{") or have.lower() == want.lower()):
                break
            matched += 1
        best = max(best, matched)
    return segments[min(best, len(segments) - 1)]


def _has_bearer(headers: httpx.Headers) -> bool:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())
