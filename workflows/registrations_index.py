"""The registrations index: every Android (user, device, app) with the policies that apply, kept in the database.

A refresh asks Intune for its `MAMAppProtectionStatus` report export (one job, polled after 1, 2, 4 and 8 s and
then every 15 s, one zip downloaded outside Graph's quota), joins the report's names to ids (mails → Entra users,
app names → package ids, policy names → the Android policies' ids) and writes the rows under a new generation
(`IndexRun.id`). When the export can't be used (no ReadWrite permission, a failed or late job, a column the join
needs is missing) the refresh reads `managedAppRegistrations` page after page instead (`source` "paged") and says why.

Readers never see half an index: rows go in first, a chunk a statement, and only then is the run marked ok; the
newest ok run is the index. Two replicas may refresh at once, each into its own generation. After run N is marked
ok, only generations older than the ok run before N are deleted, so the index someone is reading now stays until
the next refresh has finished. A refresh that fails leaves the previous index in use.

The report file is streamed twice from a temporary file (never whole in memory): once for the mails to look up
and the (user, device, app) keys that repeat, once to write the rows. Per row only a 64-bit key is kept.
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import IO, Any, BinaryIO, Protocol

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col
from sqlmodel import select as sm_select

from bot.clock import Clock, as_utc, utc_clock
from bot.microsoft.errors import MicrosoftError, PermissionDenied, RequestRejected
from bot.microsoft.models import AndroidPolicy
from bot.store.db import Store
from bot.store.index import EXPORT, PAGED, IndexRow, IndexRun
from workflows.applicability import PolicyRule, Registration
from workflows.entra_users import DirectoryReader, EntraUsers
from workflows.policies import FRIENDLY_APP_NAMES
from workflows.report_csv import (
    REPORT,
    SELECT,
    AppNames,
    Header,
    ReportError,
    ReportRow,
    app_key,
    device_id,
    parse_last_sync,
    report_rows,
)

__all__ = [
    "EXPORT_PERMISSION_REASON",
    "SELECT",
    "ExportJobView",
    "IndexChanged",
    "IndexSource",
    "PolicyNames",
    "current_run",
    "index_age",
    "index_due",
    "iter_registrations",
    "refresh_index",
    "rows_for_user",
]

log = logging.getLogger(__name__)

INSERT_CHUNK = 2000  # index rows per INSERT
READ_CHUNK = 5000  # index rows per SELECT while streaming a generation
DELETE_CHUNK = 5000  # index rows per DELETE while dropping a generation
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


class IndexChanged(MicrosoftError):
    """The generation being read was deleted part way (two refreshes finished during one read): the read is
    partial, so the caller treats it like a failed read of the tenant and changes nothing."""


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


# ---- a refresh ---------------------------------------------------------------------------------------------


@dataclass
class _Tally:
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


class _Unusable(Exception):
    """The export can't make the index; `reason` says why in words, for the run's fallback_reason."""

    def __init__(self, reason: str, *, missing: Sequence[str] = (), seconds: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing = list(missing)
        self.seconds = seconds


def refresh_index(
    *,
    source: IndexSource,
    store: Store,
    policies: Iterable[AndroidPolicy],
    now: Clock | datetime,
    worker: str = "",
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = 15.0,
    timeout_seconds: float = 900.0,
    monotonic: Callable[[], float] = time.monotonic,
    users: EntraUsers | None = None,
    requests: Callable[[], int] | None = None,
) -> IndexRun:
    """Build a new generation of the index (the export, else the paged read) and make it current when complete.

    `policies`: the tenant's Android app protection policies, read once by the caller. Returns the run, ok or not;
    a Microsoft error never escapes (the run says what failed), a database error does after the run is marked.
    """
    clock = utc_clock(now)
    counted = requests or (lambda: 0)
    before = counted()
    previous = current_run(store)
    run = _start_run(store, clock(), worker)
    assert run.id is not None
    generation = run.id
    names = PolicyNames(policies)
    directory = users or EntraUsers(store, source, clock())
    values: dict[str, Any] = {}
    try:
        try:
            tally = _from_export(source, store, generation, names, directory, sleep=sleep, poll_seconds=poll_seconds,
                                 timeout_seconds=timeout_seconds, monotonic=monotonic)
            _believable(tally, previous)
            values["source"] = EXPORT
        except _Unusable as why:
            log.warning("registrations index %s: the export can't be used (%s); reading registrations page by page",
                        generation, why.reason)
            _drop_generation(store, generation)
            values.update(fallback_reason=why.reason[:1000], missing_columns=json.dumps(why.missing),
                          export_seconds=why.seconds, source=PAGED)
            tally = _from_pages(source, store, generation)
    except MicrosoftError as exc:
        log.warning("registrations index %s failed: %s", generation, exc)
        _drop_generation(store, generation)
        reason = values.get("fallback_reason")
        error = f"the paged read failed too: {exc}" if reason else str(exc)
        values.update(error=error[:2000], finished_at=clock(), requests=counted() - before)
        return _update_run(store, generation, values)
    except BaseException as exc:
        _abandon(store, generation, exc, clock, counted() - before)
        raise
    values.update(_tally_values(tally, values.get("source") == EXPORT))
    values.update(ok=True, finished_at=clock(), requests=counted() - before)
    done = _update_run(store, generation, values)
    _drop_older(store, generation)
    log.info("registrations index %s (%s): %d rows read, %d Android, %d kept", generation, done.source, done.rows,
             done.android_rows, done.kept)
    return done


SHRINK_CHECKED_ABOVE = 100  # an export with no rows is always checked; one losing half an index this big too


def _believable(tally: _Tally, previous: IndexRun | None) -> None:
    """An export that lost most of the index at once (an empty file, a report cut short) would resolve every
    open block and tell those users they are no longer blocked: the paged read confirms it first."""
    if previous is None or not previous.kept:
        return
    if tally.kept and (previous.kept < SHRINK_CHECKED_ABOVE or tally.kept * 2 >= previous.kept):
        return
    raise _Unusable(f"the export has {tally.kept} Android registrations where the index had {previous.kept}: "
                    "confirming with the paged read", seconds=tally.seconds)


def _tally_values(tally: _Tally, export: bool) -> dict[str, Any]:
    values: dict[str, Any] = {"rows": tally.rows, "android_rows": tally.android_rows, "kept": tally.kept,
                              "no_device_id": tally.no_device_id, "unknown_users": tally.unknown_users}
    if export:
        values.update(unknown_apps=json.dumps(sorted(tally.unknown_apps.values())),
                      unknown_policies=json.dumps(sorted(tally.unknown_policies.values())),
                      duplicate_policies=json.dumps(sorted(tally.duplicate_policies.values())),
                      missing_columns=json.dumps(tally.missing_columns), export_seconds=tally.seconds)
    return values


# ---- the export ----------------------------------------------------------------------------------------------


def _from_export(source: IndexSource, store: Store, generation: int, names: PolicyNames, directory: EntraUsers, *,
                 sleep: Callable[[float], None], poll_seconds: float, timeout_seconds: float,
                 monotonic: Callable[[], float]) -> _Tally:
    started = monotonic()
    url = _finished_job(source, sleep=sleep, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds,
                        monotonic=monotonic, started=started)
    with tempfile.TemporaryFile() as file:
        try:
            size = source.download(url, file)
        except MicrosoftError as exc:
            raise _Unusable(f"the export's file couldn't be downloaded: {exc}", seconds=monotonic() - started) from exc
        seconds = monotonic() - started
        log.info("registrations index %s: export downloaded (%d bytes in %.0f s)", generation, size, seconds)
        try:
            return _load_report(file, store, generation, names, directory, seconds)
        except (ReportError, csv.Error, UnicodeDecodeError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise _Unusable(f"the export's file couldn't be read: {exc}", seconds=seconds) from exc


def _finished_job(source: IndexSource, *, sleep: Callable[[float], None], poll_seconds: float,
                  timeout_seconds: float, monotonic: Callable[[], float], started: float) -> str:
    """Create the export job and wait for it; its download link, or _Unusable saying why not."""
    try:
        job = source.create_export_job(REPORT, SELECT)
    except MicrosoftError as exc:
        if isinstance(exc, PermissionDenied) or exc.status == 403:
            raise _Unusable(EXPORT_PERMISSION_REASON) from exc
        raise _Unusable(f"Intune didn't start the report export: {exc}") from exc
    polls = 0
    while True:
        shown = (job.status or "").strip()
        status = shown.lower()
        if status == "completed" and job.url:
            return job.url
        if status == "failed":
            raise _Unusable("Intune's report export job failed", seconds=monotonic() - started)
        waited = monotonic() - started
        if waited >= timeout_seconds:
            raise _Unusable(f"the report export wasn't ready after {waited:.0f} s (still {shown or 'unknown'})",
                            seconds=waited)
        # 1, 2, 4, 8 s, then every `poll_seconds` (Microsoft's sample polls every 15 s): a quick export is
        # picked up at once, a slow one costs a request every 15 s (a 60-second one: 8 requests in all)
        sleep(min(poll_seconds, 2.0 ** min(polls, 10)))
        polls += 1
        try:
            job = source.get_export_job(job.id)
        except MicrosoftError as exc:
            raise _Unusable(f"the report export's status couldn't be read: {exc}",
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
                 seconds: float) -> _Tally:
    tally = _Tally(seconds=seconds)
    survey = _Survey()
    policy_names: dict[str, str] = {}  # one string per distinct policy name
    with report_rows(file) as rows:
        header = Header.parse(next(rows, []))
        order = header.order
        tally.missing_columns = list(header.missing)
        if header.lacking:
            raise _Unusable(f"the report has no {', '.join(header.lacking)} column "
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
        raise _Unusable(f"the report's mails couldn't be looked up in Entra ID: {exc}", missing=header.missing,
                        seconds=seconds) from exc
    tally.unknown_users = sum(1 for mail in survey.mails if not found.get(mail))
    apps = AppNames(names.packages)
    done: set[int] = set()
    with report_rows(file) as rows, _Writer(store, generation) as writer:
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
                   users: Mapping[str, str | None], tally: _Tally) -> dict[str, Any]:
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


# ---- the paged fallback ----------------------------------------------------------------------------------------


def _from_pages(source: IndexSource, store: Store, generation: int) -> _Tally:
    """Every registration, a page at a time, with `$expand=appliedPolicies` unless Graph refuses it here."""
    tally = _Tally()
    items = source.iter_registration_items(applied_policies=True)
    try:
        first = next(items, None)
    except RequestRejected:
        log.info("Graph refused $expand=intendedPolicies on registrations; the index leaves policies to the sweep")
        items = source.iter_registration_items()
        first = next(items, None)
    if first is None:
        return tally
    with _Writer(store, generation) as writer:
        for item in _chain(first, items):
            tally.rows += 1
            registration = Registration.from_graph(item)
            if not registration.android:
                continue
            tally.android_rows += 1
            writer.add(_paged_record(registration, item, tally))
    tally.kept = writer.kept
    return tally


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest


def _clean(text: str | None) -> str:
    """Graph's text as PostgreSQL can keep it (no NUL characters)."""
    return (text or "").replace("\x00", "")


