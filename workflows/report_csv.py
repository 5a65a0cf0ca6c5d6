"""Reading Intune's `MAMAppProtectionStatus` export: the zip, its CSV's header, and each row's fields.

Pure apart from the file it is given: the download sits in a temporary file (a zip needs seeking), its one CSV
member is decoded on the fly and read row by row, so a 250,000-row report never sits in memory.

The report is made for people, not programs (microsoft-graph.md §10): its header may start with a BOM, its columns
come in any order and their spelling may drift ("AAD Device ID"), it names apps and policies rather than giving
package or policy ids, and its dates follow the service's locale. Everything here reads it leniently and says what
it could not read instead of guessing.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import IO, Any, NamedTuple

from workflows.policies import FRIENDLY_APP_NAMES

REPORT = "MAMAppProtectionStatus"

# The columns the index reads, in Graph's spelling (the export's `select`).
USER = "User"
EMAIL = "Email"
APP = "App"
AAD_DEVICE_ID = "AADDeviceID"
MDM_DEVICE_ID = "MDMDeviceID"
DEVICE_NAME = "DeviceName"
MANUFACTURER = "DeviceManufacturer"
MODEL = "DeviceModel"
PLATFORM = "Platform"
MANAGEMENT_TYPE = "ManagementType"
POLICY = "Policy"
LAST_SYNC = "LastSync"
SELECT: tuple[str, ...] = (USER, EMAIL, APP, AAD_DEVICE_ID, MDM_DEVICE_ID, DEVICE_NAME, MANUFACTURER, MODEL,
                           PLATFORM, MANAGEMENT_TYPE, POLICY, LAST_SYNC)
# Without these the index can't be joined to Entra users, Defender's devices or the policies.
REQUIRED: tuple[str, ...] = (EMAIL, AAD_DEVICE_ID, PLATFORM, POLICY)

# Other spellings seen or plausible for the same column (compared after `column_key`).
ALIASES: dict[str, tuple[str, ...]] = {
    USER: ("username", "userdisplayname", "displayname"),
    EMAIL: ("useremail", "emailaddress", "mail", "usermail"),
    APP: ("appname", "application", "applicationname"),
    AAD_DEVICE_ID: ("azureaddeviceid", "entradeviceid", "entraiddeviceid", "aaddevice"),
    MDM_DEVICE_ID: ("manageddeviceid", "intunedeviceid"),
    DEVICE_NAME: ("device",),
    MANUFACTURER: ("manufacturer",),
    MODEL: ("model",),
    PLATFORM: ("os", "operatingsystem", "deviceplatform"),
    MANAGEMENT_TYPE: ("management", "managementstate", "devicemanagementtype"),
    POLICY: ("policyname", "appprotectionpolicy", "policies"),
    LAST_SYNC: ("lastsynctime", "lastsyncdatetime", "lastsyncdate", "lastcheckin"),
}

NO_DEVICE = str(uuid.UUID(int=0))  # some reports write the nil GUID for "none"


def column_key(name: str) -> str:
    """`"\\ufeffAAD Device ID"` → `"aaddeviceid"`: BOM, case, spaces and punctuation don't count."""
    return re.sub(r"[^0-9a-z]", "", name.replace("\ufeff", "").lower())


@dataclass(frozen=True)
class Header:
    """Where each column the index reads sits in a row; `missing` are those the header doesn't have."""

    positions: Mapping[str, int]
    missing: tuple[str, ...]

    @classmethod
    def parse(cls, cells: Sequence[str]) -> Header:
        found: dict[str, int] = {}
        keys = [column_key(c) for c in cells]
        for column in SELECT:
            wanted = (column_key(column), *ALIASES.get(column, ()))
            for spelling in wanted:
                if spelling in keys:
                    found[column] = keys.index(spelling)
                    break
        return cls(found, tuple(c for c in SELECT if c not in found))

    @property
    def lacking(self) -> tuple[str, ...]:
        """Required columns the header doesn't have: the report can't be joined without them."""
        return tuple(c for c in REQUIRED if c in self.missing)

    def get(self, cells: Sequence[str], column: str) -> str:
        at = self.positions.get(column)
        return cells[at].strip() if at is not None and at < len(cells) else ""

    @property
    def order(self) -> tuple[int, ...]:
        """Each SELECT column's place in a row, -1 when missing (ReportRow.read's fast path)."""
        return tuple(self.positions.get(column, -1) for column in SELECT)


class ReportError(Exception):
    """The export's file isn't the zip with one CSV the index reads."""


# The report's CSV for 250,000 registrations and the 12 columns the index asks for is about 50 MB; a member (1 GB)
# claiming (or turning out) to be far beyond that is not a report, and is not read to the end.
MAX_CSV_BYTES = 1024 ** 3


