"""The sandbox's Intune report export: jobs in Microsoft's wire format, a zip with one CSV, served without Graph."""

from __future__ import annotations

import csv
import io
import os
import time
import zipfile
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bot.sandbox import (
    MAM_COLUMNS,
    SEED_POLICY_NAME,
    SandboxConfig,
    SandboxTenant,
    ThrottleConfig,
    exports,
    serve_sandbox,
)
from bot.settings import SANDBOX_GRAPH_URL

AUTH = {"Authorization": "Bearer sandbox-token"}
NOW = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
JOBS = "/beta/deviceManagement/reports/exportJobs"
POLICIES = "/beta/deviceAppManagement/androidManagedAppProtections"
SELECT = ["User", "Email", "App", "AADDeviceID", "Platform", "Policy", "DeviceName", "LastSync"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def graph_client(tenant: SandboxTenant) -> httpx.Client:
    return httpx.Client(base_url=SANDBOX_GRAPH_URL, transport=tenant.transport(), headers=AUTH)


def export_body(select: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"reportName": "MAMAppProtectionStatus", "format": "csv",
            "localizationType": "ReplaceLocalizableValues", "select": SELECT if select is None else select, **extra}


def wait_for(graph: httpx.Client, job_id: str, url_form: str = "('{}')") -> dict[str, Any]:
    """Poll the job until it leaves inProgress (the file is built in a background thread)."""
    deadline = time.monotonic() + 20
    while True:
        job = graph.get(JOBS + url_form.format(job_id)).json()
        if job["status"] not in ("notStarted", "inProgress") or time.monotonic() > deadline:
            return job
        time.sleep(0.01)


def read_csv(content: bytes) -> tuple[bytes, list[list[str]]]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        names = archive.namelist()
        assert len(names) == 1 and names[0].endswith(".csv")
        raw = archive.read(names[0])
    return raw, list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


def export(tenant: SandboxTenant, select: list[str] | None = None) -> list[dict[str, str]]:
    graph = graph_client(tenant)
    created = graph.post(JOBS, json=export_body(select))
    assert created.status_code == 201, created.text
    job = wait_for(graph, created.json()["id"])
    assert job["status"] == "completed"
    download = httpx.Client(transport=tenant.transport()).get(job["url"])
    _raw, rows = read_csv(download.content)
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def test_export_job_end_to_end_through_the_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exports, "INLINE_ROWS", 0)    # built in a background thread, as a large tenant's is
    clock = FakeClock()
    tenant = SandboxTenant(SandboxConfig(now=NOW, export_seconds=30, monotonic=clock))
    graph = graph_client(tenant)

    created = graph.post(JOBS, json=export_body())
    assert created.status_code == 201
    job = created.json()
    assert job["id"].startswith("MAMAppProtectionStatus_") and len(job["id"]) == len("MAMAppProtectionStatus_") + 36
    assert (job["status"], job["url"], job["filter"], job["select"], job["format"]) == (
        "notStarted", None, "", SELECT, "csv")
    assert job["@odata.context"].endswith("#deviceManagement/reports/exportJobs/$entity")
    assert job["requestDateTime"] < job["expirationDateTime"]

    # Until the generation time passes on the tenant's monotonic clock, the job is in progress.
    time.sleep(0.2)
    polled = graph.get(f"{JOBS}('{job['id']}')").json()
    assert (polled["status"], polled["url"]) == ("inProgress", None)
    clock.now += 29
    assert graph.get(f"{JOBS}/{job['id']}").json()["status"] == "inProgress"
    clock.now += 2
    done = wait_for(graph, job["id"], "/{}")
    assert done["status"] == "completed"
    url = done["url"]
    assert url.startswith(f"{SANDBOX_GRAPH_URL}/sandbox-downloads/{job['id']}.zip?sig=")

    before = (tenant.stats.total, tenant.stats.count("GET"))
    bare = httpx.Client(transport=tenant.transport())          # no Authorization header
    download = bare.get(url)
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    assert (tenant.stats.total, tenant.stats.count("GET")) == before and tenant.stats.downloads == 1
    assert tenant.stats.writes == 0   # a report export is no change to the tenant

    raw, rows = read_csv(download.content)
    assert raw.startswith(b"\xef\xbb\xbf")                    # UTF-8 with a BOM
    assert rows[0] == SELECT
    records = [dict(zip(SELECT, row, strict=True)) for row in rows[1:]]
    platforms = {r["Platform"] for r in records}
    assert platforms == {"Android", "iOS"}
    megan_ios = [r for r in records if r["Platform"] == "iOS"]
    assert [(r["User"], r["Email"], r["App"], r["Policy"]) for r in megan_ios] == [
        ("Megan Bowen", "megan.bowen@contoso.example", "Microsoft Outlook", "")]
    adele = [r for r in records if r["User"] == "Adele Vance"]
    assert {r["App"] for r in adele} == {"Microsoft Outlook", "Microsoft Teams", "Microsoft Edge"}
    assert {r["Policy"] for r in adele} == {SEED_POLICY_NAME}
    diego = next(r for r in records if r["User"] == "Diego Siciliani")
    assert diego["AADDeviceID"] == ""                          # his phone is not Entra-registered
    # Megan is excluded (Executives): her Android rows carry no policy, as the registrations route says.
    assert {r["Policy"] for r in records if r["User"] == "Megan Bowen"} == {""}
    registrations = tenant.registrations
    assert len(records) == len(registrations)                  # one policy at most per registration here
    assert {r["AADDeviceID"] for r in records} == {r["azureADDeviceId"] or "" for r in registrations}
    assert all(r["LastSync"].endswith("Z") and "T" in r["LastSync"] for r in records)
    tenant.close()


