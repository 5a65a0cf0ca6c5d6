"""The registrations index: Intune's report export joined to ids, the paged fallback, generations, and reading it."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from bot.clock import as_utc
from bot.microsoft.errors import PermissionDenied, RequestRejected, ServiceUnavailable
from bot.microsoft.models import AndroidPolicy, User
from bot.store import Store, create_store
from bot.store.index import EXPORT, PAGED, IndexRow, IndexRun
from workflows import index_store
from workflows.applicability import Registration
from workflows.entra_users import EntraUsers
from workflows.index_export import EXPORT_PERMISSION_REASON
from workflows.index_store import (
    IndexChanged,
    current_run,
    index_age,
    index_due,
    iter_registrations,
    rows_for_user,
)
from workflows.registrations_index import refresh_index
from workflows.report_csv import SELECT, AppNames, Header, is_enrolled, parse_last_sync

T0 = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
OUTLOOK, TEAMS, WORD, EDGE = ("com.microsoft.office.outlook", "com.microsoft.teams", "com.microsoft.office.word",
                              "com.microsoft.emmx")
DEV_A = "0F8FAD5B-D9CB-469F-A165-70867728950E"
DEV_L = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
DEV_G = "6fa459ea-ee8a-3ca4-894e-db77e160355e"
ADELE, LEE, NESTOR = ("00000001-aaaa-bbbb-cccc-dddddddddddd", "00000002-aaaa-bbbb-cccc-dddddddddddd",
                      "00000003-aaaa-bbbb-cccc-dddddddddddd")


def policy(policy_id: str, name: str, *packages: str) -> AndroidPolicy:
    return AndroidPolicy.model_validate({
        "id": policy_id, "displayName": name, "appGroupType": "selectedPublicApps",
        "maximumAllowedDeviceThreatLevel": "low", "mobileThreatDefenseRemediationAction": "block",
        "apps": [{"mobileAppIdentifier": {"@odata.type": "#microsoft.graph.androidMobileAppIdentifier",
                                          "packageId": p}} for p in packages],
        "assignments": [],
    })


POLICIES = [
    policy("T_Outlook", "Outlook policy", OUTLOOK),
    policy("T_Teams", "Teams policy", TEAMS),
    policy("T_Extra", "Extra Outlook policy", OUTLOOK),
    policy("T_Base1", "Baseline", OUTLOOK),
    policy("T_Base2", "baseline ", TEAMS),  # the same name to Intune's admins (and to the report)
]

# Columns in another order than SELECT's, "AAD Device ID" spelled with spaces, no MDMDeviceID.
HEADER = ["Policy", "Email", "User", "App", "AAD Device ID", "DeviceName", "DeviceManufacturer", "DeviceModel",
          "Platform", "ManagementType", "LastSync"]
REPORT = [
    ["Outlook policy", "Adele.Vance@contoso.com", "Adele Vance", "Microsoft Outlook", DEV_A, "Adele's Pixel",
     "Google", "Pixel 8", "Android", "Unmanaged", "3/4/2026 1:05:09 PM"],
    ["Teams policy", "adele.vance@contoso.com", "Adele Vance", "Teams", DEV_A, "Adele's Pixel", "Google", "Pixel 8",
     "Android", "Unmanaged", "2026-03-04T13:05:09.1234567Z"],
    ["Outlook policy", "alex@contoso.com", "Alex W", "Microsoft Outlook", "", "Alex's iPhone", "Apple", "iPhone 15",
     "iOS", "Unmanaged", ""],
    ["Baseline", "lee.gu@contoso.com", "Lee Gu", "Outlook", DEV_L, "Lee's Pixel", "Google", "Pixel 7a",
     "Android", "Android Enterprise", "yesterday"],
    ["Baseline", "lee.gu@contoso.com", "Lee Gu", "Microsoft Word", DEV_L, "Lee's Pixel", "Google", "Pixel 7a",
     "Android", "Android Enterprise", ""],
    ["Nope policy", "nestor@contoso.com", "Nestor W", "Outlook", "", "Nestor's Moto", "Motorola", "moto g84",
     "Android", "Unmanaged", ""],
    ["Outlook policy", "adele.vance@contoso.com", "Adele Vance", "Contoso Expenses", DEV_A, "Adele's Pixel",
     "Google", "Pixel 8", "Android", "Unmanaged", ""],
    ["Extra Outlook policy", "adele.vance@contoso.com", "Adele Vance", "Outlook", DEV_A.lower(), "Adele's Pixel",
     "Google", "Pixel 8", "ANDROID", "Unmanaged", ""],
    ["", "ghost@nowhere.example", "Ghost", "Microsoft Edge", DEV_G, "Ghost's phone", "Samsung", "S23", "Android",
     "Unmanaged", ""],
    ["Outlook policy", "lee.gu@contoso.com", "Lee Gu", "Outlook", DEV_L, "Lee's Pixel", "Google", "Pixel 7a",
     "Android", "Android Enterprise", ""],
]
DIRECTORY = [
    User(id=ADELE.upper(), displayName="Adele Vance", mail="Adele.Vance@contoso.com",
         userPrincipalName="adele@contoso.onmicrosoft.com"),
    User(id=LEE, displayName="Lee Gu", mail=None, userPrincipalName="lee.gu@contoso.com"),
    User(id=NESTOR, displayName="Nestor W", mail="nestor@contoso.com", userPrincipalName="nestor@contoso.com"),
]


def make_zip(header: Sequence[str], rows: Sequence[Sequence[str]], *, bom: bool = True,
             name: str = "MAMAppProtectionStatus_0f1e.csv") -> bytes:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    data = text.getvalue().encode("utf-8-sig" if bom else "utf-8")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return out.getvalue()


@dataclass
class Job:
    id: str
    status: str | None
    url: str | None = None


def registration(n: int, *, user: str, device: str | None, package: str, android: bool = True,
                 applied: list[str] | None = None, managed: str | None = None) -> dict[str, Any]:
    kind = "android" if android else "ios"
    item: dict[str, Any] = {
        "@odata.type": f"#microsoft.graph.{kind}ManagedAppRegistration", "id": f"reg-{n}", "userId": user,
        "azureADDeviceId": device, "appIdentifier": {"packageId": package} if android else {"bundleId": package},
        "managedDeviceId": managed, "deviceName": f"device {n}", "deviceModel": "Pixel", "deviceManufacturer": "Google",
        "lastSyncDateTime": "2026-03-02T08:00:00Z",
    }
    if applied is not None:
        item["appliedPolicies"] = [{"id": p} for p in applied]
    return item


REGISTRATIONS = [
    registration(1, user=ADELE.upper(), device=DEV_A, package=OUTLOOK, applied=["T_Outlook", "T_Extra"]),
    registration(2, user=LEE, device=None, package=TEAMS, applied=[], managed="md-1"),
    registration(3, user=NESTOR, device=DEV_G, package="com.microsoft.office.outlook", android=False,
                 applied=["T_ios"]),
]


@dataclass
class FakeGraph:
    """An IndexSource: the export job's statuses in turn, the zip, the registrations and the directory."""

    report: bytes | None = None
    statuses: list[str] = field(default_factory=lambda: ["completed"])
    create_error: Exception | None = None
    registrations: list[dict[str, Any]] = field(default_factory=lambda: list(REGISTRATIONS))
    expand_refused: bool = False
    pages_fail_after: int | None = None  # the paged read fails after this many items
    users: list[User] = field(default_factory=lambda: list(DIRECTORY))
    created: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    polls: int = 0
    expands: list[bool] = field(default_factory=list)

    def create_export_job(self, report_name: str, select: Sequence[str]) -> Job:
        if self.create_error is not None:
            raise self.create_error
        self.created.append((report_name, tuple(select)))
        return self._job(0)

    def get_export_job(self, job_id: str) -> Job:
        assert job_id == "job-1"
        self.polls += 1
        return self._job(self.polls)

    def _job(self, n: int) -> Job:
        status = self.statuses[min(n, len(self.statuses) - 1)]
        return Job("job-1", status, "https://export.example/report.zip?sig=secret" if status == "completed" else None)

    def download(self, url: str, into: BinaryIO) -> int:
        assert self.report is not None
        into.write(self.report)
        return len(self.report)

    def iter_registration_items(self, *, applied_policies: bool = False) -> Iterator[dict[str, Any]]:
        self.expands.append(applied_policies)
        if applied_policies and self.expand_refused:
            raise RequestRejected("Microsoft Graph rejected the request (400)", status=400)
        for n, item in enumerate(self.registrations):
            if self.pages_fail_after is not None and n >= self.pages_fail_after:
                raise ServiceUnavailable("Microsoft Graph had a problem (503)", status=503)
            if not applied_policies:
                item = {k: v for k, v in item.items() if k != "appliedPolicies"}
            yield item

    def iter_users(self) -> Iterator[User]:
        yield from self.users

    def count_users(self) -> int | None:
        return len(self.users)

    def find_users_by_email(self, email: str) -> list[User]:
        wanted = email.lower()
        return [u for u in self.users if wanted in {(u.mail or "").lower(), (u.userPrincipalName or "").lower()}]


