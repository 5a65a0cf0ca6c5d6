"""The registrations index's export: Intune's `MAMAppProtectionStatus` report, its rows joined to ids.

What a refresh asks Graph (the ports), the report's policy names → ids (`PolicyNames`), what a read counts
(`Tally`), the export job created and polled, its zip downloaded, and the report's rows written as index rows;
`Unusable` says why the export can't make the index, and the refresh (`workflows.registrations_index`) then
reads page by page instead.

The report file is streamed twice from a temporary file (never whole in memory): once for the mails to look up
and the (user, device, app) keys that repeat, once to write the rows. Per row only a 64-bit key is kept.
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, Protocol

from bot.microsoft.errors import MicrosoftError, PermissionDenied
from bot.microsoft.models import AndroidPolicy
from bot.store.db import Store
from workflows.applicability import PolicyRule
from workflows.entra_users import DirectoryReader, EntraUsers
from workflows.index_store import Writer
from workflows.report_csv import (
    REPORT,
    SELECT,
    AppNames,
    Header,
    ReportError,
    ReportRow,
    app_key,
    parse_last_sync,
    report_rows,
)

__all__ = [
    "EXPORT_PERMISSION_REASON",
    "ExportJobView",
    "IndexSource",
    "PolicyNames",
    "Tally",
    "Unusable",
    "from_export",
]

log = logging.getLogger(__name__)

EXPORT_PERMISSION_REASON = ("the app lacks DeviceManagementApps.ReadWrite.All (or an equivalent ReadWrite "
                            "permission), which creating an export job needs")


class ExportJobView(Protocol):
    """What the refresh reads of an export job (bot.microsoft.models.ExportJob has it)."""

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> str | None: ...

    @property
    def url(self) -> str | None: ...


class IndexSource(DirectoryReader, Protocol):
    """What a refresh asks Graph (GraphClient, background profile): the export, the paged fallback, and
    (through EntraUsers) the directory."""

    def create_export_job(self, report_name: str, select: Sequence[str]) -> ExportJobView: ...

    def get_export_job(self, job_id: str) -> ExportJobView: ...

    def download(self, url: str, into: BinaryIO) -> int: ...

    def iter_registration_items(self, *, applied_policies: bool = False) -> Iterator[dict[str, Any]]: ...


# ---- policy names → ids ------------------------------------------------------------------------------------


def _name_key(name: str) -> str:
    return " ".join(name.lower().split())


class PolicyNames:
    """The report's policy names → Android policy ids (lower case). Names are not unique in Intune."""

    def __init__(self, policies: Iterable[AndroidPolicy]) -> None:
        self._by_name: dict[str, list[PolicyRule]] = {}
        self.packages: set[str] = set()
        for policy in policies:
            rule = PolicyRule.from_policy(policy)
            self._by_name.setdefault(_name_key(rule.name), []).append(rule)
            self.packages.update(rule.packages)

    def shared(self, name: str) -> bool:
        return len(self._by_name.get(_name_key(name), ())) > 1

    def ids(self, name: str, package: str | None) -> list[str] | None:
        """The ids a row naming this policy may mean; None when no Android policy has the name.

        A name two or more policies share gives those that target the row's app (all of them when the app is
        unknown or none of them targets it): the bot can't tell which one Intune meant.
        """
        rules = self._by_name.get(_name_key(name))
        if not rules:
            return None
        if len(rules) > 1 and package:
            targeting = [r for r in rules if r.targets_app(package)]
            rules = targeting or rules
        return [r.id.lower() for r in rules]


# ---- what a read counts --------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one read (the export, or the paged fallback) counted, for the run's columns."""

    rows: int = 0
    android_rows: int = 0
    kept: int = 0
    no_device_id: int = 0
    unknown_users: int = 0
    unknown_apps: dict[str, str] = field(default_factory=dict)  # app_key → the name as the report wrote it
    unknown_policies: dict[str, str] = field(default_factory=dict)
    duplicate_policies: dict[str, str] = field(default_factory=dict)
    missing_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ---- the export ----------------------------------------------------------------------------------------------


