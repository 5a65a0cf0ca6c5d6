"""Every request body the bot can send, held against Microsoft's beta schema (tests/data/graph-schema.json).

Each property must exist on the target type (with Microsoft's exact casing), each enum value must
be a member (flags enums: each comma-separated part), each `@odata.type` must name a real type that
fits where it is used, and abstract types must be made concrete. Inputs cover every enum member.
"""

from __future__ import annotations

import inspect
import itertools
import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.microsoft import bodies
from bot.microsoft.bodies import CONNECTOR_WRITABLE_FLAGS, POLICY_PATCHABLE, BatchRequest
from bot.microsoft.models import (
    MDE_CONNECTOR_ID,
    AndroidPolicyDraft,
    AppGroupType,
    AppManagementLevel,
    AssignmentFilterType,
    AssignmentTarget,
    MtdConnector,
    PartnerPriority,
    PartnerState,
    PolicyAssignment,
    RemediationAction,
    TargetKind,
    ThreatLevel,
)
from bot.microsoft.testing import Recorder, harness

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "data" / "graph-schema.json").read_text("utf-8"))
BETA = SCHEMA["beta"]
TYPES: dict[str, Any] = BETA["types"]
ENUMS: dict[str, Any] = BETA["enums"]
ACTIONS: dict[str, Any] = BETA["actions"]
_DURATION = re.compile(r"^-?P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")


# ---- the validator ------------------------------------------------------------------------------


def check_value(value: Any, edm_type: str, nullable: bool, path: str) -> Iterator[str]:
    if value is None:
        if not nullable:
            yield f"{path}: null, but {edm_type} is not nullable"
        return
    if edm_type.startswith("Collection(") and edm_type.endswith(")"):
        if not isinstance(value, list):
            yield f"{path}: expected a list for {edm_type}"
            return
        for i, item in enumerate(value):
            yield from check_value(item, edm_type[len("Collection(") : -1], False, f"{path}[{i}]")
        return
    if edm_type == "Edm.String":
        if not isinstance(value, str):
            yield f"{path}: expected a string"
    elif edm_type == "Edm.Boolean":
        if not isinstance(value, bool):
            yield f"{path}: expected true/false"
    elif edm_type == "Edm.Int32":
        if not isinstance(value, int) or isinstance(value, bool) or not -(2**31) <= value < 2**31:
            yield f"{path}: expected a 32-bit integer"
    elif edm_type == "Edm.DateTimeOffset":
        try:
            datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            yield f"{path}: expected an ISO 8601 date-time"
    elif edm_type == "Edm.Duration":
        if not isinstance(value, str) or not _DURATION.match(value):
            yield f"{path}: expected an ISO 8601 duration"
    elif edm_type.startswith("graph."):
        name = edm_type.removeprefix("graph.")
        if name in ENUMS:
            yield from check_enum(value, name, path)
        elif name in TYPES:
            yield from check_object(value, name, path)
        else:
            yield f"{path}: {edm_type} is not in the schema extract, so this body can't be checked"
    else:
        yield f"{path}: unhandled type {edm_type}"


def check_enum(value: Any, name: str, path: str) -> Iterator[str]:
    enum = ENUMS[name]
    if not isinstance(value, str):
        yield f"{path}: {name} values are strings"
        return
    parts = value.split(",") if enum.get("isFlags") else [value]
    for part in parts:
        if part not in enum["members"]:
            yield f"{path}: {part!r} is not a member of {name} ({', '.join(enum['members'])})"
    if enum.get("isFlags") and len(set(parts)) != len(parts):
        yield f"{path}: repeated flag in {value!r}"


