"""A rate budget every replica shares, kept in the bot's database.

Quotas are per app registration or per workspace: Microsoft's (Intune: 1,000 requests / 20 s, 100 of
them writes; Defender: 100 / minute and 1,500 / hour) and Slack's posting limits. N replicas each
keeping its own in-process budget would together ask for N times too much. `SharedBudget` keeps a
sliding-window log in a table:
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
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Index, Select, Table, and_, bindparam, case, delete, func, insert, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Field, SQLModel

# The first half of the two-key advisory lock: which feature of the bot holds it (b"mamb").
# The second half is the api's CRC32, so Graph and Defender callers don't wait for each other.
LOCK_NAMESPACE = 0x6D616D62
# Old grants are deleted at most this often per process; they only need to outlive the longest window.
PRUNE_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class RateLimit:
    calls: int
    per_seconds: float
    writes_only: bool = False


Limits = Mapping[str, Sequence[RateLimit]] | Callable[[str], Sequence[RateLimit]]
"""The rules per key: a table, or a function for families of keys (one per Slack channel, say)."""


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


class SharedBudget:
    """A fleet's budget: the same answers as an in-process sliding window (`LocalBudget`), for all
    processes together. `api` is any key of `limits` (up to 32 characters)."""

    def __init__(
        self,
        engine: Engine,
        limits: Limits,
        *,
        clock: Callable[[], float] | None = None,
        keep_for: float | None = None,
        lock_group: Callable[[str], str] | None = None,
    ) -> None:
        """`keep_for`: seconds a grant stays on the log (default: the longest window of a table of
        limits, all it is needed for; pass it when `limits` is a function). `lock_group`: keys that
        map to one group share one lock (one lock per key by default)."""
        self._engine = engine
        self._lock_group: Callable[[str], str] = lock_group or (lambda api: api)
        if callable(limits):
            self._rules: Callable[[str], Sequence[RateLimit]] = limits
            longest = 0.0
        else:
            table = {api: tuple(rules) for api, rules in limits.items()}
            self._rules = lambda api: table.get(api, ())
            longest = max((r.per_seconds for rules in table.values() for r in rules), default=0.0)
        self._clock = clock
        self._postgres = engine.dialect.name == "postgresql"
        self._keep_for = max(longest, keep_for or 0.0)
        self._next_prune = float("-inf")
        # Threads of one process queue here rather than in the database: fewer connections held waiting.
        self._local = threading.Lock()

    def reserve(self, api: str, *, count: int = 1, write: bool = False) -> float:
        """Take `count` calls for `api` and return 0, or take nothing and return seconds to wait."""
        return self.reserve_all((api,), count=count, write=write)[0]

    def reserve_all(self, apis: Sequence[str], *, count: int = 1, write: bool = False) -> tuple[float, str | None]:
        """Take `count` calls from every one of `apis` at once and return (0, None), or take none and
        return the seconds until all could be taken and the key that needs that long (a Slack post
        needs a slot of the workspace's and one of its channel's)."""
        wanted = {api: [r for r in self._rules(api) if write or not r.writes_only] for api in sorted(set(apis))}
        wanted = {api: rules for api, rules in wanted.items() if rules}
        if not wanted:
            return 0.0, None
        with self._local, self._locked(list(wanted)) as (conn, now):
            wait, longest = 0.0, None
            used = iter(self._used(conn, wanted, now))
            for api, rules in wanted.items():
                for rule in rules:
                    in_window = next(used)
                    # A batch larger than a whole window still has to go some time: when the window is empty.
                    need = min(count, rule.calls)
                    if in_window + need > rule.calls:
                        rule_wait = self._wait_for(conn, api, rule, now, in_window + need - rule.calls)
                        if rule_wait > wait:
                            wait, longest = rule_wait, api
            if wait > 0:
                return wait, longest
            conn.execute(_INSERT, [{"api": api, "at": now, "calls": count, "write": write} for api in wanted])
            self._maybe_prune(conn, now)
            return 0.0, None

    def hold(self, api: str, seconds: float) -> None:
        """Grant nothing more for `api`, to any process, for `seconds` (the service said Retry-After).

        Each rule's window is filled with one row dated so that it leaves the window exactly then;
        rows dated in the future count as in the window, so `reserve` answers with the rest of the wait.
        """
        rules = list(self._rules(api))
        if not rules or seconds <= 0:
            return
        with self._local, self._locked([api]) as (conn, now):
            conn.execute(insert(T), [
                {"api": api, "at": now + seconds - rule.per_seconds, "calls": rule.calls, "write": rule.writes_only}
                for rule in rules
            ])
            self._maybe_prune(conn, now)

    def _maybe_prune(self, conn: Connection, now: float) -> None:
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY_SECONDS
            conn.execute(delete(T).where(T.c.at <= now - self._keep_for))

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
    def _locked(self, apis: Sequence[str]) -> Iterator[tuple[Connection, float]]:
        """A transaction that holds the locks of `apis` until it ends, and the time read once they were held."""
        if self._postgres:
            keys = sorted({_lock_key(self._lock_group(api)) for api in apis})  # sorted: no two callers deadlock
            locks = ", ".join(f"pg_advisory_xact_lock(:ns, :k{i})" for i in range(len(keys)))
            with self._engine.begin() as conn:
                # One round trip: the FROM is evaluated first, so the time is read after the locks are
                # granted. A grant lost in a server crash only forgets a few milliseconds of calls, so
                # the commit need not wait for the disk.
                now = conn.execute(
                    text("SELECT extract(epoch FROM clock_timestamp()) FROM (SELECT "  # noqa: S608  (placeholders only)
                         f"set_config('synchronous_commit', 'off', true), {locks}) AS locked"),
                    {"ns": LOCK_NAMESPACE, **{f"k{i}": key for i, key in enumerate(keys)}},
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

    def _used(self, conn: Connection, wanted: Mapping[str, Sequence[RateLimit]], now: float) -> list[int]:
        """Calls in each rule's window, for every api in `wanted` in order, in one query."""
        params: dict[str, object] = {}
        for i, (api, rules) in enumerate(wanted.items()):
            params[f"api{i}"] = api
            for j, rule in enumerate(rules):
                params[f"since{i}_{j}"] = now - rule.per_seconds
        params["oldest"] = now - max(rule.per_seconds for rules in wanted.values() for rule in rules)
        row = conn.execute(_used_query(tuple(tuple(r.writes_only for r in rules) for rules in wanted.values())),
                           params).one()
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


