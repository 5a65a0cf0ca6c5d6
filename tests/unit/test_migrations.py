"""Migrations: base to head on SQLite and PostgreSQL with data kept, the schema they build equals the
models, databases from before migrations are adopted, and replicas upgrading together don't race."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, Table, inspect, select, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from bot.store.db import make_engine
from bot.store.migrate import MODEL_MODULES, current_revisions, head_revisions, model_metadata, upgrade
from tests.databases import database_url  # noqa: F401  (fixture)

FIRST = "0001"
ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "commands", "workflows")


def import_everything() -> MetaData:
    """Every module of the bot imported, so a table defined anywhere is on SQLModel.metadata."""
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            if not module.name.startswith("bot.migrations"):  # alembic runs those, inside its context
                importlib.import_module(module.name)
    return model_metadata()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:  # noqa: F811  (the imported fixture)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def insert_first_generation_rows(engine: Engine) -> None:
    """Rows as the first migration's tables take them (raw SQL: the models may have moved on)."""
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO audit_log (at, actor, action, target, outcome, detail, correlation_id, graph_request_id) "
            "VALUES (:at, 'UADMIN001', '/mam help', '', 'ok', 'kept', 'c1', '')"), {"at": at})
        conn.execute(text(
            "INSERT INTO change_requests (kind, title, target, change, snapshot, plan, requester, justification, "
            "state, quorum, created_at, expires_at, decided_by, reject_reason, attempts, result, error, version, "
            "origin_channel, card_destinations) VALUES ('connector_toggle', 'Turn it on', 'mde', '{}', '{}', '[]', "
            "'UADMIN001', 'because', 'pending', 1, :at, :at, '', '', 0, '', '', 0, 'C1', '[]')"), {"at": at})
        request_id = conn.execute(text("SELECT id FROM change_requests")).scalar_one()
        conn.execute(text("INSERT INTO approvals (request_id, approver, at) VALUES (:r, 'UAPPROV01', :at)"),
                     {"r": request_id, "at": at})
        conn.execute(text(
            "INSERT INTO outbox (key, kind, channel, lane, payload, state, attempts, throttled, next_attempt_at, "
            "created_at) VALUES ('dm:1', 'post', 'U1', 'c:U1', '{\"text\": \"hi\"}', 'pending', 0, 0, :at, :at)"),
            {"at": at})


def assert_first_generation_rows(engine: Engine) -> None:
    from bot.outbox.table import outbox_table
    from bot.store.models import Approval, AuditEntry, ChangeRequest

    with engine.connect() as conn:
        assert conn.execute(select(AuditEntry.detail)).scalars().all() == ["kept"]  # type: ignore[call-overload]
        assert conn.execute(select(ChangeRequest.state)).scalars().all() == ["pending"]  # type: ignore[call-overload]
        assert conn.execute(select(Approval.approver)).scalars().all() == ["UAPPROV01"]  # type: ignore[call-overload]
        assert conn.execute(select(outbox_table.c.key)).scalars().all() == ["dm:1"]


def schema_differences(engine: Engine, metadata: MetaData) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def describe(diff: Any) -> str:
    """One readable line per difference; alembic gives tuples, or lists of tuples for column changes."""
    if isinstance(diff, list):
        return "; ".join(describe(d) for d in diff)
    kind, *rest = diff
    if kind in ("add_table", "remove_table"):
        return f"{kind}: {rest[0].name}"
    if kind in ("add_column", "remove_column"):
        return f"{kind}: {rest[1]}.{rest[2].name}"
    if kind in ("add_index", "remove_index"):
        return f"{kind}: {rest[0].name} on {rest[0].table.name}"
    return f"{kind}: {rest}"


