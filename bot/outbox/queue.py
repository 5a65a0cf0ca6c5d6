"""The outbox's queue: what callers use to ask for a Slack message and to read back what became of it."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from bot.clock import as_utc, utcnow
from bot.mrkdwn import Mrkdwn
from bot.outbox.table import (
    FAILED,
    KEY_MAX,
    OPEN_STATES,
    PENDING,
    POST,
    SENT,
    UPDATE,
    UPLOAD,
    OutboxMessage,
    ensure_table,
    outbox_table,
)
from bot.store.db import Store

log = logging.getLogger(__name__)

T = outbox_table
ANALYZE_EVERY = 500  # new rows between two ANALYZEs of the table on PostgreSQL


class Doorbell:
    """Rung whenever a row may have become claimable (queued, or given back): idle workers wake at once."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._rings = 0

    def ring(self) -> None:
        with self._condition:
            self._rings += 1
            self._condition.notify_all()

    def rings(self) -> int:
        with self._condition:
            return self._rings

    def wait(self, timeout: float, *, since: int | None = None, unless: threading.Event | None = None) -> None:
        """Wait up to `timeout` seconds for a ring; not at all if one came after ring count `since`, or
        `unless` is set (both checked under the lock, so a ring between the check and the wait is not lost)."""
        with self._condition:
            if since is not None and self._rings != since:
                return
            if unless is not None and unless.is_set():
                return
            self._condition.wait(timeout)


