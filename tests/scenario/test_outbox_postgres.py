"""Two outboxes (two processes' worth: separate engines, pacers and workers) on one queue, on SQLite
and on PostgreSQL: every message is claimed and sent by exactly one of them."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from slack_sdk import WebClient
from sqlalchemy import create_engine, func, make_url, select, text
from sqlalchemy.exc import SQLAlchemyError

from bot.console.fake_slack import BOT_TOKEN, FakeSlack, FakeUser
from bot.outbox import SENT, Outbox, OutboxSettings, Pace
from bot.outbox.table import outbox_table
from bot.store import Store, create_store
from bot.store.engine import normalise_url

POSTGRES_URL = os.environ.get("MAM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
USERS = [f"UTWO{i:04d}" for i in range(150)]
# Each process gets half of what the fake allows: pacing is per process.
PACE = Pace(channel_per_second=50, channel_burst=5, workspace_per_second=400, workspace_burst=40)

StoreFactory = Callable[[], Store]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    for user in USERS:
        fake.add_user(FakeUser(user, user.lower()))
    fake.rate_limit("chat.postMessage", per_second=800, burst=80)
    yield fake
    fake.stop()


@pytest.fixture
def sqlite_stores(tmp_path: Path) -> Iterator[StoreFactory]:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    made: list[Store] = []

    def new_store() -> Store:
        made.append(create_store(url))
        return made[-1]

    yield new_store
    for store in made:
        store.close()


@pytest.fixture
def postgres_stores() -> Iterator[StoreFactory]:
    """Stores on the PostgreSQL server, in a schema of their own that is dropped afterwards."""
    url = normalise_url(POSTGRES_URL)
    shown = make_url(url).render_as_string(hide_password=True)
    admin = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {shown} (set MAM_TEST_POSTGRES_URL): {exc.__class__.__name__}: "
                    f"{str(exc.orig if hasattr(exc, 'orig') else exc).strip().splitlines()[0]}")
    schema = f"outbox_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    made: list[Store] = []

    def new_store() -> Store:
        engine = create_engine(url, connect_args={"options": f"-csearch_path={schema}"}, pool_size=10)
        made.append(Store(engine))  # no create_all: the outbox makes its own table
        return made[-1]

    try:
        yield new_store
    finally:
        for store in made:
            store.close()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stores(request: pytest.FixtureRequest) -> StoreFactory:
    return request.getfixturevalue(f"{request.param}_stores")


def outbox(stores: StoreFactory, slack: FakeSlack, name: str) -> Outbox:
    return Outbox(stores(), WebClient(token=BOT_TOKEN, base_url=slack.api_url),
                  settings=OutboxSettings(pace=PACE), worker_id=name)


def accepted(slack: FakeSlack) -> Counter[str]:
    return Counter(str(c.args.get("text")) for c in slack.calls_to("chat.postMessage") if c.ok)


def senders(store: Store) -> Counter[str]:
    t = outbox_table
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.c.claimed_by, func.count()).where(t.c.state == SENT).group_by(t.c.claimed_by))
        return Counter({str(who): int(n) for who, n in rows})


def test_two_processes_drain_one_queue_without_duplicates(stores: StoreFactory, slack: FakeSlack) -> None:
    a, b = outbox(stores, slack, "proc-a"), outbox(stores, slack, "proc-b")
    keys = [f"dm:{i}" for i in range(300)]
    for i, key in enumerate(keys[:150]):  # queued before either starts: both go after the same rows
        (a if i % 2 else b).post(key, channel=USERS[i % len(USERS)], text=key)
    a.start(threads=2)
    b.start(threads=2)

    def more(box: Outbox, part: list[str]) -> None:
        for key in part:
            n = int(key.partition(":")[2])
            box.post(key, channel=USERS[n % len(USERS)], text=key)

    queuers = [threading.Thread(target=more, args=(box, keys[150 + i :: 2])) for i, box in enumerate((a, b))]
    for q in queuers:
        q.start()
    for q in queuers:
        q.join()
    assert a.wait_idle(20) and b.wait_idle(1), f"{a.pending_count()} messages still queued"
    a.stop()
    b.stop()

    assert accepted(slack) == Counter(keys)
    assert a.failed() == [] and b.pending_count() == 0
    by = senders(a.store)
    assert sum(by.values()) == len(keys) and set(by) == {"proc-a", "proc-b"}, by


def test_one_process_stops_mid_burst_and_the_other_finishes(stores: StoreFactory, slack: FakeSlack) -> None:
    a, b = outbox(stores, slack, "proc-a"), outbox(stores, slack, "proc-b")
    keys = [f"dm:{i}" for i in range(200)]
    for i, key in enumerate(keys):
        a.post(key, channel=USERS[i % len(USERS)], text=key)
    a.start(threads=2)
    deadline = time.monotonic() + 10
    while sum(accepted(slack).values()) < 50 and time.monotonic() < deadline:
        time.sleep(0.005)
    b.start(threads=2)
    a.stop()  # what it had claimed but not sent goes back to the queue for b
    assert b.wait_idle(20), f"{b.pending_count()} messages still queued"
    b.stop()
    assert accepted(slack) == Counter(keys)
    assert b.failed() == []


def test_the_same_key_from_two_processes_at_once_is_one_message(stores: StoreFactory, slack: FakeSlack) -> None:
    a, b = outbox(stores, slack, "proc-a"), outbox(stores, slack, "proc-b")
    start = threading.Barrier(8)
    returned: list[int] = []

    def race(box: Outbox, n: int) -> None:
        start.wait()
        for i in range(20):
            returned.append(box.post(f"same:{i}", channel=USERS[i], text=f"same:{i} from {n}").id)

    racers = [threading.Thread(target=race, args=((a, b)[n % 2], n)) for n in range(8)]
    for r in racers:
        r.start()
    for r in racers:
        r.join()
    assert len(set(returned)) == 20 and a.pending_count() == 20
    assert a.deliver_due() + b.deliver_due() == 20
    assert a.deliver_due() + b.deliver_due() == 0
    sent = accepted(slack)
    assert sum(sent.values()) == 20  # one text per key: whichever racer's call won the INSERT
    assert Counter(t.split(" from ")[0] for t in sent.elements()) == Counter(f"same:{i}" for i in range(20))
