"""The `outbox` table: one row per message the bot sends on its own."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Column, DateTime, Index, Table, Text, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError
from sqlmodel import Field, SQLModel

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



