"""The outbox's worker: claim due rows, send them to Slack at Slack's pace, retry, and give up."""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Literal

from slack_sdk import WebClient

from bot.clock import as_utc
from bot.outbox.claims import Candidate, Claims
from bot.outbox.errors import Failure, classify
from bot.outbox.fleet import FleetPace
from bot.outbox.pace import Pace, Pacer
from bot.outbox.queue import OutboxQueue
from bot.outbox.send import call_slack
from bot.outbox.table import POST, SENT, SKIPPED, UPDATE, OutboxMessage

log = logging.getLogger(__name__)

# A row is claimed only when its channel could be posted to within READY_WITHIN seconds, and put back
# if pacing would make the worker hold it longer than MAX_HOLD: a claimed row waits for nobody else.
READY_WITHIN = 0.25
MAX_HOLD = 2.0
# How long an idle worker waits when rows are due but blocked (lost a claim race, dependency in flight).
BLOCKED_POLL = 0.05

# Seconds this process sends nothing after the shared pace (FleetPace) could not be read.
FLEET_RETRY = 5.0

StalePolicy = Literal["retry", "fail"]


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class OutboxSettings:
    """How the outbox sends: its pace, its retries, when it gives up. The defaults are production's."""

    pace: Pace = field(default_factory=Pace)
    max_attempts: int = 10
    """Calls per message (429s aside) before a transient failure becomes `failed`."""
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    """A transient failure is retried after base * 2**attempts seconds (at most the cap), jittered."""
    max_throttled: int = 50
    """429 answers per message before it becomes `failed`."""
    stale_after: float = 120.0
    stale_policy: StalePolicy = "retry"
    """What becomes of a row left `sending` over `stale_after` seconds: see `Worker`."""
    poll_interval: float = 1.0
    """The longest an idle worker sleeps before looking at the queue again."""
    batch_size: int | None = None
    """Rows claimed at once; None: from the pace (`claim_batch`)."""
    sandbox_marker: bool = False
    """On the sandbox tenant every message says so (bot/marker.py), added as it is sent."""

    @property
    def claim_batch(self) -> int:
        # About a quarter second of sending per claim: enough to amortise the claim, short enough
        # that two workers never hold each other's share for long.
        return self.batch_size or max(1, min(25, int(self.pace.workspace_per_second / 4)))


DEFAULT_SETTINGS = OutboxSettings()


class _Outcome(Enum):
    SENT = "sent"
    DONE = "done"  # failed, skipped or rescheduled: the claim is over
    RELEASE = "release"  # pacing says not now: give the row and the rest of the batch back


