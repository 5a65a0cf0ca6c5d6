"""bot/metrics.py and bot/health.py: what each figure counts, what the database says at scrape time, and the
operator's port (issue 17, item 2)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.console.fake_slack import FakeSlack
from bot.console.fake_slack.model import CONSOLE_CHANNEL
from bot.health import Health, OperatorServer
from bot.metrics import Metrics, StateCollector, surface_of
from bot.microsoft.testing import Recorder, harness
from bot.outbox.table import PENDING, SENT, OutboxRow
from bot.settings import Settings
from bot.slack import SlackCallMeter, slack_client
from bot.store import ChangeRequest, Store, create_store
from bot.store.index import Enforcement
from bot.store.watch import OPEN, Episode

CONNECTORS = "/beta/deviceManagement/mobileThreatDefenseConnectors"


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.render().decode()) for s in family.samples}


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    found = [v for (n, ls), v in samples(metrics).items() if n == name and dict(ls) == labels]
    return found[0] if found else None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = create_store(f"sqlite:///{tmp_path}/metrics.db")
    try:
        yield store
    finally:
        store.close()


def watched(store: Store, *, leading: Any = lambda: True, clock: Any = None) -> Metrics:
    metrics = Metrics()
    kwargs = {"clock": clock} if clock else {}
    metrics.watch(StateCollector(store, leading=leading, intervals=lambda: {"threat-sweep": 300.0}, **kwargs))
    return metrics


def episode(device: str, users: list[str], *, action: str = "block", state: str = OPEN) -> Episode:
    now = datetime.now(UTC)
    return Episode(device_id=device, policy_id="p1", open_key=f"{device}|p1|{action}" if state == OPEN else None,
                   state=state, action=action, opened_at=now, last_seen_at=now,
                   users=json.dumps([{"id": u, "name": f"<!channel> {u}", "mail": f"{u}@x"} for u in users]))


# ---- what the database says ---------------------------------------------------------------------


def test_outbox_depth_and_the_age_of_the_oldest_unsent_message(store: Store) -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    with store.session() as session:
        for i, (state, age) in enumerate([(PENDING, 400), (PENDING, 30), (SENT, 9000)]):
            at = now - timedelta(seconds=age)
            session.add(OutboxRow(key=f"k{i}", kind="post", channel="C1", lane="C1", payload="{}", state=state,
                                  next_attempt_at=at, created_at=at))
        session.commit()
    metrics = watched(store, clock=lambda: now.timestamp())
    assert value(metrics, "mam_outbox_depth") == 2
    assert value(metrics, "mam_outbox_oldest_age_seconds") == 400  # the sent one is not waiting
    assert value(metrics, "mam_database_up") == 1


def test_change_requests_by_state_list_every_state(store: Store) -> None:
    now = datetime.now(UTC)
    with store.session() as session:
        for state in ("pending", "pending", "failed"):
            session.add(ChangeRequest(kind="connector-toggle", requester="U1", title="t", plan="p", change="{}",
                                      justification="CHG1", state=state, created_at=now,
                                      expires_at=now + timedelta(hours=1)))
        session.commit()
    metrics = watched(store)
    assert value(metrics, "mam_change_requests", state="pending") == 2
    assert value(metrics, "mam_change_requests", state="failed") == 1
    assert value(metrics, "mam_change_requests", state="executing") == 0  # present at 0: alerts can use it


def test_blocked_users_count_people_once_leave_warnings_out_and_are_zero_while_enforcement_is_off(
        store: Store) -> None:
    with store.session() as session:
        session.add(episode("d1", ["u1", "u2"]))
        session.add(episode("d2", ["u1"], action="wipe"))
        session.add(episode("d3", ["u3"], action="warn"))  # a warning is not a block
        session.add(episode("d4", ["u4"], state="resolved"))
        session.add(Enforcement(id=1, state="on"))
        session.commit()
    metrics = watched(store)
    assert value(metrics, "mam_blocked_users") == 2 and value(metrics, "mam_blocked_devices") == 2
    assert value(metrics, "mam_enforcement") == 1
    with store.session() as session:
        row = session.get(Enforcement, 1)
        assert row is not None
        row.state = "off"
        session.add(row)
        session.commit()
    # Intune blocks nobody while the toggle is off: the frozen episodes are not blocks
    assert value(metrics, "mam_blocked_users") == 0 and value(metrics, "mam_enforcement") == 0


def test_job_figures_come_from_the_last_successful_run(store: Store) -> None:
    from bot.store.models import JobRun

    start = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    with store.session() as session:
        session.add(JobRun(job="threat-sweep", holder="a", started_at=start, finished_at=start + timedelta(seconds=11),
                           outcome="ok"))
        session.add(JobRun(job="threat-sweep", holder="a", started_at=start + timedelta(minutes=5),
                           finished_at=start + timedelta(minutes=5, seconds=3), outcome="failed"))
        session.add(JobRun(job="licences", holder="a", started_at=start, outcome="running"))
        session.commit()
    metrics = watched(store)
    assert value(metrics, "mam_job_last_success_timestamp_seconds", job="threat-sweep") == (
        start + timedelta(seconds=11)).timestamp()
    assert value(metrics, "mam_job_last_success_duration_seconds", job="threat-sweep") == 11
    assert value(metrics, "mam_job_last_run_failed", job="threat-sweep") == 1
    assert value(metrics, "mam_job_last_success_timestamp_seconds", job="licences") is None  # never succeeded
    assert value(metrics, "mam_job_interval_seconds", job="threat-sweep") == 300


def unreachable(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database goes away: every session and ping fails as a dropped connection does."""
    from sqlalchemy.exc import OperationalError

    def fail(*_: Any, **__: Any) -> Any:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(store, "session", fail)
    monkeypatch.setattr(store, "ping", fail)


