"""The outbox: one durable queue for everything the bot posts on its own."""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Literal

from slack_sdk import WebClient
from sqlalchemy import and_, bindparam, exists, func, insert, or_, select, text, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from bot.blocks import Mrkdwn
from bot.clock import as_utc, utcnow
from bot.marker import mark_message, mark_text
from bot.outbox.errors import Failure, classify
from bot.outbox.fleet import FleetPace
from bot.outbox.pace import Pace, Pacer
from bot.outbox.table import (
    FAILED,
    FINAL_STATES,
    KEY_MAX,
    OPEN_STATES,
    PENDING,
    POST,
    SENDING,
    SENT,
    SKIPPED,
    UPDATE,
    UPLOAD,
    ensure_table,
    outbox_table,
)
from bot.store.db import Store

log = logging.getLogger(__name__)

T = outbox_table
DEFAULT_PACE = Pace()

# A row is claimed only when its channel could be posted to within READY_WITHIN seconds, and put back
# if pacing would make the worker hold it longer than MAX_HOLD: a claimed row waits for nobody else.
READY_WITHIN = 0.25
MAX_HOLD = 2.0
# How long an idle worker waits when rows are due but blocked (lost a claim race, dependency in flight).
BLOCKED_POLL = 0.05

# Seconds this process sends nothing after the shared pace (FleetPace) could not be read.
FLEET_RETRY = 5.0

StalePolicy = Literal["retry", "fail"]
ANALYZE_EVERY = 500  # new rows between two ANALYZEs of the table on PostgreSQL


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def outbox_client(client: WebClient) -> WebClient:
    """`client` without slack_sdk's retry handlers: one call, one HTTP request.

    The rate-limit handler sleeps Retry-After inside the call, holding a worker and a claimed row while
    the pacer knows nothing of it; the connection handler would resend a post the outbox has not yet
    recorded. The outbox does both itself.
    """
    if not client.retry_handlers:
        return client
    clone = copy.copy(client)
    clone.retry_handlers = []
    return clone


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


class _Outcome(Enum):
    SENT = "sent"
    DONE = "done"  # failed, skipped or rescheduled: the claim is over
    RELEASE = "release"  # pacing says not now: give the row and the rest of the batch back