def check_object(obj: Any, declared: str, path: str) -> Iterator[str]:
    if not isinstance(obj, dict):
        yield f"{path}: expected an object of type {declared}"
        return
    actual = declared
    if "@odata.type" in obj:
        odata_type = obj["@odata.type"]
        if not isinstance(odata_type, str) or not odata_type.startswith("#microsoft.graph."):
            yield f"{path}.@odata.type: {odata_type!r} must look like #microsoft.graph.<type>"
            return
        actual = odata_type.removeprefix("#microsoft.graph.")
        if actual not in TYPES:
            yield f"{path}.@odata.type: {actual} is not a type in the schema"
            return
        if declared not in TYPES[actual]["inheritanceChain"]:
            yield f"{path}.@odata.type: {actual} is not a {declared}"
            return
    if TYPES[actual]["abstract"]:
        yield f"{path}: {actual} is abstract; say which subtype with @odata.type"
        return
    properties = TYPES[actual]["properties"]
    for key, value in obj.items():
        if key == "@odata.type":
            continue
        if key.startswith("@") or "@odata." in key:
            yield f"{path}.{key}: the bot sends no annotations but @odata.type"
        elif key not in properties:
            near = [p for p in properties if p.lower() == key.lower()]
            hint = f" (did you mean {near[0]}?)" if near else ""
            yield f"{path}.{key}: not a property of {actual}{hint}"
        else:
            spec = properties[key]
            yield from check_value(value, spec["type"], spec["nullable"], f"{path}.{key}")


def check_action(body: Any, action: str, bound_to: str) -> Iterator[str]:
    chain = TYPES[bound_to]["inheritanceChain"]
    overloads = [o for o in ACTIONS[action] if o["bindingParameter"] in chain]
    if not overloads:
        yield f"{action} is not bound to {bound_to}"
        return
    overload = min(overloads, key=lambda o: chain.index(o["bindingParameter"]))  # the most derived
    if not isinstance(body, dict):
        yield f"{action}: body must be an object"
        return
    for key, value in body.items():
        spec = overload["parameters"].get(key)
        if spec is None:
            yield f"{action}.{key}: not a parameter of {action} bound to {overload['bindingParameter']}"
        else:
            yield from check_value(value, spec["type"], spec["nullable"], f"{action}.{key}")


def check_batch(body: Any) -> Iterator[str]:
    requests = body.get("requests") if isinstance(body, dict) else None
    if set(body) != {"requests"} or not isinstance(requests, list) or not 1 <= len(requests) <= 20:
        yield "$batch: {'requests': [1..20 requests]}"
        return
    if len({r.get("id") for r in requests}) != len(requests):
        yield "$batch: request ids must be unique"
    for r in requests:
        if set(r) - {"id", "method", "url", "headers", "body", "dependsOn"}:
            yield f"$batch: unknown keys {set(r) - {'id', 'method', 'url', 'headers', 'body', 'dependsOn'}}"
        if r.get("method") not in {"GET", "POST", "PATCH", "PUT", "DELETE"}:
            yield f"$batch: bad method {r.get('method')!r}"
        if not str(r.get("url", "")).startswith("/") or "://" in str(r.get("url")):
            yield f"$batch: url must be relative: {r.get('url')!r}"


def errors_for(kind: str, body: Any) -> list[str]:
    target, _, name = kind.partition(":")
    if target == "entity":
        return list(check_object(body, name, name))
    if target == "action":
        return list(check_action(body, name, "androidManagedAppProtection"))
    return list(check_batch(body))


# ---- representative inputs: every builder, every enum member ------------------------------------


def connector(**flags: bool | None) -> MtdConnector:
    values = {name: (i % 2 == 0) for i, name in enumerate(CONNECTOR_WRITABLE_FLAGS)}
    values.update(flags)
    return MtdConnector(id=MDE_CONNECTOR_ID, partnerState="enabled", **values)  # type: ignore[arg-type]