def test_all_columns_when_select_is_empty_and_generated_rows() -> None:
    tenant = SandboxTenant(SandboxConfig(now=NOW, android_devices=120))
    records = export(tenant, [])
    assert list(records[0]) == list(MAM_COLUMNS) and len(MAM_COLUMNS) == 21
    assert len(records) == len(tenant.registrations)
    apps = {r["App"] for r in records}
    assert {"Microsoft Outlook", "Microsoft Teams", "Microsoft Edge", "Contoso Expenses"} <= apps
    ios = [r for r in records if r["Platform"] == "iOS"]
    assert len(ios) > 1 and {r["DeviceManufacturer"] for r in ios} == {"Apple"}
    assert all(r["AndroidPatchVersion"] == "" for r in ios)
    lob = [r for r in records if r["App"] == "Contoso Expenses"]
    assert lob and {r["Policy"] for r in lob} == {""}          # no policy targets a line-of-business app
    assert {r["ManagementType"] for r in records} == {"Unmanaged"} and {r["MDMDeviceID"] for r in records} == {""}
    by_instance = {r["AppInstanceId"]: r for r in records}
    for registration in tenant.registrations[:40]:
        row = by_instance[registration["id"]]
        assert row["AppVersion"] == registration["applicationVersion"]
        assert row["DeviceName"] == registration["deviceName"]
        assert row["AADDeviceID"] == (registration["azureADDeviceId"] or "")
        assert row["Email"] == tenant.user(registration["userId"])["mail"]  # type: ignore[index]
    tenant.close()


