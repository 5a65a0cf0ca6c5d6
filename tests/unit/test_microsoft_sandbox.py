"""The clients against the in-process sandbox tenant: the whole job's calls, end to end."""

from __future__ import annotations

import random

import pytest

from bot.microsoft import (
    MDE_CONNECTOR_ID,
    AndroidPolicyDraft,
    AppManagementLevel,
    MicrosoftClients,
    PermissionDenied,
    RemediationAction,
    ThreatLevel,
    build_clients,
)
from bot.microsoft.testing import FakeClock, global_settings

sandbox = pytest.importorskip("bot.sandbox")


def clients_for(tenant: object, clock: FakeClock | None = None) -> MicrosoftClients:
    clock = clock or FakeClock()
    return build_clients(
        global_settings(mam_cloud="sandbox"),
        tenant.transport(),  # type: ignore[attr-defined]
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(1),
    )


@pytest.fixture
def tenant():
    return sandbox.SandboxTenant(sandbox.SandboxConfig())


def test_create_target_assign_and_read_back(tenant):
    graph = clients_for(tenant).graph
    pilot = graph.find_groups("MAM Pilot")[0]
    draft = AndroidPolicyDraft(
        displayName="Android - MDE risk - block",
        maximumAllowedDeviceThreatLevel=ThreatLevel.LOW,
        mobileThreatDefenseRemediationAction=RemediationAction.BLOCK,
        targetedAppManagementLevels=(AppManagementLevel.UNMANAGED, AppManagementLevel.ANDROID_ENTERPRISE),
        packageIds=("com.microsoft.office.outlook", "com.microsoft.teams", "com.microsoft.emmx"),
    )

    created = graph.create_android_policy(draft)
    assert created.id.startswith("T_")
    assert sorted(created.package_ids) == [
        "com.microsoft.emmx",
        "com.microsoft.office.outlook",
        "com.microsoft.teams",
    ]
    assert created.management_levels == {"unmanaged", "androidEnterprise"}

    graph.change_assignments(created.id, include=[pilot.id])
    graph.change_assignments(created.id, exclude=["0bae8726-9554-4094-93af-cedd1d597976"])
    back = graph.get_android_policy(created.id)
    kinds = sorted((a.target.odata_type.rsplit(".", 1)[1], a.target.groupId) for a in back.assignments)
    assert kinds == [
        ("exclusionGroupAssignmentTarget", "0bae8726-9554-4094-93af-cedd1d597976"),
        ("groupAssignmentTarget", pilot.id),
    ]
    assert back.maximumAllowedDeviceThreatLevel == "low"

    graph.patch_android_policy(created.id, {"maximumAllowedDeviceThreatLevel": ThreatLevel.MEDIUM})
    assert graph.get_android_policy(created.id).maximumAllowedDeviceThreatLevel == "medium"
    assert any(p.id == created.id for p in graph.iter_android_policies())
    graph.delete_android_policy(created.id)
    assert all(p.id != created.id for p in graph.iter_android_policies())


def test_connector_toggle_round_trip(tenant):
    graph = clients_for(tenant).graph
    before = graph.get_mde_connector()
    assert before is not None and before.id == MDE_CONNECTOR_ID
    after = graph.update_connector(MDE_CONNECTOR_ID, androidMobileApplicationManagementEnabled=True)
    assert after.androidMobileApplicationManagementEnabled is True
    assert after.iosEnabled == before.iosEnabled


def test_machines_registrations_users_and_groups(tenant):
    clients = clients_for(tenant)
    machines = list(clients.background().defender.iter_android_machines(page_size=5))
    assert machines and all(m.is_android for m in machines)
    assert {m.aadDeviceId for m in machines} <= {m["aadDeviceId"] for m in tenant.machines}

    registrations = list(clients.graph.iter_managed_app_registrations())
    assert len(registrations) == len(tenant.registrations)
    users = clients.graph.get_users({r.userId for r in registrations if r.userId})
    assert users and all(u.userPrincipalName for u in users.values())

    group = clients.graph.find_groups("Sales EMEA")[0]
    assert clients.graph.get_group(group.id).displayName == "Sales EMEA"
    assert clients.graph.group_member_count(group.id) >= 0


def test_sandbox_throttling_is_waited_out_on_the_injected_clock():
    tenant = sandbox.SandboxTenant(
        sandbox.SandboxConfig(throttle=sandbox.ThrottleConfig(every=2, retry_after=3, scope="graph"))
    )
    clock = FakeClock()
    graph = clients_for(tenant, clock).graph
    for _ in range(3):
        assert graph.get_mde_connector() is not None
    assert clock.sleeps and all(s == 3 for s in clock.sleeps)


def test_sandbox_forbidden_area_becomes_the_permission_message():
    tenant = sandbox.SandboxTenant(sandbox.SandboxConfig(forbid={"/beta/deviceManagement"}))
    with pytest.raises(PermissionDenied, match=r"DeviceManagementServiceConfig\.Read\.All"):
        clients_for(tenant).graph.get_mde_connector()
