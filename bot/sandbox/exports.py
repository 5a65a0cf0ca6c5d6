"""Intune report export jobs (`deviceManagementExportJob`) and the zip downloads they point at.

    POST {graph}/beta/deviceManagement/reports/exportJobs   {"reportName": "MAMAppProtectionStatus", ...}
    GET  {graph}/beta/deviceManagement/reports/exportJobs('{id}')   notStarted | inProgress | completed | failed
    GET  {graph}/sandbox-downloads/{id}.zip?sig=...          (no Authorization, no quota, not counted)

A job's file is built when it is created (in a background thread past INLINE_ROWS registrations): one CSV
(UTF-8 with a BOM) inside a zip, streamed row by row to a temporary file, so a 250,000-registration tenant
never holds its report in memory. It reads `completed` once `export_seconds` have passed on the tenant's
monotonic clock and the file is written (`failed` with `export_fail`). Policies are read as they were when
the job was created. Temporary files go when the tenant is closed or garbage-collected (best effort).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import hmac
import io
import logging
import os
import secrets
import shutil
import tempfile
import threading
import weakref
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from bot.sandbox.core import ApiError, Call, Reply, bad_request
from bot.sandbox.ids import stable_guid
from bot.sandbox.seed import stamp

if TYPE_CHECKING:
    from bot.sandbox.policies import PolicyStore
    from bot.sandbox.seed import World
    from bot.sandbox.state import TenantState

log = logging.getLogger(__name__)

MAM_REPORT = "MAMAppProtectionStatus"
MAM_COLUMNS = ("User", "Email", "App", "AppVersion", "SdkVersion", "AppInstanceId", "DeviceName", "DeviceHealth",
               "DeviceType", "DeviceManufacturer", "DeviceModel", "AndroidPatchVersion", "AADDeviceID",
               "MDMDeviceID", "Platform", "PlatformVersion", "ManagementType", "AppProtectionStatus", "Policy",
               "LastSync", "ComplianceState")
REPORTS: dict[str, tuple[str, ...]] = {MAM_REPORT: MAM_COLUMNS}
DOWNLOADS_PATH = "/sandbox-downloads/"
# What the report's App column says for the packages (Android) and bundle ids (iOS) the seed uses. The report
# carries names only, never package ids; "Contoso Expenses" is a line-of-business app no Microsoft table knows.
APP_NAMES = {
    "com.microsoft.office.outlook": "Microsoft Outlook",
    "com.microsoft.teams": "Microsoft Teams",
    "com.microsoft.emmx": "Microsoft Edge",
    "com.microsoft.office.word": "Microsoft Word",
    "com.microsoft.office.excel": "Microsoft Excel",
    "com.microsoft.skydrive": "Microsoft OneDrive",
    "com.microsoft.Office.Outlook": "Microsoft Outlook",
    "com.microsoft.skype.teams": "Microsoft Teams",
    "com.microsoft.msedge": "Microsoft Edge",
    "com.microsoft.Office.Word": "Microsoft Word",
    "com.microsoft.Office.Excel": "Microsoft Excel",
    "com.contoso.expenses": "Contoso Expenses",
}
_FORMATS = ("csv",)
_LOCALIZATION = {v.lower(): v for v in ("localizedValuesAsAdditionalColumn", "replaceLocalizableValues")}
_BODY_FIELDS = frozenset({"reportName", "format", "localizationType", "select", "filter", "search", "snapshotId",
                          "id", "status", "url", "requestDateTime", "expirationDateTime"})
_CHUNK = 64 * 1024
# Up to this many registrations the file is written while the job is created (so a test polling with a
# fake sleep sees `completed` at once); beyond, in a background thread, as a large tenant's takes seconds.
INLINE_ROWS = 5_000


@dataclass
class ExportJob:
    id: str
    report: str
    select: list[str]
    format: str
    localization: str
    filter: str
    requested: str
    expires: str
    created: float                           # on the tenant's monotonic clock
    signature: str
    failed: bool = False
    path: str | None = None                  # the finished zip
    done: threading.Event = field(default_factory=threading.Event)


class ExportJobs:
    """The tenant's export jobs: the two Graph handlers and the download."""

    def __init__(self, tenant: TenantState, monotonic: Callable[[], float], now: Callable[[], datetime]) -> None:
        self._tenant = tenant
        self._world: World = tenant.world
        self._monotonic = monotonic
        self._now = now
        self._seed = tenant.config.seed
        self._key = secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._jobs: dict[str, ExportJob] = {}
        self._created = 0
        self._stop = threading.Event()
        self._directory: str | None = None
        self._cleanup: weakref.finalize[Any, ExportJobs] | None = None
        self.downloads = 0

    # ---- Graph handlers --------------------------------------------------------------------------

    def h_export_jobs(self, call: Call) -> Reply:
        context = f"{call.root()}/$metadata#deviceManagement/reports/exportJobs"
        if call.method == "GET":
            with self._lock:
                jobs = list(self._jobs.values())
            return Reply(200, {"@odata.context": context, "value": [self._render(j, call) for j in jobs]})
        job = self._create(call.body)
        location = f"{call.root()}/deviceManagement/reports/exportJobs('{job.id}')"
        return Reply(201, {"@odata.context": context + "/$entity", **self._render(job, call, created=True)},
                     {"Location": location})

    def h_export_job(self, call: Call) -> Reply:
        wanted = call.args["id"].lower()
        with self._lock:
            job = next((j for key, j in self._jobs.items() if key.lower() == wanted), None)
        if job is None:
            raise ApiError(404, "ResourceNotFound",
                           f"The deviceManagementExportJob with id '{call.args['id']}' was not found.")
        context = f"{call.root()}/$metadata#deviceManagement/reports/exportJobs/$entity"
        return Reply(200, {"@odata.context": context, **self._render(job, call)})

    def _create(self, body: Any) -> ExportJob:
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        for name in body:
            if not name.startswith("@") and name not in _BODY_FIELDS:
                raise bad_request(f"The property '{name}' does not exist on type "
                                  "'microsoft.graph.deviceManagementExportJob'. Make sure to only use property "
                                  "names that are defined by the type or mark the type as open type.")
        report = body.get("reportName")
        if not isinstance(report, str) or not report.strip():
            raise bad_request("The property 'reportName' is required.")
        columns = {c.lower(): c for c in REPORTS.get(report, ())}
        if not columns:
            raise bad_request(f"Invalid report name '{report}'. The report was not found.")
        fmt = str(body.get("format") or "csv").lower()
        if fmt not in _FORMATS:
            raise bad_request(f"The sandbox exports '{report}' only as csv, not '{body.get('format')}'.")
        localization = _LOCALIZATION.get(str(body.get("localizationType") or
                                             "localizedValuesAsAdditionalColumn").lower())
        if localization is None:
            raise bad_request(f"Cannot convert the literal '{body.get('localizationType')}' to the expected type "
                              "'microsoft.graph.deviceManagementExportJobLocalizationType'.")
        select = body.get("select") or []
        if not isinstance(select, list) or not all(isinstance(c, str) for c in select):
            raise bad_request("The property 'select' must be a collection of column names.")
        chosen: list[str] = []
        for name in select:
            canonical = columns.get(name.strip().lower())
            if canonical is None:
                raise bad_request(f"Invalid select column '{name}' for report '{report}'. Valid columns: "
                                  f"{', '.join(REPORTS[report])}.")
            chosen.append(canonical)
        text_filter = body.get("filter") or ""
        if not isinstance(text_filter, str) or text_filter.strip():
            raise bad_request(f"Report '{report}' does not support filters.")
        snapshot = _snapshot(self._tenant.policies_store)
        now = self._now()
        with self._lock:
            self._created += 1
            job_id = f"{report}_{stable_guid(f'export:{self._seed}:{self._created}')}"
            job = ExportJob(job_id, report, chosen, fmt, localization, "", stamp(now),
                            stamp(now + timedelta(hours=24)), self._monotonic(), self._sign(job_id))
            job.failed = self._tenant.config.export_fail
            self._jobs[job_id] = job
        if job.failed:
            job.done.set()
        elif self._world.registration_count <= INLINE_ROWS:
            self._build(job, snapshot)   # a small tenant's file takes milliseconds: ready for the first poll
        else:
            threading.Thread(target=self._build, args=(job, snapshot), name=f"sandbox-export-{self._created}",
                             daemon=True).start()
        return job

    def _status(self, job: ExportJob) -> str:
        if self._monotonic() - job.created < self._tenant.config.export_seconds or not job.done.is_set():
            return "inProgress"
        return "failed" if job.failed else "completed"

    def _render(self, job: ExportJob, call: Call, created: bool = False) -> dict[str, Any]:
        status = "notStarted" if created else self._status(job)
        url = f"{call.base}{DOWNLOADS_PATH}{job.id}.zip?sig={job.signature}" if status == "completed" else None
        return {"id": job.id, "reportName": job.report, "filter": job.filter, "select": list(job.select),
                "format": job.format, "snapshotId": None, "localizationType": job.localization, "status": status,
                "url": url, "requestDateTime": job.requested, "expirationDateTime": job.expires}

    def _sign(self, job_id: str) -> str:
        return hmac.new(self._key, job_id.encode(), hashlib.sha256).hexdigest()[:32]

    # ---- building the file -----------------------------------------------------------------------

    def _folder(self) -> str:
        with self._lock:
            if self._directory is None:
                self._directory = tempfile.mkdtemp(prefix="mam-sandbox-exports-")
                self._cleanup = weakref.finalize(self, shutil.rmtree, self._directory, True)
            return self._directory

    def _build(self, job: ExportJob, policies: PolicyStore) -> None:
        part = ""
        try:
            folder = self._folder()
            handle, part = tempfile.mkstemp(dir=folder, suffix=".part")
            with os.fdopen(handle, "wb") as raw:
                self._write(raw, job, policies)
            if self._stop.is_set():
                raise OSError("the tenant was closed")
            final = os.path.join(folder, f"{job.id}.zip")
            os.replace(part, final)
            job.path = final
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            log.warning("sandbox export %s failed: %s", job.id, exc)
            job.failed = True
            if part:
                _remove(part)
        finally:
            job.done.set()

    def _write(self, raw: io.BufferedWriter, job: ExportJob, policies: PolicyStore) -> None:
        header = job.select or list(REPORTS[job.report])
        positions = [MAM_COLUMNS.index(c) for c in header]
        with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive, \
                archive.open(f"{job.id}.csv", "w") as entry, \
                io.TextIOWrapper(entry, encoding="utf-8-sig", newline="") as text:
            writer = csv.writer(text)
            writer.writerow(header)
            for number, row in enumerate(mam_rows(self._world, policies)):
                if number % 1024 == 0 and self._stop.is_set():
                    return
                writer.writerow([row[p] for p in positions])

    # ---- downloads -------------------------------------------------------------------------------

    def download(self, request: httpx.Request, status: int | None = None) -> httpx.Response:
        """Serve a finished job's zip from disk in chunks; `status` is a scripted failure to answer instead."""
        if status is not None:
            return httpx.Response(status, text=f"Scripted failure {status}.", request=request)
        name = request.url.path[len(DOWNLOADS_PATH):]
        job_id = name[:-4] if name.lower().endswith(".zip") else name
        with self._lock:
            job = self._jobs.get(job_id)
        signature = request.url.params.get("sig") or ""
        if job is None or job.path is None or not os.path.exists(job.path):
            return httpx.Response(404, text="BlobNotFound: The specified blob does not exist.", request=request)
        if not hmac.compare_digest(signature, job.signature):
            return httpx.Response(403, text="AuthenticationFailed: Server failed to authenticate the request.",
                                  request=request)
        size = os.path.getsize(job.path)
        headers = {"Content-Type": "application/zip", "Content-Length": str(size),
                   "Content-Disposition": f'attachment; filename="{job.id}.zip"'}
        with self._lock:
            self.downloads += 1
        if request.method.upper() == "HEAD":
            return httpx.Response(200, headers=headers, request=request)
        return httpx.Response(200, headers=headers, stream=_FileStream(job.path), request=request)

    def close(self) -> None:
        """Stop building and delete the temporary files (best effort)."""
        self._stop.set()
        if self._cleanup is not None:
            self._cleanup()


