"""The append-only audit log: rows are inserted, never updated or deleted."""

from __future__ import annotations

import csv
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

from sqlalchemy import insert
from sqlmodel import col, select

from bot.clock import utcnow
from bot.store.db import Store
from bot.store.models import AuditEntry
from bot.text import csv_cell

log = logging.getLogger(__name__)


WRITE_EVERY_SECONDS = 0.05


class AuditLog:
    def __init__(self, store: Store, clock: Callable[[], datetime] = utcnow) -> None:
        self._store = store
        self._clock = clock
        self._queue: list[dict[str, object]] = []
        self._writing = 0
        self._cond = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closed = False

    def record_soon(self, *, actor: str, action: str, outcome: str, target: str = "", detail: str = "",
                    correlation_id: str = "", graph_request_id: str = "") -> None:
        """Queue a row for the writer thread: the Slack request path never waits for a commit.

        Rows are written in batches every 50 ms (one INSERT for many rows); under load that is what
        keeps the ack path near the floor of an empty Bolt app.
        """
        row = {"at": self._clock(), "actor": actor, "action": action[:128], "target": target[:512],
               "outcome": outcome[:32], "detail": detail[:4000], "correlation_id": correlation_id,
               "graph_request_id": graph_request_id}
        with self._cond:
            self._queue.append(row)
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
                    return
                batch, self._queue = self._queue, []
                self._writing = len(batch)
            try:
                with self._store.engine.begin() as conn:
                    conn.execute(insert(AuditEntry.__table__), batch)  # type: ignore[attr-defined]
            except Exception:
                log.exception("could not write %d audit rows", len(batch))
            finally:
                with self._cond:
                    self._writing = 0
                    self._cond.notify_all()
            time.sleep(WRITE_EVERY_SECONDS)  # let the next rows gather into one batch

    def flush(self, timeout: float = 10.0) -> bool:
        """Until every queued row is written (tests, the console, shutdown)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._writing, timeout=timeout)

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
    ) -> AuditEntry:
        entry = AuditEntry(
            at=self._clock(),
            actor=actor,
            action=action[:128],
            target=target[:512],
            outcome=outcome[:32],
            detail=detail[:4000],
            correlation_id=correlation_id,
            graph_request_id=graph_request_id,
        )
        with self._store.session() as session:
            session.add(entry)
            session.commit()
            session.refresh(entry)
        return entry

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


EXPORT_FIELDS = ["id", "at", "actor", "action", "target", "outcome", "detail", "correlation_id", "graph_request_id"]


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