class Worker:
    """Delivers the queue: claims due rows (`bot.outbox.claims`), sends them paced, records the outcome.

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
        queue: OutboxQueue,
        client: WebClient,
        settings: OutboxSettings,
        *,
        fleet: FleetPace | None,
        on_failure: Callable[[OutboxMessage], object] | None,
        worker_id: str | None,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        now: Callable[[], datetime],
    ) -> None:
        self._queue = queue
        self._claims = Claims(queue.store)
        self._client = client
        self.settings = settings
        self._fleet = fleet
        self.on_failure = on_failure
        self.worker_id = worker_id or default_worker_id()
        self._clock = clock
        self._sleep = sleep
        self._now = now
        self._pacer = Pacer(settings.pace, clock)
        self._batch_size = settings.claim_batch
        self._random = random.Random()

        self._claim_lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._hint: float | None = None
        self._next_reclaim: float | None = None

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
        with self._claim_lock:
            ids, self._hint = self._ready(self._claims.candidates(now, want), want)
            if not ids:
                return "", [], False
            claim_id, rows = self._claims.take(ids, self.worker_id, now)
        return claim_id, rows, True

    def _ready(self, candidates: list[Candidate], want: int) -> tuple[list[int], float | None]:
        """Up to `want` candidates whose channel this process could post to within READY_WITHIN, and
        the shortest wait among the others (None: nobody waits on pacing)."""
        ids: list[int] = []
        hint: float | None = None
        for row_id, kind, channel in candidates:
            wait = self._pacer.blocked_for(kind, _pace_channel(kind, channel))
            if wait <= READY_WITHIN:
                if len(ids) < want:
                    ids.append(row_id)
            else:
                hint = wait if hint is None else min(hint, wait)
        return ids, hint

    def _deliver(self, claim_id: str, msg: OutboxMessage) -> _Outcome:
        parent: OutboxMessage | None = None
        if msg.depends_on is not None:
            parent = self._queue.get(msg.depends_on)
            if parent is None or parent.state != SENT or not parent.result_channel or not parent.result_ts:
                state = parent.state if parent else "missing"
                self._fail(claim_id, msg, f"dependency_failed: {msg.depends_on} is {state}", attempted=False)
                return _Outcome.DONE
        if msg.kind == UPDATE and self._claims.superseded(msg):
            self._claims.finish(claim_id, msg, state=SKIPPED, last_error="superseded by a newer update")
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
            result = call_slack(self._client, msg, parent, sandbox_marker=self.settings.sandbox_marker)
        except Exception as exc:
            return self._failed_call(claim_id, msg, classify(exc))
        self._pacer.succeeded()
        self._claims.record_sent(claim_id, msg, *result, at=self._utcnow())
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

    # --- after a failed call --------------------------------------------------------------------

    def _failed_call(self, claim_id: str, msg: OutboxMessage, failure: Failure) -> _Outcome:
        now = self._utcnow()
        if failure.verdict == "throttled":
            self._throttled(claim_id, msg, failure, now)
            return _Outcome.DONE
        settings = self.settings
        if failure.verdict == "transient" and msg.attempts + 1 < settings.max_attempts:
            backoff = min(settings.backoff_cap, settings.backoff_base * 2**msg.attempts)
            backoff *= 0.5 + self._random.random()  # jitter: don't let every failed row return at once
            log.info("outbox %s: %s, retry in %.1fs", msg.key, failure.detail, backoff)
            self._claims.reschedule(claim_id, msg, at=now + timedelta(seconds=backoff), last_error=failure.detail)
            return _Outcome.DONE
        self._fail(claim_id, msg, failure.detail)
        return _Outcome.DONE

    def _throttled(self, claim_id: str, msg: OutboxMessage, failure: Failure, now: datetime) -> None:
        """A 429: pause what Slack limited, then retry the row (or give up on it after too many)."""
        channel = _pace_channel(msg.kind, msg.channel)
        scope, seconds = self._pacer.throttled(msg.kind, channel, failure.retry_after)
        if msg.throttled + 1 >= self.settings.max_throttled:
            self._fail(claim_id, msg, f"{failure.detail}: still rate limited after {msg.throttled + 1} tries")
        else:
            log.info("outbox %s: 429, %s paused %.1fs", msg.key, scope, seconds)
            self._claims.reschedule(
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

    def _fail(self, claim_id: str, msg: OutboxMessage, error: str, *, attempted: bool = True) -> None:
        if self._claims.fail(claim_id, msg, error, attempted=attempted):
            log.warning("outbox %s (%s to %s) failed: %s", msg.key, msg.kind, msg.channel, error)
            self._notify_failure(msg.key)

    def _notify_failure(self, key: str) -> None:
        if self.on_failure is None:
            return
        failed = self._queue.get(key)
        if failed is None:
            return
        try:
            self.on_failure(failed)
        except Exception:
            log.exception("outbox on_failure hook raised for %s", key)

    def _release(self, claim_id: str, ids: list[int]) -> None:
        if not ids:
            return
        self._claims.release(claim_id, ids)
        self._queue.doorbell.ring()

    # --- workers that died ----------------------------------------------------------------------

    def reclaim_stale(self) -> int:
        """Deal with `sending` rows whose worker went silent over `stale_after` ago (see the class doc)."""
        cutoff = self._utcnow() - timedelta(seconds=self.settings.stale_after)
        handled = 0
        for claim_id, msg in self._claims.stale(cutoff):
            who = msg.claimed_by or "a worker"
            if self.settings.stale_policy == "fail":
                self._fail(claim_id, msg, f"unknown: {who} stopped while sending; Slack may or may not have it")
                handled += 1
                continue
            error = f"reclaimed: {who} stopped while sending (this retry may duplicate it)"
            if self._claims.retry_stale(claim_id, msg, at=self._utcnow(), last_error=error):
                handled += 1
                log.warning("outbox %s: reclaimed from %s, sending again", msg.key, who)
        if handled:
            self._queue.doorbell.ring()
        return handled

    def _maybe_reclaim(self) -> None:
        now = self._clock()
        if self._next_reclaim is not None and now < self._next_reclaim:
            return
        self._next_reclaim = now + max(1.0, self.settings.stale_after / 4)
        self.reclaim_stale()

    # --- background threads ---------------------------------------------------------------------

    def start(self, threads: int = 2) -> None:
        """Run `threads` workers that deliver whatever comes due, woken when something is queued."""
        if self._threads:
            return
        self._stopping.clear()
        for i in range(threads):
            thread = threading.Thread(target=self._work, name=f"outbox-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()

    @property
    def alive(self) -> bool:
        """False once a started worker thread has died (only a restart mends that: /livez says so)."""
        return all(thread.is_alive() for thread in self._threads)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the workers: each finishes the call in flight and gives back rows it claimed but didn't send."""
        self._stopping.set()
        self._queue.doorbell.ring()
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
            if self._queue.pending_count() == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._queue.doorbell.wait(min(0.02, remaining))

    def _work(self) -> None:
        doorbell = self._queue.doorbell
        while not self._stopping.is_set():
            seen = doorbell.rings()
            try:
                self.deliver_due()
                delay = self._idle_delay()
            except Exception:
                # The database went away (PostgreSQL restart, disk full): keep the worker, try again.
                log.exception("outbox worker %s: delivery pass failed", threading.current_thread().name)
                delay = self.settings.poll_interval
            doorbell.wait(delay, since=seen, unless=self._stopping)

    def _idle_delay(self) -> float:
        """Until the next row could come due: its retry time, a paced channel freeing up, or a poll."""
        first = self._claims.first_due()
        delay = self.settings.poll_interval
        if first is not None:
            due_in = (first - self._utcnow()).total_seconds()
            delay = min(delay, due_in if due_in > 0 else BLOCKED_POLL)
        if self._hint is not None:
            delay = min(delay, self._hint)
        return max(0.005, delay)

    def _pause(self, seconds: float) -> None:
        if self._sleep is time.sleep:
            # Real time: let stop() cut a pacing wait short.
            self._stopping.wait(seconds)
        else:
            self._sleep(seconds)

    def _utcnow(self) -> datetime:
        return as_utc(self._now())


def _pace_channel(kind: str, channel: str) -> str | None:
    # The 1/s per channel limit is on posting; chat.update is limited per workspace (Tier 3).
    return None if kind == UPDATE else channel