class _FileStream(httpx.SyncByteStream):
    """A file sent in chunks; opened at once, so a file deleted meanwhile still reads to its end."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed when the stream is read or closed

    def __iter__(self) -> Iterator[bytes]:
        try:
            while chunk := self._file.read(_CHUNK):
                yield chunk
        finally:
            self._file.close()

    def close(self) -> None:
        self._file.close()


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError as exc:
        log.debug("could not remove %s: %s", path, exc)


def _snapshot(store: PolicyStore) -> PolicyStore:
    """The policies as they are now, for a job that reads them from another thread."""
    snapshot = copy.copy(store)
    snapshot.items = {key: copy.deepcopy(policy) for key, policy in store.items.items()}
    return snapshot


def mam_rows(world: World, policies: PolicyStore) -> Iterator[tuple[str, ...]]:
    """MAMAppProtectionStatus rows (all MAM_COLUMNS, in order): one per registration and applied policy,
    one with an empty Policy for a registration no policy applies to."""
    applied: dict[tuple[frozenset[int], str], list[str]] = {}
    for index in range(world.registration_count):
        reg = world.registration(index)
        owner = world.registration_owner(index)
        name, mail = world.user_name_mail(owner)
        ident = reg["appIdentifier"]
        package = ident.get("packageId")
        app = package or ident.get("bundleId") or ""
        names: list[str] = []
        if package:
            groups = frozenset(world.transitive_groups_of(owner))
            found = applied.get((groups, package))
            if found is None:
                ids = {world.groups[g]["id"] for g in groups}
                found = [str(p.props["displayName"]) for p in policies.applied_to(ids, package)]
                applied[(groups, package)] = found
            names = found
        ios = reg["@odata.type"].startswith("#microsoft.graph.ios")
        mdm = reg.get("managedDeviceId") or ""
        head = (name, mail, APP_NAMES.get(app, app), reg.get("applicationVersion") or "",
                reg.get("managementSdkVersion") or "", reg["id"], reg.get("deviceName") or "",
                "Rooted" if "rootedDevice" in reg.get("flaggedReasons", []) else "Healthy",
                reg.get("deviceType") or "", reg.get("deviceManufacturer") or "", reg.get("deviceModel") or "",
                reg.get("patchVersion") or "", reg.get("azureADDeviceId") or "", mdm, "iOS" if ios else "Android",
                reg.get("platformVersion") or "", "MDM" if mdm else "Unmanaged")
        synced = str(reg.get("lastSyncDateTime") or "")[:19] + "Z"
        compliance = "Compliant" if mdm else ""
        for policy in names or [""]:
            yield (*head, "Checked in" if policy else "Not checked in", policy, synced, compliance)
