"""Drafts: what a button or an option stands for, kept server-side so its `value` is a short id.

Slack caps a button's `value` at 2,000 characters and an option's at 150, and a person's words (a
justification, a long group name) have no such cap. So a surface that must carry what someone asked
for to the click saves it here and puts only the draft's id in the value; the click reads it back,
and only the person who made the draft may use it. Drafts older than `MAX_AGE` are deleted (on the
next save) and no longer read.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, DateTime, Text, delete
from sqlmodel import Field, SQLModel

from bot.clock import as_utc, utcnow
from bot.errors import UserError

if TYPE_CHECKING:  # bot.store imports this module to register the table
    from bot.store.db import Store

MAX_AGE = timedelta(days=1)
ID_PREFIX = "d_"


class Draft(SQLModel, table=True):
    """One request made in a message, waiting for its button to be clicked."""

    __tablename__ = "drafts"

    id: str = Field(primary_key=True, max_length=32)  # random: a value can't be guessed from another
    kind: str = Field(max_length=32)
    payload: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


class DraftGone(UserError):
    """The draft behind a button is unknown or older than a day."""


class NotYourDraft(UserError):
    """Someone other than the draft's author clicked its button."""


class Drafts:
    def __init__(self, store: Store, *, now: Callable[[], datetime] = utcnow, max_age: timedelta = MAX_AGE) -> None:
        self._store = store
        self._now = now
        self._max_age = max_age

    def save(self, kind: str, payload: dict[str, Any], created_by: str) -> str:
        """Keep `payload` for `created_by`; returns the id to put in a button's or option's value."""
        draft_id = ID_PREFIX + secrets.token_urlsafe(15)
        now = self._now()
        with self._store.session() as session:
            session.execute(delete(Draft).where(Draft.created_at < now - self._max_age))  # type: ignore[arg-type]
            session.add(Draft(id=draft_id, kind=kind, payload=json.dumps(payload), created_by=created_by,
                              created_at=now))
            session.commit()
        return draft_id

    def load(self, draft_id: str, *, kind: str, user: str) -> dict[str, Any]:
        """The payload saved under `draft_id`, for its author only; UserError in words otherwise."""
        with self._store.session() as session:
            draft = session.get(Draft, draft_id) if draft_id.startswith(ID_PREFIX) else None
        if draft is None or draft.kind != kind or as_utc(draft.created_at) < self._now() - self._max_age:
            raise DraftGone("This button has expired (buttons like it work for a day). Run the command again.")
        if draft.created_by != user:
            raise NotYourDraft("Only the person who asked can use this button.")
        payload: dict[str, Any] = json.loads(draft.payload)
        return payload

    def purge(self) -> int:
        """Delete drafts older than a day; returns how many."""
        with self._store.session() as session:
            result = session.execute(
                delete(Draft).where(Draft.created_at < self._now() - self._max_age))  # type: ignore[arg-type]
            session.commit()
        return int(getattr(result, "rowcount", 0) or 0)
