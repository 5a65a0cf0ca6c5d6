"""`Outbox`: the queue callers use and the worker that delivers it, as the one object the bot holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from slack_sdk import WebClient

from bot.clock import utcnow
from bot.outbox.fleet import FleetPace
from bot.outbox.queue import OutboxQueue
from bot.outbox.send import outbox_client
from bot.outbox.table import OutboxMessage
from bot.outbox.worker import DEFAULT_SETTINGS, OutboxSettings, Worker
from bot.store.db import Store


class Outbox(OutboxQueue):
    """Posts, updates and uploads to Slack from a queue in the bot's database.

    Queueing and reading back are the queue's (`bot.outbox.queue`); claiming, pacing, sending,
    retrying and giving up are the worker's (`bot.outbox.worker`), which `start` runs on background
    threads and `deliver_due` runs once, in the caller's thread. `settings` holds the pace and the
    retry tunables; `fleet` shares the pace with other replicas; `on_failure` hears of every message
    that ends `failed`; `clock`, `sleep` and `now` are for tests.
    """

    def __init__(
        self,
        store: Store,
        client: WebClient,
        *,
        settings: OutboxSettings = DEFAULT_SETTINGS,
        fleet: FleetPace | None = None,
        on_failure: Callable[[OutboxMessage], object] | None = None,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(store, now=now)
        # without the client's retry handlers: the worker paces and retries itself, and a job that calls
        # Slack through it (the nudges' user lookups) hears of a 429 at once, to defer rather than sleep
        self.client = outbox_client(client)
        self.worker = Worker(self, self.client, settings, fleet=fleet, on_failure=on_failure,
                             worker_id=worker_id, clock=clock, sleep=sleep, now=now)

    @property
    def worker_id(self) -> str:
        return self.worker.worker_id

    def deliver_due(self, max_messages: int | None = None) -> int:
        """One pass: claim due rows, send them (paced), record the outcome. Returns how many were sent."""
        return self.worker.deliver_due(max_messages)

    def reclaim_stale(self) -> int:
        """Deal with `sending` rows whose worker went silent (see `Worker`)."""
        return self.worker.reclaim_stale()

    def start(self, threads: int = 2) -> None:
        """Run `threads` workers that deliver whatever comes due, woken when something is queued."""
        self.worker.start(threads)

    @property
    def alive(self) -> bool:
        """The workers started are all running (True before `start`)."""
        return self.worker.alive

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the workers: each finishes the call in flight and gives back rows it claimed but didn't send."""
        self.worker.stop(timeout)

    def close(self) -> None:
        """`stop`, then close what the outbox holds of its own (the shared pace's connections)."""
        self.worker.close()

    def wait_idle(self, timeout: float) -> bool:
        """True once no row is queued or being sent (every row sent, failed or skipped), by any process."""
        return self.worker.wait_idle(timeout)