@functools.lru_cache(maxsize=64)
def _used_query(shape: tuple[tuple[bool, ...], ...]) -> Select[Any]:
    """The `_used` query for apis whose rules are `shape` (writes_only of each), built once: building
    SQL expressions costs more CPU than PostgreSQL spends running them (about 1 ms a call)."""
    columns = []
    for i, writes_only in enumerate(shape):
        for j, write in enumerate(writes_only):
            condition = and_(T.c.api == bindparam(f"api{i}"), T.c.at > bindparam(f"since{i}_{j}"))
            if write:
                condition = and_(condition, T.c.write.is_(True))
            columns.append(func.coalesce(func.sum(case((condition, T.c.calls), else_=0)), 0))
    apis: list[Any] = [bindparam(f"api{i}") for i in range(len(shape))]
    return select(*columns).where(T.c.api.in_(apis), T.c.at > bindparam("oldest"))


def _in_window(rule: RateLimit, now: float) -> ColumnElement[bool]:
    # Same edge as LocalBudget: a grant leaves the window exactly `per_seconds` after it was made.
    condition: ColumnElement[bool] = T.c.at > now - rule.per_seconds
    return and_(condition, T.c.write.is_(True)) if rule.writes_only else condition


def _lock_key(api: str) -> int:
    """A stable signed 32-bit key for pg_advisory_xact_lock(int, int)."""
    value = zlib.crc32(api.encode())
    return value - (1 << 32) if value >= 1 << 31 else value