def connector_cases() -> Iterator[tuple[str, dict[str, Any]]]:
    for name in CONNECTOR_WRITABLE_FLAGS:
        for value in (True, False):
            yield (
                "entity:mobileThreatDefenseConnector",
                bodies.connector_patch_body(connector(), {name: value}),
            )
    # Read from a tenant whose schema lacks the beta-only flags: those are left out, not sent as null.
    v1_only = connector(macEnabled=None, windowsMobileApplicationManagementEnabled=None)
    yield (
        "entity:mobileThreatDefenseConnector",
        bodies.connector_patch_body(v1_only, {"androidEnabled": True}),
    )


LEVEL_SETS: list[tuple[AppManagementLevel, ...]] = (
    [(level,) for level in AppManagementLevel]
    + [
        pair
        for pair in itertools.combinations(
            [m for m in AppManagementLevel if m is not AppManagementLevel.UNSPECIFIED], 2
        )
    ]
    + [tuple(m for m in AppManagementLevel if m is not AppManagementLevel.UNSPECIFIED)]
)


def create_cases() -> Iterator[tuple[str, dict[str, Any]]]:
    for level, action in itertools.product(ThreatLevel, RemediationAction):
        draft = AndroidPolicyDraft(
            displayName=f"{level}/{action}",
            maximumAllowedDeviceThreatLevel=level,
            mobileThreatDefenseRemediationAction=action,
        )
        yield "entity:androidManagedAppProtection", bodies.policy_create_body(draft)
    for levels in LEVEL_SETS:
        draft = AndroidPolicyDraft(
            displayName="levels",
            description="d",
            maximumAllowedDeviceThreatLevel=ThreatLevel.LOW,
            targetedAppManagementLevels=levels,
        )
        yield "entity:androidManagedAppProtection", bodies.policy_create_body(draft)
    for group_type in AppGroupType:
        draft = AndroidPolicyDraft(
            displayName="apps", maximumAllowedDeviceThreatLevel=ThreatLevel.MEDIUM, appGroupType=group_type
        )
        yield "entity:androidManagedAppProtection", bodies.policy_create_body(draft)
    for priority in PartnerPriority:
        draft = AndroidPolicyDraft(
            displayName="prio",
            maximumAllowedDeviceThreatLevel=ThreatLevel.HIGH,
            mobileThreatDefensePartnerPriority=priority,
        )
        yield "entity:androidManagedAppProtection", bodies.policy_create_body(draft)


def patch_cases() -> Iterator[tuple[str, dict[str, Any]]]:
    choices: dict[str, list[Any]] = {
        "displayName": ["Renamed"],
        "description": ["why", "", None],
        "maximumAllowedDeviceThreatLevel": list(ThreatLevel),
        "mobileThreatDefenseRemediationAction": list(RemediationAction),
        "mobileThreatDefensePartnerPriority": [*PartnerPriority, None],
        "targetedAppManagementLevels": LEVEL_SETS,
    }
    assert set(choices) == set(POLICY_PATCHABLE)
    for name, values in choices.items():
        for value in values:
            yield "entity:androidManagedAppProtection", bodies.policy_patch_body({name: value})
    yield (
        "entity:androidManagedAppProtection",
        bodies.policy_patch_body({name: values[0] for name, values in choices.items()}),
    )


PACKAGES = [
    "com.microsoft.office.outlook",
    "com.microsoft.teams",
    "com.microsoft.emmx",
    "com.microsoft.office.officehubrow",
    "com.microsoft.scmx",
    "ols.microsoft.com.shiftr",
    "com.yammer.v1",
]


def target_apps_cases() -> Iterator[tuple[str, dict[str, Any]]]:
    for group_type in AppGroupType:
        yield "action:targetApps", bodies.target_apps_body(PACKAGES, group_type)
        yield "action:targetApps", bodies.target_apps_body([], group_type.value)


