"""Opening the bot's database: the Store (bot.store.engine) with every table registered and the schema brought up
to date."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

import bot.store.watch  # noqa: F401  (the watch's tables)
from bot.store import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from bot.store.engine import DatabaseUnavailable, Store, database_error_line, make_engine, open_engine, sqlite_path


def create_store(url: str) -> Store:
    """Connect and bring the schema up to date (Alembic, under a lock so replicas never race).

    A database that can't be reached or written raises DatabaseUnavailable (one line, DATABASE_URL).
    """
    from bot.store.migrate import upgrade_engine

    engine = open_engine(url)
    try:
        upgrade_engine(engine)
    except DBAPIError as exc:
        engine.dispose()
        if sqlite_path(url) is not None and _is_sqlite_access_error(exc):
            raise DatabaseUnavailable(database_error_line(url, exc)) from None
        raise
    return Store(engine)


def _is_sqlite_access_error(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower()
    return any(s in message for s in ("readonly database", "unable to open", "disk i/o error", "read-only"))


def connect_store(url: str) -> Store:
    """Connect without touching the schema (`mam-bot check`)."""
    return Store(make_engine(url))