def _paged_record(reg: Registration, item: Mapping[str, Any], tally: _Tally) -> dict[str, Any]:
    device = device_id(reg.device_id or "")
    if not device:
        tally.no_device_id += 1
    package = _clean(reg.package).strip().lower()
    last_sync = item.get("lastSyncDateTime")
    return {
        "user_id": _clean(reg.user_id).strip().lower()[:64],
        "email": "",
        "device_id": device[:64],
        "device_name": _clean(reg.device_name)[:256],
        "device_model": _clean(reg.device_model)[:256],
        "manufacturer": _clean(reg.manufacturer)[:256],
        "app_name": FRIENDLY_APP_NAMES.get(package, package)[:256],
        "package": package[:256],
        "policies": None if reg.applied is None else json.dumps(sorted(reg.applied)),
        "enrolled": reg.enrolled,
        "last_sync": parse_last_sync(last_sync) if isinstance(last_sync, str) else None,
    }


# ---- the tables --------------------------------------------------------------------------------------------------


def _rows() -> Any:
    return IndexRow.__table__  # type: ignore[attr-defined]


def _runs() -> Any:
    return IndexRun.__table__  # type: ignore[attr-defined]


class _Writer:
    """Index rows of one generation, INSERT_CHUNK to a statement (each its own transaction)."""

    def __init__(self, store: Store, generation: int) -> None:
        self.store = store
        self.generation = generation
        self.pending: list[dict[str, Any]] = []
        self.kept = 0

    def add(self, record: dict[str, Any]) -> None:
        record["generation"] = self.generation
        self.pending.append(record)
        if len(self.pending) >= INSERT_CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        with self.store.engine.begin() as conn:
            conn.execute(insert(_rows()), self.pending)
        self.kept += len(self.pending)
        self.pending = []

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.flush()