def assign_cases() -> Iterator[tuple[str, dict[str, Any]]]:
    targets = [
        AssignmentTarget.include_group("11111111-1111-1111-1111-111111111111"),
        AssignmentTarget.exclude_group("22222222-2222-2222-2222-222222222222"),
        AssignmentTarget.all_licensed_users(),
        AssignmentTarget.all_devices(),
    ]
    assert {t.odata_type for t in targets} == {k.value for k in TargetKind}
    yield "action:assign", bodies.assign_body(targets)
    yield "action:assign", bodies.assign_body([])
    for filter_type in AssignmentFilterType:
        filtered = AssignmentTarget.model_validate(
            {
                "@odata.type": TargetKind.GROUP.value,
                "groupId": "33333333-3333-3333-3333-333333333333",
                "deviceAndAppManagementAssignmentFilterId": "f-1",
                "deviceAndAppManagementAssignmentFilterType": filter_type.value,
            }
        )
        yield "action:assign", bodies.assign_body([filtered])
    yield "action:assign", bodies.assign_body([PolicyAssignment(target=targets[1], source="direct")])


def assignment_change_cases() -> Iterator[tuple[str, dict[str, Any]]]:
    """A read-modify-write keeps every target kind and filter as read; a policy set's assignment is left out."""
    read = [
        PolicyAssignment(id="a", source="direct", target=AssignmentTarget.model_validate({
            "@odata.type": TargetKind.ALL_LICENSED_USERS.value,
            "deviceAndAppManagementAssignmentFilterId": "f-1",
            "deviceAndAppManagementAssignmentFilterType": "exclude",
        })),
        PolicyAssignment(id="b", source="direct", target=AssignmentTarget.all_devices()),
        PolicyAssignment(id="c", source="policySets", sourceId="ps-1",
                         target=AssignmentTarget.include_group("44444444-4444-4444-4444-444444444444")),
    ]
    change = bodies.assignment_change(read, include=["11111111-1111-1111-1111-111111111111"],
                                      exclude=["22222222-2222-2222-2222-222222222222"])
    assert [a["target"]["@odata.type"] for a in change.body["assignments"]] == [
        TargetKind.ALL_LICENSED_USERS.value, TargetKind.ALL_DEVICES.value, TargetKind.GROUP.value,
        TargetKind.EXCLUSION_GROUP.value]
    assert "source" not in json.dumps(change.body) and change.left_alone == read[2:]
    yield "action:assign", change.body
    yield "action:assign", bodies.assignment_change([], remove=["g"]).body


def batch_cases() -> Iterator[tuple[str, dict[str, Any]]]:
    yield (
        "batch",
        bodies.batch_body([BatchRequest(str(n), "get", f"/users/u{n}?$select=id") for n in range(20)]),
    )
    yield (
        "batch",
        bodies.batch_body(
            [BatchRequest("1", "GET", "/groups/g1/members/$count", {"ConsistencyLevel": "eventual"})]
        ),
    )


CASES: dict[str, Callable[[], Iterator[tuple[str, dict[str, Any]]]]] = {
    "connector_patch_body": connector_cases,
    "policy_create_body": create_cases,
    "policy_patch_body": patch_cases,
    "target_apps_body": target_apps_cases,
    "assign_body": assign_cases,
    "assignment_change": assignment_change_cases,
    "batch_body": batch_cases,
}
HELPERS = {"flags_value", "package_ids"}  # build parts of bodies; covered through the builders


def test_every_body_builder_has_contract_cases():
    builders = {
        name
        for name, fn in inspect.getmembers(bodies, inspect.isfunction)
        if fn.__module__ == bodies.__name__ and not name.startswith("_")
    }
    assert builders - HELPERS == set(CASES), "a new body builder needs cases here"


@pytest.mark.parametrize("builder", sorted(CASES))
def test_bodies_fit_the_beta_schema(builder):
    cases = list(CASES[builder]())
    assert cases
    problems = [
        f"{kind}: {error}  body={json.dumps(body)[:200]}"
        for kind, body in cases
        for error in errors_for(kind, body)
    ]
    assert problems == []


