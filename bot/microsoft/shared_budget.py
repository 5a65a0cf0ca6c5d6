"""A request budget every replica shares, kept in the bot's database.

Microsoft's quotas are per app registration (Intune: 1,000 requests / 20 s, 100 of them writes;
Defender: 100 / minute and 1,500 / hour), so N replicas each keeping its own `LocalBudget` would
together ask for N times too much. `SharedBudget` keeps the same sliding-window log in a table:
one row per grant (api, time, calls, write?). A reservation locks the api (PostgreSQL: a
transaction-scoped advisory lock; SQLite: `BEGIN IMMEDIATE`), reads the time *after* taking the
lock so grants are recorded in the order they were decided, sums each window, and inserts its row
only if every window has room. So the grants in any window, summed over all processes, never
exceed the limit.

Time comes from the PostgreSQL server (`clock_timestamp()`), so replicas on hosts whose clocks
disagree still share one window; SQLite serves one host, whose wall clock is used.
"""

from __future__ import annotations

import functools
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Index, Select, Table, and_, bindparam, case, delete, func, insert, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Field, SQLModel

from bot.microsoft.budget import DEFENDER_LIMITS, GRAPH_LIMITS, RateLimit
from bot.microsoft.errors import DEFENDER, GRAPH

# The first half of the two-key advisory lock: which feature of the bot holds it (b"mamb").
# The second half is the api's CRC32, so Graph and Defender callers don't wait for each other.
LOCK_NAMESPACE = 0x6D616D62
# Old grants are deleted at most this often per process; they only need to outlive the longest window.
PRUNE_EVERY_SECONDS = 60.0