def test_a_scrape_without_the_database_says_so_and_still_answers(store: Store, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    metrics = watched(store, leading=lambda: (_ for _ in ()).throw(RuntimeError("lease table gone")))
    unreachable(store, monkeypatch)
    assert value(metrics, "mam_database_up") == 0
    assert value(metrics, "mam_leader") == 0  # a leading check that fails is not leading
    assert value(metrics, "mam_outbox_depth") is None


def test_a_hung_database_is_reported_down_instead_of_holding_the_scrape(store: Store,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    release = threading.Event()
    real = store.session

    def hung(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)  # a database that accepted the connection and never answers
        return real(*args, **kwargs)

    metrics = Metrics()
    metrics.watch(StateCollector(store, leading=lambda: True, intervals=dict, database_seconds=0.2))
    monkeypatch.setattr(store, "session", hung)
    try:
        assert value(metrics, "mam_database_up") == 0
        assert value(metrics, "mam_leader") == 1  # the rest of the scrape still answers
        assert value(metrics, "mam_database_up") == 0  # the hung read is not joined by a second one
    finally:
        release.set()


def test_the_leader_figure_follows_this_process(store: Store) -> None:
    leading = [False]
    metrics = watched(store, leading=lambda: leading[0])
    assert value(metrics, "mam_leader") == 0
    leading[0] = True
    assert value(metrics, "mam_leader") == 1


# ---- counted where it happens -------------------------------------------------------------------


def test_every_try_of_a_microsoft_call_is_counted_by_endpoint_with_its_429s() -> None:
    metrics = Metrics()
    throttled = httpx.Response(429, headers={"Retry-After": "1", "request-id": "r1"},
                               json={"error": {"code": "TooManyRequests", "message": "slow down"}})
    connector = {"id": "fc780465-2017-40d4-a0c5-307022471b92", "partnerState": "enabled"}
    rec = Recorder().on("GET", CONNECTORS, throttled, httpx.Response(200, json={"value": [connector]}))
    rec.on("GET", f"{CONNECTORS}/fc780465-2017-40d4-a0c5-307022471b92", httpx.Response(200, json=connector))
    rec.on("PATCH", f"{CONNECTORS}/fc780465-2017-40d4-a0c5-307022471b92", httpx.Response(200, json=connector))
    h = harness(rec, listeners=[metrics.microsoft_answer])
    h.clients.graph.list_mtd_connectors()
    assert value(metrics, "mam_microsoft_requests_total", api="graph", endpoint=CONNECTORS, method="GET",
                 status="429") == 1
    assert value(metrics, "mam_microsoft_requests_total", api="graph", endpoint=CONNECTORS, method="GET",
                 status="200") == 1
    assert value(metrics, "mam_microsoft_throttled_total", api="graph", endpoint=CONNECTORS) == 1
    assert value(metrics, "mam_microsoft_request_seconds_count", api="graph", endpoint=CONNECTORS) == 2
    # an id never becomes a label: one series per endpoint, however many policies or users
    h.clients.graph.update_connector("fc780465-2017-40d4-a0c5-307022471b92", androidEnabled=True)
    assert value(metrics, "mam_microsoft_requests_total", api="graph", endpoint=f"{CONNECTORS}/{{id}}",
                 method="PATCH", status="200") == 1


def test_a_connection_error_is_counted_as_error() -> None:
    metrics = Metrics()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    h = harness(Recorder().on("GET", CONNECTORS, refuse), listeners=[metrics.microsoft_answer])
    with pytest.raises(Exception, match="Couldn't reach"):
        h.clients.graph.list_mtd_connectors()
    assert (value(metrics, "mam_microsoft_requests_total", api="graph", endpoint=CONNECTORS, method="GET",
                  status="error") or 0) >= 1


def test_slack_calls_and_429s_are_counted_by_method_retries_included() -> None:
    metrics = Metrics()
    with FakeSlack() as slack:
        slack.rate_limit("chat.postMessage", 1, burst=1)  # the second post at once: 429, Retry-After 1 s
        settings = Settings(slack_bot_token="xoxb-test")  # type: ignore[call-arg]
        client = slack_client(settings, base_url=slack.api_url, meter=SlackCallMeter(metrics.slack_call))
        client.chat_postMessage(channel=CONSOLE_CHANNEL, text="one")
        client.chat_postMessage(channel=CONSOLE_CHANNEL, text="two")  # 429, then slack_sdk's handler retries
    assert value(metrics, "mam_slack_api_calls_total", method="chat.postMessage", status="200") == 2
    assert value(metrics, "mam_slack_rate_limited_total", method="chat.postMessage") == 1
    assert value(metrics, "mam_slack_api_calls_total", method="chat.postMessage", status="429") == 1


def test_the_outbox_keeps_the_meter_and_drops_the_retrying_handlers() -> None:
    from bot.outbox.send import outbox_client

    meter = SlackCallMeter(lambda method, status: None)
    client = slack_client(Settings(slack_bot_token="xoxb-test"), meter=meter)  # type: ignore[call-arg]
    assert outbox_client(client).retry_handlers == [meter]


@pytest.mark.parametrize(("body", "surface"), [
    ({"command": "/mam"}, "command"), ({"type": "block_actions"}, "button"), ({"type": "view_submission"}, "form"),
    ({"type": "view_closed"}, "form"), ({"type": "block_suggestion"}, "options"),
    ({"type": "event_callback"}, "event"), ({"type": "shortcut"}, "other"), ({}, "other")])
def test_surfaces(body: dict[str, Any], surface: str) -> None:
    assert surface_of(body) == surface


# ---- health and the operator's port ------------------------------------------------------------


def test_readiness_says_which_part_is_not_ready(store: Store) -> None:
    link = [False]
    health = Health(store, slack=lambda: link[0])
    status, body = health.ready()
    assert status == 503 and body["slack"] == "not connected"
    link[0] = True
    assert health.ready() == (200, {"status": "ok", "database": "sqlite", "slack": "connected"})
    health.stopping.set()
    assert health.ready()[0] == 503 and health.ready()[1]["status"] == "stopping"


def test_liveness_does_not_depend_on_the_database(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    alive = [True]
    health = Health(store, alive=lambda: alive[0])
    unreachable(store, monkeypatch)
    assert health.ready()[0] == 503  # not ready without the database …
    assert health.live()[0] == 200  # … but alive: a restart would not bring the database back
    alive[0] = False
    status, body = health.live()
    assert status == 503 and "outbox" in body["reason"]


def test_the_operator_port_serves_three_paths_and_nothing_else(store: Store) -> None:
    metrics = watched(store)
    server = OperatorServer(Health(store), metrics.render, host="127.0.0.1", port=0).start()
    try:
        assert httpx.get(f"{server.url}/healthz", timeout=5).json() == {"status": "ok", "database": "sqlite"}
        assert httpx.get(f"{server.url}/livez", timeout=5).status_code == 200
        scraped = httpx.get(f"{server.url}/metrics", timeout=5)
        assert scraped.status_code == 200 and "mam_leader 1.0" in scraped.text
        for path in ("/", "/slack/events", "/metricsz", "/%3Cscript%3E"):
            assert httpx.get(f"{server.url}{path}", timeout=5).status_code == 404
        assert httpx.post(f"{server.url}/metrics", timeout=5).status_code == 501
    finally:
        server.stop()


def test_a_taken_port_says_which_setting_to_change(store: Store) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=r"MAM_METRICS_PORT.*0 to pick one"):
            OperatorServer(Health(store), Metrics().render, host="127.0.0.1", port=port)


def test_a_metrics_failure_is_a_500_not_a_dead_port(store: Store) -> None:
    def broken() -> bytes:
        raise RuntimeError("boom")

    server = OperatorServer(Health(store), broken, host="127.0.0.1", port=0).start()
    try:
        assert httpx.get(f"{server.url}/metrics", timeout=5).status_code == 500
        assert httpx.get(f"{server.url}/livez", timeout=5).status_code == 200
    finally:
        server.stop()
