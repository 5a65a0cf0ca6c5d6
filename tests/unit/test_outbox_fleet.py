"""Two replicas' outboxes on one database keep to Slack's pace together (FleetPace), on SQLite and
PostgreSQL. One virtual clock drives both outboxes, the shared budget and FakeSlack's limits, and the
replicas take turns, so nothing here really sleeps and every run is the same."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from sqlalchemy import func, select

from bot.console.fake_slack import BOT_TOKEN, FakeSlack, FakeUser
from bot.outbox import FleetPace, Outbox, OutboxSettings, Pace, fleet_pace
from bot.outbox.table import outbox_table
from bot.store import Store, create_store
from bot.store.db import make_engine
from tests.databases import database_url  # noqa: F401  (fixture)
from tests.unit.test_outbox import FakeTime

PACE = Pace(workspace_per_second=10, workspace_burst=20)  # what each replica is configured with
USERS = [f"UFLEET{i:04d}" for i in range(60)]


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


@pytest.fixture
def slack(ft: FakeTime) -> Iterator[FakeSlack]:
    fake = FakeSlack(clock=ft.monotonic).start()
    for user in USERS:
        fake.add_user(FakeUser(user, user.lower()))
    yield fake
    fake.stop()


@pytest.fixture
def stores(database_url: str) -> Iterator[list[Store]]:  # noqa: F811  (the imported fixture)
    """Two stores on one database: two replicas' worth of connections."""
    first = create_store(database_url)
    made = [first, Store(make_engine(database_url))]
    yield made
    for store in made:
        store.close()


def replica(store: Store, slack: FakeSlack, ft: FakeTime, name: str, *, shared: bool) -> Outbox:
    return Outbox(store, WebClient(token=BOT_TOKEN, base_url=slack.api_url), settings=OutboxSettings(pace=PACE),
                  fleet=FleetPace(store.engine, PACE, clock=ft.monotonic, monotonic=ft.monotonic) if shared else None,
                  clock=ft.monotonic, sleep=ft.sleep, now=ft.now, worker_id=name)


def take_turns(replicas: list[Outbox], ft: FakeTime, *, limit: int = 5000) -> None:
    for _ in range(limit):
        sent = sum(outbox.deliver_due(max_messages=1) for outbox in replicas)
        if replicas[0].pending_count() == 0:
            return
        if not sent:
            ft.advance(0.05)
    raise AssertionError(f"not drained: {replicas[0].pending_count()} left")


@pytest.mark.parametrize("shared", [True, False], ids=["fleet pace", "each replica alone"])
def test_two_replicas_together_stay_within_the_workspace_pace(
    stores: list[Store], slack: FakeSlack, ft: FakeTime, shared: bool
) -> None:
    slack.rate_limit("chat.postMessage", per_second=10, burst=20)  # the workspace's limit, for everyone
    replicas = [replica(store, slack, ft, f"replica-{i}", shared=shared) for i, store in enumerate(stores)]
    for i, user in enumerate(USERS):
        replicas[i % 2].post(f"dm:{i}", channel=user, text=f"nudge {i}")
    started = ft.t

    take_turns(replicas, ft)

    calls = slack.calls_to("chat.postMessage")
    accepted = Counter(str(c.args["channel"]) for c in calls if c.ok)
    assert accepted == dict.fromkeys(USERS, 1)  # every DM delivered, none twice
    with stores[0].engine.connect() as conn:
        by_worker = dict(conn.execute(select(outbox_table.c.claimed_by, func.count()).group_by(
            outbox_table.c.claimed_by)).all())
    assert set(by_worker) == {"replica-0", "replica-1"}  # both replicas really sent
    throttled = sum(1 for c in calls if c.status == 429)
    if shared:
        assert throttled == 0
        # 60 messages at 10/s, after a first burst of at most 20: at least 4 s of virtual time
        assert ft.t - started >= (len(USERS) - 20) / 10
    else:
        # The control: each replica alone keeps its own pace, and together they run into Slack's.
        assert throttled > 0


@pytest.mark.parametrize("shared", [True, False], ids=["fleet pace", "each replica alone"])
def test_two_replicas_posting_to_one_channel_keep_its_pace(
    stores: list[Store], slack: FakeSlack, ft: FakeTime, shared: bool
) -> None:
    slack.rate_limit("chat.postMessage", per_second=1, burst=3, per_channel=True)  # Slack's 1/s per channel
    replicas = [replica(store, slack, ft, f"replica-{i}", shared=shared) for i, store in enumerate(stores)]
    for i in range(12):
        replicas[i % 2].post(f"alert:{i}", channel="C0CONSOLE", text=f"alert {i}")

    take_turns(replicas, ft)

    calls = slack.calls_to("chat.postMessage")
    assert Counter(str(c.args["text"]) for c in calls if c.ok) == {f"alert {i}": 1 for i in range(12)}
    throttled = sum(1 for c in calls if c.status == 429)
    assert (throttled == 0) if shared else (throttled > 0)