class Outbox:
    """Posts, updates and uploads to Slack from a queue in the bot's database.

    Every call is idempotent on its key: the row is the record that the message was asked for, and
    a key is sent at most once by this code. Rows in one lane (a channel, or the updates of one
    message) go out in order, one at a time; a thread reply or update waits for the message it needs.

    Claiming: a worker moves due rows from `pending` to `sending` with a guarded UPDATE (`state =
    'pending'` in the WHERE, `FOR UPDATE SKIP LOCKED` on PostgreSQL), stamped with a claim id, so each
    row is sent by exactly one worker of one process. Every later write checks that claim id.

    Crashes and duplicates: the only window in which a message can go out twice is between Slack
    accepting a call and this code committing `sent` (a few milliseconds), or a connection error after
    Slack already had the request (a timeout: Slack has no idempotency key for chat.postMessage, so
    such a call is retried). A worker that dies in that window leaves a `sending` row; after
    `stale_after` seconds any worker takes it back. With `stale_policy="retry"` (the default) it is
    sent again: a lost approval card or DM blocks a person silently, a duplicate is visible and
    harmless, because decisions are recorded once whatever card they come from. With
    `stale_policy="fail"` it becomes `failed` with an error saying delivery is unknown, and
    `on_failure` is called. A worker stopped with `stop()` finishes the call in flight and gives
    back the rows it had claimed but not sent, so a clean restart loses and doubles nothing.
    """

    def __init__(
        self,
        store: Store,
        client: WebClient,
        *,
        pace: Pace = DEFAULT_PACE,
        fleet: FleetPace | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = utcnow,
        worker_id: str | None = None,
        on_failure: Callable[[OutboxMessage], object] | None = None,
        max_attempts: int = 10,
        backoff_base: float = 2.0,
        backoff_cap: float = 300.0,
        max_throttled: int = 50,
        stale_after: float = 120.0,
        stale_policy: StalePolicy = "retry",
        poll_interval: float = 1.0,
        batch_size: int | None = None,
        sandbox_marker: bool = False,
    ) -> None:
        self._store = store
        # On the sandbox tenant every message says so (bot/marker.py), added as it is sent.
        self._sandbox_marker = sandbox_marker
        self._engine = store.engine
        self._postgres = store.dialect == "postgresql"
        self._client = outbox_client(client)
        self._clock = clock
        self._sleep = sleep
        self._now = now
        self.worker_id = worker_id or default_worker_id()
        self.on_failure = on_failure
        self.pace = pace
        self._pacer = Pacer(pace, clock)
        self._fleet = fleet
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._max_throttled = max_throttled
        self._stale_after = stale_after
        self._stale_policy = stale_policy
        self._poll_interval = poll_interval
        # About a quarter second of sending per claim: enough to amortise the claim, short enough
        # that two workers never hold each other's share for long.
        self._batch_size = batch_size or max(1, min(25, int(pace.workspace_per_second / 4)))
        self._random = random.Random()

        self._claim_lock = threading.Lock()
        self._inserted_since_analyze = 0
        self._wake = threading.Condition()
        self._generation = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._hint: float | None = None
        self._next_reclaim: float | None = None
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
        with self._claim_lock:
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
        now = self._utcnow()
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
        self._kick()
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

    # --- delivering ---------------------------------------------------------------------------

    def deliver_due(self, max_messages: int | None = None) -> int:
        """One pass: claim due rows, send them (paced), record the outcome. Returns how many were sent."""
        self._maybe_reclaim()
        sent = 0
        lost_races = 0
        while max_messages is None or sent < max_messages:
            want = self._batch_size if max_messages is None else min(self._batch_size, max_messages - sent)
            claim_id, rows, offered = self._claim(want)
            if not rows:
                # Another process took them between our look and our claim: look again, briefly.
                lost_races += 1
                if offered and lost_races < 3:
                    continue
                break
            for i, row in enumerate(rows):
                outcome = _Outcome.RELEASE if self._stopping.is_set() else self._deliver(claim_id, row)
                if outcome is _Outcome.RELEASE:
                    self._release(claim_id, [r.id for r in rows[i:]])
                    break
                if outcome is _Outcome.SENT:
                    sent += 1
            if self._stopping.is_set():
                break
        return sent

    def _claim(self, want: int) -> tuple[str, list[OutboxMessage], bool]:
        now = self._utcnow()
        o, p, d = T.alias("o"), T.alias("p"), T.alias("d")
        query = (
            select(o.c.id, o.c.kind, o.c.channel)
            .where(o.c.state == PENDING, o.c.next_attempt_at <= now, *_claimable(o, p, d))
            .order_by(o.c.id)
            .limit(max(4 * want, 100))
        )
        with self._claim_lock:
            with self._engine.connect() as conn:
                candidates = conn.execute(query).all()
            ids: list[int] = []
            hint: float | None = None
            for row_id, kind, channel in candidates:
                wait = self._pacer.blocked_for(kind, _pace_channel(kind, channel))
                if wait <= READY_WITHIN:
                    if len(ids) < want:
                        ids.append(row_id)
                else:
                    hint = wait if hint is None else min(hint, wait)
            self._hint = hint
            if not ids:
                return "", [], False
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
                    .values(state=SENDING, claim_id=claim_id, claimed_by=self.worker_id, claimed_at=now)
                )
                rows = conn.execute(select(T).where(T.c.claim_id == claim_id).order_by(T.c.id)).all()
        return claim_id, [OutboxMessage.from_row(r) for r in rows], True

    def _deliver(self, claim_id: str, msg: OutboxMessage) -> _Outcome:
        parent: OutboxMessage | None = None
        if msg.depends_on is not None:
            parent = self.get(msg.depends_on)
            if parent is None or parent.state != SENT or not parent.result_channel or not parent.result_ts:
                state = parent.state if parent else "missing"
                self._fail(claim_id, msg, f"dependency_failed: {msg.depends_on} is {state}", attempted=False)
                return _Outcome.DONE
        if msg.kind == UPDATE and self._superseded(msg):
            self._finish(claim_id, msg, state=SKIPPED, last_error="superseded by a newer update")
            return _Outcome.DONE

        channel = _pace_channel(msg.kind, msg.channel)
        if self._pacer.blocked_for(msg.kind, channel) > MAX_HOLD:
            return _Outcome.RELEASE
        delay = self._pacer.reserve(channel, workspace=self._fleet is None)
        if delay > 0:
            self._pause(delay)
        if not self._fleet_slot(channel):
            return _Outcome.RELEASE
        if self._stopping.is_set() or self._pacer.paused_for(msg.kind, channel) > 0:
            # Stopped during the wait, or another worker hit a 429 while we waited for our slot.
            return _Outcome.RELEASE

        try:
            result = self._send(msg, parent)
        except Exception as exc:
            return self._failed_call(claim_id, msg, classify(exc))
        self._pacer.succeeded()
        self._record_sent(claim_id, msg, *result)
        return _Outcome.SENT

    def _fleet_slot(self, channel: str | None) -> bool:
        """Wait for this send's share of the fleet's pace (other replicas send too). False: the wait
        is too long to hold a claimed row for; this process then pauses that scope for the wait, so
        its workers don't claim rows only to give them back."""
        if self._fleet is None:
            return True
        while not self._stopping.is_set():
            try:
                wait, scope = self._fleet.reserve(channel, rate_factor=self._pacer.rate_factor)
            except Exception:
                # The shared pace is unreadable (database trouble): send nothing for a while rather
                # than guess; the row goes back to the queue untouched.
                log.exception("outbox: the fleet's shared pace failed; sending paused for %gs", FLEET_RETRY)
                self._pacer.hold("workspace", None, FLEET_RETRY)
                return False
            if wait <= 0:
                return True
            if wait > MAX_HOLD:
                self._pacer.hold(scope, channel, wait)
                return False
            self._pause(wait)
        return False

    def _send(self, msg: OutboxMessage, parent: OutboxMessage | None) -> tuple[str, str | None, str | None]:
        """Make the Slack call; returns (channel, ts, file id)."""
        p = msg.payload
        if self._sandbox_marker and msg.kind in (POST, UPDATE):
            p = mark_message({"text": p.get("text") or "", "blocks": p.get("blocks") or None})
        if msg.kind == POST:
            kwargs: dict[str, Any] = {"channel": msg.channel, "text": p.get("text") or ""}
            if p.get("blocks") is not None:
                kwargs["blocks"] = p["blocks"]
            if parent is not None:
                kwargs.update(channel=parent.result_channel, thread_ts=parent.result_ts)
            resp = self._client.chat_postMessage(**kwargs)
            return str(resp["channel"]), str(resp["ts"]), None
        if msg.kind == UPDATE:
            assert parent is not None and parent.result_channel and parent.result_ts
            resp = self._client.chat_update(
                channel=parent.result_channel,
                ts=parent.result_ts,
                text=p.get("text") or "",
                blocks=p.get("blocks") or [],
            )
            return str(resp.get("channel") or parent.result_channel), str(resp.get("ts") or parent.result_ts), None
        if msg.kind == UPLOAD:
            channel = msg.channel
            thread_ts = None
            if parent is not None:
                channel, thread_ts = str(parent.result_channel), parent.result_ts
            elif channel[:1] in ("U", "W"):
                # files.completeUploadExternal wants a conversation id, not a user id.
                opened = self._client.conversations_open(users=channel)
                channel = str(opened["channel"]["id"])
            resp = self._client.files_upload_v2(
                channel=channel,
                filename=p["filename"],
                content=base64.b64decode(p["content"]),
                title=p.get("title"),
                initial_comment=(mark_text(p.get("initial_comment") or "") if self._sandbox_marker
                                 else p.get("initial_comment")),
                thread_ts=thread_ts,
            )
            file = resp.get("file") or {}
            return channel, None, str(file.get("id") or "") or None
        raise ValueError(f"unknown outbox kind {msg.kind!r}")

    def _failed_call(self, claim_id: str, msg: OutboxMessage, failure: Failure) -> _Outcome:
        now = self._utcnow()
        if failure.verdict == "throttled":
            channel = _pace_channel(msg.kind, msg.channel)
            scope, seconds = self._pacer.throttled(msg.kind, channel, failure.retry_after)
            if msg.throttled + 1 >= self._max_throttled:
                self._fail(claim_id, msg, f"{failure.detail}: still rate limited after {msg.throttled + 1} tries")
            else:
                log.info("outbox %s: 429, %s paused %.1fs", msg.key, scope, seconds)
                self._reschedule(
                    claim_id,
                    msg,
                    at=now + timedelta(seconds=seconds),
                    last_error=f"{failure.detail} ({scope}, Retry-After {seconds:g}s)",
                    throttled=True,
                )
            if self._fleet is not None and msg.kind == POST:
                # Every replica waits it out, not only this one. The shared buckets are sized for
                # chat.postMessage: a 429 on an update or an upload (their own Slack tiers) pauses
                # that method here only, as the Pacer does.
                try:
                    self._fleet.hold(scope, channel, seconds)
                except Exception:
                    log.exception("outbox: could not share a 429's pause with the other replicas")
            return _Outcome.DONE
        if failure.verdict == "transient" and msg.attempts + 1 < self._max_attempts:
            backoff = min(self._backoff_cap, self._backoff_base * 2**msg.attempts)
            backoff *= 0.5 + self._random.random()  # jitter: don't let every failed row return at once
            log.info("outbox %s: %s, retry in %.1fs", msg.key, failure.detail, backoff)
            self._reschedule(claim_id, msg, at=now + timedelta(seconds=backoff), last_error=failure.detail)
            return _Outcome.DONE
        self._fail(claim_id, msg, failure.detail)
        return _Outcome.DONE

    def _superseded(self, msg: OutboxMessage) -> bool:
        with self._engine.connect() as conn:
            newer = conn.execute(
                select(T.c.id)
                .where(T.c.lane == f"u:{msg.depends_on}", T.c.id > msg.id, T.c.state == PENDING)
                .limit(1)
            ).first()
        return newer is not None

    # --- recording ------------------------------------------------------------------------------

    def _guarded(self, conn: Connection, claim: str, msg: OutboxMessage, **values: Any) -> bool:
        """Write to a row only while it is still ours: `sending` under our claim id."""
        # Columns to SET come in as parameters of one prebuilt statement: building a fresh UPDATE
        # per message costs more CPU than SQLite spends running it.
        result = conn.execute(_GUARDED_UPDATE, {"w_id": msg.id, "w_claim": claim, **values})
        return bool(result.rowcount)

    def _record_sent(self, claim_id: str, msg: OutboxMessage, channel: str, ts: str | None, file: str | None) -> None:
        values = {
            "state": SENT,
            "attempts": msg.attempts + 1,
            "result_channel": channel,
            "result_ts": ts,
            "result_file": file,
            "sent_at": self._utcnow(),
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

    def _reschedule(
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

    def _finish(self, claim_id: str, msg: OutboxMessage, *, state: str, last_error: str) -> bool:
        with self._engine.begin() as conn:
            done = self._guarded(conn, claim_id, msg, state=state, last_error=last_error[:1000], claim_id=None)
        return done

    def _fail(self, claim_id: str, msg: OutboxMessage, error: str, *, attempted: bool = True) -> None:
        with self._engine.begin() as conn:
            done = self._guarded(
                conn,
                claim_id,
                msg,
                state=FAILED,
                last_error=error[:1000],
                claim_id=None,
                attempts=msg.attempts + (1 if attempted else 0),
            )
        if done:
            log.warning("outbox %s (%s to %s) failed: %s", msg.key, msg.kind, msg.channel, error)
            self._notify_failure(msg.key)

    def _notify_failure(self, key: str) -> None:
        if self.on_failure is None:
            return
        failed = self.get(key)
        if failed is None:
            return
        try:
            self.on_failure(failed)
        except Exception:
            log.exception("outbox on_failure hook raised for %s", key)

    def _release(self, claim_id: str, ids: list[int]) -> None:
        if not ids:
            return
        with self._engine.begin() as conn:
            conn.execute(
                update(T)
                .where(T.c.id.in_(ids), T.c.claim_id == claim_id, T.c.state == SENDING)
                .values(state=PENDING, claim_id=None, claimed_by=None, claimed_at=None)
            )
        self._kick()

    # --- workers that died ----------------------------------------------------------------------

    def reclaim_stale(self) -> int:
        """Deal with `sending` rows whose worker went silent over `stale_after` ago (see the class doc)."""
        cutoff = self._utcnow() - timedelta(seconds=self._stale_after)
        with self._engine.connect() as conn:
            stale = conn.execute(select(T).where(T.c.state == SENDING, T.c.claimed_at < cutoff)).all()
        handled = 0
        for row in stale:
            msg = OutboxMessage.from_row(row)
            claim_id = str(row._mapping["claim_id"])
            who = msg.claimed_by or "a worker"
            if self._stale_policy == "fail":
                error = f"unknown: {who} stopped while sending; Slack may or may not have it"
                self._fail(claim_id, msg, error)
                handled += 1
                continue
            with self._engine.begin() as conn:
                if self._guarded(
                    conn,
                    claim_id,
                    msg,
                    state=PENDING,
                    attempts=msg.attempts + 1,
                    next_attempt_at=self._utcnow(),
                    last_error=f"reclaimed: {who} stopped while sending (this retry may duplicate it)",
                    claim_id=None,
                    claimed_by=None,
                    claimed_at=None,
                ):
                    handled += 1
                    log.warning("outbox %s: reclaimed from %s, sending again", msg.key, who)
        if handled:
            self._kick()
        return handled

    def _maybe_reclaim(self) -> None:
        now = self._clock()
        if self._next_reclaim is not None and now < self._next_reclaim:
            return
        self._next_reclaim = now + max(1.0, self._stale_after / 4)
        self.reclaim_stale()

    # --- background workers ---------------------------------------------------------------------

    def start(self, threads: int = 2) -> None:
        """Run `threads` workers that deliver whatever comes due, woken when something is queued."""
        if self._threads:
            return
        self._stopping.clear()
        for i in range(threads):
            thread = threading.Thread(target=self._work, name=f"outbox-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the workers: each finishes the call in flight and gives back rows it claimed but didn't send."""
        self._stopping.set()
        self._kick()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads = []
        self._stopping.clear()

    def close(self) -> None:
        """`stop`, then close what the outbox holds of its own (the shared pace's connections)."""
        self.stop()
        if self._fleet is not None:
            self._fleet.close()

    def wait_idle(self, timeout: float) -> bool:
        """True once no row is queued or being sent (every row sent, failed or skipped), by any process."""
        deadline = time.monotonic() + timeout
        while True:
            if self.pending_count() == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._wake:
                self._wake.wait(min(0.02, remaining))

    def _work(self) -> None:
        while not self._stopping.is_set():
            with self._wake:
                seen = self._generation
            try:
                self.deliver_due()
                delay = self._idle_delay()
            except Exception:
                # The database went away (PostgreSQL restart, disk full): keep the worker, try again.
                log.exception("outbox worker %s: delivery pass failed", threading.current_thread().name)
                delay = self._poll_interval
            with self._wake:
                if self._generation == seen and not self._stopping.is_set():
                    self._wake.wait(delay)

    def _idle_delay(self) -> float:
        """Until the next row could come due: its retry time, a paced channel freeing up, or a poll."""
        o, p, d = T.alias("o"), T.alias("p"), T.alias("d")
        with self._engine.connect() as conn:
            first = conn.execute(
                select(func.min(o.c.next_attempt_at)).where(o.c.state == PENDING, *_claimable(o, p, d))
            ).scalar()
        delay = self._poll_interval
        if first is not None:
            due_in = (as_utc(first) - self._utcnow()).total_seconds()
            delay = min(delay, due_in if due_in > 0 else BLOCKED_POLL)
        if self._hint is not None:
            delay = min(delay, self._hint)
        return max(0.005, delay)

    def _kick(self) -> None:
        with self._wake:
            self._generation += 1
            self._wake.notify_all()

    def _pause(self, seconds: float) -> None:
        if self._sleep is time.sleep:
            # Real time: let stop() cut a pacing wait short.
            self._stopping.wait(seconds)
        else:
            self._sleep(seconds)

    def _utcnow(self) -> datetime:
        return as_utc(self._now())


_GUARDED_UPDATE = update(T).where(
    T.c.id == bindparam("w_id"), T.c.claim_id == bindparam("w_claim"), T.c.state == SENDING
)


def _claimable(o: Any, p: Any, d: Any) -> list[ColumnElement[bool]]:
    """Head of its lane (nothing older in it is queued or in flight), and its dependency is settled."""
    older_open = exists().where(p.c.lane == o.c.lane, p.c.id < o.c.id, p.c.state.in_(OPEN_STATES))
    dependency_settled = exists().where(and_(d.c.key == o.c.depends_on, d.c.state.in_(FINAL_STATES)))
    return [~older_open, or_(o.c.depends_on.is_(None), dependency_settled)]


def _pace_channel(kind: str, channel: str) -> str | None:
    # The 1/s per channel limit is on posting; chat.update is limited per workspace (Tier 3).
    return None if kind == UPDATE else channel


def _check(key: str, channel: str) -> None:
    if not key or len(key) > KEY_MAX:
        raise ValueError(f"outbox key must be 1..{KEY_MAX} characters")
    if not channel:
        raise ValueError("outbox channel is empty")


def _plain_blocks(blocks: Sequence[Any] | None) -> list[Any] | None:
    if blocks is None:
        return None
    return [b.to_dict() if hasattr(b, "to_dict") else b for b in blocks]



