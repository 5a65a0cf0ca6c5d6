"""Typed Microsoft Graph operations the bot needs (Intune MAM is beta-only; directory uses v1.0)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from bot.microsoft import bodies
from bot.microsoft.bodies import AssignmentChange, BatchRequest
from bot.microsoft.errors import IncompleteOperation, MicrosoftError
from bot.microsoft.models import (
    AndroidPolicy,
    AndroidPolicyDraft,
    AppGroupType,
    AssignmentTarget,
    ExportJob,
    Group,
    ManagedAppRegistration,
    MtdConnector,
    PolicyAssignment,
    User,
)
from bot.microsoft.permissions import (
    APPS_READ,
    APPS_WRITE,
    GROUP_READ,
    SERVICE_CONFIG_READ,
    SERVICE_CONFIG_WRITE,
    USER_READ,
)
from bot.microsoft.transport import (
    BACKGROUND,
    INTERACTIVE,
    ApiSession,
    CallProfile,
    Operation,
    error_for,
    parse_json,
)

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

CONNECTORS = "/beta/deviceManagement/mobileThreatDefenseConnectors"
POLICIES = "/beta/deviceAppManagement/androidManagedAppProtections"
REGISTRATIONS = "/beta/deviceAppManagement/managedAppRegistrations"
EXPORT_JOBS = "/beta/deviceManagement/reports/exportJobs"
MAX_DOWNLOAD_BYTES = 2_000_000_000
MAX_EMAIL_LENGTH = 320  # 64 for the local part, @, 255 for the domain
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
GROUP_FIELDS = "id,displayName,description,mail,mailEnabled,securityEnabled,groupTypes,membershipRule"
USER_FIELDS = "id,displayName,mail,userPrincipalName"
EVENTUAL = {"ConsistencyLevel": "eventual"}


def _seg(value: str) -> str:
    """One path segment; policy ids (`T_<guid>`) and app ids (`pkg.android`) are not GUIDs."""
    return quote(value.strip(), safe="@")


def _odata_string(value: str) -> str:
    return value.replace("'", "''")


def _odata_key(value: str) -> str:
    """A string key in parentheses, `('…')`: quotes doubled, the rest percent-encoded as a path."""
    return "('" + quote(_odata_string(value.strip()), safe="'@") + "')"


USABLE_PLAN_STATES = frozenset({"Enabled", "Warning"})  # assignedPlan.capabilityStatus values whose service works


class GraphClient:
    def __init__(self, session: ApiSession) -> None:
        self._s = session

    def with_profile(self, profile: CallProfile) -> GraphClient:
        return GraphClient(self._s.with_profile(profile))

    def background(self) -> GraphClient:
        """The same client with the sweep's longer timeouts and waits."""
        return self.with_profile(BACKGROUND)

    def interactive(self) -> GraphClient:
        return self.with_profile(INTERACTIVE)

    # ---- Mobile Threat Defense connectors ----------------------------------------------------

    def list_mtd_connectors(self) -> list[MtdConnector]:
        op = Operation("list the Mobile Threat Defense connectors", SERVICE_CONFIG_READ)
        return list(_parse_each(MtdConnector, self._s.iter_values(CONNECTORS, op=op)))

    def get_mde_connector(self) -> MtdConnector | None:
        """The Defender for Endpoint connector, or None when Intune isn't connected to Defender."""
        return next((c for c in self.list_mtd_connectors() if c.is_mde), None)

    def get_connector(self, connector_id: str) -> MtdConnector:
        op = Operation("read the Mobile Threat Defense connector", SERVICE_CONFIG_READ,
                       f"Mobile Threat Defense connector {connector_id}")
        return MtdConnector.model_validate(self._s.json("GET", f"{CONNECTORS}/{_seg(connector_id)}", op=op))

    def update_connector(self, connector_id: str, **flags: bool) -> MtdConnector:
        """Read the connector, change `flags` (Graph property names) and write all its booleans back."""
        current = self.get_connector(connector_id)
        body = bodies.connector_patch_body(current, flags)
        op = Operation("change the Mobile Threat Defense connector", SERVICE_CONFIG_WRITE,
                       f"Mobile Threat Defense connector {connector_id}")
        data = self._s.json("PATCH", f"{CONNECTORS}/{_seg(connector_id)}", op=op, json_body=body)
        if isinstance(data, dict) and data.get("id"):
            return MtdConnector.model_validate(data)
        return self.get_connector(connector_id)  # a 204 carries no body

    # ---- Android app protection policies -----------------------------------------------------

    def iter_android_policies(self) -> Iterator[AndroidPolicy]:
        op = Operation("list Android app protection policies", APPS_READ)
        items = self._s.iter_values(POLICIES, op=op, params={"$expand": "apps,assignments"})
        return _parse_each(AndroidPolicy, items)

    def list_android_policies(self) -> list[AndroidPolicy]:
        """All of them at once: for a Slack list, where the count is small and wanted whole."""
        return list(self.iter_android_policies())

    def get_android_policy(self, policy_id: str) -> AndroidPolicy:
        op = Operation("read the Android app protection policy", APPS_READ,
                       f"Android app protection policy {policy_id}")
        data = self._s.json("GET", f"{POLICIES}/{_seg(policy_id)}", op=op,
                            params={"$expand": "apps,assignments"})
        return AndroidPolicy.model_validate(data)

    def create_android_policy(self, draft: AndroidPolicyDraft) -> AndroidPolicy:
        """Create the policy, then attach its apps with targetApps; returns it as Graph now has it."""
        op = Operation("create an Android app protection policy", APPS_WRITE)
        created = AndroidPolicy.model_validate(
            self._s.json("POST", POLICIES, op=op, json_body=bodies.policy_create_body(draft))
        )
        if not draft.packageIds and draft.appGroupType is AppGroupType.SELECTED_PUBLIC_APPS:
            return created
        try:
            self.set_target_apps(created.id, draft.packageIds, draft.appGroupType)
            return self.get_android_policy(created.id)
        except MicrosoftError as exc:
            raise IncompleteOperation(
                f"Created policy '{created.displayName}' ({created.id}) but couldn't attach its apps: "
                f"{exc.message}",
                done=f"created policy {created.id}",
                cause=exc,
            ) from exc

    def set_target_apps(
        self, policy_id: str, package_ids: Iterable[str], app_group_type: AppGroupType | str
    ) -> None:
        """Replace the policy's apps (`targetApps`)."""
        body = bodies.target_apps_body(package_ids, app_group_type)
        op = Operation("set the policy's apps", APPS_WRITE, f"Android app protection policy {policy_id}")
        # targetApps sets the whole list, so repeating it after a lost answer is harmless.
        self._s.send("POST", f"{POLICIES}/{_seg(policy_id)}/targetApps", op=op, json_body=body,
                     idempotent=True)

    def get_assignments(self, policy_id: str) -> list[PolicyAssignment]:
        op = Operation("read the policy's group assignments", APPS_READ,
                       f"Android app protection policy {policy_id}")
        return list(_parse_each(PolicyAssignment,
                                self._s.iter_values(f"{POLICIES}/{_seg(policy_id)}/assignments", op=op)))

    def replace_assignments(
        self, policy_id: str, assignments: Iterable[PolicyAssignment | AssignmentTarget]
    ) -> None:
        """The raw `assign`: the policy's assignments become exactly `assignments`."""
        self._assign(policy_id, bodies.assign_body(assignments))

    def write_assignments(self, policy_id: str, change: AssignmentChange) -> None:
        """`assign` with the body of a change made by `bodies.assignment_change`: the body its card showed."""
        self._assign(policy_id, change.body)

    def change_assignments(
        self,
        policy_id: str,
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        remove: Sequence[str] = (),
    ) -> AssignmentChange:
        """Read the assignment set, apply group changes and write the whole set back (`bodies.assignment_change`:
        filters and all-users/all-devices targets kept, a policy set's assignments left out)."""
        change = bodies.assignment_change(self.get_assignments(policy_id), include=include, exclude=exclude,
                                          remove=remove)
        self.write_assignments(policy_id, change)
        return change

    def _assign(self, policy_id: str, body: dict[str, Any]) -> None:
        op = Operation("assign the policy to groups", APPS_WRITE,
                       f"Android app protection policy {policy_id}")
        # `assign` sets the whole set, so repeating it after a lost answer is harmless.
        self._s.send("POST", f"{POLICIES}/{_seg(policy_id)}/assign", op=op, json_body=body, idempotent=True)

    def patch_android_policy(self, policy_id: str, changes: Mapping[str, Any]) -> None:
        body = bodies.policy_patch_body(changes)
        op = Operation("change the Android app protection policy", APPS_WRITE,
                       f"Android app protection policy {policy_id}")
        self._s.send("PATCH", f"{POLICIES}/{_seg(policy_id)}", op=op, json_body=body)

    def delete_android_policy(self, policy_id: str) -> None:
        op = Operation("delete the Android app protection policy", APPS_WRITE,
                       f"Android app protection policy {policy_id}")
        self._s.send("DELETE", f"{POLICIES}/{_seg(policy_id)}", op=op)

    # ---- managed app registrations -----------------------------------------------------------

    def iter_managed_app_registrations(self, user_id: str | None = None) -> Iterator[ManagedAppRegistration]:
        """Every registration in the tenant, or one user's, a page at a time."""
        if user_id:
            path = f"/beta/users/{_seg(user_id)}/managedAppRegistrations"
            op = Operation("read the user's app protection registrations", APPS_READ, f"user {user_id}")
        else:
            path = REGISTRATIONS
            op = Operation("list app protection registrations", APPS_READ)
        return _parse_each(ManagedAppRegistration, self._s.iter_values(path, op=op))

    # ---- Intune report export ----------------------------------------------------------------

    def create_export_job(self, report_name: str, select: Sequence[str]) -> ExportJob:
        """Ask Intune to write a report (e.g. `MAMAppProtectionStatus`) as CSV; poll `get_export_job`.

        Microsoft allows this POST only with a ReadWrite permission, though it changes nothing.
        """
        name = report_name.strip()
        if not name:
            raise ValueError("an export job needs a report name")
        columns = [str(c) for c in select]
        body = {"reportName": name, "format": "csv", "localizationType": "ReplaceLocalizableValues",
                "select": columns}
        op = Operation(f"start an export of the Intune report {name}", APPS_WRITE)
        # A second job after a lost answer is harmless: the caller polls the one it was given.
        data = self._s.json("POST", EXPORT_JOBS, op=op, json_body=body, idempotent=True, write=True)
        return self._export_job(data, op)

    def get_export_job(self, job_id: str) -> ExportJob:
        op = Operation("check the Intune report export", APPS_READ, f"Intune report export job {job_id}")
        return self._export_job(self._s.json("GET", f"{EXPORT_JOBS}{_odata_key(job_id)}", op=op), op)

    def _export_job(self, data: Any, op: Operation) -> ExportJob:
        try:
            return ExportJob.model_validate(data)
        except ValidationError as exc:
            # Not `str(exc)`: it quotes the input, and a finished job's input has the signed link.
            raise MicrosoftError(f"Microsoft Graph answered the request to {op.action} with something the "
                                 f"bot can't read ({exc.errors()[0].get('msg')})", api=self._s.api.name) from None

    def download(self, url: str, into: BinaryIO, *, max_bytes: int = MAX_DOWNLOAD_BYTES) -> int:
        """Stream a finished export's signed link (`ExportJob.url`) into `into`; returns the bytes written.

        Not a Graph call: no token, no quota, not counted by `counting_requests` (see ApiSession.download).
        """
        return self._s.download(url, into, max_bytes=max_bytes, what="the Intune report")

    # ---- licences ----------------------------------------------------------------------------

    def iter_user_ids_with_plan(self, service_plan_id: str) -> Iterator[str]:
        """Ids of users with the service plan enabled (e.g. Intune's INTUNE_A), 999 a page.

        `assignedPlans` and not `licenseDetails`: the latter isn't allowed with application permissions.
        """
        plan = service_plan_id.strip()
        if not _GUID.match(plan):  # checked now, not at the first next(): it goes into a $filter unquoted
            raise ValueError(f"a service plan id is a GUID, not {service_plan_id[:60]!r}")
        op = Operation("find the users licensed for a service plan", USER_READ, f"service plan {plan}")
        params: dict[str, str | int] = {
            "$filter": f"assignedPlans/any(a:a/servicePlanId eq {plan.lower()} and a/capabilityStatus eq 'Enabled')",
            "$count": "true",
            "$select": "id",
            "$top": 999,
        }
        items = self._s.iter_values("/v1.0/users", op=op, params=params, headers=EVENTUAL)
        return (str(item["id"]) for item in items if item.get("id"))

    def enabled_plans(self, ids: Iterable[str]) -> dict[str, frozenset[str]]:
        """Each user's usable service plan ids (lower case), read now: 20 users to a `$batch`, a user's
        `assignedPlans` only. Confirms what the daily licence listing said of a few people; unknown ids left out.
        A plan in `Warning` (a lapsed subscription's grace period) still works, so it counts with `Enabled`."""
        wanted = list(dict.fromkeys(i.strip() for i in ids if i and i.strip()))
        found: dict[str, frozenset[str]] = {}
        op = Operation("read users' licences", USER_READ)
        for start in range(0, len(wanted), bodies.MAX_BATCH_REQUESTS):
            chunk = wanted[start:start + bodies.MAX_BATCH_REQUESTS]
            requests = [BatchRequest(str(n), "GET", f"/users/{_seg(uid)}?$select=id,assignedPlans")
                        for n, uid in enumerate(chunk)]
            for n, body in self._batch(requests, op).items():
                plans = body.get("assignedPlans") if isinstance(body, dict) else None
                found[chunk[int(n)]] = frozenset(
                    str(p.get("servicePlanId", "")).lower() for p in (plans or [])
                    if isinstance(p, dict) and p.get("capabilityStatus") in USABLE_PLAN_STATES)
        return found

    def find_users_by_email(self, email: str) -> list[User]:
        """Users whose mail or UPN is `email` (up to 5): callers tell one from none and several."""
        address = email.strip()
        if not address:
            raise ValueError("an email address is needed to look a user up")
        if len(address) > MAX_EMAIL_LENGTH or any(ch.isspace() or not ch.isprintable() for ch in address):
            raise ValueError(f"{address[:60]!r} is not an email address")
        quoted = _odata_string(address)
        op = Operation("look up users by email", USER_READ)
        params: dict[str, str | int] = {
            "$filter": f"mail eq '{quoted}' or userPrincipalName eq '{quoted}'",
            "$select": USER_FIELDS,
            "$top": 5,
        }
        found = self._first_page(User, "/v1.0/users", op, params)
        return list({user.id: user for user in found}.values())

    # ---- groups and users --------------------------------------------------------------------

    def find_groups(self, name: str, *, limit: int = 20) -> list[Group]:
        """Groups named `name` exactly; else those whose name starts with it; else a word search."""
        name = name.strip()
        if not name:
            return []
        op = Operation("look up groups", GROUP_READ)
        quoted = _odata_string(name)
        top = max(1, min(limit, 999))
        attempts: tuple[dict[str, str | int], ...] = (
            {"$filter": f"displayName eq '{quoted}'", "$select": GROUP_FIELDS, "$top": top},
            {"$filter": f"startswith(displayName,'{quoted}')", "$select": GROUP_FIELDS, "$top": top},
        )
        for params in attempts:
            found = self._first_page(Group, "/v1.0/groups", op, params)
            if found:
                return found[:limit]
        # $search matches words anywhere in the name but needs the advanced-query header.
        search = name.replace("\\", "\\\\").replace('"', '\\"')
        searching: dict[str, str | int] = {
            "$search": f'"displayName:{search}"', "$select": GROUP_FIELDS, "$top": top,
        }
        return self._first_page(Group, "/v1.0/groups", op, searching, headers=EVENTUAL)[:limit]

    def get_group(self, group_id: str) -> Group:
        op = Operation("read the group", GROUP_READ, f"group {group_id}")
        return Group.model_validate(
            self._s.json("GET", f"/v1.0/groups/{_seg(group_id)}", op=op, params={"$select": GROUP_FIELDS})
        )

    def group_member_count(self, group_id: str) -> int:
        """Direct members (`/members/$count`: plain text, needs ConsistencyLevel: eventual)."""
        op = Operation("count the group's members", GROUP_READ, f"group {group_id}")
        response = self._s.send("GET", f"/v1.0/groups/{_seg(group_id)}/members/$count", op=op,
                                headers={**EVENTUAL, "Accept": "text/plain"})
        text = response.content.decode("utf-8-sig").strip()
        try:
            return int(text)
        except ValueError:
            raise MicrosoftError(f"Microsoft Graph answered the member count with {text[:40]!r}",
                                 api=self._s.api.name) from None

    def iter_registration_items(self, *, applied_policies: bool = False) -> Iterator[dict[str, Any]]:
        """Every registration as Graph sends it (the sweep parses only the fields it needs), a page at a time.
        With `applied_policies`, `$expand=intendedPolicies`: the policies that apply now (`appliedPolicies` is
        what the app last synced, which lags behind an assignment change until the app checks in)."""
        op = Operation("list app protection registrations", APPS_READ)
        params = {"$expand": "intendedPolicies"} if applied_policies else None
        return self._s.iter_values(REGISTRATIONS, op=op, params=params)

    def iter_group_member_ids(self, group_id: str) -> Iterator[str]:
        """A group's transitive user members, ids only, 999 a page."""
        op = Operation("read the group's members", GROUP_READ, f"group {group_id}")
        path = f"/v1.0/groups/{_seg(group_id)}/transitiveMembers/microsoft.graph.user"
        for item in self._s.iter_values(path, op=op, params={"$select": "id", "$top": 999}):
            if item.get("id"):
                yield str(item["id"])

    def iter_users(self) -> Iterator[User]:
        """Every user in the directory, 999 a page (cheaper than batches when most are wanted)."""
        op = Operation("read users", USER_READ)
        items = self._s.iter_values("/v1.0/users", op=op, params={"$select": USER_FIELDS, "$top": 999})
        return _parse_each(User, items)

    def count_users(self) -> int | None:
        """How many users the directory has (`$count` needs ConsistencyLevel: eventual)."""
        op = Operation("count users", USER_READ)
        page = self._s.json("GET", "/v1.0/users", op=op, headers=EVENTUAL,
                            params={"$count": "true", "$top": 1, "$select": "id"}) or {}
        count = page.get("@odata.count") if isinstance(page, dict) else None
        return count if isinstance(count, int) else None

    def get_users(self, ids: Iterable[str]) -> dict[str, User]:
        """Users by id (mail, UPN, display name), 20 to a `$batch`; unknown ids are left out."""
        wanted = list(dict.fromkeys(i.strip() for i in ids if i and i.strip()))
        found: dict[str, User] = {}
        op = Operation("read users", USER_READ)
        for start in range(0, len(wanted), bodies.MAX_BATCH_REQUESTS):
            chunk = wanted[start:start + bodies.MAX_BATCH_REQUESTS]
            requests = [
                BatchRequest(str(n), "GET", f"/users/{_seg(uid)}?$select={USER_FIELDS}")
                for n, uid in enumerate(chunk)
            ]
            for n, body in self._batch(requests, op).items():
                user = User.model_validate(body)
                found[chunk[int(n)]] = user
        return found

    # ---- Intune's audit log -------------------------------------------------------------------

    def iter_audit_events(self, since: datetime) -> Iterator[dict[str, Any]]:
        """Intune's audit events from `since` on, a page at a time, as Graph sends them (drift detection reads
        the actor, the resources and their modified properties). The server filters only by
        `activityDateTime ge <UTC>` (unquoted, with its `Z`): components and resources are the caller's to
        filter, and a late event is the caller's to find again with an overlap."""
        if since.tzinfo is None:
            raise ValueError("since must carry its time zone: a naive time could be sent as UTC while local")
        moment = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        op = Operation("read Intune's audit log", APPS_READ)
        return self._s.iter_values("/v1.0/deviceManagement/auditEvents", op=op,
                                   params={"$filter": f"activityDateTime ge {moment}"})


    def _first_page(
        self, model: type[M], path: str, op: Operation, params: Mapping[str, str | int],
        headers: Mapping[str, str] | None = None,
    ) -> list[M]:
        page = self._s.json("GET", path, op=op, params=params, headers=headers) or {}
        return list(_parse_each(model, (v for v in page.get("value") or [] if isinstance(v, dict))))

    def _batch(self, requests: list[BatchRequest], op: Operation, version: str = "/v1.0") -> dict[str, Any]:
        """Run a batch of GETs; bodies of the 2xx answers by request id, 404s left out.

        Each inner request is throttled on its own, so inner 429/503/504s are sent again in a
        smaller batch after the longest Retry-After among them.
        """
        results: dict[str, Any] = {}
        pending = list(requests)
        attempt = 0
        while pending:
            attempt += 1
            response = self._s.send("POST", f"{version}/$batch", op=op, json_body=bodies.batch_body(pending),
                                    idempotent=True, write=False, cost=len(pending))
            answer = parse_json(response.content) or {}
            client_request_id = response.request.headers.get("client-request-id", "")
            retry: list[BatchRequest] = []
            delays: list[float] = []
            by_id = {r.id: r for r in pending}
            for item in answer.get("responses") or []:
                rid = str(item.get("id"))
                status = int(item.get("status") or 0)
                if rid not in by_id:
                    continue
                if 200 <= status < 300:
                    results[rid] = item.get("body")
                elif status == 404:
                    continue
                elif status in (429, 503, 504) and attempt < self._s.profile.max_attempts:
                    retry.append(by_id[rid])
                    delays.append(_inner_retry_after(item.get("headers")))
                else:
                    raise error_for(_inner_response(item), self._s.api, op, client_request_id)
            if retry:
                delay = min(max(delays), self._s.profile.max_retry_after)
                log.warning("graph $batch: %d inner requests throttled; retry in %.1f s", len(retry), delay)
                self._s.pause(delay)
            pending = retry
        return results


def _inner_retry_after(headers: object) -> float:
    if isinstance(headers, dict):
        for key, value in headers.items():
            if key.lower() == "retry-after":
                try:
                    return max(0.0, float(value))
                except (TypeError, ValueError):
                    break
    return 1.0


def _inner_response(item: Mapping[str, Any]) -> httpx.Response:
    headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
    body = item.get("body")
    return httpx.Response(int(item.get("status") or 500), headers=headers,
                          json=body if body is not None else {})


def _parse_each(model: type[M], items: Iterable[dict[str, Any]]) -> Iterator[M]:
    """Models from a stream; one malformed item is logged and skipped, not fatal to a sweep."""
    for item in items:
        try:
            yield model.model_validate(item)
        except ValidationError as exc:
            log.warning("skipping a %s Graph returned that doesn't parse (id %s): %s",
                        model.__name__, item.get("id"), exc.errors()[0].get("msg"))
