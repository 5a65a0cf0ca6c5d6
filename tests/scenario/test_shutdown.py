"""A stop is clean: SIGTERM to a real `mam-bot serve` or `mam-bot run` while it sends 200 queued DMs and runs an
approved change ends with exit status 0, the change finished, every DM delivered exactly once (the rest by the
next process), no outbox row left claimed and the scheduler lease handed back, so `mam-bot jobs run` runs at
once. Three stops per case: one process on SQLite, restarted after each stop; on PostgreSQL, two replicas in a
rolling restart (each stopped process replaced by a new one). The driver is tests/scenario/shutdown.py;
benchmarks/sigterm.py runs it 20 times and prints the figures. Then what bounds a stop: a second signal, and
work that outlives its grace.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.console.fake_slack import FakeSlack
from bot.sandbox import SandboxServer
from tests.databases import postgres_database, sqlite_url
from tests.scenario.live import TRANSPORTS, Transport, wait_until
from tests.scenario.shutdown import Rig

pytestmark = pytest.mark.http

STOPS = 3


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path: Path, slack: FakeSlack, sandbox: SandboxServer) -> Iterator[Rig]:
    transport, database = request.param
    if database == "postgres":
        with postgres_database() as url:  # skips, saying why, when PostgreSQL is not reachable
            made = Rig(transport, tmp_path, slack, sandbox, url)
            try:
                yield made
            finally:
                made.close()
    else:
        made = Rig(transport, tmp_path, slack, sandbox, sqlite_url(tmp_path))
        try:
            yield made
        finally:
            made.close()


def cases(database: str) -> list[tuple[Transport, str]]:
    return [(transport, database) for transport in TRANSPORTS]


def check_stops(rig: Rig, replicas: int) -> None:
    for _ in range(replicas):
        rig.start()
    for cycle in range(STOPS):
        report = rig.stop_one(cycle, then=rig.start)
        assert report.problems() == [], f"stop {cycle + 1}: {report.problems()}\n{report.log[-3000:]}"
    delivered = rig.wait_delivered()
    assert sorted(delivered.values()) == [1] * len(rig.queued), {k: n for k, n in delivered.items() if n != 1}


@pytest.mark.parametrize("rig", cases("sqlite"), indirect=True, ids=lambda case: "-".join(case))
def test_sigterm_on_one_process_loses_and_doubles_nothing(rig: Rig) -> None:
    check_stops(rig, replicas=1)


@pytest.mark.postgres
@pytest.mark.parametrize("rig", cases("postgres"), indirect=True, ids=lambda case: "-".join(case))
def test_sigterm_in_a_rolling_restart_of_two_replicas_loses_and_doubles_nothing(rig: Rig) -> None:
    check_stops(rig, replicas=2)


def test_a_second_sigterm_cuts_the_drain_short(tmp_path: Path, slack: FakeSlack, sandbox: SandboxServer) -> None:
    rig = Rig("http", tmp_path, slack, sandbox, sqlite_url(tmp_path), drain_seconds=120)
    try:
        bot = rig.start()
        bot.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: httpx.get(f"{bot.base}/healthz", timeout=2).status_code == 503, what="the drain")
        bot.proc.send_signal(signal.SIGTERM)
        assert bot.proc.wait(timeout=60) == 0  # long before the 120 s drain would have ended
        assert "acknowledged work done" in bot.log()
        assert rig.lease_holder_pid() is None  # handed back all the same
    finally:
        rig.close()


def test_work_past_its_grace_does_not_hold_the_process(tmp_path: Path, slack: FakeSlack,
                                                       sandbox: SandboxServer) -> None:
    rig = Rig("socket", tmp_path, slack, sandbox, sqlite_url(tmp_path), grace_seconds=1)
    try:
        bot = rig.start()
        request_id, hold = rig.execution_in_flight(bot)
        with hold:
            bot.proc.send_signal(signal.SIGTERM)
            assert bot.proc.wait(timeout=60) == 0  # while the change's write is still held
        assert "acknowledged work cut short" in bot.log()
        assert rig.lease_holder_pid() is None
        # the change stays `executing` under its execution lease, for another process to take over
        assert rig.request(request_id).state == "executing"
    finally:
        rig.close()
