"""Slack's pace for the whole fleet: token buckets in the database that every replica draws from.

Each replica's `Pacer` shapes its own sending (bursts, 429 pauses per method, backing off), and is
configured with the fleet's numbers; on its own it would let N replicas send N times too fast. So every
send also takes a token from the workspace's bucket here, and a post to a channel one from that
channel's: one row per bucket (tokens, last refill, held until), refilled and taken by a single
conditional upsert, so the row lock (PostgreSQL) or the write lock (SQLite) makes concurrent takes
queue, and the tokens handed out over any interval, summed over all replicas, never exceed the
bucket's burst plus its rate times the interval. Time is the PostgreSQL server's, so hosts whose
clocks disagree still share one bucket. A 429 one replica earns holds the bucket for everyone until
Retry-After has passed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field, SQLModel

from bot.outbox.pace import Pace, Scope

WORKSPACE_KEY = "workspace"
MAX_BATCH = 3  # workspace tokens taken per round trip, at most (never more than a fifth of the burst)
CHANNEL_KEY = "channel:"  # + channel id


class PaceBucket(SQLModel, table=True):
    """One token bucket: `tokens` as of `last` (epoch seconds), nothing granted before `held_until`."""

    __tablename__ = "slack_pace"

    key: str = Field(primary_key=True, max_length=64)
    tokens: float
    last: float
    held_until: float = 0.0
    """After a 429: no tokens before this (epoch seconds); the bucket refills only from then on."""
    taken: int = 0
    """How many the last take took (a take asks for up to `batch`): read back by the taker."""


# Each connection of the pace's own engine (PostgreSQL): commits that don't wait for the disk (a take
# lost in a server crash forgets a few milliseconds of sending), and no wait on a bucket's row lock
# that outlives a stalled replica.
SESSION_SETTINGS = ("SET synchronous_commit = off", "SET lock_timeout = '2s'",
                    "SET idle_in_transaction_session_timeout = '10s'")


class FleetPace:
    """Shared buckets for Slack's workspace pace and each channel's.

    A send that needs only the workspace's token (DMs, updates, uploads) takes up to `batch` tokens (as
    many whole ones as there are) in one round trip and keeps the rest for this process's next sends,
    for at most (batch - 1) / rate seconds, timed from before the round trip began. A spare is thus
    sent at most that late, so over any interval the fleet could send up to batch - 1 more than the
    bucket allows; the shared bucket's burst is that much smaller, and the limit holds.
    """

    def __init__(self, engine: Engine, pace: Pace, *, clock: Callable[[], float] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """`clock`: epoch seconds for tests; otherwise PostgreSQL's clock, or this host's for SQLite.
        `monotonic`: this process's clock for spare tokens."""
        self._postgres = engine.dialect.name == "postgresql"
        # PostgreSQL: connections of our own (see SESSION_SETTINGS); every send commits here, all on
        # the workspace's row, so waiting for each flush would queue the replicas behind the disk.
        self._engine = _own_engine(engine) if self._postgres else engine
        self._owns_engine = self._engine is not engine
        self._clock = clock
        rate, burst = pace._rate(pace.workspace_per_second), pace._burst(pace.workspace_burst)
        self.batch = max(1, min(MAX_BATCH, int(burst) // 5))
        self._workspace = (rate, burst - (self.batch - 1))
        self._spare_for = (self.batch - 1) / rate
        self._channel = (pace._rate(pace.channel_per_second), pace._burst(pace.channel_burst))
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._spares = 0
        self._spares_until = 0.0
        now = ":now" if clock is not None or not self._postgres else \
            "CAST(extract(epoch FROM statement_timestamp()) AS double precision)"
        least, greatest = ("LEAST", "GREATEST") if self._postgres else ("MIN", "MAX")
        # Only fixed fragments are formatted in (per dialect); every value is a bound parameter.
        # `last` only moves forward: a take that started earlier but got the row later refills nothing.
        refilled = f"{least}(:burst, slack_pace.tokens + {greatest}(0, {now} - slack_pace.last) * :rate)"
        whole = f"FLOOR({refilled})" if self._postgres else refilled  # SQLite's cast truncates, PostgreSQL's rounds
        taken = f"{least}(:n, CAST({whole} AS INTEGER))"  # whole tokens, up to n
        self._take_sql = text(
            "INSERT INTO slack_pace (key, tokens, last, held_until, taken) "  # noqa: S608
            f"VALUES (:key, :burst - :n, {now}, 0, :n) "
            f"ON CONFLICT (key) DO UPDATE SET tokens = {refilled} - {taken}, "
            f"last = {greatest}(slack_pace.last, {now}), taken = {taken} "
            f"WHERE slack_pace.held_until <= {now} AND {refilled} >= 1 "
            "RETURNING taken"
        )
        self._read_sql = text(f"SELECT tokens, last, held_until, {now} FROM slack_pace WHERE key = :key")  # noqa: S608
        # Like the in-process bucket after a 429: at most one token when the hold ends, refilling from then.
        self._hold_sql = text(
            "INSERT INTO slack_pace (key, tokens, last, held_until, taken) "  # noqa: S608
            f"VALUES (:key, 1, {now} + :seconds, {now} + :seconds, 0) "
            f"ON CONFLICT (key) DO UPDATE SET tokens = {least}(slack_pace.tokens, 1), "
            f"last = {greatest}(slack_pace.last, {now} + :seconds), "
            f"held_until = {greatest}(slack_pace.held_until, {now} + :seconds)"
        )

    def reserve(self, channel: str | None, *, rate_factor: float = 1.0) -> tuple[float, Scope]:
        """Take a token from the workspace's bucket (and, for a post to a conversation, the channel's):
        (0, …) when taken, else nothing is taken and the answer is the seconds to wait and which
        bucket makes us wait. `rate_factor` < 1 slows the workspace's refill for this taker (the
        `Pacer` backing off after 429s).

        A DM addressed to a user id takes no channel token: the outbox's lanes already send one
        message per recipient at a time across the fleet, and DMs to one person are far apart.
        """
        ws_rate, ws_burst = self._workspace
        buckets: list[tuple[str, Scope, float, float]] = []
        if channel and not channel.startswith(("U", "W")):
            buckets.append((CHANNEL_KEY + channel, "channel", *self._channel))
        buckets.append((WORKSPACE_KEY, "workspace", ws_rate * rate_factor, ws_burst))
        several = len(buckets) > 1
        if not several:
            with self._lock:
                if self._spares and self._monotonic() <= self._spares_until:
                    self._spares -= 1
                    return 0.0, "workspace"
        started = self._monotonic()  # spares are timed from before the database stamped the take
        taken = 0
        with self._connection() as conn:
            if several:  # all or nothing: a channel token taken before the workspace refused goes back
                conn.exec_driver_sql("BEGIN" if self._postgres else "BEGIN IMMEDIATE")
            try:
                for key, scope, rate, burst in buckets:
                    params = self._params(key=key, rate=rate, burst=burst, n=1 if several else self.batch)
                    got = conn.execute(self._take_sql, params).scalar()
                    if got is None:
                        wait = self._wait(conn, params)
                        if several:
                            conn.exec_driver_sql("ROLLBACK")
                        return wait, scope
                    taken = int(got)
            except BaseException:
                if several:
                    conn.exec_driver_sql("ROLLBACK")
                raise
            if several:
                conn.exec_driver_sql("COMMIT")
        if not several and taken > 1:
            self._keep_spares(taken - 1, started + self._spare_for)
        return 0.0, "workspace"

    def _keep_spares(self, count: int, until: float) -> None:
        with self._lock:
            if self._spares and self._monotonic() <= self._spares_until:
                # another thread's spares are still good: keep both, under the earlier expiry
                self._spares, self._spares_until = self._spares + count, min(self._spares_until, until)
            else:
                self._spares, self._spares_until = count, until

    def close(self) -> None:
        """Close the connections of our own (PostgreSQL); the shared buckets stay for the others."""
        if self._owns_engine:
            self._engine.dispose()

    def hold(self, scope: Scope, channel: str | None, seconds: float) -> None:
        """Slack said 429 with Retry-After `seconds`: the bucket grants nobody a token until then.
        Spares a replica already holds may still go (at most batch - 1 each, gone within
        (batch - 1) / rate seconds); this replica drops its own."""
        key = CHANNEL_KEY + channel if scope == "channel" and channel else WORKSPACE_KEY
        if key == WORKSPACE_KEY:
            with self._lock:
                self._spares = 0
        with self._connection() as conn:
            conn.execute(self._hold_sql, self._params(key=key, seconds=seconds))

    def _params(self, **values: Any) -> dict[str, Any]:
        if self._clock is not None:
            values["now"] = self._clock()
        elif not self._postgres:
            values["now"] = time.time()
        return values

    def _wait(self, conn: Connection, params: dict[str, Any]) -> float:
        """Seconds until the refused bucket has a token again (its hold over, one token refilled)."""
        read = {k: v for k, v in params.items() if k in ("key", "now")}
        tokens, last, held_until, now = conn.execute(self._read_sql, read).one()
        rate, burst = params["rate"], params["burst"]
        start = max(now, held_until)
        refilled = min(burst, tokens + max(0.0, start - last) * rate)
        return max(1e-3, start - now + max(0.0, 1.0 - refilled) / rate)

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A connection whose statements commit on their own (the driver's autocommit): one round trip
        per take; `reserve` opens its own transaction when it needs two takes."""
        with self._engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")


def _own_engine(engine: Engine) -> Engine:
    """A small pool on the same database, its sessions set up by SESSION_SETTINGS (added to whatever
    the URL's own `options` set)."""
    own = create_engine(engine.url, pool_pre_ping=True, pool_size=2, max_overflow=8)

    @event.listens_for(own, "connect")
    def _settings(dbapi_conn: Any, _record: Any) -> None:
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True  # a SET inside the driver's implicit transaction would be rolled back
        with dbapi_conn.cursor() as cur:
            for statement in SESSION_SETTINGS:
                cur.execute(statement)
        dbapi_conn.autocommit = autocommit

    return own


def fleet_pace(engine: Engine, pace: Pace) -> FleetPace | None:
    """The fleet-wide buckets when replicas can share the database (PostgreSQL); None for SQLite,
    which one process uses alone."""
    return FleetPace(engine, pace) if engine.dialect.name == "postgresql" else None