def _start_run(store: Store, started: datetime, worker: str) -> IndexRun:
    with store.session() as session:
        run = IndexRun(started_at=started, worker=worker[:255])
        session.add(run)
        session.commit()
        session.refresh(run)
        return run


def _update_run(store: Store, run_id: int, values: Mapping[str, Any]) -> IndexRun:
    runs = _runs()
    with store.engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
    with store.session() as session:
        run = session.get(IndexRun, run_id)
        assert run is not None
        return run


def _abandon(store: Store, generation: int, exc: BaseException, clock: Clock, requests: int) -> None:
    """An unexpected error (the database, a bug): drop what was written and say so, if the database lets us."""
    log.exception("registrations index %s stopped: %s", generation, exc)
    try:
        _drop_generation(store, generation)
        _update_run(store, generation, {"error": f"stopped: {type(exc).__name__}: {exc}"[:2000],
                                        "finished_at": clock(), "requests": requests})
    except SQLAlchemyError as again:
        log.warning("registrations index %s: couldn't record the failure either: %s", generation, again)


def _drop_where(store: Store, condition: Any) -> int:
    """Delete index rows matching `condition`, DELETE_CHUNK at a time (short transactions, SQLite and PostgreSQL)."""
    rows = _rows()
    dropped = 0
    while True:
        chunk = select(rows.c.id).where(condition).limit(DELETE_CHUNK)
        with store.engine.begin() as conn:
            gone = conn.execute(delete(rows).where(rows.c.id.in_(chunk))).rowcount or 0
        dropped += gone
        if gone < DELETE_CHUNK:
            return dropped


