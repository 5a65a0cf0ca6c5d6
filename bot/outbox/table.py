"""The `outbox` table: one row per message the bot sends on its own, and `OutboxMessage`, a snapshot of one."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Column, DateTime, Index, Table, Text, inspect
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import DatabaseError
from sqlmodel import Field, SQLModel

from bot.clock import as_utc

log = logging.getLogger(__name__)

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
SKIPPED = "skipped"
FINAL_STATES = (SENT, FAILED, SKIPPED)
OPEN_STATES = (PENDING, SENDING)

POST = "post"
UPDATE = "update"
UPLOAD = "upload"

KEY_MAX = 255


def _ts_column(*, nullable: bool = True, index: bool = False) -> Any:
    # timezone=True: PostgreSQL stores timestamptz; SQLite keeps the text, and every value we write is UTC.
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


class OutboxRow(SQLModel, table=True):
    """A queued Slack post, update or upload.

    `lane` orders delivery: rows in one lane go out one at a time, oldest first (a channel for posts
    and uploads, `u:<key>` for the updates of one message). `depends_on` is the key of the message a
    thread reply or an update needs delivered first.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_state_id", "state", "id"),
        Index("ix_outbox_lane_id", "lane", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=KEY_MAX, unique=True)
    kind: str = Field(max_length=16)
    channel: str = Field(max_length=64)
    lane: str = Field(max_length=KEY_MAX + 2)
    depends_on: str | None = Field(default=None, max_length=KEY_MAX)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(default=PENDING, max_length=16)
    attempts: int = 0
    """Calls that failed or succeeded; 429 answers are counted in `throttled` instead."""
    throttled: int = 0
    next_attempt_at: datetime = _ts_column(nullable=False)
    last_error: str | None = Field(default=None, max_length=1000)
    claimed_by: str | None = Field(default=None, max_length=255)
    claim_id: str | None = Field(default=None, max_length=32)
    claimed_at: datetime | None = _ts_column()
    result_channel: str | None = Field(default=None, max_length=64)
    result_ts: str | None = Field(default=None, max_length=32)
    result_file: str | None = Field(default=None, max_length=64)
    created_at: datetime = _ts_column(nullable=False)
    sent_at: datetime | None = _ts_column()


outbox_table = cast(Table, OutboxRow.__table__)  # type: ignore[attr-defined]


def ensure_table(engine: Engine) -> None:
    """Create the table if missing: `create_store` only creates tables imported before it ran."""
    if inspect(engine).has_table(outbox_table.name):
        return
    try:
        outbox_table.create(engine, checkfirst=True)
    except DatabaseError:
        # Another process created it between our check and our CREATE.
        if not inspect(engine).has_table(outbox_table.name):
            raise
        log.debug("outbox table created concurrently by another process")


@dataclass(frozen=True)
class OutboxMessage:
    """A snapshot of one outbox row."""

    id: int
    key: str
    kind: str
    channel: str
    state: str
    payload: dict[str, Any] = field(repr=False)
    depends_on: str | None
    attempts: int
    throttled: int
    next_attempt_at: datetime
    last_error: str | None
    claimed_by: str | None
    result_channel: str | None
    result_ts: str | None
    result_file: str | None
    created_at: datetime
    sent_at: datetime | None

    @classmethod
    def from_row(cls, row: Row[Any] | Mapping[str, Any]) -> OutboxMessage:
        m: Mapping[str, Any] = dict(row._mapping) if isinstance(row, Row) else row
        return cls(
            id=int(m["id"]),
            key=m["key"],
            kind=m["kind"],
            channel=m["channel"],
            state=m["state"],
            payload=json.loads(m["payload"]),
            depends_on=m["depends_on"],
            attempts=int(m["attempts"]),
            throttled=int(m["throttled"]),
            next_attempt_at=as_utc(m["next_attempt_at"]),
            last_error=m["last_error"],
            claimed_by=m["claimed_by"],
            result_channel=m["result_channel"],
            result_ts=m["result_ts"],
            result_file=m["result_file"],
            created_at=as_utc(m["created_at"]),
            sent_at=as_utc(m["sent_at"]),
        )

    @property
    def text(self) -> str:
        return str(self.payload.get("text") or "")

    @property
    def delivered(self) -> bool:
        return self.state == SENT
