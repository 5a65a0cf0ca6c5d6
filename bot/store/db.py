"""Engine from DATABASE_URL (SQLite by default, PostgreSQL through psycopg 3)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

import bot.store.watch  # noqa: F401  (the watch's tables)
from bot.store import models  # noqa: F401  (registers the tables on SQLModel.metadata)


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
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


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


def create_store(url: str) -> Store:
    """Connect and bring the schema up to date (Alembic, under a lock so replicas never race)."""
    from bot.store.migrate import upgrade_engine

    engine = make_engine(url)
    upgrade_engine(engine)
    return Store(engine)


def connect_store(url: str) -> Store:
    """Connect without touching the schema (`mam-bot check`)."""
    return Store(make_engine(url))
