"""Keys of requests already handled: replays and double submits.

`claim(*keys)` records the keys as seen now and returns those that were not seen within `WINDOW`
(those to act on).

On PostgreSQL (any number of replicas) the table decides, in one statement (one round trip, committing
by itself):

    INSERT INTO seen_requests (key, seen_at) VALUES (…), (…)
    ON CONFLICT (key) DO UPDATE SET seen_at = excluded.seen_at WHERE seen_requests.seen_at < :cutoff
    RETURNING key

A row older than the window counts as new again (the update takes it over), so the answer does not
depend on when rows are purged.

On SQLite (one process, by design) the process's memory decides and the table remembers: keys are
checked and recorded in a dictionary under a lock held for microseconds, and a writer thread copies
them to the table within `FLUSH_EVERY` (many keys a statement); at start the keys of the last window
are read back, so a restart still knows them. Measured with `benchmarks/ack_latency.py`, a synchronous
INSERT per request on SQLite (one writer at a time, behind a lock that the holder had to take back
the GIL to release) halved the requests per second and doubled the p99 under load. A `kill -9`
forgets at most the last `FLUSH_EVERY` of keys; a replay of one of those still has to arrive within
five minutes of its signed timestamp.

Old rows (and old keys in memory) are deleted now and then (at most once a `purge_every`), in the
background when a `background` runner is given, never on every request.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, bindparam, create_engine, delete, event, select, text
from sqlalchemy.engine import Engine

from bot.clock import as_utc, utcnow
from bot.store.models import SeenRequest

log = logging.getLogger(__name__)

# Slack's and Bolt's timestamp check is symmetric (±5 minutes): a signed request is accepted for up to
# 10 minutes of wall time, so its key must be remembered at least that long.
WINDOW = timedelta(minutes=10)
PURGE_EVERY = 60.0  # seconds
FLUSH_EVERY = 0.05  # seconds: SQLite's keys reach the table this soon after they are claimed
_ROWS_A_STATEMENT = 400  # two parameters a row, well under SQLite's smallest limit of 999

_TABLE = SeenRequest.__table__  # type: ignore[attr-defined]


def seen_key(kind: str, *parts: str) -> str:
    """`<kind>:<sha-256 of the parts>`: fixed length whatever Slack sends (action ids, view hashes)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", errors="surrogatepass")).hexdigest()
    return f"{kind}:{digest}"


