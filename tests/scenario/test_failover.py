"""Two real processes share the scheduler lease; `kill -9` of the leader hands the jobs to the other."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.store import create_store
from bot.store.models import JobRun
from tests.scenario.live import lease_holder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def url(any_url: str) -> str:
    return any_url


def start(url: str, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.scenario.lease_worker", url, name], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail("timed out waiting for the scheduler")


def runs(url: str) -> list[JobRun]:
    store = create_store(url)
    try:
        with store.session() as session:
            return list(session.exec(select(JobRun).order_by(col(JobRun.started_at))))
    finally:
        store.close()


def test_kill_9_of_the_leader_hands_over_with_no_job_run_twice(url: str):
    create_store(url).close()  # tables exist before two processes race to make them
    procs = {name: start(url, name) for name in ("one", "two")}
    try:
        leader = wait_for(lambda: lease_holder(url))
        wait_for(lambda: len([r for r in runs(url) if r.holder == leader]) >= 3)
        os.kill(procs[leader].pid, signal.SIGKILL)
        procs[leader].wait(timeout=10)
        other = "two" if leader == "one" else "one"
        wait_for(lambda: len([r for r in runs(url) if r.holder == other and r.outcome == "ok"]) >= 3)
        assert lease_holder(url) == other
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    records = runs(url)
    by_holder = {r.holder for r in records}
    assert by_holder == {"one", "two"}
    finished = [r for r in records if r.finished_at is not None]
    # never two runs at once: each run ends before the next one starts, across both processes
    for earlier, later in pairwise(finished):
        assert earlier.finished_at <= later.started_at, (earlier, later)
    # only the killed leader can have a run it never finished, at most one, and the new leader says so
    unfinished = [r for r in records if r.finished_at is None]
    assert len(unfinished) <= 1
    assert all(r.holder == leader and r.outcome == "interrupted" for r in unfinished), unfinished