def test_a_429_on_one_replica_holds_the_others(stores: list[Store], slack: FakeSlack, ft: FakeTime) -> None:
    slack.rate_limit("chat.postMessage", per_second=0.1, burst=1)  # stricter than the pace: Retry-After 10
    a, b = (replica(store, slack, ft, f"replica-{i}", shared=True) for i, store in enumerate(stores))
    for i, user in enumerate(USERS[:4]):
        a.post(f"dm:{i}", channel=user, text=f"nudge {i}")

    assert a.deliver_due(max_messages=2) == 1  # the first goes, the second earns a 429
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [200, 429]

    ft.advance(5)
    assert b.deliver_due() == 0  # replica b waits out a's Retry-After instead of earning its own 429
    assert len(slack.calls_to("chat.postMessage")) == 2

    ft.advance(5.1)
    assert b.deliver_due(max_messages=1) == 1
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [200, 429, 200]


def test_fleet_pace_only_where_replicas_share_the_database(stores: list[Store]) -> None:
    pace = fleet_pace(stores[0].engine, PACE)
    assert (pace is not None) == (stores[0].dialect == "postgresql")


@pytest.mark.parametrize("holding", [1, 2])
def test_spare_tokens_never_let_the_fleet_exceed_the_pace(stores: list[Store], ft: FakeTime, holding: int) -> None:
    """The worst cases for spares: one or two replicas each take a batch and send one; as their spares
    are about to expire, another takes everything the bucket has refilled and they send their spares
    at the same moment. Together they must still pass the token bucket the Pace describes."""
    pace = Pace(workspace_per_second=8, workspace_burst=20, headroom=0)  # binary-exact token arithmetic
    b, *holders = (FleetPace(stores[i % 2].engine, pace, clock=ft.monotonic, monotonic=ft.monotonic)
                   for i in range(1 + holding))
    assert b.batch > 1  # spares are what this is about
    sent: list[float] = []

    def drain(pace: FleetPace) -> None:
        # DMs take batches; a post to a channel takes a single workspace token, so it gets the last ones
        while pace.reserve(None)[0] == 0 or pace.reserve(f"C0CHAN{len(sent):04d}")[0] == 0:
            sent.append(ft.t)

    for holder in holders:
        assert holder.reserve(None)[0] == 0
        sent.append(ft.t)
    ft.advance(b._spare_for)
    for pace_ in (b, *holders):
        drain(pace_)

    rate, burst = pace._rate(pace.workspace_per_second), pace._burst(pace.workspace_burst)
    tokens, last = burst, sent[0]
    for at in sent:
        tokens = min(burst, tokens + (at - last) * rate) - 1
        last = at
        assert tokens >= -1e-9, f"send {sent.index(at) + 1} at +{at - sent[0]:.3f}s exceeds the pace"
    assert len(sent) >= burst - b.batch  # and the bucket was really drained, not starved


def test_an_unreadable_shared_pace_puts_the_row_back_and_pauses(
    stores: list[Store], slack: FakeSlack, ft: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = replica(stores[0], slack, ft, "replica-0", shared=True)
    outbox.post("dm:0", channel=USERS[0], text="nudge")
    calls: list[str | None] = []

    def broken(channel: str | None, **_: object) -> tuple[float, str]:
        calls.append(channel)
        raise RuntimeError("database went away")

    monkeypatch.setattr(outbox.worker._fleet, "reserve", broken)
    assert outbox.deliver_due() == 0
    row = outbox.get("dm:0")
    assert row is not None and row.state == "pending" and row.attempts == 0  # back in the queue, untouched
    assert outbox.deliver_due() == 0 and len(calls) == 1  # paused: not claimed again at once

    monkeypatch.undo()
    ft.advance(5.1)
    assert outbox.deliver_due() == 1
    assert [c.ok for c in slack.calls_to("chat.postMessage")] == [True]


def test_concurrent_takes_with_tokens_to_spare_are_never_refused(stores: list[Store]) -> None:
    """With the database's own clock: a take that started first but reached the row second must still
    get its token (the refill only moves forward), from threads of two replicas at once."""
    import threading

    roomy = Pace(workspace_per_second=100_000, workspace_burst=100_000, channel_per_second=100_000,
                 channel_burst=100_000)
    paces = [FleetPace(store.engine, roomy) for store in stores]
    refused: list[tuple[float, str]] = []

    def work(pace: FleetPace, i: int) -> None:
        for j in range(60):
            answer = pace.reserve(f"C0CHAN{j % 3}" if (i + j) % 2 else f"U{i}{j:04d}")
            if answer[0] > 0:
                refused.append(answer)

    threads = [threading.Thread(target=work, args=(paces[i % 2], i)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for pace in paces:
        pace.close()
    assert refused == []