class SeenRequests:
    def __init__(
        self,
        engine: Engine,
        *,
        window: timedelta = WINDOW,
        purge_every: float = PURGE_EVERY,
        now: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        background: Callable[[Callable[[], Any]], Any] | None = None,
    ) -> None:
        """`background`: runs the purge off the request's thread (`BackgroundRunner.submit`)."""
        dialect = engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise ValueError(f"seen requests: unsupported database {dialect!r} (SQLite or PostgreSQL)")
        self._own = _own_engine(engine)
        # Each statement commits by itself: no BEGIN/COMMIT round trips around the one INSERT.
        self._engine = (self._own or engine).execution_options(isolation_level="AUTOCOMMIT")
        self._window = window
        self._purge_every = purge_every
        self._now = now
        self._monotonic = monotonic
        self._background = background
        self._lock = threading.Lock()
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in SQLite's busy
        # handler (up to 100 ms a try): claims queue on a lock of this process instead (SQLite means
        # one process). PostgreSQL's inserts of different keys do not wait for each other.
        self._write_lock: AbstractContextManager[Any] = threading.Lock() if dialect == "sqlite" else nullcontext()
        self._next_purge = monotonic() + purge_every
        self._statements: dict[int, Any] = {}
        # SQLite: memory decides, the table remembers (see the module's docstring)
        self._memory: dict[str, datetime] | None = None
        self._unwritten: list[tuple[str, datetime]] = []
        self._wake = threading.Condition(self._lock)
        self._writing = threading.Lock()  # held from taking a batch until it is in the table
        self._closed = False
        self._writer: threading.Thread | None = None
        if dialect == "sqlite":
            self._memory = self._recent_keys()

    def claim(self, *keys: str) -> set[str]:
        """Record `keys` as seen now; returns the ones not seen within the window (those to act on)."""
        if not keys:
            return set()
        unique = list(dict.fromkeys(keys))
        now = self._now()
        if self._memory is not None:
            fresh = self._claim_in_memory(unique, now)
        else:
            params: dict[str, Any] = {f"key{i}": key for i, key in enumerate(unique)}
            params.update({f"at{i}": now for i in range(len(unique))}, cutoff=now - self._window)
            with self._write_lock, self._engine.connect() as conn:
                fresh = {row[0] for row in conn.execute(self._statement(len(unique)), params)}
        self._maybe_purge()
        return fresh

    def flush(self) -> None:
        """Write the keys claimed so far to the table now (SQLite; on PostgreSQL they already are).
        Returns once they are there, including any the writer thread had taken but not yet written."""
        with self._writing:
            with self._lock:
                batch, self._unwritten = self._unwritten, []
            self._write(batch)

    def _claim_in_memory(self, keys: list[str], now: datetime) -> set[str]:
        assert self._memory is not None
        cutoff = now - self._window
        fresh: set[str] = set()
        with self._lock:
            for key in keys:
                seen_at = self._memory.get(key)
                if seen_at is not None and seen_at >= cutoff:
                    continue
                self._memory.pop(key, None)  # to the end: the dictionary stays in order of time
                self._memory[key] = now
                self._unwritten.append((key, now))
                fresh.add(key)
            if fresh:
                if self._writer is None and not self._closed:
                    self._writer = threading.Thread(target=self._write_behind, name="mam-seen", daemon=True)
                    self._writer.start()
                self._wake.notify()
        return fresh

    def _write_behind(self) -> None:
        while True:
            with self._lock:
                while not self._unwritten and not self._closed:
                    self._wake.wait()
                if self._closed and not self._unwritten:
                    return
            with self._writing:
                with self._lock:
                    batch, self._unwritten = self._unwritten, []
                try:
                    self._write(batch)
                except Exception as exc:  # memory still decides; the table only misses these keys
                    log.warning("seen requests: could not write %d keys to the table: %s", len(batch), exc)
            time.sleep(FLUSH_EVERY)  # what arrives meanwhile goes in the next statement

    def _write(self, batch: list[tuple[str, datetime]]) -> None:
        for start in range(0, len(batch), _ROWS_A_STATEMENT):
            chunk = dict(batch[start:start + _ROWS_A_STATEMENT])  # a key claimed twice: its latest time
            params: dict[str, Any] = {}
            for i, (key, at) in enumerate(chunk.items()):  # each row with the time it was claimed at
                params[f"key{i}"], params[f"at{i}"] = key, at
            params["cutoff"] = max(chunk.values())  # a row already there takes the newer time
            with self._engine.connect() as conn:
                conn.execute(self._statement(len(chunk)), params).all()

    def _recent_keys(self) -> dict[str, datetime]:
        """The keys of the last window, oldest first, from the table (SQLite, at start)."""
        cutoff = self._now() - self._window
        query = select(_TABLE.c.key, _TABLE.c.seen_at).where(_TABLE.c.seen_at >= cutoff).order_by(_TABLE.c.seen_at)
        with self._engine.connect() as conn:
            return {key: as_utc(seen_at) for key, seen_at in conn.execute(query)}

    def _statement(self, count: int) -> Any:
        """The INSERT for `count` keys, made once. The same text on SQLite and PostgreSQL; SQLAlchemy's
        dialect `insert(...).values([...])` would be compiled again on every claim (a multi-row VALUES
        is not cached), about 1 ms of Python on the ack's path."""
        statement = self._statements.get(count)
        if statement is None:
            values = ", ".join(f"(:key{i}, :at{i})" for i in range(count))
            moment = DateTime(timezone=True)
            statement = text(
                f"INSERT INTO seen_requests (key, seen_at) VALUES {values} "  # noqa: S608  (only placeholders)
                "ON CONFLICT (key) DO UPDATE SET seen_at = excluded.seen_at "
                "WHERE seen_requests.seen_at < :cutoff RETURNING key"
            ).bindparams(*(bindparam(f"at{i}", type_=moment) for i in range(count)),
                         bindparam("cutoff", type_=moment))
            self._statements[count] = statement
        return statement

    def forget(self, key: str) -> None:
        """Let `key` through again (a form the bot answered with errors may be sent again unchanged)."""
        with self._writing:  # not while the writer thread has the key in hand
            if self._memory is not None:
                with self._lock:
                    self._memory.pop(key, None)
                    self._unwritten = [(k, at) for k, at in self._unwritten if k != key]
            self._delete(key)

    def _delete(self, key: str) -> None:
        with self._write_lock, self._engine.connect() as conn:
            conn.execute(delete(_TABLE).where(_TABLE.c.key == key))

    def purge(self) -> int:
        """Delete the rows (and keys in memory) older than the window; returns how many rows."""
        cutoff = self._now() - self._window
        if self._memory is not None:
            with self._lock:
                while self._memory:
                    oldest = next(iter(self._memory))
                    if self._memory[oldest] >= cutoff:
                        break
                    del self._memory[oldest]
        with self._write_lock, self._engine.connect() as conn:
            result = conn.execute(delete(_TABLE).where(_TABLE.c.seen_at < cutoff))
        return int(result.rowcount or 0)

    def close(self) -> None:
        """Write what is still in memory, stop the writer, let go of the table's own connections."""
        with self._lock:
            self._closed = True
            self._wake.notify()
        if self._writer is not None:
            self._writer.join(timeout=5)
        try:
            self.flush()
        except Exception as exc:
            log.warning("seen requests: could not write the last keys to the table: %s", exc)
        if self._own is not None:
            self._own.dispose()

    def _maybe_purge(self) -> None:
        with self._lock:
            if self._monotonic() < self._next_purge:
                return
            self._next_purge = self._monotonic() + self._purge_every
        if self._background is not None:
            self._background(self._purge_quietly)
        else:
            self._purge_quietly()

    def _purge_quietly(self) -> None:
        try:
            removed = self.purge()
        except Exception as exc:  # the next purge tries again; claims do not depend on it
            log.warning("seen requests: purge failed: %s", exc)
            return
        if removed:
            log.debug("seen requests: purged %d keys older than %s", removed, self._window)


def _own_engine(engine: Engine) -> Engine | None:
    """Connections of the table's own whose commits don't wait for the disk: a claim is on the path of
    every ack. A crash of the database's host may forget the last moments' keys; the timestamp check
    still refuses anything older than five minutes. None for an in-memory SQLite database (another
    engine would be another database)."""
    url = engine.url
    if engine.dialect.name == "sqlite":
        if not url.database or url.database == ":memory:" or "mode=memory" in str(url):
            return None
        from bot.store.engine import make_engine

        own = make_engine(url.render_as_string(hide_password=False))
        pragma = "PRAGMA synchronous=NORMAL"  # in WAL mode: no fsync per commit, the file stays consistent
    else:
        own = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=16)
        pragma = "SET synchronous_commit = off"

    @event.listens_for(own, "connect")
    def _no_wait_for_the_disk(dbapi_conn: Any, _record: Any) -> None:
        autocommit = getattr(dbapi_conn, "autocommit", None)
        if autocommit is not None:
            dbapi_conn.autocommit = True  # a SET inside psycopg's implicit transaction would be rolled back
        cursor = dbapi_conn.cursor()
        cursor.execute(pragma)
        cursor.close()
        if autocommit is not None:
            dbapi_conn.autocommit = autocommit

    return own
