"""Time, the one way the bot reads it: everything is UTC, and naive values from a database are UTC."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import overload

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...


@overload
def as_utc(value: None) -> None: ...


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything the bot stores is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_clock(now: Clock | datetime | None) -> Clock:
    """A clock that always answers in UTC (SQLite keeps timestamps without their zone, so every one written
    must be UTC): the wall clock for None, a fixed moment for a datetime, or the given clock converted."""
    if now is None:
        return utcnow
    if isinstance(now, datetime):
        fixed = now.astimezone(UTC)
        return lambda: fixed
    clock = now
    return lambda: clock().astimezone(UTC)
