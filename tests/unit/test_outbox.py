"""The outbox against FakeSlack with a virtual clock: nothing here really sleeps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from sqlalchemy import update

from bot.console.fake_slack import BOT_TOKEN, FakeSlack, FakeUser
from bot.outbox import (
    FAILED,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    Outbox,
    OutboxMessage,
    OutboxSettings,
    Pace,
    outbox_client,
)
from bot.outbox.pace import Pacer
from bot.outbox.table import outbox_table
from bot.store import Store, create_store

FAST = Pace(channel_per_second=100, channel_burst=10, workspace_per_second=100, workspace_burst=50)


class FakeTime:
    """One virtual clock for the outbox (monotonic and wall) and FakeSlack's rate limits."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.epoch = datetime(2030, 1, 1, tzinfo=UTC)
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self.epoch + timedelta(seconds=self.t)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


@pytest.fixture
def slack(ft: FakeTime) -> Iterator[FakeSlack]:
    fake = FakeSlack(clock=ft.monotonic).start()
    yield fake
    fake.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = create_store(f"sqlite:///{tmp_path / 'outbox.db'}")
    yield s
    s.close()


@pytest.fixture
def failures() -> list[OutboxMessage]:
    return []


def make(store: Store, slack: FakeSlack, ft: FakeTime, failures: list[OutboxMessage], **kwargs) -> Outbox:
    kwargs.setdefault("pace", FAST)
    return Outbox(
        store,
        WebClient(token=BOT_TOKEN, base_url=slack.api_url),
        settings=OutboxSettings(**kwargs),
        clock=ft.monotonic,
        sleep=ft.sleep,
        now=ft.now,
        worker_id="test:1",
        on_failure=failures.append,
    )


@pytest.fixture
def outbox(store: Store, slack: FakeSlack, ft: FakeTime, failures: list[OutboxMessage]) -> Outbox:
    return make(store, slack, ft, failures)


def posted(slack: FakeSlack, method: str = "chat.postMessage") -> Counter[str]:
    """Texts of the calls Slack accepted: a key's text appearing twice is a duplicate."""
    return Counter(str(c.args.get("text")) for c in slack.calls_to(method) if c.ok)


def drain(outbox: Outbox, ft: FakeTime, *, step: float = 0.1, limit: int = 1000) -> None:
    for _ in range(limit):
        outbox.deliver_due()
        if outbox.pending_count() == 0:
            return
        ft.advance(step)
    raise AssertionError(f"outbox not drained: {outbox.pending_count()} left")


# --- queueing ----------------------------------------------------------------------------------------


def test_same_key_twice_queues_and_sends_once(outbox: Outbox, slack: FakeSlack) -> None:
    first = outbox.post("k1", channel="C0CONSOLE", text="hello")
    again = outbox.post("k1", channel="C0OTHER", text="something else")
    assert again.id == first.id and again.text == "hello" and again.state == PENDING
    assert outbox.pending_count() == 1

    assert outbox.deliver_due() == 1
    assert outbox.post("k1", channel="C0CONSOLE", text="hello").state == SENT
    assert outbox.deliver_due() == 0
    assert posted(slack) == {"hello": 1}
    assert outbox.where("k1") == ("C0CONSOLE", slack.messages("C0CONSOLE")[0].ts)


def test_update_and_reply_need_an_existing_post(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="no message was queued"):
        outbox.update("u1", of="nope", text="x")
    with pytest.raises(ValueError, match="no message was queued"):
        outbox.post("r1", channel="C0CONSOLE", text="x", thread_of="nope")
    outbox.post("p1", channel="C0CONSOLE", text="card")
    outbox.update("u1", of="p1", text="edited")
    with pytest.raises(ValueError, match="only posts"):
        outbox.update("u2", of="u1", text="x")


