"""Schema migrations (alembic): `upgrade(url)` brings a database to the newest schema, one process at a time.

Every replica runs this on start. The migrations live in `bot/migrations/` and are installed with the
package (a wheel carries them); `alembic.ini` at the top of the source tree is only for writing new
ones (`alembic revision --autogenerate -m "..."`).

Two replicas starting together must not both create the same tables:
- PostgreSQL: a session-level `pg_advisory_lock` on a fixed key is held for the whole upgrade; the
  second replica waits, then finds the schema at head and does nothing.
- SQLite (one host): migrations run in a `BEGIN IMMEDIATE` transaction, which holds SQLite's write
  lock from the first statement; pysqlite is told to leave transactions to us, so DDL is
  transactional too and a failed migration leaves nothing half-done.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import Connection, Engine

from bot.store.engine import make_engine, open_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"

# Any fixed 64-bit number works as long as nothing else in the database uses it: b"mam-migr".
MIGRATION_LOCK_KEY = 0x6D616D2D6D696772

# Modules that define tables. Autogenerate and the schema test compare migrations with what these put
# on SQLModel.metadata; tests/unit/test_migrations.py fails if a table is defined anywhere else.
# alembic's `context` is one module-level object: two threads of a process must not migrate at once.
_process_lock = threading.Lock()

MODEL_MODULES: tuple[str, ...] = (
    "bot.store.models",
    "bot.store.watch",
    "bot.store.index",
    "bot.outbox.table",
    "bot.outbox.fleet",
    "bot.microsoft.shared_budget",
    "bot.store.drafts",
    "bot.store.job_requests",
    "bot.store.drift",
)


def model_metadata() -> MetaData:
    """SQLModel.metadata with every table of the bot registered on it."""
    from sqlmodel import SQLModel

    for name in MODEL_MODULES:
        importlib.import_module(name)
    return SQLModel.metadata


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration without an ini file: the bot can migrate from any working directory."""
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise RuntimeError(f"database migrations not found at {MIGRATIONS_DIR}: the installation is incomplete; "
                           "reinstall mam-bot")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revisions() -> tuple[str, ...]:
    return tuple(sorted(_scripts().get_heads()))


@cache
def known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _scripts().walk_revisions())


def current_revisions(engine: Engine) -> tuple[str, ...]:
    """The revisions the database is at; empty for a database that was never migrated."""
    with engine.connect() as conn:
        return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))


@dataclass(frozen=True)
class UpgradeResult:
    """What an upgrade did: the revisions before and after, and those it applied, oldest first."""

    before: tuple[str, ...]
    after: tuple[str, ...]
    applied: tuple[str, ...]
    newer_than_known: bool = False

    def summary(self) -> str:
        """One line: "applied 0001 → 0006 (6 migrations)" or "the schema was already at 0006: nothing to do"."""
        at = ", ".join(self.after) or "an empty schema"
        if self.newer_than_known:
            return (f"the schema is at {at}, newer than this mam-bot knows ({', '.join(head_revisions())}): "
                    "nothing to do")
        if not self.applied:
            return f"the schema was already at {at}: nothing to do"
        if len(self.applied) == 1:
            return f"applied {self.applied[0]} (1 migration)"
        return f"applied {self.applied[0]} → {self.applied[-1]} ({len(self.applied)} migrations)"


def applied_between(before: tuple[str, ...], after: tuple[str, ...]) -> tuple[str, ...]:
    """The revisions an upgrade from `before` to `after` ran, oldest first."""
    if before == after:
        return ()
    scripts = _scripts().iterate_revisions(after, before or "base")
    return tuple(reversed([script.revision for script in scripts]))


def upgrade(url: str, revision: str = "head") -> UpgradeResult:
    """Bring the database at `url` to `revision` (the newest by default); safe to run from every replica.

    A database that can't be reached or opened raises DatabaseUnavailable: one line naming DATABASE_URL.
    """
    engine = open_engine(url)
    try:
        return upgrade_engine(engine, revision)
    finally:
        engine.dispose()


def upgrade_engine(engine: Engine, revision: str = "head") -> UpgradeResult:
    """`upgrade` on an engine the caller keeps using (what `create_store` calls)."""
    current = current_revisions(engine)
    if revision == "head" and current == head_revisions():
        return UpgradeResult(current, current, ())  # every start after the first: one SELECT, no lock
    newer = set(current) - known_revisions()
    if revision == "head" and newer:
        # A newer mam-bot migrated this database (a rolling upgrade in progress, or a rollback).
        # Migrations are additive, so this version still works with it: start rather than fail.
        log.warning("the database schema is at %s, newer than this mam-bot knows (%s); not migrating",
                    ", ".join(sorted(newer)), ", ".join(head_revisions()))
        return UpgradeResult(current, current, (), newer_than_known=True)
    log.info("migrating the database from %s to %s", ", ".join(current) or "an empty schema", revision)
    with _process_lock, migration_connection(engine) as conn:
        # Read again under the lock: another replica may have migrated while this one waited. The
        # transaction this begins (BEGIN IMMEDIATE on SQLite) is the one alembic migrates in.
        before = tuple(sorted(MigrationContext.configure(conn).get_current_heads()))
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        if conn.in_transaction():
            conn.commit()
    after = current_revisions(engine)
    return UpgradeResult(before, after, applied_between(before, after))


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection to run migrations on, holding (or about to take) the migration lock.

    The connection is handed over outside any transaction: alembic begins (and commits) its own.
    """
    dialect = engine.dialect.name
    if dialect == "postgresql":
        with engine.connect() as conn:
            if not conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}).scalar():
                log.warning("another process is migrating the database; waiting for it to finish")
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.commit()  # the lock is the session's, so it outlives this transaction
            try:
                yield conn
            finally:
                _pg_unlock(conn)
    elif dialect == "sqlite" and not _in_memory(engine):
        sqlite_engine = _immediate_sqlite_engine(engine)
        try:
            with sqlite_engine.connect() as conn:
                yield conn
        finally:
            sqlite_engine.dispose()
    else:
        # An in-memory SQLite database exists in this one process (and a separate engine would not
        # see it); any other database is not one the bot supports, so no lock is attempted.
        with engine.connect() as conn:
            yield conn


def _pg_unlock(conn: Connection) -> None:
    try:
        if conn.in_transaction():
            conn.rollback()
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        conn.commit()
    except Exception:
        # Closing the connection ends the session, which releases the lock anyway: don't hide
        # the error that brought us here behind this one.
        log.debug("could not release the migration lock explicitly", exc_info=True)
        conn.invalidate()


def _in_memory(engine: Engine) -> bool:
    database = engine.url.database
    return not database or database == ":memory:" or "mode=memory" in str(engine.url)


def _immediate_sqlite_engine(engine: Engine) -> Engine:
    """A second engine on the same SQLite file whose transactions start with BEGIN IMMEDIATE."""
    migrating = make_engine(engine.url.render_as_string(hide_password=False))

    @event.listens_for(migrating, "connect")
    def _manual_transactions(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite otherwise commits on its own around DDL, which would split a migration in pieces.
        dbapi_conn.isolation_level = None

    @event.listens_for(migrating, "begin")
    def _begin_immediate(conn: Connection) -> None:
        # Take the write lock now, not at the first write: a second process waits here (busy_timeout)
        # and then reads the version this one committed.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return migrating