class _Bounded(io.RawIOBase):
    """Reads a zip member while counting: past `limit` bytes it stops with ReportError (a zip can lie about
    its sizes), and NUL bytes (which PostgreSQL refuses in text) are dropped."""

    def __init__(self, member: IO[bytes], limit: int) -> None:
        self._member = member
        self._limit = limit
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        while True:
            raw = self._member.read(len(view))
            if not raw:
                return 0  # the end
            self.read_bytes += len(raw)
            if self.read_bytes > self._limit:
                raise ReportError(f"the export's CSV is larger than {self._limit // 1024 ** 2} MB: not a report")
            data = raw.replace(b"\x00", b"")
            if data:  # a chunk of nothing but NUL bytes: read on, so 0 still means the end
                view[:len(data)] = data
                return len(data)


@contextmanager
def report_rows(file: IO[bytes], limit: int = MAX_CSV_BYTES) -> Iterator[Iterator[list[str]]]:
    """The CSV rows (header first) of the export's zip in `file`, decoded as they are read."""
    file.seek(0)
    try:
        archive = zipfile.ZipFile(file)
    except zipfile.BadZipFile as exc:
        raise ReportError(f"the export's file is not a zip ({exc})") from exc
    with archive:
        members = [m for m in archive.infolist() if m.filename.lower().endswith(".csv") and not m.is_dir()]
        if len(members) != 1:
            names = ", ".join(m.filename for m in archive.infolist())[:200] or "nothing"
            raise ReportError(f"the export's zip should hold one CSV file; it holds {names}")
        if members[0].file_size > limit:
            raise ReportError(f"the export's CSV says it is {members[0].file_size // 1024 ** 2} MB: not a report")
        with archive.open(members[0]) as member:
            bounded = io.BufferedReader(_Bounded(member, limit))
            text = io.TextIOWrapper(bounded, encoding="utf-8-sig", newline="")
            yield csv.reader(text)


class ReportRow(NamedTuple):
    """One row of the report, each field stripped ("" when the column is missing)."""

    user: str
    email: str
    app: str
    device_id: str  # lower case; "" when empty or the nil GUID
    mdm_device_id: str
    device_name: str
    manufacturer: str
    model: str
    platform: str
    management_type: str
    policy: str
    last_sync: str

    @classmethod
    def read(cls, order: Sequence[int], cells: Sequence[str]) -> ReportRow:
        """`order`: `Header.order`. Called twice per report row, so kept lean."""
        n = len(cells)
        user, email, app, aad, mdm, name, maker, model, platform, management, policy, last_sync = (
            cells[i].strip() if 0 <= i < n else "" for i in order)
        return cls(user, email, app, device_id(aad), device_id(mdm), name, maker, model, platform, management, policy,
                   last_sync)

    @property
    def android(self) -> bool:
        return "android" in self.platform.lower()

    @property
    def mail(self) -> str:
        """The Email column in lower case; the User column when Email is empty and User looks like a mail."""
        address = self.email or (self.user if "@" in self.user else "")
        return address.strip().lower()

    @property
    def enrolled(self) -> bool:
        return is_enrolled(self.mdm_device_id, self.management_type)


def device_id(value: str) -> str:
    text = value.strip().strip("{}").lower()
    return "" if text in ("", NO_DEVICE, "null", "none", "n/a", "-") else text


_NOT_ENROLLED = ("unenrolled", "not enrolled", "notenrolled", "unmanaged", "without enrollment", "mamwe")
_ENROLLED = ("mdm", "enrolled", "android enterprise", "androidenterprise", "work profile", "fully managed",
             "dedicated", "device admin", "managed")


def is_enrolled(mdm_device_id: str, management_type: str) -> bool:
    """An MDM / Android Enterprise device: it has a managed device id, or its management type says so."""
    if device_id(mdm_device_id):
        return True
    text = " ".join(management_type.lower().split())
    if not text or any(word in text for word in _NOT_ENROLLED):
        return False
    return any(word in text for word in _ENROLLED)


_ISO_START = re.compile(r"\d{4}-\d{2}-\d{2}")
_US = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?\s*([AaPp][Mm])?)?"
                 r"(?:\s*(?:UTC|GMT|Z))?", re.IGNORECASE)


def parse_last_sync(value: str) -> datetime | None:
    """ISO 8601 (any fraction, `Z` or an offset) or the US form `3/4/2026 1:05:09 PM`, as UTC; None otherwise."""
    text = value.strip()
    if not text:
        return None
    moment = _iso_date(text) if _ISO_START.match(text) else _us_date(text)
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso_date(text: str) -> datetime | None:
    iso = re.sub(r"(\.\d{6})\d+", r"\1", text)  # .NET writes 7 fractional digits
    iso = re.sub(r"\s*(?:[zZ]|UTC|GMT)$", "+00:00", iso)
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        return None