def test_dm_by_user_id_records_the_d_channel(outbox: Outbox, slack: FakeSlack) -> None:
    outbox.post("dm1", channel="UENDUSR01", text="your request was filed")
    assert outbox.deliver_due() == 1
    channel, ts = outbox.where("dm1") or ("", "")
    assert channel == "DENDUSR01"
    assert [m.ts for m in slack.messages("UENDUSR01")] == [ts]
    row = outbox.get("dm1")
    assert row is not None and row.channel == "UENDUSR01" and row.result_channel == "DENDUSR01"


def test_update_waits_for_its_post_and_uses_the_recorded_ts(
    outbox: Outbox, slack: FakeSlack, ft: FakeTime
) -> None:
    slack.fail_next("chat.postMessage", "internal_error")
    outbox.post("card", channel="UAPPROV01", text="approve?")
    outbox.update("card:v1", of="card", text="approved by sam")

    assert outbox.deliver_due() == 0
    assert slack.calls_to("chat.update") == []
    assert outbox.get("card:v1").state == PENDING  # type: ignore[union-attr]

    ft.advance(10)
    assert outbox.deliver_due() == 2
    channel, ts = outbox.where("card") or ("", "")
    (call,) = slack.calls_to("chat.update")
    assert (call.args["channel"], call.args["ts"]) == (channel, ts) == ("DAPPROV01", ts)
    message = slack.message(channel, ts)
    assert message is not None and message.text == "approved by sam" and message.edits == 1
    assert outbox.where("card:v1") == (channel, ts)


def test_older_queued_updates_are_skipped_for_the_newest(outbox: Outbox, slack: FakeSlack) -> None:
    outbox.post("card", channel="C0CONSOLE", text="v0")
    for v in range(1, 4):
        outbox.update(f"card:v{v}", of="card", text=f"v{v}")
    assert outbox.deliver_due() == 2  # the post and the newest update
    assert [c.args["text"] for c in slack.calls_to("chat.update")] == ["v3"]
    assert [outbox.get(f"card:v{v}").state for v in range(1, 4)] == [SKIPPED, SKIPPED, SENT]  # type: ignore[union-attr]
    assert slack.messages("C0CONSOLE")[0].text == "v3"


def test_updates_of_one_message_go_in_order(outbox: Outbox, slack: FakeSlack) -> None:
    outbox.post("card", channel="C0CONSOLE", text="v0")
    outbox.deliver_due()
    for v in range(1, 4):
        outbox.update(f"card:v{v}", of="card", text=f"v{v}")
        outbox.deliver_due()
    assert [c.args["text"] for c in slack.calls_to("chat.update")] == ["v1", "v2", "v3"]


def test_thread_reply_goes_under_its_parent(outbox: Outbox, slack: FakeSlack) -> None:
    outbox.post("card", channel="UAPPROV01", text="approve?")
    outbox.post("nudge", channel="UAPPROV01", text="still waiting", thread_of="card")
    assert outbox.deliver_due() == 2
    channel, ts = outbox.where("card") or ("", "")
    reply = slack.calls_to("chat.postMessage")[-1]
    assert reply.args["text"] == "still waiting"
    assert (reply.args["channel"], reply.args["thread_ts"]) == (channel, ts)


def test_upload_to_a_dm(outbox: Outbox, slack: FakeSlack) -> None:
    outbox.upload("report", channel="UADMIN001", filename="r.csv", content=b"a,b\n1,2\n", title="Report",
                  initial_comment="here you go")
    assert outbox.deliver_due() == 1
    row = outbox.get("report")
    assert row is not None and row.state == SENT and row.result_channel == "DADMIN001" and row.result_file
    assert slack.uploaded(row.result_file) == b"a,b\n1,2\n"
    assert outbox.where("report") is None  # Slack shares files asynchronously: no ts to point at


# --- failures ------------------------------------------------------------------------------------


