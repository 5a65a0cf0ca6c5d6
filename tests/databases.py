"""Database URLs for tests: a SQLite file, or a throw-away PostgreSQL database (skipped without a server)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

POSTGRES_ADMIN_URL = os.environ.get("MAM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the local server for one test; dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(POSTGRES_ADMIN_URL)
    conninfo = {"host": admin.host or "127.0.0.1", "port": admin.port or 5432, "user": admin.username or "postgres",
                "dbname": admin.database or "postgres"}
    if admin.password:
        conninfo["password"] = admin.password
    try:
        conn = psycopg.connect(**conninfo, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {conninfo['host']}:{conninfo['port']} "
                    f"(set MAM_TEST_POSTGRES_URL to run these tests): {str(exc).strip().splitlines()[0]}")
    name = f"mam_test_{uuid.uuid4().hex[:12]}"
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_url(tmp_path: Path, name: str = "bot.db") -> str:
    return f"sqlite:///{tmp_path / name}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
    else:
        with postgres_database() as url:
            yield url
