"""Per-feature permission rows from the tokens' `roles` claims (what `mam-bot check` prints)."""

from __future__ import annotations

from bot.microsoft.permissions import FEATURES, check_permissions
from bot.microsoft.testing import FakeSignIn, Recorder, global_settings, harness

GRAPH = "https://graph.microsoft.com"
DEFENDER = "https://api.securitycenter.microsoft.com"


def rows_for(graph_roles, defender_roles=()):
    sign_in = FakeSignIn(roles={GRAPH: graph_roles, DEFENDER: defender_roles})
    h = harness(Recorder(), sign_in=sign_in)
    return {row.key: row for row in check_permissions(h.clients)}


def test_everything_granted_means_every_feature_is_ok():
    rows = rows_for(
        [
            "DeviceManagementServiceConfig.ReadWrite.All",
            "DeviceManagementApps.ReadWrite.All",
            "Group.Read.All",
            "User.Read.All",
        ],
        ["Machine.Read.All"],
    )
    assert set(rows) == {f.key for f in FEATURES}
    assert all(row.ok for row in rows.values())


def test_read_only_grants_leave_the_write_features_missing():
    rows = rows_for(["DeviceManagementServiceConfig.Read.All", "DeviceManagementApps.Read.All"])
    assert rows["connector-status"].ok
    assert rows["policy-read"].ok
    assert rows["connector-enable"].missing == (
        "DeviceManagementServiceConfig.ReadWrite.All (Microsoft Graph)",
    )
    assert rows["assignments"].missing == (
        "DeviceManagementApps.ReadWrite.All (Microsoft Graph)",
        "Group.Read.All (Microsoft Graph)",
    )
    assert "Machine.Read.All (WindowsDefenderATP)" in rows["threat-alerts"].missing


def test_broader_permissions_count():
    rows = rows_for(["DeviceManagementApps.ReadWrite.All", "Directory.Read.All"], ["Machine.ReadWrite.All"])
    assert rows["policy-read"].ok and rows["group-lookup"].ok and rows["threat-alerts"].ok


def test_a_failed_sign_in_is_reported_per_feature():
    sign_in = FakeSignIn(secret="other", roles={GRAPH: ["DeviceManagementApps.Read.All"]})
    h = harness(Recorder(), sign_in=sign_in)
    rows = {row.key: row for row in check_permissions(h.clients)}
    row = rows["policy-read"]
    assert not row.ok
    assert row.missing == ("DeviceManagementApps.Read.All (Microsoft Graph)",)
    assert "AZURE_CLIENT_SECRET" in row.problems[0]


def test_china_without_defender_host_reports_the_defender_features():
    h = harness(Recorder(), settings=global_settings(mam_cloud="china"))
    rows = {row.key: row for row in check_permissions(h.clients)}
    assert "MAM_DEFENDER_URL" in rows["threat-alerts"].problems[0]
    assert rows["policy-read"].ok


def test_the_app_registration_doc_lists_every_feature_and_permission():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "app-registration.md").read_text("utf-8")
    for feature in FEATURES:
        row = next((line for line in doc.splitlines() if line.startswith(f"| {feature.name} |")), None)
        assert row is not None, f"docs/app-registration.md has no row for {feature.name!r}"
        for requirement in feature.requirements:
            assert f"`{requirement.permission}`" in row
