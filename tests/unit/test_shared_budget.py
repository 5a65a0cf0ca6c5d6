"""The database-backed request budget: LocalBudget's answers for one process, and for several processes
together never more grants in a window than the limit (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.microsoft.budget import LocalBudget, RateLimit
from bot.microsoft.shared_budget import PRUNE_EVERY_SECONDS, SharedBudget, T, fleet_budget
from bot.store.db import make_engine
from bot.store.migrate import upgrade
from tests.databases import database_url  # noqa: F401  (fixture)

API = "graph"
# Small windows so a real-time test sees several of them within a couple of seconds.
LIMITS = {API: (RateLimit(40, 1.0), RateLimit(10, 1.0, writes_only=True)), "defender": (RateLimit(5, 0.5),)}
RACE_LIMITS = {API: (RateLimit(20, 0.5), RateLimit(6, 0.5, writes_only=True))}


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def engines(database_url: str) -> Iterator[list[Engine]]:  # noqa: F811  (the imported fixture)
    """Two engines on one migrated database: two processes' worth of connections."""
    upgrade(database_url)
    made = [make_engine(database_url) for _ in range(2)]
    yield made
    for engine in made:
        engine.dispose()


def test_answers_like_the_local_budget(engines: list[Engine]) -> None:
    clock = Clock()
    shared = SharedBudget(engines[0], LIMITS, clock=clock)
    local = LocalBudget(LIMITS, clock=clock)
    rng = random.Random(7)
    for _ in range(250):
        api = rng.choice([API, API, "defender"])
        count, write = rng.choice([1, 1, 1, 3, 20]), rng.random() < 0.3
        assert shared.reserve(api, count=count, write=write) == pytest.approx(
            local.reserve(api, count=count, write=write), abs=1e-6)
        clock.t += rng.choice([0.0, 0.001, 0.01, 0.05, 0.2])


def test_refusal_says_when_the_oldest_calls_leave_the_window(engines: list[Engine]) -> None:
    clock = Clock()
    budget = SharedBudget(engines[0], LIMITS, clock=clock)
    assert budget.reserve(API, count=30) == 0
    clock.t += 0.4
    assert budget.reserve(API, count=10) == 0
    clock.t += 0.1
    assert budget.reserve(API) == pytest.approx(0.5)  # the 30 leave at t+1.0
    clock.t += 0.5
    assert budget.reserve(API) == 0
    assert budget.granted(API, within=1.0) == 11


def test_writes_have_their_own_smaller_window(engines: list[Engine]) -> None:
    clock = Clock()
    budget = SharedBudget(engines[0], LIMITS, clock=clock)
    assert budget.reserve(API, count=10, write=True) == 0
    assert budget.reserve(API, write=True) > 0
    assert budget.reserve(API) == 0  # reads still have room under the overall limit
    assert budget.granted(API, within=1.0, write=True) == 10


def test_unknown_api_is_not_limited_and_touches_no_table(engines: list[Engine]) -> None:
    assert SharedBudget(engines[0], LIMITS).reserve("other", count=10_000) == 0


def test_two_processes_together_never_exceed_a_window(engines: list[Engine]) -> None:
    """Four threads over two engines with real clocks take as fast as they are allowed for 1.2 s."""
    # keep_for: old grants are pruned once out of every window; keep them so the whole run can be checked.
    budgets = [SharedBudget(engine, RACE_LIMITS, keep_for=600) for engine in engines]
    granted = [0] * 4
    refused = [0] * 4
    stop = time.monotonic() + 1.2
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        rng = random.Random(i)
        try:
            while time.monotonic() < stop:
                count, write = rng.choice([1, 1, 2]), rng.random() < 0.25
                wait = budgets[i % 2].reserve(API, count=count, write=write)
                if wait:
                    refused[i] += 1
                    time.sleep(min(wait, 0.02))
                else:
                    granted[i] += count
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors

    with engines[0].connect() as conn:
        rows = conn.execute(select(T.c.at, T.c.calls, T.c.write).where(T.c.api == API).order_by(T.c.at)).all()
    assert sum(r.calls for r in rows) == sum(granted)  # every grant the callers saw is on the log
    for rule in RACE_LIMITS[API]:
        log = [(r.at, r.calls) for r in rows if r.write or not rule.writes_only]
        # The busiest window ends at some grant: check the window ending at each one.
        worst = max(sum(c for t, c in log if end - rule.per_seconds < t <= end) for end, _ in log)
        assert worst <= rule.calls, f"{worst} calls within {rule.per_seconds}s, limit {rule.calls}"
    assert sum(refused) > 0 and sum(granted) >= 2 * RACE_LIMITS[API][0].calls  # the limit was really reached


def test_grants_out_of_every_window_are_pruned(engines: list[Engine]) -> None:
    clock = Clock()
    budget = SharedBudget(engines[0], LIMITS, clock=clock)
    assert budget.reserve(API, count=5) == 0
    clock.t += PRUNE_EVERY_SECONDS + 0.5
    assert budget.reserve(API, count=2) == 0
    clock.t += 0.1
    assert budget.reserve(API, count=3) == 0  # the prune ran with the grant before: the 2 and 3 stay
    with engines[0].connect() as conn:
        assert conn.execute(select(T.c.calls).order_by(T.c.id)).scalars().all() == [2, 3]


def test_fleet_budget_only_for_a_database_replicas_share(engines: list[Engine]) -> None:
    budget = fleet_budget(engines[0])
    assert (budget is not None) == (engines[0].dialect.name == "postgresql")