def test_429_retry_after_is_honoured_and_the_message_sent_once(
    outbox: Outbox, slack: FakeSlack, ft: FakeTime
) -> None:
    slack.rate_limit("chat.postMessage", per_second=0.5, burst=1)  # the fake answers Retry-After: 2
    outbox.post("a", channel="UADMIN001", text="a")
    outbox.post("b", channel="UAPPROV01", text="b")

    assert outbox.deliver_due() == 1
    limited = [c for c in slack.calls_to("chat.postMessage") if c.status == 429]
    assert len(limited) == 1 and limited[0].args["text"] == "b"
    b = outbox.get("b")
    assert b is not None and b.state == PENDING and b.throttled == 1 and b.attempts == 0
    assert b.next_attempt_at == ft.now() + timedelta(seconds=2)
    assert "ratelimited" in (b.last_error or "")

    ft.advance(1.5)
    assert outbox.deliver_due() == 0
    assert len(slack.calls_to("chat.postMessage")) == 2  # nothing sent into the pause

    ft.advance(0.5)
    assert outbox.deliver_due() == 1
    calls = slack.calls_to("chat.postMessage")
    assert calls[-1].ok and calls[-1].time - limited[0].time >= 2
    assert posted(slack) == {"a": 1, "b": 1}


def test_429_pauses_the_workspace_for_dms_not_just_the_row(
    outbox: Outbox, slack: FakeSlack, ft: FakeTime
) -> None:
    for user in ("UADMIN001", "UAPPROV01", "UENDUSR01"):
        outbox.post(f"dm:{user}", channel=user, text=user)
    slack.rate_limit("chat.postMessage", per_second=1, burst=1)
    assert outbox.deliver_due() == 2
    # The second DM's 429 paused the workspace: the third waited out the Retry-After before its try.
    calls = slack.calls_to("chat.postMessage")
    assert [c.status for c in calls[:3]] == [200, 429, 200]
    assert calls[2].time - calls[1].time >= 1.0
    drain(outbox, ft)
    assert posted(slack) == {"UADMIN001": 1, "UAPPROV01": 1, "UENDUSR01": 1}


def test_permanent_error_fails_at_once_and_calls_the_hook(
    outbox: Outbox, slack: FakeSlack, failures: list[OutboxMessage]
) -> None:
    slack.fail_next("chat.postMessage", "is_archived")
    outbox.post("card", channel="C0ARCHIVED", text="approve?")
    outbox.update("card:v1", of="card", text="approved")
    outbox.post("other", channel="C0ARCHIVED", text="next in the lane")

    assert outbox.deliver_due() == 1
    card = outbox.get("card")
    assert card is not None and card.state == FAILED and card.last_error == "is_archived" and card.attempts == 1
    assert [f.key for f in failures] == ["card", "card:v1"]
    assert failures[0].last_error == "is_archived"
    assert (failures[1].last_error or "").startswith("dependency_failed")
    assert [f.key for f in outbox.failed()] == ["card:v1", "card"]
    assert posted(slack) == {"next in the lane": 1}  # a failed head does not block its channel


def test_transient_errors_back_off_then_succeed(outbox: Outbox, slack: FakeSlack, ft: FakeTime) -> None:
    slack.fail_next("chat.postMessage", "internal_error", status=500)
    slack.fail_next("chat.postMessage", "service_unavailable")
    outbox.post("k", channel="C0CONSOLE", text="hello")

    assert outbox.deliver_due() == 0
    first = outbox.get("k")
    assert first is not None and first.attempts == 1 and first.last_error == "internal_error"
    wait = (first.next_attempt_at - ft.now()).total_seconds()
    assert 1.0 <= wait <= 3.0  # 2s with ±50% jitter

    ft.advance(wait)
    assert outbox.deliver_due() == 0
    second = outbox.get("k")
    assert second is not None and second.attempts == 2
    assert 2.0 <= (second.next_attempt_at - ft.now()).total_seconds() <= 6.0

    ft.advance(6)
    assert outbox.deliver_due() == 1
    done = outbox.get("k")
    assert done is not None and done.state == SENT and done.attempts == 3 and done.last_error is None
    assert posted(slack) == {"hello": 1}