def test_a_policy_create_names_its_concrete_type_and_sets_the_required_name():
    body = next(create_cases())[1]
    assert body["@odata.type"] == "#microsoft.graph.androidManagedAppProtection"
    assert TYPES["androidManagedAppProtection"]["properties"]["displayName"]["nullable"] is False
    assert body["displayName"]


# ---- what the clients really put on the wire ----------------------------------------------------

POLICIES = "/beta/deviceAppManagement/androidManagedAppProtections"
CONNECTOR_PATH = f"/beta/deviceManagement/mobileThreatDefenseConnectors/{MDE_CONNECTOR_ID}"


def wire_kind(request: httpx.Request) -> str:
    path = request.url.path
    if path == CONNECTOR_PATH and request.method == "PATCH":
        return "entity:mobileThreatDefenseConnector"
    if path.endswith("/targetApps"):
        return "action:targetApps"
    if path.endswith("/assign"):
        return "action:assign"
    if path.startswith(POLICIES) and request.method in ("POST", "PATCH"):
        return "entity:androidManagedAppProtection"
    if path.endswith("/$batch"):
        return "batch"
    raise AssertionError(f"no schema target for {request.method} {path}")


def test_every_body_the_clients_send_fits_the_schema():
    created = {"id": "T_1", "displayName": "p"}
    connector_json = {"id": MDE_CONNECTOR_ID, **{n: False for n in CONNECTOR_WRITABLE_FLAGS}}
    rec = (
        Recorder()
        .on("GET", CONNECTOR_PATH, httpx.Response(200, json=connector_json))
        .on("PATCH", CONNECTOR_PATH, httpx.Response(200, json=connector_json))
        .on("POST", POLICIES, httpx.Response(201, json=created))
        .on("GET", f"{POLICIES}/T_1", httpx.Response(200, json=created))
        .on("POST", f"{POLICIES}/T_1/targetApps", httpx.Response(204))
        .on(
            "GET",
            f"{POLICIES}/T_1/assignments",
            httpx.Response(
                200,
                json={
                    "value": [
                        {
                            "id": "a",
                            "source": "direct",
                            "target": {
                                "@odata.type": "#microsoft.graph.groupAssignmentTarget",
                                "groupId": "g-old",
                                "deviceAndAppManagementAssignmentFilterId": None,
                                "deviceAndAppManagementAssignmentFilterType": "none",
                            },
                        }
                    ]
                },
            ),
        )
        .on("POST", f"{POLICIES}/T_1/assign", httpx.Response(204))
        .on("PATCH", f"{POLICIES}/T_1", httpx.Response(204))
        .on("POST", "/v1.0/$batch", httpx.Response(200, json={"responses": []}))
    )
    graph = harness(rec).clients.graph

    graph.update_connector(MDE_CONNECTOR_ID, androidMobileApplicationManagementEnabled=True)
    graph.create_android_policy(
        AndroidPolicyDraft(
            displayName="MDE block",
            maximumAllowedDeviceThreatLevel=ThreatLevel.SECURED,
            targetedAppManagementLevels=(
                AppManagementLevel.UNMANAGED,
                AppManagementLevel.MDM,
                AppManagementLevel.ANDROID_ENTERPRISE,
            ),
            packageIds=tuple(PACKAGES),
            mobileThreatDefensePartnerPriority=PartnerPriority.DEFENDER_OVER_THIRD_PARTY_PARTNER,
        )
    )
    graph.set_target_apps("T_1", PACKAGES[:2], AppGroupType.SELECTED_PUBLIC_APPS)
    graph.change_assignments("T_1", include=["g-new"], exclude=["g-ex"])
    graph.replace_assignments("T_1", [AssignmentTarget.all_devices()])
    graph.patch_android_policy("T_1", {"mobileThreatDefenseRemediationAction": RemediationAction.WIPE})
    graph.get_users(["u1", "u2"])

    sent = [r for r in rec.requests if r.content]
    kinds = {wire_kind(r) for r in sent}
    assert kinds == {
        "entity:mobileThreatDefenseConnector",
        "entity:androidManagedAppProtection",
        "action:targetApps",
        "action:assign",
        "batch",
    }
    problems = [
        f"{r.method} {r.url.path}: {e}" for r in sent for e in errors_for(wire_kind(r), json.loads(r.content))
    ]
    assert problems == []