def test_base_to_head_keeps_the_rows_written_after_the_first_migration(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    upgrade(url, FIRST)
    assert current_revisions(engine) == (FIRST,)
    insert_first_generation_rows(engine)

    upgrade(url)

    assert current_revisions(engine) == head_revisions()
    assert_first_generation_rows(engine)
    upgrade(url)  # at head: nothing to do, nothing breaks
    assert_first_generation_rows(engine)


def test_migrations_build_exactly_the_tables_the_models_describe(engine: Engine) -> None:
    upgrade(engine.url.render_as_string(hide_password=False))
    differences = schema_differences(engine, import_everything())
    assert not differences, (
        "the migrations and the models disagree; write a migration "
        "(alembic revision --autogenerate -m '...', then review it):\n  "
        + "\n  ".join(describe(d) for d in differences)
    )


def test_every_table_is_defined_in_a_module_autogenerate_loads() -> None:
    import_everything()
    outside = sorted(
        f"{getattr(mapper.local_table, 'name', '?')} ({mapper.class_.__module__})"
        for mapper in SQLModel._sa_registry.mappers
        if mapper.class_.__module__ not in MODEL_MODULES
    )
    assert not outside, f"add these modules to MODEL_MODULES in bot/store/migrate.py: {outside}"


# columns that migrations after the baseline add to the first generation's tables
ADDED_SINCE = {"audit_log": {"client_request_id"}, "approvals": set(),
               "change_requests": {"target_key", "lease_owner", "lease_until", "intent", "resumed"}}


def test_a_database_from_before_migrations_is_adopted(engine: Engine) -> None:
    """`create_all` made these tables on start until migrations came; the outbox made its own later."""
    metadata, old = model_metadata(), MetaData()
    for name in ("audit_log", "change_requests", "approvals"):  # as they were: without the columns added since
        Table(name, old, *(c._copy() for c in metadata.tables[name].columns if c.name not in ADDED_SINCE[name]))
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO audit_log (at, actor, action, target, outcome, detail, correlation_id, graph_request_id) "
            "VALUES (:at, 'U1', 'old', '', 'ok', 'from before', '', '')"), {"at": datetime.now(UTC)})

    upgrade(engine.url.render_as_string(hide_password=False))

    assert current_revisions(engine) == head_revisions()
    assert {"outbox", "request_budget"} <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT detail FROM audit_log")).scalars().all() == ["from before"]


def test_audit_rows_from_before_0012_read_no_client_request_id(engine: Engine) -> None:
    """0012 adds the bot's `client-request-id` to the audit log: the rows already there are kept, with ''."""
    url = engine.url.render_as_string(hide_password=False)
    upgrade(url, "0011")
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO audit_log (at, actor, action, target, outcome, detail, correlation_id, graph_request_id) "
            "VALUES (:at, 'mam-bot', 'execute #1 policy_assign', 'p1', 'failed', 'refused', 'c1', 'rid-1')"),
            {"at": datetime(2026, 12, 1, tzinfo=UTC)})

    upgrade(url)

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT graph_request_id, client_request_id FROM audit_log")).all()
    assert [tuple(row) for row in rows] == [("rid-1", "")]


def test_a_schema_newer_than_this_version_is_left_alone(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """A rolling upgrade or a rollback: an older replica starts against a newer schema and carries on."""
    url = engine.url.render_as_string(hide_password=False)
    upgrade(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with caplog.at_level("WARNING", logger="bot.store.migrate"):
        upgrade(url)
    assert current_revisions(engine) == ("9999",)
    assert "newer than this mam-bot knows" in caplog.text


def test_replicas_upgrading_at_once_take_turns(database_url: str) -> None:  # noqa: F811
    """Three processes start on an empty database together. Without the lock the second CREATE TABLE
    fails (PostgreSQL) or finds the database locked mid-migration (SQLite)."""
    script = "import sys; from bot.store.migrate import upgrade; upgrade(sys.argv[1])"
    replicas = [subprocess.Popen([sys.executable, "-c", script, database_url], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outputs = [replica.communicate(timeout=60)[0] for replica in replicas]
    assert [replica.returncode for replica in replicas] == [0, 0, 0], outputs
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        assert current_revisions(engine) == head_revisions()
    finally:
        engine.dispose()


def test_migrations_are_found_wherever_the_bot_is_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        assert current_revisions(engine) == head_revisions()
    finally:
        engine.dispose()


def test_migrations_ship_inside_the_package() -> None:
    """A wheel carries packages: the migrations must be one (checked by hand: `pip wheel .`, install it
    in a fresh venv, `mam-bot db upgrade` and `mam-bot demo` work from anywhere)."""
    import bot
    from bot.store.migrate import MIGRATIONS_DIR

    assert MIGRATIONS_DIR.is_relative_to(Path(bot.__file__).parent)
    assert (MIGRATIONS_DIR / "__init__.py").is_file() and (MIGRATIONS_DIR / "versions" / "__init__.py").is_file()