def _drop_generation(store: Store, generation: int) -> None:
    _drop_where(store, _rows().c.generation == generation)


def _drop_older(store: Store, generation: int) -> None:
    """After `generation` became the index: drop generations older than the index before it.

    The one before stays (someone may be reading it right now); so does any newer one being written.
    """
    runs = _runs()
    with store.engine.connect() as conn:
        previous = conn.execute(select(func.max(runs.c.id)).where(runs.c.ok.is_(True),
                                                                   runs.c.id < generation)).scalar()
    if previous is None:
        return
    dropped = _drop_where(store, _rows().c.generation < previous)
    if dropped:
        log.info("registrations index: dropped %d rows of generations before %s", dropped, previous)


# ---- reading the index -------------------------------------------------------------------------------------------


def current_run(store: Store) -> IndexRun | None:
    """The index: the newest refresh that succeeded."""
    runs = _runs()
    with store.engine.connect() as conn:
        newest = conn.execute(select(func.max(runs.c.id)).where(runs.c.ok.is_(True))).scalar()
    if newest is None:
        return None
    with store.session() as session:
        return session.get(IndexRun, newest)


def iter_registrations(store: Store, run: IndexRun | None = None) -> Iterator[Registration]:
    """The index's rows as registrations (`id` the row's id, `applied` its policy ids), READ_CHUNK rows a query.

    Raises IndexChanged when the generation disappears part way (fewer rows than the run kept).
    """
    run = run if run is not None else current_run(store)
    if run is None or run.id is None:
        return
    rows = _rows()
    columns = (rows.c.id, rows.c.user_id, rows.c.device_id, rows.c.package, rows.c.enrolled, rows.c.device_name,
               rows.c.device_model, rows.c.manufacturer, rows.c.policies)
    after, read = 0, 0
    while True:
        query = (select(*columns).where(rows.c.generation == run.id, rows.c.id > after)
                 .order_by(rows.c.id).limit(READ_CHUNK))
        with store.engine.connect() as conn:
            chunk = conn.execute(query).all()
        for row_id, user_id, device, package, enrolled, name, model, manufacturer, policies in chunk:
            applied = None if policies is None else frozenset(str(p).lower() for p in json.loads(policies))
            yield Registration(str(row_id), user_id or None, device or None, package or None, True, bool(enrolled),
                               name or None, model or None, manufacturer or None, applied)
        read += len(chunk)
        if len(chunk) < READ_CHUNK:
            break
        after = chunk[-1][0]
    if run.ok and read < run.kept:
        raise IndexChanged(f"The registrations index (refresh {run.id}) was replaced while the bot read it "
                           f"({read} of {run.kept} rows); the next run reads the new one")


def rows_for_user(store: Store, user_id: str) -> list[IndexRow]:
    """One user's rows in the index (by Entra user id), oldest first."""
    run = current_run(store)
    wanted = user_id.strip().lower()
    if run is None or not wanted:
        return []
    query = (sm_select(IndexRow).where(IndexRow.generation == run.id, IndexRow.user_id == wanted)
             .order_by(col(IndexRow.id)))
    with store.session() as session:
        return list(session.exec(query))


def index_age(store: Store, now: datetime) -> timedelta | None:
    """How long ago the index was finished; None when there is none."""
    run = current_run(store)
    finished = as_utc(run.finished_at) if run is not None else None
    return None if finished is None else as_utc(now) - finished


def index_due(store: Store, now: datetime, every: timedelta) -> bool:
    """Whether a refresh is due: no index yet, or it is `every` old."""
    age = index_age(store, now)
    return age is None or age >= every