class Unusable(Exception):
    """The export can't make the index; `reason` says why in words, for the run's fallback_reason."""

    def __init__(self, reason: str, *, missing: Sequence[str] = (), seconds: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing = list(missing)
        self.seconds = seconds


def from_export(source: IndexSource, store: Store, generation: int, names: PolicyNames, directory: EntraUsers, *,
                sleep: Callable[[float], None], poll_seconds: float, timeout_seconds: float,
                monotonic: Callable[[], float]) -> Tally:
    started = monotonic()
    url = _finished_job(source, sleep=sleep, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds,
                        monotonic=monotonic, started=started)
    with tempfile.TemporaryFile() as file:
        try:
            size = source.download(url, file)
        except MicrosoftError as exc:
            raise Unusable(f"the export's file couldn't be downloaded: {exc}", seconds=monotonic() - started) from exc
        seconds = monotonic() - started
        log.info("registrations index %s: export downloaded (%d bytes in %.0f s)", generation, size, seconds)
        try:
            return _load_report(file, store, generation, names, directory, seconds)
        except (ReportError, csv.Error, UnicodeDecodeError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise Unusable(f"the export's file couldn't be read: {exc}", seconds=seconds) from exc


def _finished_job(source: IndexSource, *, sleep: Callable[[float], None], poll_seconds: float,
                  timeout_seconds: float, monotonic: Callable[[], float], started: float) -> str:
    """Create the export job and wait for it; its download link, or Unusable saying why not."""
    try:
        job = source.create_export_job(REPORT, SELECT)
    except MicrosoftError as exc:
        if isinstance(exc, PermissionDenied) or exc.status == 403:
            raise Unusable(EXPORT_PERMISSION_REASON) from exc
        raise Unusable(f"Intune didn't start the report export: {exc}") from exc
    polls = 0
    while True:
        shown = (job.status or "").strip()
        status = shown.lower()
        if status == "completed" and job.url:
            return job.url
        if status == "failed":
            raise Unusable("Intune's report export job failed", seconds=monotonic() - started)
        waited = monotonic() - started
        if waited >= timeout_seconds:
            raise Unusable(f"the report export wasn't ready after {waited:.0f} s (still {shown or 'unknown'})",
                           seconds=waited)
        # 1, 2, 4, 8 s, then every `poll_seconds` (Microsoft's sample polls every 15 s): a quick export is
        # picked up at once, a slow one costs a request every 15 s (a 60-second one: 8 requests in all)
        sleep(min(poll_seconds, 2.0 ** min(polls, 10)))
        polls += 1
        try:
            job = source.get_export_job(job.id)
        except MicrosoftError as exc:
            raise Unusable(f"the report export's status couldn't be read: {exc}",
                           seconds=monotonic() - started) from exc


@dataclass
class _Survey:
    """The first pass over the report: the mails to look up, and the policies of keys seen more than once."""

    mails: set[str] = field(default_factory=set)
    first: dict[int, str] = field(default_factory=dict)  # key → the policy name of its first row
    merged: dict[int, set[str]] = field(default_factory=dict)  # key → every policy name, for keys that repeat


def _row_key(row: ReportRow) -> int:
    """(user, device, app) as a 64-bit hash; a row without an Entra device id keys on what names its device."""
    device = row.device_id or f"~{row.mdm_device_id}|{row.device_name.lower()}"
    return hash((row.mail, device, app_key(row.app)))


def _load_report(file: IO[bytes], store: Store, generation: int, names: PolicyNames, directory: EntraUsers,
                 seconds: float) -> Tally:
    tally = Tally(seconds=seconds)
    survey = _Survey()
    policy_names: dict[str, str] = {}  # one string per distinct policy name
    with report_rows(file) as rows:
        header = Header.parse(next(rows, []))
        order = header.order
        tally.missing_columns = list(header.missing)
        if header.lacking:
            raise Unusable(f"the report has no {', '.join(header.lacking)} column "
                           f"(columns: {', '.join(sorted(header.positions)) or 'none'})",
                           missing=header.missing, seconds=seconds)
        for cells in rows:
            if not any(c.strip() for c in cells):
                continue
            tally.rows += 1
            row = ReportRow.read(order, cells)
            if not row.android:
                continue
            tally.android_rows += 1
            if row.mail:
                survey.mails.add(row.mail)
            key = _row_key(row)
            policy = policy_names.setdefault(row.policy, row.policy)
            if key in survey.first:
                survey.merged.setdefault(key, {survey.first[key]}).add(policy)
            else:
                survey.first[key] = policy
    survey.first.clear()
    try:
        found = directory.resolve_many(survey.mails)
    except MicrosoftError as exc:
        raise Unusable(f"the report's mails couldn't be looked up in Entra ID: {exc}", missing=header.missing,
                       seconds=seconds) from exc
    tally.unknown_users = sum(1 for mail in survey.mails if not found.get(mail))
    apps = AppNames(names.packages)
    done: set[int] = set()
    with report_rows(file) as rows, Writer(store, generation) as writer:
        order = Header.parse(next(rows, [])).order
        for cells in rows:
            if not any(c.strip() for c in cells):
                continue
            row = ReportRow.read(order, cells)
            if not row.android:
                continue
            key = _row_key(row)
            if key in survey.merged:
                if key in done:
                    continue
                done.add(key)
                policies = survey.merged[key]
            else:
                policies = {row.policy}
            writer.add(_report_record(row, policies, apps, names, found, tally))
    tally.kept = writer.kept
    return tally


NAMES_KEPT, NAME_LENGTH = 100, 256  # names noted per list, and characters per name: a report is outside text


def _note(names: dict[str, str], key: str, name: str) -> None:
    if key in names or len(names) >= NAMES_KEPT:
        return
    names[key[:NAME_LENGTH]] = name[:NAME_LENGTH]


def _report_record(row: ReportRow, policies: Iterable[str], apps: AppNames, names: PolicyNames,
                   users: Mapping[str, str | None], tally: Tally) -> dict[str, Any]:
    package = apps.package(row.app)
    if package is None and row.app:
        _note(tally.unknown_apps, app_key(row.app), row.app)
    ids: set[str] = set()
    unknown = False
    for name in policies:
        if not name:
            continue
        found = names.ids(name, package)
        if found is None:
            unknown = True
            _note(tally.unknown_policies, _name_key(name), name)
            continue
        if names.shared(name):
            _note(tally.duplicate_policies, _name_key(name), name)
        ids.update(found)
    if not row.device_id:
        tally.no_device_id += 1
    return {
        "user_id": users.get(row.mail) or "",
        "email": row.mail[:320],
        "device_id": row.device_id[:64],
        "device_name": row.device_name[:256],
        "device_model": row.model[:256],
        "manufacturer": row.manufacturer[:256],
        "app_name": row.app[:256],
        "package": (package or "")[:256],
        # A policy name no Android policy has: which policy applies is unknown, and the sweep resolves it by the
        # policies' assignments instead.
        "policies": None if unknown else json.dumps(sorted(ids)),
        "enrolled": row.enrolled,
        "last_sync": parse_last_sync(row.last_sync),
    }
