"""The outbox in real time against FakeSlack answering 429s: a burst, a restart, nothing lost or doubled."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from slack_sdk import WebClient

from bot.console.fake_slack import BOT_TOKEN, FakeSlack, FakeUser
from bot.outbox import SENT, Outbox, OutboxSettings, Pace
from bot.store import Store, create_store

USERS = [f"UBURST{i:03d}" for i in range(200)]
CHANNELS = [f"C0ROOM{i:02d}" for i in range(10)]
# The fake's rate, but twice its burst: the first burst meets 429s and the outbox has to back off.
PACE = Pace(channel_per_second=20, channel_burst=5, workspace_per_second=250, workspace_burst=40)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    for user in USERS:
        fake.add_user(FakeUser(user, user.lower()))
    fake.rate_limit("chat.postMessage", per_second=250, burst=20)
    yield fake
    fake.stop()


def client(slack: FakeSlack) -> WebClient:
    return WebClient(token=BOT_TOKEN, base_url=slack.api_url)


def accepted(slack: FakeSlack) -> Counter[str]:
    return Counter(str(c.args.get("text")) for c in slack.calls_to("chat.postMessage") if c.ok)


def sent_count(store: Store) -> int:
    from sqlalchemy import func, select

    from bot.outbox.table import outbox_table as t

    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(t.c.state == SENT)).scalar_one())


def enqueue(outbox: Outbox, keys: list[str], threads: int = 4) -> None:
    """Queue from several threads at once, as commands and workflows do."""

    def one(part: list[str]) -> None:
        for key in part:
            kind, _, n = key.partition(":")
            target = USERS[int(n) % len(USERS)] if kind == "dm" else CHANNELS[int(n) % len(CHANNELS)]
            outbox.post(key, channel=target, text=key)

    workers = [threading.Thread(target=one, args=(keys[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def test_a_burst_with_429s_and_a_restart_loses_and_doubles_nothing(tmp_path: Path, slack: FakeSlack) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    first_keys = [f"dm:{i}" for i in range(200)] + [f"room:{i}" for i in range(50)]
    second_keys = [f"dm:{i}" for i in range(200, 300)]

    store = create_store(url)
    outbox = Outbox(store, client(slack), settings=OutboxSettings(pace=PACE), worker_id="proc-a")
    outbox.start(threads=2)
    enqueue(outbox, first_keys)
    deadline = time.monotonic() + 10
    while sent_count(store) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    outbox.stop()  # mid-burst: rows claimed but not sent go back to the queue
    store.close()
    assert 0 < sum(accepted(slack).values()) < len(first_keys)

    store = create_store(url)
    outbox = Outbox(store, client(slack), settings=OutboxSettings(pace=PACE), worker_id="proc-b")
    outbox.start(threads=2)
    enqueue(outbox, first_keys[::7] + second_keys)  # the repeats are idempotent
    assert outbox.wait_idle(20), f"{outbox.pending_count()} messages still queued"
    outbox.stop()

    assert accepted(slack) == Counter(first_keys + second_keys)  # every key exactly once
    assert outbox.failed() == []
    assert any(c.status == 429 for c in slack.calls_to("chat.postMessage")), "the burst should have met 429s"
    assert sent_count(store) == len(first_keys) + len(second_keys)
    for channel in CHANNELS:  # each room's messages arrived in the order they were queued
        room = [m.text for m in slack.messages(channel)]
        assert len(room) == 5
        assert room == sorted(room, key=lambda k: outbox.get(k).id)  # type: ignore[union-attr]
    store.close()


def test_cards_updates_and_replies_in_the_background(tmp_path: Path, slack: FakeSlack) -> None:
    store = create_store(f"sqlite:///{tmp_path / 'outbox.db'}")
    outbox = Outbox(store, client(slack), settings=OutboxSettings(pace=PACE))
    outbox.start()
    for n in range(20):
        card = f"card:{n}"
        outbox.post(card, channel=USERS[n], text=card)
        outbox.update(f"{card}:v1", of=card, text=f"{card} approved")
        outbox.post(f"{card}:dm", channel=USERS[n], text=f"{card} done", thread_of=card)
    assert outbox.wait_idle(10)
    outbox.stop()
    for n in range(20):
        channel, ts = outbox.where(f"card:{n}") or ("", "")
        message = slack.message(channel, ts)
        assert message is not None and message.text == f"card:{n} approved"
        reply = [m for m in slack.messages(USERS[n]) if m.thread_ts == ts]
        assert [m.text for m in reply] == [f"card:{n} done"]
    assert outbox.failed() == []
    store.close()


def test_stop_interrupts_a_long_pacing_wait(tmp_path: Path, slack: FakeSlack) -> None:
    store = create_store(f"sqlite:///{tmp_path / 'outbox.db'}")
    slow = Pace(workspace_per_second=0.6, workspace_burst=1, headroom=0)
    outbox = Outbox(store, client(slack), settings=OutboxSettings(pace=slow, batch_size=3))
    for i in range(3):
        outbox.post(f"dm:{i}", channel=USERS[i], text=f"dm:{i}")
    outbox.start(threads=1)
    deadline = time.monotonic() + 5
    while not accepted(slack) and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    outbox.stop()
    assert time.monotonic() - started < 1.0
    assert outbox.pending_count() == 2  # given back, not lost
    assert accepted(slack) == {"dm:0": 1}
    store.close()