class BudgetGrant(SQLModel, table=True):
    """Calls granted to some replica at `at` (epoch seconds). Read as a sliding-window log."""

    __tablename__ = "request_budget"
    __table_args__ = (Index("ix_request_budget_api_at", "api", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    api: str = Field(max_length=32)
    at: float
    calls: int
    write: bool = False


T = cast(Table, BudgetGrant.__table__)  # type: ignore[attr-defined]
_INSERT = insert(T)

DEFAULT_LIMITS: Mapping[str, Sequence[RateLimit]] = {GRAPH: GRAPH_LIMITS, DEFENDER: DEFENDER_LIMITS}


class SharedBudget:
    """`RequestBudget` for a fleet: the same answers as `LocalBudget`, for all processes together."""

    def __init__(
        self,
        engine: Engine,
        limits: Mapping[str, Sequence[RateLimit]] = DEFAULT_LIMITS,
        *,
        clock: Callable[[], float] | None = None,
        keep_for: float | None = None,
    ) -> None:
        """`keep_for`: seconds a grant stays on the log (default: the longest window, all it is needed for)."""
        self._engine = engine
        self._limits = {api: tuple(rules) for api, rules in limits.items()}
        self._clock = clock
        self._postgres = engine.dialect.name == "postgresql"
        longest = max((r.per_seconds for rules in self._limits.values() for r in rules), default=0.0)
        self._keep_for = max(longest, keep_for or 0.0)
        self._next_prune = float("-inf")
        # Threads of one process queue here rather than in the database: fewer connections held waiting.
        self._local = threading.Lock()

    def reserve(self, api: str, *, count: int = 1, write: bool = False) -> float:
        """Take `count` calls for `api` and return 0, or take nothing and return seconds to wait."""
        rules = [r for r in self._limits.get(api, ()) if write or not r.writes_only]
        if not rules:
            return 0.0
        with self._local, self._locked(api) as (conn, now):
            used = self._used(conn, api, rules, now)
            wait = 0.0
            for rule, in_window in zip(rules, used, strict=True):
                # A batch larger than a whole window still has to go some time: when the window is empty.
                need = min(count, rule.calls)
                if in_window + need > rule.calls:
                    wait = max(wait, self._wait_for(conn, api, rule, now, in_window + need - rule.calls))
            if wait > 0:
                return wait
            conn.execute(_INSERT, {"api": api, "at": now, "calls": count, "write": write})
            if now >= self._next_prune:
                self._next_prune = now + PRUNE_EVERY_SECONDS
                conn.execute(delete(T).where(T.c.at <= now - self._keep_for))
            return 0.0

    def granted(self, api: str, *, within: float, write: bool | None = None) -> int:
        """Calls granted to `api` by every process over the last `within` seconds."""
        with self._engine.connect() as conn:
            now = self._now(conn)
            query = select(func.coalesce(func.sum(T.c.calls), 0)).where(T.c.api == api, T.c.at > now - within)
            if write is not None:
                query = query.where(T.c.write == write)
            return int(conn.execute(query).scalar_one())

    # --- inside the lock ----------------------------------------------------------------------------

    @contextmanager
    def _locked(self, api: str) -> Iterator[tuple[Connection, float]]:
        """A transaction that holds `api`'s lock until it ends, and the time read once the lock was held."""
        if self._postgres:
            with self._engine.begin() as conn:
                # One round trip: the FROM is evaluated first, so the time is read after the lock is
                # granted. A grant lost in a server crash only forgets a few milliseconds of calls, so
                # the commit need not wait for the disk.
                now = conn.execute(
                    text("SELECT extract(epoch FROM clock_timestamp()) FROM (SELECT "
                         "set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock(:ns, :key)) AS locked"),
                    {"ns": LOCK_NAMESPACE, "key": _lock_key(api)},
                ).scalar_one()
                yield conn, float(self._clock()) if self._clock is not None else float(now)
            return
        with self._engine.connect() as conn:
            # pysqlite would begin a deferred transaction at the first INSERT, after we had read the
            # window: with autocommit at the driver we issue BEGIN IMMEDIATE ourselves, which takes
            # SQLite's write lock (waiting out busy_timeout) before anything is read.
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn, self._clock() if self._clock is not None else time.time()
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")

    def _now(self, conn: Connection) -> float:
        if self._clock is not None:
            return self._clock()
        if self._postgres:
            return float(conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())
        return time.time()

    def _used(self, conn: Connection, api: str, rules: Sequence[RateLimit], now: float) -> list[int]:
        """Calls in each rule's window, in one query."""
        params: dict[str, object] = {"api": api, "oldest": now - max(rule.per_seconds for rule in rules)}
        params.update({f"since{i}": now - rule.per_seconds for i, rule in enumerate(rules)})
        row = conn.execute(_used_query(tuple(rule.writes_only for rule in rules)), params).one()
        return [int(value) for value in row]

    def _wait_for(self, conn: Connection, api: str, rule: RateLimit, now: float, excess: int) -> float:
        """Seconds until the oldest `excess` calls in the rule's window have left it."""
        rows = conn.execute(
            select(T.c.at, T.c.calls).where(T.c.api == api, _in_window(rule, now)).order_by(T.c.at, T.c.id)
        )
        leaving = 0
        for at, calls in rows:
            leaving += int(calls)
            if leaving >= excess:
                return max(float(at) + rule.per_seconds - now, 1e-3)
        return rule.per_seconds  # unreachable while the sums agree; never return "go ahead" by mistake


@functools.lru_cache(maxsize=16)
def _used_query(writes_only: tuple[bool, ...]) -> Select[Any]:
    """The `_used` query for rules like these, built once: building SQL expressions per call cost more
    CPU than PostgreSQL spends running them."""
    columns = []
    for i, write in enumerate(writes_only):
        condition = T.c.at > bindparam(f"since{i}")
        if write:
            condition = and_(condition, T.c.write.is_(True))
        columns.append(func.coalesce(func.sum(case((condition, T.c.calls), else_=0)), 0))
    return select(*columns).where(T.c.api == bindparam("api"), T.c.at > bindparam("oldest"))


def _in_window(rule: RateLimit, now: float) -> ColumnElement[bool]:
    # Same edge as LocalBudget: a grant leaves the window exactly `per_seconds` after it was made.
    condition: ColumnElement[bool] = T.c.at > now - rule.per_seconds
    return and_(condition, T.c.write.is_(True)) if rule.writes_only else condition


def fleet_budget(engine: Engine, **kwargs: Any) -> SharedBudget | None:
    """The shared budget when the database is one that several replicas can share (PostgreSQL);
    None otherwise, so `build_clients` keeps its in-process default."""
    return SharedBudget(engine, **kwargs) if engine.dialect.name == "postgresql" else None


def _lock_key(api: str) -> int:
    """A stable signed 32-bit key for pg_advisory_xact_lock(int, int)."""
    value = zlib.crc32(api.encode())
    return value - (1 << 32) if value >= 1 << 31 else value

