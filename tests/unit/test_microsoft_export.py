"""Reading a large tenant (microsoft-graph.md §10): Intune's report export and its signed download,
Defender's server-side Android filter with its fallback, and the watch's permission row."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from bot.microsoft import DownloadFailed, ExportJob, MicrosoftError, PermissionDenied
from bot.microsoft.permissions import FEATURES, check_permissions
from bot.microsoft.testing import FakeSignIn, Recorder, global_settings, harness

EXPORT_JOBS = "/beta/deviceManagement/reports/exportJobs"
SELECT = ["User", "Email", "App", "AADDeviceID", "Platform", "Policy", "DeviceName", "LastSync"]
BLOB = "/reports/MAMAppProtectionStatus_abc.zip"
SIGNATURE = "sig=SeCrEtSiGnAtUrE%3D"
SIGNED_URL = f"https://amsua0602repexpstorage.blob.core.windows.net{BLOB}?sv=2019-02-02&{SIGNATURE}&se=2026"
MACHINES = "/api/machines"
GRAPH = "https://graph.microsoft.com"
DEFENDER = "https://api.securitycenter.microsoft.com"


class RecordingBudget:
    def __init__(self) -> None:
        self.taken: list[tuple[str, int, bool]] = []

    def reserve(self, api: str, *, count: int = 1, write: bool = False) -> float:
        self.taken.append((api, count, write))
        return 0.0


def job(**extra: object) -> dict[str, object]:
    return {
        "@odata.context": "https://graph.microsoft.com/beta/$metadata#deviceManagement/reports/exportJobs/$entity",
        "id": "MAMAppProtectionStatus_05e62ffc-2bd8-4d85-ba5b-5f4e9f3ee7a0",
        "reportName": "MAMAppProtectionStatus",
        "filter": "",
        "select": SELECT,
        "format": "csv",
        "snapshotId": None,
        "localizationType": "replaceLocalizableValues",
        "status": "notStarted",
        "url": None,
        "requestDateTime": "2026-08-06T10:00:00.1234567Z",
        "expirationDateTime": "0001-01-01T00:00:00Z",
        **extra,
    }


# ---- export jobs --------------------------------------------------------------------------------


def test_create_export_job_posts_exactly_the_documented_body_and_counts_as_a_write():
    rec = Recorder().on("POST", EXPORT_JOBS, httpx.Response(201, json=job()))
    budget = RecordingBudget()
    created = harness(rec, budget=budget).clients.graph.create_export_job("MAMAppProtectionStatus", SELECT)

    (request,) = rec.requests
    assert request.method == "POST"
    assert str(request.url) == f"{GRAPH}{EXPORT_JOBS}"
    assert json.loads(request.content) == {
        "reportName": "MAMAppProtectionStatus",
        "format": "csv",
        "localizationType": "ReplaceLocalizableValues",
        "select": SELECT,
    }
    assert request.headers["Authorization"].startswith("Bearer ")
    assert budget.taken == [("graph", 1, True)]
    assert created.id.startswith("MAMAppProtectionStatus_") and created.status == "notStarted"
    assert created.pending and not created.done and not created.failed


def test_create_export_job_without_read_write_says_which_permission():
    rec = Recorder().on("POST", EXPORT_JOBS, httpx.Response(403, json={"error": {"code": "Forbidden"}}))
    with pytest.raises(PermissionDenied) as caught:
        harness(rec).clients.graph.create_export_job("MAMAppProtectionStatus", SELECT)
    assert caught.value.permission == "DeviceManagementApps.ReadWrite.All"


def test_get_export_job_uses_a_quoted_odata_key_and_parses_the_finished_job():
    job_id = "MAMAppProtectionStatus_05e62ffc-2bd8-4d85-ba5b-5f4e9f3ee7a0"
    path = f"{EXPORT_JOBS}('{job_id}')"
    done = job(status="completed", url=SIGNED_URL, expirationDateTime="2026-08-07T10:00:00Z")
    rec = Recorder().on("GET", path, httpx.Response(200, json=done))
    got = harness(rec).clients.graph.get_export_job(job_id)

    (request,) = rec.requests
    assert str(request.url) == f"{GRAPH}{path}"
    assert request.url.query == b""
    assert got.done and not got.failed and not got.pending
    assert got.url == SIGNED_URL
    assert got.expirationDateTime is not None and got.expirationDateTime.day == 7
    assert got.requestDateTime is not None and got.requestDateTime.year == 2026


def test_export_job_keys_double_quotes_and_encode_path_characters():
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=job(id="x"))

    rec = Recorder()
    rec.on("GET", f"{EXPORT_JOBS}('o''brien/../x y')", answer)
    harness(rec).clients.graph.get_export_job("o'brien/../x y")
    (request,) = rec.requests
    assert request.url.raw_path == f"{EXPORT_JOBS}('o''brien%2F..%2Fx%20y')".encode()


def test_export_job_model_keeps_unknown_statuses_ignores_extras_and_hides_the_link():
    unknown = ExportJob.model_validate(job(status="someFutureState"))
    assert unknown.status == "someFutureState" and unknown.pending
    failed = ExportJob.model_validate(job(status="failed"))
    assert failed.failed and not failed.done
    # Completed but not yet carrying a link: still waiting.
    assert ExportJob.model_validate(job(status="completed")).pending
    finished = ExportJob.model_validate(job(status="completed", url=SIGNED_URL))
    assert "SeCrEt" not in repr(finished) and "SeCrEt" not in str(finished)
    assert ExportJob.model_validate({"id": "j"}).status is None


# ---- the signed download ------------------------------------------------------------------------


def test_download_streams_the_link_without_the_token_and_outside_the_budget_and_the_count():
    payload = b"PK\x03\x04" + bytes(range(256)) * 5000
    rec = Recorder().on("GET", BLOB, httpx.Response(200, content=payload))
    budget = RecordingBudget()
    h = harness(rec, budget=budget)
    into = io.BytesIO()
    with h.clients.counting_requests() as requests:
        written = h.clients.background().graph.download(SIGNED_URL, into)

    assert written == len(payload) and into.getvalue() == payload
    assert requests() == 0
    assert budget.taken == []
    (request,) = rec.requests
    assert str(request.url) == SIGNED_URL
    assert "Authorization" not in request.headers
    assert h.sign_in.token_calls == []


def test_download_retries_a_5xx_and_a_dropped_connection_and_rewinds_the_file(caplog):
    class Broken(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b"half of it"
            raise httpx.ReadError("connection reset")

    answers: list[object] = [
        httpx.Response(503, text="busy"),
        httpx.Response(200, stream=Broken()),
        httpx.Response(200, content=b"the,whole,csv"),
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        nxt = answers.pop(0)
        assert isinstance(nxt, httpx.Response)
        return nxt

    rec = Recorder().on("GET", BLOB, answer)
    h = harness(rec)
    into = io.BytesIO(b"header:")
    into.seek(0, io.SEEK_END)
    with caplog.at_level(logging.DEBUG):
        written = h.clients.graph.download(SIGNED_URL, into)

    assert written == len(b"the,whole,csv")
    assert into.getvalue() == b"header:the,whole,csv"
    assert len(rec.requests) == 3
    assert len(h.clock.sleeps) == 2
    assert "SeCrEt" not in caplog.text and "sv=2019" not in caplog.text
    assert "amsua0602repexpstorage.blob.core.windows.net" in caplog.text


def test_download_retries_a_connection_error():
    calls = {"n": 0}

    def answer(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("name resolution failed", request=request)
        return httpx.Response(200, content=b"ok")

    rec = Recorder().on("GET", BLOB, answer)
    into = io.BytesIO()
    assert harness(rec).clients.graph.download(SIGNED_URL, into) == 2
    assert into.getvalue() == b"ok" and calls["n"] == 2


def test_download_gives_up_after_a_few_5xx_without_showing_the_signature():
    rec = Recorder().on("GET", BLOB, httpx.Response(500))
    with pytest.raises(DownloadFailed) as caught:
        harness(rec).clients.graph.download(SIGNED_URL, io.BytesIO())
    assert len(rec.requests) == 3
    message = str(caught.value)
    assert "HTTP 500" in message and "amsua0602repexpstorage.blob.core.windows.net" in message
    assert "?" not in message and "SeCrEt" not in message


def test_an_expired_link_is_not_retried_and_says_what_to_do():
    rec = Recorder().on("GET", BLOB, httpx.Response(403, text="<Error>AuthenticationFailed</Error>"))
    with pytest.raises(DownloadFailed) as caught:
        harness(rec).clients.graph.download(SIGNED_URL, io.BytesIO())
    assert len(rec.requests) == 1
    assert caught.value.status == 403
    assert "expired" in caught.value.message and "SeCrEt" not in str(caught.value)


@pytest.mark.parametrize("url", [
    f"http://amsua0602repexpstorage.blob.core.windows.net{BLOB}?{SIGNATURE}",
    f"ftp://amsua0602repexpstorage.blob.core.windows.net{BLOB}",
    "not a url",
    f"https:///{BLOB}",
])
def test_a_real_cloud_downloads_only_over_https(url):
    rec = Recorder().on("GET", BLOB, httpx.Response(200, content=b"x"))
    with pytest.raises(DownloadFailed, match="only downloads the Intune report over https") as caught:
        harness(rec).clients.graph.download(url, io.BytesIO())
    assert rec.requests == []
    assert "SeCrEt" not in str(caught.value)


def test_http_is_allowed_when_the_api_itself_is_served_over_http():
    settings = global_settings(mam_graph_url="http://127.0.0.1:8080")
    rec = Recorder().on("GET", "/downloads/export.zip", httpx.Response(200, content=b"zip"))
    into = io.BytesIO()
    harness(rec, settings=settings).clients.graph.download("http://127.0.0.1:8080/downloads/export.zip?sig=1", into)
    assert into.getvalue() == b"zip"
    assert "Authorization" not in rec.requests[0].headers


def test_download_refuses_more_than_max_bytes():
    declared = Recorder().on("GET", BLOB, httpx.Response(200, content=b"x" * 100))
    with pytest.raises(DownloadFailed, match="100 bytes, more than the 10"):
        harness(declared).clients.graph.download(SIGNED_URL, io.BytesIO(), max_bytes=10)

    class Undeclared(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b"y" * 8
            yield b"y" * 8

    streamed = Recorder().on("GET", BLOB, lambda r: httpx.Response(200, stream=Undeclared()))
    into = io.BytesIO()
    with pytest.raises(DownloadFailed, match="at least 16 bytes"):
        harness(streamed).clients.graph.download(SIGNED_URL, into, max_bytes=10)
    assert len(streamed.requests) == 1 and len(into.getvalue()) <= 10


# ---- Defender: the Android filter and its fallback ----------------------------------------------


def machine(n: int, platform: str = "Android") -> dict[str, object]:
    return {"id": f"m{n}", "osPlatform": platform, "riskScore": "Low", "aadDeviceId": f"aad-{n}"}


def test_android_machines_are_filtered_by_defender_and_checked_here_with_top_paging():
    def page(request: httpx.Request) -> httpx.Response:
        skip = int(request.url.params.get("$skip", 0))
        items = [machine(n, "android" if n % 2 else "Android") for n in range(skip, min(skip + 2, 5))]
        items.append(machine(99, "Windows11")) if skip == 0 else None  # a server that filters loosely
        return httpx.Response(200, json={"value": items})

    rec = Recorder().on("GET", MACHINES, page)
    machines = list(harness(rec).clients.defender.iter_android_machines(page_size=2))

    assert [m.id for m in machines] == ["m0", "m1", "m2", "m3", "m4"]
    assert [dict(r.url.params) for r in rec.requests] == [
        {"$filter": "osPlatform eq 'Android'", "$top": "2"},
        {"$filter": "osPlatform eq 'Android'", "$top": "2", "$skip": "2"},
        {"$filter": "osPlatform eq 'Android'", "$top": "2", "$skip": "4"},
    ]
    assert str(rec.requests[0].url) == (
        "https://api.security.microsoft.com/api/machines?%24filter=osPlatform+eq+%27Android%27&%24top=2"
    )


def test_a_refused_filter_falls_back_once_to_the_full_read_and_is_remembered(caplog):
    def answer(request: httpx.Request) -> httpx.Response:
        if "$filter" in request.url.params:
            return httpx.Response(400, json={"error": {"code": "BadRequest", "message": "Invalid filter"}})
        return httpx.Response(200, json={"value": [machine(1), machine(2, "Windows10"), machine(3, "ANDROID")]})

    rec = Recorder().on("GET", MACHINES, answer)
    clients = harness(rec).clients
    with caplog.at_level(logging.WARNING):
        first = list(clients.defender.iter_android_machines())
    assert [m.id for m in first] == ["m1", "m3"]
    assert [("$filter" in r.url.params) for r in rec.requests] == [True, False]
    assert "refused $filter=osPlatform eq 'Android'" in caplog.text

    # Remembered by this client and its profile copies: no second 400.
    second = list(clients.background().defender.iter_android_machines())
    assert [m.id for m in second] == ["m1", "m3"]
    assert [("$filter" in r.url.params) for r in rec.requests] == [True, False, False]


def test_other_errors_on_the_filtered_read_are_not_swallowed():
    rec = Recorder().on("GET", MACHINES, httpx.Response(403, json={"error": {"code": "Forbidden"}}))
    with pytest.raises(PermissionDenied):
        list(harness(rec).clients.defender.iter_android_machines())
    assert len(rec.requests) == 1


def test_no_android_machine_is_404_and_means_none():
    rec = Recorder().on("GET", MACHINES, httpx.Response(404, json={"error": {"code": "NotFound"}}))
    assert list(harness(rec).clients.defender.iter_android_machines()) == []


# ---- the watch's permissions --------------------------------------------------------------------

WATCH = ("threat-alerts", "onboarding-nudges")
EXPORT_LABEL = (
    "DeviceManagementApps.ReadWrite.All or DeviceManagementConfiguration.ReadWrite.All or "
    "DeviceManagementManagedDevices.ReadWrite.All (Microsoft Graph)"
)


def rows_for(graph_roles, defender_roles=("Machine.Read.All",)):
    sign_in = FakeSignIn(roles={GRAPH: graph_roles, DEFENDER: defender_roles})
    return {row.key: row for row in check_permissions(harness(Recorder(), sign_in=sign_in).clients)}


def test_the_watch_needs_a_read_write_permission_for_the_export_and_falls_back_without_it():
    rows = rows_for(["DeviceManagementApps.Read.All", "User.Read.All", "Group.Read.All"])
    for key in WATCH:
        row = rows[key]
        assert row.missing == (EXPORT_LABEL,)
        assert row.degraded == (EXPORT_LABEL,)
        assert "DeviceManagementApps.Read.All" in row.note and "paged" in row.note
        assert EXPORT_LABEL in row.needed and "User.Read.All (Microsoft Graph)" in row.needed


@pytest.mark.parametrize("write", [
    "DeviceManagementApps.ReadWrite.All",
    "DeviceManagementConfiguration.ReadWrite.All",
    "DeviceManagementManagedDevices.ReadWrite.All",
])
def test_any_of_the_three_read_write_permissions_allows_the_export(write):
    rows = rows_for([write, "DeviceManagementApps.Read.All", "User.Read.All", "GroupMember.Read.All"])
    for key in WATCH:
        assert rows[key].ok and rows[key].degraded == ()


def test_without_even_the_read_permission_there_is_no_fallback():
    rows = rows_for(["User.Read.All"])
    row = rows["threat-alerts"]
    assert EXPORT_LABEL in row.missing and row.degraded == ()
    assert "DeviceManagementApps.Read.All (Microsoft Graph)" in row.missing


def test_only_the_watch_rows_changed():
    requirements = {f.key: {r.permission for r in f.requirements} for f in FEATURES}
    assert requirements["policy-read"] == {"DeviceManagementApps.Read.All"}
    for key in WATCH:
        assert requirements[key] == {
            "Machine.Read.All", "DeviceManagementApps.Read.All", "DeviceManagementApps.ReadWrite.All",
            "User.Read.All", "Group.Read.All",  # Group.Read.All or GroupMember.Read.All: the group fallback
        }


def test_an_unreadable_export_job_does_not_quote_the_signed_link():
    rec = Recorder().on("GET", f"{EXPORT_JOBS}('j')", httpx.Response(200, json={"status": "completed",
                                                                             "url": SIGNED_URL}))
    with pytest.raises(MicrosoftError) as caught:
        harness(rec).clients.graph.get_export_job("j")
    assert "SeCrEt" not in str(caught.value) and caught.value.__cause__ is None
    assert "Field required" in str(caught.value)