def test_transient_errors_give_up_after_max_attempts(
    store: Store, slack: FakeSlack, ft: FakeTime, failures: list[OutboxMessage]
) -> None:
    outbox = make(store, slack, ft, failures, max_attempts=2)
    slack.fail_next("chat.postMessage", "internal_error", times=5)
    outbox.post("k", channel="C0CONSOLE", text="hello")
    drain(outbox, ft, step=5)
    assert [(f.key, f.state, f.attempts, f.last_error) for f in failures] == [("k", FAILED, 2, "internal_error")]


def test_connection_error_is_transient(store: Store, ft: FakeTime, failures: list[OutboxMessage]) -> None:
    dead = FakeSlack(clock=ft.monotonic).start()
    url = dead.api_url
    dead.stop()  # nothing listens on that port any more
    outbox = Outbox(store, WebClient(token=BOT_TOKEN, base_url=url, timeout=2), clock=ft.monotonic,
                    sleep=ft.sleep, now=ft.now, on_failure=failures.append)
    outbox.post("k", channel="C0CONSOLE", text="hello")
    assert outbox.deliver_due() == 0
    row = outbox.get("k")
    assert row is not None and row.state == PENDING and (row.last_error or "").startswith("connection:")
    assert failures == []


# --- pacing ----------------------------------------------------------------------------------------


def test_one_channel_is_paced_while_others_go_ahead(
    store: Store, slack: FakeSlack, ft: FakeTime, failures: list[OutboxMessage]
) -> None:
    pace = Pace(channel_per_second=1, channel_burst=1, workspace_per_second=100, workspace_burst=100, headroom=0)
    outbox = make(store, slack, ft, failures, pace=pace)
    for i in range(3):
        outbox.post(f"busy{i}", channel="C0BUSY", text=f"busy{i}")
    outbox.post("quiet", channel="C0QUIET", text="quiet")
    start = ft.monotonic()
    drain(outbox, ft, step=0.05)

    times = {c.args["text"]: c.time - start for c in slack.calls_to("chat.postMessage")}
    assert times["quiet"] < 0.1
    busy = [times[f"busy{i}"] for i in range(3)]
    assert all(b - a >= 0.99 for a, b in pairwise(busy)), busy
    assert busy[-1] < 2.5  # paced, not stalled
    assert [m.text for m in slack.messages("C0BUSY")] == ["busy0", "busy1", "busy2"]  # in order


def test_workspace_pace_spaces_a_burst_of_dms(
    store: Store, slack: FakeSlack, ft: FakeTime, failures: list[OutboxMessage]
) -> None:
    users = [f"UBURST{i:03d}" for i in range(12)]
    for user in users:
        slack.add_user(FakeUser(user, user.lower()))
    pace = Pace(workspace_per_second=10, workspace_burst=2, headroom=0)
    outbox = make(store, slack, ft, failures, pace=pace)
    for user in users:
        outbox.post(f"dm:{user}", channel=user, text=user)
    start = ft.monotonic()
    drain(outbox, ft, step=0.01)
    times = sorted(c.time - start for c in slack.calls_to("chat.postMessage"))
    assert len(times) == 12 and posted(slack) == Counter(users)
    assert times[1] < 0.01  # the burst
    assert 0.99 <= times[-1] <= 1.1  # then 10/s: the floor for 12 with a burst of 2 is 1.0s


def test_pacer_settles_under_a_slower_workspace() -> None:
    t = [0.0]
    pacer = Pacer(Pace(workspace_per_second=100, workspace_burst=10, headroom=0), lambda: t[0])
    scope, seconds = pacer.throttled("post", "UX", retry_after=1)
    assert (scope, seconds) == ("workspace", 1)
    pacer.throttled("post", "UY", retry_after=1)  # same pause: slow down once, not twice
    assert pacer.rate_factor == 0.75
    assert pacer.reserve("UZ") == pytest.approx(1.0)
    assert pacer.paused_for("post", "UZ") == pytest.approx(1.0)
    assert pacer.paused_for("update", None) == pytest.approx(1.0)  # the shared bucket is paused
    t[0] = 2.0
    assert pacer.paused_for("post", "UZ") == 0
    for _ in range(251):  # recovers by 0.1% a send
        pacer.succeeded()
    assert pacer.rate_factor == 1.0


