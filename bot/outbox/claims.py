"""The worker's reads and writes of the outbox table: claim due rows, then record what became of each.

A worker moves due rows from `pending` to `sending` with a guarded UPDATE (`state = 'pending'` in the
WHERE, `FOR UPDATE SKIP LOCKED` on PostgreSQL), stamped with a claim id, so each row is sent by
exactly one worker of one process. Every later write checks that claim id.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from bot.clock import as_utc
from bot.outbox.table import FAILED, FINAL_STATES, OPEN_STATES, PENDING, SENDING, SENT, OutboxMessage, outbox_table
from bot.store.db import Store

log = logging.getLogger(__name__)

T = outbox_table
Candidate = tuple[int, str, str]
"""A due row that could be claimed: (id, kind, channel)."""


class Claims:
    """Claims on outbox rows, and the writes made under them."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine
        self._postgres = store.dialect == "postgresql"

    # --- claiming ---------------------------------------------------------------------------------

    def candidates(self, now: datetime, want: int) -> list[Candidate]:
        """Due rows at the head of their lanes, oldest first: more than `want`, for pacing to choose from."""
        o, p, d = T.alias("o"), T.alias("p"), T.alias("d")
        query = (
            select(o.c.id, o.c.kind, o.c.channel)
            .where(o.c.state == PENDING, o.c.next_attempt_at <= now, *_claimable(o, p, d))
            .order_by(o.c.id)
            .limit(max(4 * want, 100))
        )
        with self._engine.connect() as conn:
            return [(int(row_id), str(kind), str(channel)) for row_id, kind, channel in conn.execute(query).all()]

    def take(self, ids: list[int], worker_id: str, now: datetime) -> tuple[str, list[OutboxMessage]]:
        """Claim those of `ids` still pending: (the claim id, the rows now ours, oldest first)."""
        claim_id = uuid.uuid4().hex
        target: ColumnElement[bool] = T.c.id.in_(ids)
        if self._postgres:
            # Skip rows another process is claiming this instant instead of queueing behind its lock.
            target = T.c.id.in_(
                select(T.c.id).where(T.c.id.in_(ids), T.c.state == PENDING).with_for_update(skip_locked=True)
            )
        with self._engine.begin() as conn:
            conn.execute(
                update(T)
                .where(target, T.c.state == PENDING)
                .values(state=SENDING, claim_id=claim_id, claimed_by=worker_id, claimed_at=now)
            )
            rows = conn.execute(select(T).where(T.c.claim_id == claim_id).order_by(T.c.id)).all()
        return claim_id, [OutboxMessage.from_row(r) for r in rows]

    def first_due(self) -> datetime | None:
        """When the earliest claimable pending row comes due (None: none is queued)."""
        o, p, d = T.alias("o"), T.alias("p"), T.alias("d")
        with self._engine.connect() as conn:
            first = conn.execute(
                select(func.min(o.c.next_attempt_at)).where(o.c.state == PENDING, *_claimable(o, p, d))
            ).scalar()
        return as_utc(first) if first is not None else None

    def superseded(self, msg: OutboxMessage) -> bool:
        """A newer update of the same message is queued behind this one."""
        with self._engine.connect() as conn:
            newer = conn.execute(
                select(T.c.id)
                .where(T.c.lane == f"u:{msg.depends_on}", T.c.id > msg.id, T.c.state == PENDING)
                .limit(1)
            ).first()
        return newer is not None

    def stale(self, cutoff: datetime) -> list[tuple[str, OutboxMessage]]:
        """(claim id, row) of every `sending` row claimed before `cutoff`."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(T).where(T.c.state == SENDING, T.c.claimed_at < cutoff)).all()
        return [(str(row._mapping["claim_id"]), OutboxMessage.from_row(row)) for row in rows]

    # --- recording ----------------------------------------------------------------------------------

    def _guarded(self, conn: Connection, claim: str, msg: OutboxMessage, **values: Any) -> bool:
        """Write to a row only while it is still ours: `sending` under our claim id."""
        # Columns to SET come in as parameters of one prebuilt statement: building a fresh UPDATE
        # per message costs more CPU than SQLite spends running it.
        result = conn.execute(_GUARDED_UPDATE, {"w_id": msg.id, "w_claim": claim, **values})
        return bool(result.rowcount)

    def record_sent(
        self, claim_id: str, msg: OutboxMessage, channel: str, ts: str | None, file: str | None, *, at: datetime
    ) -> None:
        values = {
            "state": SENT,
            "attempts": msg.attempts + 1,
            "result_channel": channel,
            "result_ts": ts,
            "result_file": file,
            "sent_at": at,
            "claim_id": None,
            "last_error": None,
        }
        with self._engine.begin() as conn:
            if not self._guarded(conn, claim_id, msg, **values):
                # Our claim was taken back as stale while Slack was answering. If nobody has claimed
                # the row again yet, recording it now still prevents the duplicate.
                again = conn.execute(update(T).where(T.c.id == msg.id, T.c.state == PENDING).values(**values))
                log.warning(
                    "outbox %s: delivered after its claim went stale (%s)",
                    msg.key,
                    "recorded" if again.rowcount else "another worker has it: it may be sent twice",
                )

    def reschedule(
        self, claim_id: str, msg: OutboxMessage, *, at: datetime, last_error: str, throttled: bool = False
    ) -> None:
        values: dict[str, Any] = {
            "state": PENDING,
            "next_attempt_at": at,
            "last_error": last_error,
            "claim_id": None,
            "claimed_by": None,
            "claimed_at": None,
        }
        if throttled:
            values["throttled"] = msg.throttled + 1
        else:
            values["attempts"] = msg.attempts + 1
        with self._engine.begin() as conn:
            self._guarded(conn, claim_id, msg, **values)

    def finish(self, claim_id: str, msg: OutboxMessage, *, state: str, last_error: str) -> bool:
        with self._engine.begin() as conn:
            return self._guarded(conn, claim_id, msg, state=state, last_error=last_error[:1000], claim_id=None)

    def fail(self, claim_id: str, msg: OutboxMessage, error: str, *, attempted: bool) -> bool:
        """Mark the row `failed`; False if it was no longer ours."""
        with self._engine.begin() as conn:
            return self._guarded(
                conn,
                claim_id,
                msg,
                state=FAILED,
                last_error=error[:1000],
                claim_id=None,
                attempts=msg.attempts + (1 if attempted else 0),
            )

    def retry_stale(self, claim_id: str, msg: OutboxMessage, *, at: datetime, last_error: str) -> bool:
        """Put a stale row back in the queue, due at once; False if its claim moved on meanwhile."""
        with self._engine.begin() as conn:
            return self._guarded(
                conn,
                claim_id,
                msg,
                state=PENDING,
                attempts=msg.attempts + 1,
                next_attempt_at=at,
                last_error=last_error,
                claim_id=None,
                claimed_by=None,
                claimed_at=None,
            )

    def release(self, claim_id: str, ids: list[int]) -> None:
        """Give claimed rows back to the queue untouched."""
        with self._engine.begin() as conn:
            conn.execute(
                update(T)
                .where(T.c.id.in_(ids), T.c.claim_id == claim_id, T.c.state == SENDING)
                .values(state=PENDING, claim_id=None, claimed_by=None, claimed_at=None)
            )


_GUARDED_UPDATE = update(T).where(
    T.c.id == bindparam("w_id"), T.c.claim_id == bindparam("w_claim"), T.c.state == SENDING
)


def _claimable(o: Any, p: Any, d: Any) -> list[ColumnElement[bool]]:
    """Head of its lane (nothing older in it is queued or in flight), and its dependency is settled."""
    older_open = exists().where(p.c.lane == o.c.lane, p.c.id < o.c.id, p.c.state.in_(OPEN_STATES))
    dependency_settled = exists().where(and_(d.c.key == o.c.depends_on, d.c.state.in_(FINAL_STATES)))
    return [~older_open, or_(o.c.depends_on.is_(None), dependency_settled)]
