"""A bot-like process for the failover test: a scheduler with one fast job and a short lease.

Run as `python -m tests.scenario.lease_worker DATABASE_URL NAME`; it runs until killed.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

from bot.scheduler import Job, Scheduler, interval
from bot.store import create_store


def now() -> datetime:
    return datetime.now(UTC)


def tick() -> str:
    time.sleep(0.05)  # long enough that two overlapping runs would show in the records
    return "tick"


def main() -> None:
    url, name = sys.argv[1], sys.argv[2]
    scheduler = Scheduler(create_store(url), [Job("tick", "a fast job", interval(seconds=0.3), tick)], now=now,
                          holder=name, lease_seconds=1.5, renew_seconds=0.3)
    scheduler.start()
    print("started", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