def test_pacer_blames_a_busy_channel_for_its_429() -> None:
    t = [0.0]
    pacer = Pacer(Pace(channel_per_second=1, channel_burst=5, headroom=0), lambda: t[0])
    for _ in range(3):
        pacer.reserve("C1")
    assert pacer.throttled("post", "C1", retry_after=3) == ("channel", 3)
    assert pacer.blocked_for("post", "C1") >= 3
    assert pacer.blocked_for("post", "C2") == 0
    assert pacer.rate_factor == 1.0


# --- crashes and clients ---------------------------------------------------------------------------


def _strand(store: Store, key: str, claimed_at: datetime) -> None:
    """Leave a row as a worker that died mid-send would."""
    with store.engine.begin() as conn:
        conn.execute(
            update(outbox_table)
            .where(outbox_table.c.key == key)
            .values(state=SENDING, claim_id="dead", claimed_by="host:999", claimed_at=claimed_at)
        )


def test_a_dead_workers_row_is_retried_after_stale_after(
    store: Store, slack: FakeSlack, ft: FakeTime, failures: list[OutboxMessage]
) -> None:
    outbox = make(store, slack, ft, failures, stale_after=60)
    outbox.post("k", channel="C0CONSOLE", text="hello")
    _strand(store, "k", ft.now())
    assert outbox.deliver_due() == 0 and outbox.pending_count() == 1

    ft.advance(61)
    outbox.worker._next_reclaim = None  # the check runs every stale_after/4: don't wait for it here
    assert outbox.deliver_due() == 1
    row = outbox.get("k")
    assert row is not None and row.state == SENT and row.attempts == 2 and row.claimed_by == "test:1"
    assert posted(slack) == {"hello": 1}


def test_a_dead_workers_row_can_be_failed_instead(
    store: Store, slack: FakeSlack, ft: FakeTime, failures: list[OutboxMessage]
) -> None:
    outbox = make(store, slack, ft, failures, stale_after=60, stale_policy="fail")
    outbox.post("k", channel="C0CONSOLE", text="hello")
    _strand(store, "k", ft.now() - timedelta(seconds=61))
    assert outbox.reclaim_stale() == 1
    assert [(f.key, f.state) for f in failures] == [("k", FAILED)]
    assert "unknown" in (failures[0].last_error or "")
    assert slack.calls_to("chat.postMessage") == []


def test_slack_sdk_retry_handlers_are_removed(store: Store, slack: FakeSlack, ft: FakeTime) -> None:
    client = WebClient(token=BOT_TOKEN, base_url=slack.api_url,
                       retry_handlers=[ConnectionErrorRetryHandler(), RateLimitErrorRetryHandler()])
    stripped = outbox_client(client)
    assert stripped.retry_handlers == [] and len(client.retry_handlers) == 2
    assert stripped.token == client.token and stripped.base_url == client.base_url

    slack.rate_limit("chat.postMessage", per_second=0.5, burst=1)
    outbox = Outbox(store, client, clock=ft.monotonic, sleep=ft.sleep, now=ft.now)
    outbox.post("a", channel="C0A1", text="a")
    outbox.post("b", channel="C0B1", text="b")
    outbox.deliver_due()
    # One HTTP call per try: the 429 came back to the outbox instead of being slept on inside the SDK.
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [200, 429]


def test_table_is_created_on_a_database_made_before_the_outbox(
    tmp_path: Path, slack: FakeSlack, ft: FakeTime
) -> None:
    from sqlalchemy import create_engine, inspect

    engine = create_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    outbox = Outbox(Store(engine), WebClient(token=BOT_TOKEN, base_url=slack.api_url), clock=ft.monotonic,
                    sleep=ft.sleep, now=ft.now)
    assert inspect(engine).has_table("outbox")
    outbox.post("k", channel="C0CONSOLE", text="x")
    assert outbox.deliver_due() == 1
    engine.dispose()
