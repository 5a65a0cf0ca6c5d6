"""The append-only audit log: rows are inserted, never updated or deleted.

Besides what people and the bot decide, it keeps every Microsoft write the bot makes (`record_write`, a
transport listener) with Microsoft's `request-id` and the bot's `client-request-id`: Microsoft support asks
for them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import insert
from sqlmodel import col, select

from bot import logs
from bot.clock import utcnow
from bot.store.db import Store
from bot.store.models import AuditEntry
from bot.text import csv_cell

log = logging.getLogger(__name__)


WRITE_EVERY_SECONDS = 0.05
ACTOR = "mam-bot"  # who makes the Microsoft calls: the bot's app registration, whoever asked for them


class CallAnswer(Protocol):
    """One try of one Microsoft call, as `record_write` reads it: `bot.microsoft.transport.Answer`, typed here
    so that bot.store imports nothing of bot.microsoft."""

    @property
    def api(self) -> str: ...

    @property
    def method(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def status(self) -> int | None: ...

    @property
    def seconds(self) -> float: ...

    @property
    def client_request_id(self) -> str: ...

    @property
    def request_id(self) -> str | None: ...

    @property
    def write(self) -> bool: ...

    @property
    def attempt(self) -> int: ...

    @property
    def endpoint(self) -> str: ...


@dataclass
class LastWrite:
    """The ids of the newest Microsoft write made for a change request ('' until it makes one)."""

    request_id: str = ""
    client_request_id: str = ""


_LIMITS = {"actor": 64, "action": 128, "target": 512, "outcome": 32, "detail": 4000, "correlation_id": 64,
           "graph_request_id": 64, "client_request_id": 64}


def audit_row(at: datetime, **values: str) -> dict[str, Any]:
    """A row's values as the table takes them: each cut to its column, NUL (which PostgreSQL refuses in text) as
    U+FFFD (a person's command text or Microsoft's header could otherwise lose the row); without a correlation id
    given, the one bound where the row is made."""
    row: dict[str, Any] = {"at": at}
    if not values.get("correlation_id"):  # the request's, change's or job's (bot.logs), as its log lines carry
        values["correlation_id"] = str(logs.current().get("correlation_id") or "")
    for name, limit in _LIMITS.items():
        row[name] = str(values.get(name) or "").replace("\x00", "\ufffd")[:limit]
    return row


class AuditLog:
    def __init__(self, store: Store, clock: Callable[[], datetime] = utcnow) -> None:
        self._store = store
        self._clock = clock
        self._queue: list[dict[str, object]] = []
        self._queued = 0  # rows queued since the start
        self._done = 0  # rows the writer is done with, written or not
        self._cond = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closed = False
        self._last_writes: dict[str, LastWrite] = {}

    def record_soon(self, *, actor: str, action: str, outcome: str, target: str = "", detail: str = "",
                    correlation_id: str = "", graph_request_id: str = "", client_request_id: str = "") -> None:
        """Queue a row for the writer thread: the Slack request path never waits for a commit.

        Rows are written in batches every 50 ms (one INSERT for many rows); under load that is what
        keeps the ack path near the floor of an empty Bolt app.
        """
        row = audit_row(self._clock(), actor=actor, action=action, outcome=outcome, target=target, detail=detail,
                        correlation_id=correlation_id, graph_request_id=graph_request_id,
                        client_request_id=client_request_id)
        with self._cond:
            if self._closed and self._writer is None:  # after close (a job that outran the grace): written now
                self._insert([row])
                return
            self._queue.append(row)
            self._queued += 1
            if self._writer is None and not self._closed:
                self._writer = threading.Thread(target=self._write_loop, name="mam-audit", daemon=True)
                self._writer.start()
            self._cond.notify_all()

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue and self._closed:
                    self._writer = None  # rows from now on are written by whoever records them
                    return
                batch, self._queue = self._queue, []
            try:
                self._insert(batch)
            finally:
                with self._cond:
                    self._done += len(batch)
                    self._cond.notify_all()
            time.sleep(WRITE_EVERY_SECONDS)  # let the next rows gather into one batch

    def _insert(self, batch: list[dict[str, object]]) -> None:
        """One INSERT for the batch; if the database refuses it, each row on its own, so one bad row loses only
        itself."""
        table = AuditEntry.__table__  # type: ignore[attr-defined]
        try:
            with self._store.engine.begin() as conn:
                conn.execute(insert(table), batch)
            return
        except Exception:
            if len(batch) == 1:
                log.exception("could not write the audit row %r", batch[0]["action"])
                return
            log.warning("could not write %d audit rows at once; writing them one by one", len(batch))
        for row in batch:
            self._insert([row])

    def flush(self, timeout: float = 10.0) -> bool:
        """Until every row queued before this call is written (tests, the console, shutdown, a change's outcome
        after its writes): rows queued meanwhile don't keep it waiting, however busy the log is."""
        with self._cond:
            queued = self._queued
            return self._cond.wait_for(lambda: self._done >= queued, timeout=timeout)

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def record(
        self,
        *,
        actor: str,
        action: str,
        outcome: str,
        target: str = "",
        detail: str = "",
        correlation_id: str = "",
        graph_request_id: str = "",
        client_request_id: str = "",
    ) -> AuditEntry:
        entry = AuditEntry(**audit_row(
            self._clock(), actor=actor, action=action, outcome=outcome, target=target, detail=detail,
            correlation_id=correlation_id, graph_request_id=graph_request_id, client_request_id=client_request_id))
        with self._store.session() as session:
            session.add(entry)
            session.commit()
            session.refresh(entry)
        return entry

    def record_write(self, answer: CallAnswer) -> None:
        """A transport listener: one row for each try of each Microsoft write, queued (the call never waits for
        it); reads are not recorded. The bot's app makes the call, so the actor is mam-bot; the log context says
        for what (the change request, the job) and for whom (the Slack user)."""
        if not answer.write:
            return
        context = logs.current()
        change = context.get("change_request")
        request_id = answer.request_id or ""
        if change is not None:
            with self._cond:
                last = self._last_writes.get(str(change))
            if last is not None:
                last.request_id, last.client_request_id = request_id, answer.client_request_id
        detail = [f"change #{change}"] if change is not None else []
        if context.get("job"):
            detail.append(f"job {context['job']}")
        if context.get("slack_user"):
            detail.append(f"slack user {context['slack_user']}")
        detail += [f"attempt {answer.attempt}", f"{answer.seconds * 1000:.0f} ms"]
        self.record_soon(actor=ACTOR, action=f"{answer.api} {answer.method} {answer.endpoint}",
                         outcome="no answer" if answer.status is None else str(answer.status),
                         target=urlsplit(answer.url).path, detail=", ".join(detail),
                         correlation_id=context.get("correlation_id") or "", graph_request_id=request_id,
                         client_request_id=answer.client_request_id)

    @contextmanager
    def last_write_of(self, change_request: object) -> Iterator[LastWrite]:
        """While the block runs, the writes `record_write` hears with `change_request` bound in the log context
        update the `LastWrite` it yields: a change's outcome row carries the ids of the last write it made."""
        key, last = str(change_request), LastWrite()
        with self._cond:
            self._last_writes[key] = last
        try:
            yield last
        finally:
            with self._cond:
                if self._last_writes.get(key) is last:
                    del self._last_writes[key]

    def recent(self, limit: int = 20, actor: str | None = None) -> list[AuditEntry]:
        query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
        if actor:
            query = query.where(AuditEntry.actor == actor)
        with self._store.session() as session:
            return list(session.exec(query))

    def iter_all(self, batch: int = 1000) -> Iterator[AuditEntry]:
        """Oldest first, in batches, so an export never holds the whole log."""
        last_id = 0
        while True:
            with self._store.session() as session:
                rows = list(
                    session.exec(
                        select(AuditEntry).where(col(AuditEntry.id) > last_id).order_by(col(AuditEntry.id)).limit(batch)
                    )
                )
            if not rows:
                return
            yield from rows
            last_id = rows[-1].id or last_id


EXPORT_FIELDS = ["id", "at", "actor", "action", "target", "outcome", "detail", "correlation_id", "graph_request_id",
                 "client_request_id"]


def export_rows(entries: Iterator[AuditEntry], fmt: str) -> Iterator[str]:
    """Serialise entries as CSV (with a header) or JSON Lines, one chunk per row."""
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=EXPORT_FIELDS)
        writer.writeheader()
        yield buf.getvalue()
        for entry in entries:
            buf.seek(0)
            buf.truncate()
            # actions and details quote outside text (command lines, names): no cell may start a formula
            writer.writerow({k: csv_cell(_plain(getattr(entry, k))) for k in EXPORT_FIELDS})
            yield buf.getvalue()
    elif fmt == "jsonl":
        for entry in entries:
            yield json.dumps({k: _plain(getattr(entry, k)) for k in EXPORT_FIELDS}) + "\n"
    else:
        raise ValueError(f"unknown format {fmt!r}: use csv or jsonl")


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value
