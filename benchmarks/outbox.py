"""5,000 DMs through the outbox against a Slack that answers 429 beyond a workspace-wide pace.

    .venv/bin/python -m benchmarks.outbox [--messages 5000] [--per-second 200] [--burst 20]
                                          [--replicas 1] [--database-url postgresql+psycopg://...]

FakeSlack limits chat.postMessage to `--per-second` for the whole workspace (429 + Retry-After
beyond it); the outbox's own pace is set to the same numbers, as an operator would set it for a
workspace whose limit they know. Every DM goes to a different user, so only the workspace limit
applies. The queue is filled first, then the workers start; the clock runs from their start until
the queue is empty. `--replicas 2` runs two outboxes, each with its own connections, pacer and
workers, configured with the same pace and sharing it through the database (`FleetPace`), as two
replicas of the bot do on PostgreSQL (here in one process; what is shared lives in the database).

Prints the total time, the floor the pace allows (messages / per second), their ratio (target
<= 1.1), and from FakeSlack's record of accepted calls: delivered exactly once, dropped, failed,
doubled; plus the 429s the outbox earned.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from slack_sdk import WebClient
from sqlalchemy import func, select

from bot.console.fake_slack import BOT_TOKEN, FakeSlack, FakeUser
from bot.outbox import FAILED, FleetPace, Outbox, OutboxSettings, Pace
from bot.outbox.table import outbox_table
from bot.store import Store, create_store
from bot.store.db import make_engine

RATIO_TARGET = 1.1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--per-second", type=float, default=200.0, help="the workspace's chat.postMessage pace")
    parser.add_argument("--burst", type=int, default=20, help="calls the workspace allows at once")
    parser.add_argument("--workers", type=int, default=2, help="outbox worker threads (the bot runs 2)")
    parser.add_argument("--replicas", type=int, default=1, help="outboxes sharing the pace through the database")
    parser.add_argument("--database-url", default=None, help="default: an SQLite file in a temporary folder")
    opts = parser.parse_args(argv)

    users = [f"UBENCH{i:06d}" for i in range(opts.messages)]
    run = uuid.uuid4().hex[:8]  # keys of this run: a reused PostgreSQL database keeps earlier runs' rows
    with tempfile.TemporaryDirectory(prefix="mam-outbox-bench-") as tmp, FakeSlack() as slack:
        for user in users:
            slack.add_user(FakeUser(user, user.lower()))
        slack.rate_limit("chat.postMessage", per_second=opts.per_second, burst=opts.burst)
        url = opts.database_url or f"sqlite:///{Path(tmp) / 'outbox.db'}"
        store = create_store(url)
        stores = [store] + [Store(make_engine(url)) for _ in range(opts.replicas - 1)]
        pace = Pace(workspace_per_second=opts.per_second, workspace_burst=opts.burst)
        # As deps.py builds it: shared wherever replicas could be (PostgreSQL), and for --replicas > 1
        shared = store.dialect == "postgresql" or opts.replicas > 1
        outboxes = [Outbox(s, WebClient(token=BOT_TOKEN, base_url=slack.api_url),
                           settings=OutboxSettings(pace=pace),
                           fleet=FleetPace(s.engine, pace) if shared else None, worker_id=f"replica-{i}")
                    for i, s in enumerate(stores)]
        try:
            started = time.monotonic()
            for i, user in enumerate(users):
                outboxes[i % len(outboxes)].post(f"bench:{run}:{i}", channel=user,
                                                 text=f"Reminder {i}: install Company Portal")
            queued = time.monotonic() - started

            started = time.monotonic()
            for outbox in outboxes:
                outbox.start(threads=opts.workers)
            timeout = 10 * opts.messages / opts.per_second + 60
            drained = all(outbox.wait_idle(timeout=timeout) for outbox in outboxes)
            total = time.monotonic() - started
            for outbox in outboxes:
                outbox.close()

            with store.engine.connect() as conn:
                failed = int(conn.execute(
                    select(func.count()).where(outbox_table.c.key.like(f"bench:{run}:%"),
                                               outbox_table.c.state == FAILED)).scalar_one())
        finally:
            for s in stores:
                s.close()
        calls = slack.calls_to("chat.postMessage")

    accepted = Counter(str(c.args.get("channel")) for c in calls if c.ok)
    per_user = [accepted.get(user, 0) for user in users]
    once = sum(1 for n in per_user if n == 1)
    dropped = sum(1 for n in per_user if n == 0) - failed
    doubled = sum(1 for n in per_user if n > 1)
    throttled = sum(1 for c in calls if c.status == 429)
    floor = opts.messages / opts.per_second
    ratio = total / floor

    print(f"{opts.messages:,} DMs to {opts.messages:,} users; FakeSlack allows chat.postMessage "
          f"{opts.per_second:g}/s (burst {opts.burst}) workspace-wide; outbox pace {opts.per_second:g}/s, "
          f"burst {opts.burst}; {opts.replicas} {'replica' if opts.replicas == 1 else 'replicas'} "
          f"x {opts.workers} workers; database {store.dialect}{', pace shared through it' if shared else ''}")
    print(f"  queued in           {queued:6.1f} s")
    print(f"  delivered in        {total:6.1f} s{'' if drained else ' (gave up waiting: queue not empty)'}")
    print(f"  floor ({opts.messages:,} / {opts.per_second:g}/s)  {floor:6.1f} s")
    print(f"  ratio               {ratio:6.3f}  (target <= {RATIO_TARGET}): {'yes' if ratio <= RATIO_TARGET else 'NO'}")
    print(f"  delivered once      {once:6,}")
    print(f"  dropped             {dropped:6,}")
    print(f"  failed              {failed:6,}")
    print(f"  doubled             {doubled:6,}")
    print(f"  429 answers         {throttled:6,}")
    ok = drained and ratio <= RATIO_TARGET and once == opts.messages
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