@dataclass
class Clock:
    """monotonic() and sleep() that move together; sleeps are recorded."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = create_store(f"sqlite:///{tmp_path / 'index.db'}")
    yield store
    store.close()


def refresh(store: Store, graph: FakeGraph, clock: Clock | None = None, at: datetime = T0,
            **kwargs: Any) -> IndexRun:
    clock = clock or Clock()
    return refresh_index(source=graph, store=store, policies=POLICIES, now=lambda: at, sleep=clock.sleep,
                         monotonic=clock.monotonic, worker="test", **kwargs)


def index_rows(store: Store, run: IndexRun | None = None) -> list[IndexRow]:
    run = run or current_run(store)
    assert run is not None
    with store.session() as session:
        return list(session.exec(select(IndexRow).where(IndexRow.generation == run.id).order_by(col(IndexRow.id))))


def by_key(rows: list[IndexRow]) -> dict[tuple[str, str, str], IndexRow]:
    keyed = {(r.email or r.user_id, r.device_id, r.package or r.app_name): r for r in rows}
    assert len(keyed) == len(rows)
    return keyed


def generations(store: Store) -> list[int]:
    with store.session() as session:
        return sorted(session.exec(select(IndexRow.generation).distinct()))


# ---- the export ---------------------------------------------------------------------------------------------------


def test_the_export_joined_to_users_apps_and_policies(store: Store) -> None:
    graph = FakeGraph(report=make_zip(HEADER, REPORT))
    calls = iter(range(100))
    run = refresh(store, graph, requests=lambda: next(calls))

    assert graph.created == [("MAMAppProtectionStatus", SELECT)]
    assert run.ok and run.source == EXPORT and run.finished_at is not None and not run.error
    assert (run.rows, run.android_rows, run.kept, run.no_device_id, run.unknown_users) == (10, 9, 7, 1, 1)
    assert run.listed("missing_columns") == ["MDMDeviceID"]
    assert run.listed("unknown_apps") == ["Contoso Expenses"]
    assert run.listed("unknown_policies") == ["Nope policy"]
    assert run.listed("duplicate_policies") == ["Baseline"]
    assert run.fallback_reason == ""
    assert run.requests == 1 and run.worker == "test"
    assert current_run(store) == run

    rows = by_key(index_rows(store))
    adele = "adele.vance@contoso.com"
    dev_a, dev_l, dev_g = DEV_A.lower(), DEV_L.lower(), DEV_G.lower()
    # Two report rows for Adele's Outlook (two policies): one index row with both ids.
    outlook = rows[(adele, dev_a, OUTLOOK)]
    assert outlook.user_id == ADELE and outlook.policy_ids == {"t_outlook", "t_extra"}
    assert json.loads(outlook.policies or "") == ["t_extra", "t_outlook"]
    assert (outlook.device_name, outlook.device_model, outlook.manufacturer) == ("Adele's Pixel", "Pixel 8", "Google")
    assert outlook.app_name == "Microsoft Outlook" and not outlook.enrolled
    assert as_utc(outlook.last_sync) == datetime(2026, 3, 4, 13, 5, 9, tzinfo=UTC)
    assert rows[(adele, dev_a, TEAMS)].policy_ids == {"t_teams"}
    assert as_utc(rows[(adele, dev_a, TEAMS)].last_sync) == datetime(2026, 3, 4, 13, 5, 9, 123456, tzinfo=UTC)
    # An app the name table doesn't know: kept, without a package.
    assert rows[(adele, dev_a, "Contoso Expenses")].package == ""
    assert rows[(adele, dev_a, "Contoso Expenses")].policy_ids == {"t_outlook"}
    # "Baseline" is two policies: the one targeting Outlook for Outlook; both for Word, which neither targets.
    lee = "lee.gu@contoso.com"
    assert rows[(lee, dev_l, OUTLOOK)].policy_ids == {"t_base1", "t_outlook"}
    assert rows[(lee, dev_l, WORD)].policy_ids == {"t_base1", "t_base2"}
    assert rows[(lee, dev_l, OUTLOOK)].user_id == LEE and rows[(lee, dev_l, OUTLOOK)].enrolled
    assert rows[(lee, dev_l, OUTLOOK)].last_sync is None  # "yesterday" doesn't parse
    # No Entra device id: kept with "", never guessed; a policy name no policy has: policies unknown.
    nestor = rows[("nestor@contoso.com", "", OUTLOOK)]
    assert nestor.user_id == NESTOR and nestor.policies is None and nestor.policy_ids is None
    # A mail no one has: kept without a user; an empty Policy: no policy.
    ghost = rows[("ghost@nowhere.example", dev_g, EDGE)]
    assert ghost.user_id == "" and ghost.policy_ids == frozenset()
    assert not any(r.email == "alex@contoso.com" for r in rows.values())  # iOS rows are dropped


def test_polling_until_the_job_completes(store: Store) -> None:
    graph = FakeGraph(report=make_zip(HEADER, REPORT, bom=False), statuses=["notStarted", "inProgress", "completed"])
    clock = Clock()
    run = refresh(store, graph, clock)
    assert run.ok and run.source == EXPORT
    assert graph.polls == 2 and clock.sleeps == [1.0, 2.0]  # quick at first, then every poll_seconds
    assert run.export_seconds == pytest.approx(3.0)
    assert graph.expands == []  # the paged read never ran


def test_a_failed_job_falls_back_to_the_paged_read(store: Store) -> None:
    graph = FakeGraph(report=make_zip(HEADER, REPORT), statuses=["notStarted", "failed"])
    run = refresh(store, graph)
    assert run.ok and run.source == PAGED
    assert run.fallback_reason == "Intune's report export job failed"
    assert (run.rows, run.android_rows, run.kept) == (3, 2, 2)


def test_a_job_that_never_finishes_times_out_into_the_fallback(store: Store) -> None:
    graph = FakeGraph(report=make_zip(HEADER, REPORT), statuses=["notStarted", "inProgress"])
    clock = Clock()
    run = refresh(store, graph, clock, poll_seconds=10, timeout_seconds=60)
    assert run.ok and run.source == PAGED
    assert run.fallback_reason == "the report export wasn't ready after 65 s (still inProgress)"
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0] + [10.0] * 5 and run.export_seconds == pytest.approx(65.0)


def test_no_readwrite_permission_falls_back_and_says_which(store: Store) -> None:
    refused = PermissionDenied("Microsoft Graph refused …", permission="DeviceManagementApps.ReadWrite.All",
                               where="Entra admin center", status=403)
    graph = FakeGraph(create_error=refused)
    run = refresh(store, graph)
    assert run.ok and run.source == PAGED
    assert run.fallback_reason == EXPORT_PERMISSION_REASON
    assert graph.expands == [True]

    rows = {r.package: r for r in index_rows(store)}
    assert set(rows) == {OUTLOOK, TEAMS}  # the iOS registration is left out
    outlook, teams = rows[OUTLOOK], rows[TEAMS]
    assert outlook.user_id == ADELE and outlook.device_id == DEV_A.lower() and outlook.app_name == "Outlook"
    assert outlook.policy_ids == {"t_outlook", "t_extra"} and not outlook.enrolled
    assert as_utc(outlook.last_sync) == datetime(2026, 3, 2, 8, tzinfo=UTC)
    assert teams.device_id == "" and teams.enrolled and teams.policy_ids == frozenset()
    assert run.no_device_id == 1


def test_the_fallback_without_applied_policies_when_graph_refuses_the_expand(store: Store) -> None:
    graph = FakeGraph(create_error=RequestRejected("Microsoft Graph rejected the request (400)", status=400),
                      expand_refused=True)
    run = refresh(store, graph)
    assert run.ok and run.source == PAGED and graph.expands == [True, False]
    assert run.fallback_reason.startswith("Intune didn't start the report export: Microsoft Graph rejected")
    assert all(r.policies is None for r in index_rows(store))


@pytest.mark.parametrize("dropped", ["Email", "AAD Device ID", "Platform", "Policy"])
def test_a_report_without_a_column_the_join_needs_falls_back(store: Store, dropped: str) -> None:
    at = HEADER.index(dropped)
    header = HEADER[:at] + HEADER[at + 1:]
    rows = [r[:at] + r[at + 1:] for r in REPORT]
    run = refresh(store, FakeGraph(report=make_zip(header, rows)))
    canonical = {"AAD Device ID": "AADDeviceID"}.get(dropped, dropped)
    assert run.ok and run.source == PAGED
    assert run.fallback_reason.startswith(f"the report has no {canonical} column")
    assert run.listed("missing_columns") == sorted(["MDMDeviceID", canonical], key=SELECT.index)


def test_a_file_that_is_not_the_zip_falls_back(store: Store) -> None:
    run = refresh(store, FakeGraph(report=b"<html>expired</html>"))
    assert run.ok and run.source == PAGED and run.fallback_reason.startswith("the export's file couldn't be read")


def test_mails_that_cant_be_looked_up_fall_back(store: Store) -> None:
    class Broken(EntraUsers):
        def resolve_many(self, emails: Any) -> dict[str, str | None]:
            raise ServiceUnavailable("Microsoft Graph had a problem (503)", status=503)

    graph = FakeGraph(report=make_zip(HEADER, REPORT))
    run = refresh(store, graph, users=Broken(store, graph, T0))
    assert run.ok and run.source == PAGED
    assert run.fallback_reason.startswith("the report's mails couldn't be looked up in Entra ID")


# ---- generations ----------------------------------------------------------------------------------------------------


def test_a_failed_fallback_keeps_the_previous_index(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    first = refresh(store, FakeGraph(report=make_zip(HEADER, REPORT)))
    monkeypatch.setattr(index_store, "INSERT_CHUNK", 1)  # the partial read wrote rows before it failed
    failing = FakeGraph(statuses=["failed"], pages_fail_after=2)
    second = refresh(store, failing, at=T0 + timedelta(hours=6))
    assert not second.ok and second.finished_at is not None
    assert second.fallback_reason == "Intune's report export job failed"
    assert second.error.startswith("the paged read failed too: Microsoft Graph had a problem (503)")
    assert current_run(store) == first
    assert generations(store) == [first.id]  # the partial generation was dropped
    assert len(list(iter_registrations(store))) == first.kept == 7


def test_older_generations_are_dropped_once_a_newer_index_is_complete(store: Store,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_store, "INSERT_CHUNK", 3)
    monkeypatch.setattr(index_store, "DELETE_CHUNK", 2)
    graph = FakeGraph(report=make_zip(HEADER, REPORT))
    one = refresh(store, graph)
    two = refresh(store, graph, at=T0 + timedelta(hours=1))
    assert generations(store) == [one.id, two.id]  # someone may still be reading the previous one
    # A replica's refresh still being written (not ok yet) is never touched by another's clean-up.
    with store.session() as session:
        busy = IndexRun(started_at=T0 + timedelta(hours=2), worker="other")
        session.add(busy)
        session.commit()
        session.refresh(busy)
    assert busy.id is not None
    with store.engine.begin() as conn:
        conn.execute(IndexRow.__table__.insert(), [{  # type: ignore[attr-defined]
            "generation": busy.id, "user_id": "", "email": "", "device_id": "", "device_name": "", "device_model": "",
            "manufacturer": "", "app_name": "", "package": "", "policies": None, "enrolled": False, "last_sync": None}])
    three = refresh(store, graph, at=T0 + timedelta(hours=3))
    assert current_run(store) == three
    assert generations(store) == [two.id, busy.id, three.id]
    assert len(index_rows(store)) == three.kept == 7
    with store.session() as session:
        assert session.exec(select(func.count()).select_from(IndexRun)).one() == 4  # the runs stay as history


# ---- reading it ------------------------------------------------------------------------------------------------------


def test_iter_registrations_streams_the_current_generation(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_store, "READ_CHUNK", 2)
    assert list(iter_registrations(store)) == []
    run = refresh(store, FakeGraph(report=make_zip(HEADER, REPORT)))
    rows = index_rows(store)
    registrations = list(iter_registrations(store))
    assert [r.id for r in registrations] == [str(r.id) for r in rows]
    first = registrations[0]
    assert first == Registration(str(rows[0].id), ADELE, DEV_A.lower(), OUTLOOK, True, False, "Adele's Pixel",
                                 "Pixel 8", "Google", frozenset({"t_outlook", "t_extra"}))
    ghost = next(r for r in registrations if r.device_id == DEV_G.lower())
    assert ghost.user_id is None and ghost.package == EDGE and ghost.applied == frozenset()
    assert next(r for r in registrations if r.device_id is None).applied is None
    assert list(iter_registrations(store, run)) == registrations


def test_a_generation_dropped_while_it_is_read_is_a_failed_read(store: Store,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_store, "READ_CHUNK", 2)
    refresh(store, FakeGraph(report=make_zip(HEADER, REPORT)))
    reading = iter_registrations(store)
    next(reading)
    index_store.drop_generation(store, current_run(store).id or 0)  # type: ignore[union-attr]
    with pytest.raises(IndexChanged):
        list(reading)


def test_rows_for_user_age_and_due(store: Store) -> None:
    assert rows_for_user(store, LEE) == [] and index_age(store, T0) is None
    assert index_due(store, T0, timedelta(hours=6))
    refresh(store, FakeGraph(report=make_zip(HEADER, REPORT)))
    lee = rows_for_user(store, LEE.upper())
    assert {r.package for r in lee} == {OUTLOOK, WORD}
    assert index_age(store, T0 + timedelta(hours=2)) == timedelta(hours=2)
    assert not index_due(store, T0 + timedelta(hours=2), timedelta(hours=6))
    assert index_due(store, T0 + timedelta(hours=6), timedelta(hours=6))


# ---- reading the report --------------------------------------------------------------------------------------------


def test_header_spellings() -> None:
    header = Header.parse(["\ufeffuser", "E-mail", "AAD Device ID", "mdm_device_id", "PLATFORM", "Policy Name",
                           "App", "Last Sync"])
    assert header.positions["AADDeviceID"] == 2 and header.positions["MDMDeviceID"] == 3
    assert header.positions["Email"] == 1 and header.positions["Policy"] == 5 and header.positions["User"] == 0
    assert header.missing == ("DeviceName", "DeviceManufacturer", "DeviceModel", "ManagementType")
    assert header.lacking == ()


@pytest.mark.parametrize(("name", "package"), [
    ("Microsoft Outlook", OUTLOOK), ("outlook", OUTLOOK), ("Microsoft  Teams", TEAMS), ("Edge", EDGE),
    ("Microsoft 365 (Office)", "com.microsoft.office.officehubrow"),
    ("Microsoft 365 Copilot", "com.microsoft.office.officehubrow"),
    ("Viva Engage", "com.yammer.v1"), ("Microsoft Defender", "com.microsoft.scmx"),
    ("Power BI", "com.microsoft.powerbim"),
    ("Microsoft To Do", "com.microsoft.todos"), ("Microsoft Launcher", "com.microsoft.launcher"),
    ("com.contoso.expenses", "com.contoso.expenses"), ("Contoso Expenses", None), ("", None),
])
def test_app_names(name: str, package: str | None) -> None:
    assert AppNames(["com.contoso.expenses"]).package(name) == package


@pytest.mark.parametrize(("text", "expected"), [
    ("3/4/2026 1:05:09 PM", datetime(2026, 3, 4, 13, 5, 9, tzinfo=UTC)),
    ("12/31/2025 12:00:00 AM", datetime(2025, 12, 31, 0, 0, tzinfo=UTC)),
    ("3/4/2026 13:05", datetime(2026, 3, 4, 13, 5, tzinfo=UTC)),
    ("2026-03-04T13:05:09Z", datetime(2026, 3, 4, 13, 5, 9, tzinfo=UTC)),
    ("2026-03-04 14:05:09+01:00", datetime(2026, 3, 4, 13, 5, 9, tzinfo=UTC)),
    ("", None), ("never", None), ("31/12/2025 10:00:00", None),
])
def test_last_sync(text: str, expected: datetime | None) -> None:
    assert parse_last_sync(text) == expected


@pytest.mark.parametrize(("mdm", "management", "enrolled"), [
    ("", "Unmanaged", False), ("", "Android Enterprise", True), ("", "MDM", True), ("", "Not enrolled", False),
    ("3a1f…", "", True), ("00000000-0000-0000-0000-000000000000", "", False), ("", "", False),
])
def test_enrolled(mdm: str, management: str, enrolled: bool) -> None:
    assert is_enrolled(mdm, management) is enrolled
