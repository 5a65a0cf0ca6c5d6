"""The registrations index's tables: a generation's rows written, the runs, old generations dropped, and reading
the index (the newest ok run) as registrations, one user's rows or its age.

How generations keep readers from seeing half an index is told in `workflows.registrations_index`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col
from sqlmodel import select as sm_select

from bot.clock import Clock, as_utc
from bot.microsoft.errors import MicrosoftError
from bot.store.db import Store
from bot.store.index import IndexRow, IndexRun
from workflows.applicability import Registration

__all__ = [
    "IndexChanged",
    "Writer",
    "abandon",
    "current_run",
    "drop_generation",
    "drop_older",
    "index_age",
    "index_due",
    "iter_registrations",
    "rows_for_user",
    "start_run",
    "update_run",
]

log = logging.getLogger(__name__)

INSERT_CHUNK = 2000  # index rows per INSERT
READ_CHUNK = 5000  # index rows per SELECT while streaming a generation
DELETE_CHUNK = 5000  # index rows per DELETE while dropping a generation


class IndexChanged(MicrosoftError):
    """The generation being read was deleted part way (two refreshes finished during one read): the read is
    partial, so the caller treats it like a failed read of the tenant and changes nothing."""


# ---- the tables --------------------------------------------------------------------------------------------------


def _rows() -> Any:
    return IndexRow.__table__  # type: ignore[attr-defined]


def _runs() -> Any:
    return IndexRun.__table__  # type: ignore[attr-defined]


class Writer:
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

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.flush()


def start_run(store: Store, started: datetime, worker: str) -> IndexRun:
    with store.session() as session:
        run = IndexRun(started_at=started, worker=worker[:255])
        session.add(run)
        session.commit()
        session.refresh(run)
        return run


def update_run(store: Store, run_id: int, values: Mapping[str, Any]) -> IndexRun:
    runs = _runs()
    with store.engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
    with store.session() as session:
        run = session.get(IndexRun, run_id)
        assert run is not None
        return run


def abandon(store: Store, generation: int, exc: BaseException, clock: Clock, requests: int) -> None:
    """An unexpected error (the database, a bug): drop what was written and say so, if the database lets us."""
    log.exception("registrations index %s stopped: %s", generation, exc)
    try:
        drop_generation(store, generation)
        update_run(store, generation, {"error": f"stopped: {type(exc).__name__}: {exc}"[:2000],
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


def drop_generation(store: Store, generation: int) -> None:
    _drop_where(store, _rows().c.generation == generation)


def drop_older(store: Store, generation: int) -> None:
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