# ---- the validator catches the known traps -------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        (
            "entity:mobileThreatDefenseConnector",
            {"allowPartnerToCollectIosApplicationMetadata": True},
            "did you mean allowPartnerToCollectIOSApplicationMetadata",
        ),
        ("entity:mobileThreatDefenseConnector", {"androidEnabled": "true"}, "expected true/false"),
        (
            "entity:androidManagedAppProtection",
            {"targetedAppManagementLevels": "unmanaged,deviceAdministrator"},
            "'deviceAdministrator' is not a member of appManagementLevel",
        ),
        (
            "entity:androidManagedAppProtection",
            {"maximumAllowedDeviceThreatLevel": "none"},
            "'none' is not a member of managedAppDeviceThreatLevel",
        ),
        ("entity:androidManagedAppProtection", {"displayName": None}, "not nullable"),
        (
            "entity:androidManagedAppProtection",
            {"@odata.type": "microsoft.graph.androidManagedAppProtection"},
            "must look like #microsoft.graph",
        ),
        (
            "entity:androidManagedAppProtection",
            {"@odata.type": "#microsoft.graph.iosManagedAppProtection"},
            "not a type in the schema",
        ),
        ("action:assign", {"assignments": [{"target": {"groupId": "g"}}]}, "abstract"),
        (
            "action:assign",
            {"assignments": [{"target": {"@odata.type": "#microsoft.graph.managedMobileApp"}}]},
            "is not a deviceAndAppManagementAssignmentTarget",
        ),
        ("action:targetApps", {"apps": [{"mobileAppIdentifier": {"packageId": "x"}}]}, "abstract"),
        (
            "action:targetApps",
            {"appGroupType": "allMicrosoftApps", "apps": [], "extra": 1},
            "not a parameter",
        ),
        (
            "batch",
            {"requests": [{"id": "1", "method": "GET", "url": "https://graph.microsoft.com/v1.0/me"}]},
            "relative",
        ),
    ],
)
def test_the_validator_rejects(kind, body, expected):
    assert any(expected in e for e in errors_for(kind, body)), errors_for(kind, body)


# ---- the bot's vocabulary is Microsoft's ---------------------------------------------------------


@pytest.mark.parametrize(
    ("enum", "schema_name"),
    [
        (ThreatLevel, "managedAppDeviceThreatLevel"),
        (RemediationAction, "managedAppRemediationAction"),
        (AppGroupType, "targetedManagedAppGroupType"),
        (AppManagementLevel, "appManagementLevel"),
        (PartnerPriority, "mobileThreatDefensePartnerPriority"),
        (AssignmentFilterType, "deviceAndAppManagementAssignmentFilterType"),
        (PartnerState, "mobileThreatPartnerTenantState"),
    ],
)
def test_enums_match_the_schema_exactly(enum, schema_name):
    assert [m.value for m in enum] == ENUMS[schema_name]["members"]


def test_connector_model_and_writable_flags_cover_the_schema():
    properties = TYPES["mobileThreatDefenseConnector"]["properties"]
    assert set(MtdConnector.model_fields) == set(properties)
    booleans = {name for name, spec in properties.items() if spec["type"] == "Edm.Boolean"}
    assert set(CONNECTOR_WRITABLE_FLAGS) == booleans


def test_target_kinds_are_the_concrete_assignment_targets():
    concrete = {
        f"#microsoft.graph.{name}"
        for name, t in TYPES.items()
        if "deviceAndAppManagementAssignmentTarget" in t["inheritanceChain"] and not t["abstract"]
    }
    assert {k.value for k in TargetKind} == concrete