class OutboxQueue:
    """Queues posts, updates and uploads in the bot's database and reads them back.

    Every call is idempotent on its key: the row is the record that the message was asked for, and
    a key is sent at most once by the worker (`bot.outbox.worker`). Rows in one lane (a channel, or
    the updates of one message) go out in order, one at a time; a thread reply or update waits for the
    message it needs.
    """

    def __init__(self, store: Store, *, now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self._engine = store.engine
        self._postgres = store.dialect == "postgresql"
        self._now = now
        self.doorbell = Doorbell()
        self._statistics_lock = threading.Lock()
        self._inserted_since_analyze = 0
        ensure_table(self._engine)

    # --- queueing -----------------------------------------------------------------------------

    def post(
        self,
        key: str,
        *,
        channel: str,
        text: Mrkdwn,
        blocks: Sequence[Any] | None = None,
        thread_of: str | None = None,
    ) -> OutboxMessage:
        """Queue a chat.postMessage. `channel` may be a user id (U…/W…): Slack opens the DM and the D…
        channel it answers with is recorded. `thread_of` is the key of an earlier post to reply to."""
        if thread_of is not None:
            existing = self.get(key)
            if existing is not None:
                return existing
            self._require(thread_of, "thread_of")
        # Otherwise straight to the INSERT: the unique key answers "already queued" in the same trip.
        _check(key, channel)
        payload = {"text": text, "blocks": _plain_blocks(blocks)}
        return self._insert(key, POST, channel, f"c:{channel}", thread_of, payload)

    def update(self, key: str, *, of: str, text: Mrkdwn, blocks: Sequence[Any] | None = None) -> OutboxMessage:
        """Queue a chat.update of the message posted under key `of`, sent once that one is delivered.

        An update replaces the message: `blocks=None` clears its blocks. That makes the newest queued
        update of a message the whole truth, so older ones still queued are `skipped`.
        """
        existing = self.get(key)
        if existing is not None:
            return existing
        target = self._require(of, "of")
        _check(key, target.channel)
        payload = {"text": text, "blocks": _plain_blocks(blocks) or []}
        return self._insert(key, UPDATE, target.channel, f"u:{of}", of, payload)

    def upload(
        self,
        key: str,
        *,
        channel: str,
        filename: str,
        content: bytes,
        title: str,
        initial_comment: Mrkdwn | None = None,
        thread_of: str | None = None,
    ) -> OutboxMessage:
        """Queue a files_upload_v2 to a channel or (user id) DM. Uploads can't be updated or threaded on."""
        existing = self.get(key)
        if existing is not None:
            return existing
        _check(key, channel)
        if thread_of is not None:
            self._require(thread_of, "thread_of")
        payload = {
            "filename": filename,
            "title": title,
            "initial_comment": initial_comment,
            "content": base64.b64encode(content).decode("ascii"),
        }
        return self._insert(key, UPLOAD, channel, f"c:{channel}", thread_of, payload)

    def _keep_statistics(self) -> None:
        """PostgreSQL plans the claim query from table statistics; a burst of thousands of new rows
        before autovacuum notices makes it choose a nested loop that grows with the square of the
        queue (measured: 40 ms a claim at 2,500 pending, 1.2 ms after ANALYZE)."""
        if not self._postgres:
            return
        with self._statistics_lock:
            self._inserted_since_analyze += 1
            if self._inserted_since_analyze < ANALYZE_EVERY:
                return
            self._inserted_since_analyze = 0
        try:
            with self._engine.begin() as conn:
                conn.execute(text(f"ANALYZE {T.name}"))
        except DBAPIError:
            log.warning("ANALYZE %s failed; the claim query may slow down until autovacuum runs", T.name)

    def _insert(
        self, key: str, kind: str, channel: str, lane: str, depends_on: str | None, payload: dict[str, Any]
    ) -> OutboxMessage:
        now = as_utc(self._now())
        values: dict[str, Any] = {
            "key": key,
            "kind": kind,
            "channel": channel,
            "lane": lane,
            "depends_on": depends_on,
            "payload": json.dumps(payload, separators=(",", ":")),
            "state": PENDING,
            "attempts": 0,
            "throttled": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        try:
            with self._engine.begin() as conn:
                result = conn.execute(insert(T).values(**values))
                row_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        except IntegrityError:
            # Same key queued at the same moment by another thread or process: theirs stands.
            existing = self.get(key)
            if existing is None:
                raise
            return existing
        self.doorbell.ring()
        self._keep_statistics()
        nulls = dict.fromkeys(("last_error", "claimed_by", "result_channel", "result_ts", "result_file", "sent_at"))
        return OutboxMessage.from_row({**values, **nulls, "id": row_id})

    def _require(self, key: str, what: str) -> OutboxMessage:
        target = self.get(key)
        if target is None:
            raise ValueError(f"{what}={key!r}: no message was queued under that key")
        if target.kind != POST:
            raise ValueError(f"{what}={key!r} is a queued {target.kind}; only posts can be updated or replied to")
        return target

    # --- reading ------------------------------------------------------------------------------

    def get(self, key: str) -> OutboxMessage | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(T).where(T.c.key == key)).first()
        return OutboxMessage.from_row(row) if row is not None else None

    def where(self, key: str) -> tuple[str, str] | None:
        """(channel, ts) of the message sent under `key`, once it has been (None for uploads)."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(T.c.result_channel, T.c.result_ts).where(T.c.key == key, T.c.state == SENT)
            ).first()
        if row is None or not row.result_channel or not row.result_ts:
            return None
        return str(row.result_channel), str(row.result_ts)

    def pending_count(self) -> int:
        """Rows not yet in a final state (queued, waiting to retry, or being sent), all processes."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(T.c.state.in_(OPEN_STATES))).scalar_one())

    def failed(self, limit: int = 50) -> list[OutboxMessage]:
        """The most recent failures, newest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(T).where(T.c.state == FAILED).order_by(T.c.id.desc()).limit(limit)).all()
        return [OutboxMessage.from_row(r) for r in rows]


def _check(key: str, channel: str) -> None:
    if not key or len(key) > KEY_MAX:
        raise ValueError(f"outbox key must be 1..{KEY_MAX} characters")
    if not channel:
        raise ValueError("outbox channel is empty")


def _plain_blocks(blocks: Sequence[Any] | None) -> list[Any] | None:
    if blocks is None:
        return None
    return [b.to_dict() if hasattr(b, "to_dict") else b for b in blocks]
