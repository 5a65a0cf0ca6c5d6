"""What the bot is doing right now, for its logs and its audit rows: the log context.

A Slack request binds its correlation id, the Slack user and team (bot/app.py's first middleware); a change
request's execution binds its id (workflows/changes.py); a scheduled job binds its name and run. The context
lives in a `contextvars.ContextVar`, so it follows the code across function calls, and `BackgroundRunner`
copies it into the work it runs after the ack. Every log record then carries it (`ContextFilter`), in both
formats, and the audit row of a Microsoft write takes the ids from it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

# The fields, in the order the JSON format writes them after the record's own.
FIELDS = ("correlation_id", "slack_user", "slack_team", "change_request", "job")

_EMPTY: MappingProxyType[str, Any] = MappingProxyType({})
_context: contextvars.ContextVar[MappingProxyType[str, Any]] = contextvars.ContextVar("mam_log_context",
                                                                                       default=_EMPTY)


def current() -> MappingProxyType[str, Any]:
    """The fields bound here (read-only): {} outside any request, change or job."""
    return _context.get()


@contextmanager
def bind(**fields: Any) -> Iterator[MappingProxyType[str, Any]]:
    """Add `fields` to the context for the block (None or '' leaves a field out); nested binds add to outer ones."""
    merged = dict(_context.get())
    merged.update({k: v for k, v in fields.items() if v not in (None, "")})
    token = _context.set(MappingProxyType(merged))
    try:
        yield _context.get()
    finally:
        _context.reset(token)
