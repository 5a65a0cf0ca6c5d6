"""Engines from DATABASE_URL (SQLite by default, PostgreSQL through psycopg 3), why one can't be opened, and the
Store (sessions on an engine).

Below bot.store.db (which opens a Store and brings its schema up to date), bot.store.migrate (Alembic) and the
table modules that take a Store (bot.store.watch), which each import it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, create_engine

from bot.settings import EXAMPLES, SettingsError, mask_url

POSTGRES_CONNECT_TIMEOUT = 10  # seconds: an unreachable host fails start-up in one line, not after minutes


class DatabaseUnavailable(SettingsError):
    """The database of DATABASE_URL can't be reached or opened; the message is one line that says why."""


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here, not SQLAlchemy's psycopg2 default."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers and the one writer work at once; busy_timeout waits instead of failing.
            cur = dbapi_conn.cursor()
            if ":memory:" not in url and url != "sqlite://":
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    connect_args = {} if "connect_timeout" in url else {"connect_timeout": POSTGRES_CONNECT_TIMEOUT}
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, connect_args=connect_args)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for in-memory SQLite and for any other database."""
    parsed = make_url(normalise_url(url))
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or "mode=memory" in url:
        return None
    return Path(database.removeprefix("file:"))


def _sqlite_problem(path: Path) -> str | None:
    """Why a SQLite file can't be opened for writing, found before SQLite says "unable to open"."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        return f"the directory {folder} does not exist"
    if path.exists() and not path.is_file():
        return f"{path} is not a file"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"{path} is not writable"
    if not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
        return f"the directory {folder} is not writable"
    return None


def _reason(exc: BaseException) -> str:
    """The driver's reason, short: "connection refused", "database "x" does not exist", …"""
    message = str(getattr(exc, "orig", None) or exc)
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    first = re.sub(r"^\(\S+\)\s*", "", first)  # SQLAlchemy's "(psycopg.OperationalError)" prefix
    first = first.split(" failed: ")[-1].strip()  # psycopg: connection to server at "h", port p failed: …
    first = re.sub(r"^FATAL:\s*", "", first)
    if "could not translate host name" in first or "failed to resolve host" in first:
        return "host name not found"
    if "timeout expired" in first or "timed out" in first:
        return "timed out"
    return first[:1].lower() + first[1:]


def database_error_line(url: str, exc: BaseException) -> str:
    """One line for a database that can't be reached or opened: the variable, why, and what it looks like."""
    expected = EXAMPLES["DATABASE_URL"]
    try:
        parsed = make_url(normalise_url(url))
    except Exception:
        return f"DATABASE_URL: {mask_url(url)!r} can't be used ({_reason(exc)}); expected {expected}"
    if parsed.get_backend_name() == "postgresql":
        where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
        if parsed.database:
            where += f"/{parsed.database}"
        return f"DATABASE_URL: could not connect to PostgreSQL at {where} ({_reason(exc)}); expected {expected}"
    path = sqlite_path(url)
    if path is not None:
        why = _sqlite_problem(path) or _reason(exc)
        return f"DATABASE_URL: could not open the SQLite file {path} ({why}); expected {expected}"
    return f"DATABASE_URL: could not open {mask_url(url)} ({_reason(exc)}); expected {expected}"


def open_engine(url: str) -> Engine:
    """An engine whose database was reached once, or DatabaseUnavailable with one line saying why."""
    path = sqlite_path(url)
    if path is not None:
        problem = _sqlite_problem(path)
        if problem:
            raise DatabaseUnavailable(f"DATABASE_URL: could not open the SQLite file {path} ({problem}); "
                                      f"expected {EXAMPLES['DATABASE_URL']}")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        engine.dispose()
        raise DatabaseUnavailable(database_error_line(url, exc)) from None
    return engine


@dataclass
class Store:
    engine: Engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()