def test_duplicate_policy_names_show_as_separate_rows() -> None:
    tenant = SandboxTenant(SandboxConfig(now=NOW))
    graph = graph_client(tenant)
    body = {"@odata.type": "#microsoft.graph.androidManagedAppProtection", "displayName": SEED_POLICY_NAME}
    twin = graph.post(POLICIES, json=body).json()["id"]
    app = {"mobileAppIdentifier": {"@odata.type": "#microsoft.graph.androidMobileAppIdentifier",
                                   "packageId": "com.microsoft.office.outlook"}}
    assert graph.post(f"{POLICIES}/{twin}/targetApps", json={"apps": [app]}).status_code == 204
    everyone = next(g["id"] for g in tenant.groups if g["displayName"] == "All Android Users")
    target = {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": everyone}}
    assert graph.post(f"{POLICIES}/{twin}/assign", json={"assignments": [target]}).status_code == 204

    records = export(tenant, ["User", "App", "Policy"])
    adele_outlook = [r for r in records if r["User"] == "Adele Vance" and r["App"] == "Microsoft Outlook"]
    assert [r["Policy"] for r in adele_outlook] == [SEED_POLICY_NAME, SEED_POLICY_NAME]
    adele_teams = [r for r in records if r["User"] == "Adele Vance" and r["App"] == "Microsoft Teams"]
    assert [r["Policy"] for r in adele_teams] == [SEED_POLICY_NAME]
    # Megan is excluded from the seed policy only: she gets the twin on Outlook.
    megan_outlook = [r["Policy"] for r in records if r["User"] == "Megan Bowen" and r["App"] == "Microsoft Outlook"]
    assert sorted(megan_outlook) == ["", SEED_POLICY_NAME]  # iOS (no Android policy) and Android (the twin)


def test_a_small_tenants_job_is_ready_at_the_first_poll() -> None:
    tenant = SandboxTenant(SandboxConfig(now=NOW))
    graph = graph_client(tenant)
    job_id = graph.post(JOBS, json=export_body()).json()["id"]
    assert graph.get(f"{JOBS}('{job_id}')").json()["status"] == "completed"


def test_failed_job_has_no_url() -> None:
    clock = FakeClock()
    tenant = SandboxTenant(SandboxConfig(now=NOW, export_fail=True, export_seconds=5, monotonic=clock))
    graph = graph_client(tenant)
    job_id = graph.post(JOBS, json=export_body()).json()["id"]
    assert graph.get(f"{JOBS}('{job_id}')").json()["status"] == "inProgress"
    clock.now += 6
    job = graph.get(f"{JOBS}('{job_id}')").json()
    assert (job["status"], job["url"]) == ("failed", None)
    listed = graph.get(JOBS).json()["value"]
    assert [j["id"] for j in listed] == [job_id]


def test_forbidden_and_bad_requests() -> None:
    tenant = SandboxTenant(SandboxConfig(now=NOW, forbid={"POST /deviceManagement/reports/exportJobs"}))
    graph = graph_client(tenant)
    denied = graph.post(JOBS, json=export_body())
    assert denied.status_code == 403
    assert "DeviceManagementApps.ReadWrite.All" in denied.json()["error"]["message"]
    assert graph.post("/v1.0/deviceManagement/reports/exportJobs", json=export_body()).status_code == 403
    assert graph.get(f"{JOBS}('MAMAppProtectionStatus_missing')").status_code == 404

    open_tenant = SandboxTenant(SandboxConfig(now=NOW))
    graph = graph_client(open_tenant)
    unknown_report = graph.post(JOBS, json={**export_body(), "reportName": "NoSuchReport"})
    assert unknown_report.status_code == 400 and unknown_report.json()["error"]["code"] == "BadRequest"
    unknown_column = graph.post(JOBS, json=export_body(["User", "PackageId"]))
    assert unknown_column.status_code == 400
    error = unknown_column.json()["error"]
    assert "PackageId" in error["message"] and "request-id" in error["innerError"]
    assert graph.post(JOBS, json=export_body(filter="Platform eq 'Android'")).status_code == 400
    assert graph.post(JOBS, json=export_body(format="pdf")).status_code == 400
    assert graph.post(JOBS, json={**export_body(), "colour": "blue"}).status_code == 400
    v1 = graph.post("/v1.0/deviceManagement/reports/exportJobs", json=export_body())
    assert v1.status_code == 201 and v1.json()["@odata.context"].startswith(f"{SANDBOX_GRAPH_URL}/v1.0/")


def test_download_needs_its_signature_and_honours_download_rules() -> None:
    tenant = SandboxTenant(SandboxConfig(now=NOW, fail={"GET /sandbox-downloads": [503]}))
    graph = graph_client(tenant)
    job = wait_for(graph, graph.post(JOBS, json=export_body(["User"])).json()["id"])
    bare = httpx.Client(transport=tenant.transport())
    assert bare.get(job["url"]).status_code == 503             # scripted, then through
    assert bare.get(job["url"]).status_code == 200
    assert bare.get(job["url"].split("?")[0]).status_code == 403
    assert bare.get(job["url"].replace("sig=", "sig=0")).status_code == 403
    assert bare.get(f"{SANDBOX_GRAPH_URL}/sandbox-downloads/nothing.zip?sig=x").status_code == 404
    with bare.stream("GET", job["url"]) as streamed:
        chunks = list(streamed.iter_bytes())
    assert b"".join(chunks) == bare.get(job["url"]).content


def test_export_is_an_intune_write_for_quotas_but_never_held() -> None:
    clock = FakeClock()
    throttle = ThrottleConfig(enforce_quotas=True, clock=clock, intune_writes_per_window=1)
    tenant = SandboxTenant(SandboxConfig(now=NOW, throttle=throttle))
    graph = graph_client(tenant)
    with tenant.hold_writes(timeout=5) as hold:
        started = time.monotonic()
        assert graph.post(JOBS, json=export_body()).status_code == 201
        assert time.monotonic() - started < 2 and hold.held == 0
    throttled = graph.post(JOBS, json=export_body())
    assert throttled.status_code == 429 and throttled.headers["Retry-After"]
    assert graph.get(JOBS).status_code == 200                  # reads are within the request quota
    clock.now += 21
    assert graph.post(JOBS, json=export_body()).status_code == 201
    assert tenant.stats.writes == 0 and tenant.stats.count("POST", "exportJobs") == 3


def test_temporary_files_go_when_the_tenant_closes() -> None:
    tenant = SandboxTenant(SandboxConfig(now=NOW))
    graph = graph_client(tenant)
    job = wait_for(graph, graph.post(JOBS, json=export_body()).json()["id"])
    folder = tenant.exports._directory
    assert folder is not None and os.listdir(folder) == [f"{job['id']}.zip"]
    tenant.close()
    assert not os.path.exists(folder)
    assert httpx.Client(transport=tenant.transport()).get(job["url"]).status_code == 404


@pytest.mark.http
def test_export_over_the_http_server() -> None:
    tenant = SandboxTenant(SandboxConfig(now=NOW))
    with serve_sandbox(tenant) as server:
        graph = httpx.Client(base_url=server.url, headers=AUTH)
        job = wait_for(graph, graph.post(JOBS, json=export_body(["Email", "Platform"])).json()["id"])
        assert job["url"].startswith(f"{server.url}/sandbox-downloads/")
        download = httpx.get(job["url"])
        assert download.status_code == 200
        assert int(download.headers["content-length"]) == len(download.content)
        raw, rows = read_csv(download.content)
        assert raw.startswith(b"\xef\xbb\xbf") and rows[0] == ["Email", "Platform"]
        assert len(rows) - 1 == len(tenant.registrations)
        assert httpx.head(job["url"]).headers["content-length"] == download.headers["content-length"]
    tenant.close()