def _us_date(text: str) -> datetime | None:
    match = _US.fullmatch(text)
    if match is None:
        return None
    month, day, year, hour, minute, second, half = match.groups()
    hours = int(hour or 0)
    if half:
        if not 1 <= hours <= 12:
            return None
        hours = hours % 12 + (12 if half.lower() == "pm" else 0)
    try:
        return datetime(int(year), int(month), int(day), hours, int(minute or 0), int(second or 0))
    except ValueError:
        return None


# ---- app names → package ids -------------------------------------------------------------------------

# Names the report may use beyond FRIENDLY_APP_NAMES' short ones (microsoft-graph.md §8 and the apps' store names).
EXTRA_APP_NAMES: dict[str, tuple[str, ...]] = {
    "com.microsoft.office.officehubrow": ("Microsoft 365", "Microsoft 365 Copilot", "M365 Copilot", "Office",
                                          "Office Mobile", "Microsoft 365 (Office) app"),
    "com.microsoft.office.officehub": ("Office Hub",),
    "com.microsoft.office.officehubhl": ("Office Hub HL",),
    "com.yammer.v1": ("Viva Engage", "Yammer"),
    "com.microsoft.scmx": ("Defender for Endpoint", "Microsoft Defender: Security", "Defender: Security"),
    "com.microsoft.emmx": ("Edge: AI browser", "Edge Browser"),
    "com.microsoft.office.officelens": ("Lens", "Lens - PDF Scanner"),
    "com.microsoft.msapps": ("PowerApps",),
    "com.microsoft.flow": ("Flow",),
    "com.microsoft.powerbim": ("PowerBI",),
    "com.microsoft.todos": ("ToDo",),
    "com.microsoft.skydrive": ("OneDrive for Business",),
    "ols.microsoft.com.shiftr": ("StaffHub",),
    "com.microsoft.cortana": ("Cortana",),
    "com.microsoft.crm.crmphone": ("Dynamics 365 for phones", "Dynamics CRM"),
    "com.microsoft.crm.crmtablet": ("Dynamics 365 for tablets",),
    "com.microsoft.d365.fs.mobile": ("Dynamics 365 Field Service",),
    "com.microsoft.dynamics.invoice": ("Dynamics 365 Invoice Capture",),
    "com.microsoft.ipviewer": ("Azure Information Protection", "AIP Viewer"),
    "com.microsoft.launcher": ("Launcher",),
    "com.microsoft.ramobile": ("Remote Assist", "Dynamics 365 Remote Assist"),
    "com.microsoft.teams.baidu": ("Teams (China)",),
    "com.microsoft.workfolders": ("Work Folders",),
    "com.ms.office365admin": ("Microsoft 365 Admin", "Office 365 Admin"),
}


@lru_cache(maxsize=4096)
def app_key(name: str) -> str:
    """`"Microsoft  Outlook "` → `"outlook"`: case, spacing and a leading "Microsoft" don't count."""
    text = " ".join(name.replace("\u00a0", " ").lower().split())
    return re.sub(r"^microsoft\s+", "", text)


class AppNames:
    """The report's app names → package ids (its App column has no package id)."""

    def __init__(self, packages: Iterable[str] = ()) -> None:
        self._by_name: dict[str, str] = {}
        self._seen: dict[str, str | None] = {}  # the report repeats a few dozen names 250,000 times
        for package, name in FRIENDLY_APP_NAMES.items():
            self._add(name, package)
        for package, names in EXTRA_APP_NAMES.items():
            for name in names:
                self._add(name, package)
        known = {*FRIENDLY_APP_NAMES, *EXTRA_APP_NAMES, *(p.strip().lower() for p in packages if p.strip())}
        for package in known:
            self._add(package, package)  # a report that writes the package id itself

    def _add(self, name: str, package: str) -> None:
        key = app_key(name)
        if key:
            self._by_name.setdefault(key, package)
            # "Microsoft 365 (Office)" is also found as "Microsoft 365"; "Power BI" as "PowerBI".
            self._by_name.setdefault(re.sub(r"\s*\([^)]*\)$", "", key), package)
            self._by_name.setdefault(key.replace(" ", ""), package)

    def package(self, name: str) -> str | None:
        if name not in self._seen:
            if len(self._seen) >= 10_000:
                self._seen.clear()
            self._seen[name] = self._find(name)
        return self._seen[name]

    def _find(self, name: str) -> str | None:
        key = app_key(name)
        if not key:
            return None
        key = key.removesuffix(".android")
        for candidate in (key, re.sub(r"\s*\(android\)$|\s+for android$", "", key), key.replace(" ", "")):
            if candidate in self._by_name:
                return self._by_name[candidate]
        return None
