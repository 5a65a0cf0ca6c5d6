"""Exactly once under failures, in process: one writer per target, fenced writes, live takeover that knows
its own earlier write, and one audit row per decision. Each `service()` is a separate engine on the same
database and tenant, as two replicas would be (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.microsoft import build_clients
from bot.sandbox import SEED_POLICY_ID, SandboxConfig, SandboxTenant
from bot.settings import load_settings
from bot.store import AuditLog, create_store
from bot.store.leases import LeaderLease
from tests.databases import database_url  # noqa: F401  (fixture)
from workflows.changes import ChangeService, State
from workflows.execution import EXECUTION_LEASE, Execution, LeaseLost
from workflows.policy_changes import ASSIGN, PolicyAssignments

REQUESTER, APPROVER, APPROVER2 = "UADMIN001", "UAPPROV01", "UAPPROV02"
WHY = "pilot MAM threat signals (CHG0042)"


class Notifier:
    def filed(self, request: Any) -> None: ...

    def changed(self, request: Any) -> None: ...

    def reminded(self, request: Any) -> None: ...


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


class HeldWrites(httpx.BaseTransport):
    """The tenant holds every `assign` (the full-set write) for `seconds`, as a slow Graph would: a writer that
    read the set before another's write lands writes back a set without it, unless writers take turns."""

    def __init__(self, inner: httpx.BaseTransport, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/assign"):
            time.sleep(self.seconds)
        return self.inner.handle_request(request)


class Crash(BaseException):
    """The process dies here (nothing after it runs)."""


class Hooked:
    """PolicyAssignments with a hook before (`before`) or after (`after`) its run, used once."""

    name = ASSIGN

    def __init__(self, inner: PolicyAssignments) -> None:
        self.inner = inner
        self.before: Any = None
        self.after: Any = None

    def plan(self, change: Any) -> Any:
        return self.inner.plan(change)

    def apply(self, change: Any, snapshot: Any, run: Execution) -> Any:
        before, self.before = self.before, None
        if before:
            before()
        outcome = self.inner.apply(change, snapshot, run)
        after, self.after = self.after, None
        if after:
            after()
        return outcome


class World:
    def __init__(self, url: str) -> None:
        self.url = url
        self.tenant = SandboxTenant(SandboxConfig())
        self.clock = Clock()
        self.settings = load_settings(mam_cloud="sandbox", mam_graph_url=None, mam_defender_url=None)
        self.graph = build_clients(self.settings, transport=self.tenant.transport()).graph

    def service(self, kind: Any = None, *, slow: float = 0.0) -> ChangeService:
        store = create_store(self.url)
        graph = build_clients(self.settings, transport=HeldWrites(self.tenant.transport(), slow)).graph
        return ChangeService(store, AuditLog(store), {ASSIGN: kind or PolicyAssignments(graph)}, Notifier(),
                             is_approver=lambda u: u in (APPROVER, APPROVER2), now=self.clock,
                             expiry=timedelta(hours=24))

    def group_id(self, name: str) -> str:
        group = self.tenant.group(name)
        assert group is not None
        return str(group["id"])

    def include(self, service: ChangeService, group: str) -> int:
        request = service.file(ASSIGN, {"policy_id": SEED_POLICY_ID, "include": [self.group_id(group)]},
                               requester=REQUESTER, justification=WHY)
        assert request.id is not None
        return request.id

    def groups(self) -> set[str]:
        return {a.target.groupId or "" for a in self.graph.get_assignments(SEED_POLICY_ID) if a.target.groupId}

    def assign_posts(self) -> int:
        return self.tenant.stats.count("POST", "/assign")


@pytest.fixture
def world(database_url: str) -> World:  # noqa: F811
    return World(database_url)


def test_two_changes_to_one_policy_approved_at_once_on_two_replicas_both_land(world: World):
    """The lost update: each run reads the set, changes it and writes it all back, while the tenant holds writes."""
    first, second = world.service(slow=0.5), world.service(slow=0.5)
    finance, sales = world.include(first, "Finance"), world.include(second, "Sales EMEA")
    barrier = threading.Barrier(2)

    def approve(service: ChangeService, request_id: int) -> None:
        barrier.wait()
        service.approve(request_id, APPROVER)

    threads = [threading.Thread(target=approve, args=(first, finance)),
               threading.Thread(target=approve, args=(second, sales))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [first.require(finance), first.require(sales)]
    assert [r.state for r in done] == [State.SUCCEEDED, State.SUCCEEDED]
    assert {world.group_id("Finance"), world.group_id("Sales EMEA")} <= world.groups()
    assert world.assign_posts() == 2
    # each card says what it found and what it wrote; the later one found the earlier one's group
    later = max(done, key=lambda r: r.executed_at or datetime.min.replace(tzinfo=UTC))
    assert "Found" in later.result and "wrote" in later.result


def test_a_process_that_died_after_its_write_is_taken_over_and_knows_the_write_was_its_own(world: World):
    kind = Hooked(PolicyAssignments(world.graph))
    dying, survivor = world.service(kind), world.service()

    def die() -> None:
        raise Crash

    kind.after = die  # the Graph write went through; the process died before recording it
    request_id = world.include(dying, "Finance")
    with pytest.raises(Crash):
        dying.approve(request_id, APPROVER)
    assert dying.require(request_id).state == State.EXECUTING and world.assign_posts() == 1

    assert survivor.take_over() == 0  # the lease still covers a run that may be alive
    world.clock.offset += EXECUTION_LEASE + timedelta(seconds=1)
    assert survivor.take_over() == 1
    request = survivor.require(request_id)
    assert request.state == State.SUCCEEDED and request.resumed == 1
    assert "the earlier run of this change wrote it" in request.result and "resumed" in request.result
    assert "since the request" not in request.result  # its own write is not reported as someone else's
    assert world.assign_posts() == 1
    assert survivor.take_over() == 0 and world.assign_posts() == 1


def test_a_stalled_run_whose_change_was_taken_over_stops_before_writing(world: World):
    kind = Hooked(PolicyAssignments(world.graph))
    stalled, survivor = world.service(kind), world.service()
    request_id = world.include(stalled, "Finance")

    def stall() -> None:  # a long pause: the lease runs out and another process takes the change over
        world.clock.offset += EXECUTION_LEASE + timedelta(seconds=1)
        assert survivor.take_over() == 1

    kind.before = stall
    stalled.approve(request_id, APPROVER)  # its own write is fenced off: LeaseLost, handled
    request = survivor.require(request_id)
    assert request.state == State.SUCCEEDED and world.assign_posts() == 1
    assert world.group_id("Finance") in world.groups()


def test_the_fence_refuses_a_holder_whose_lease_passed_to_another(world: World):
    service = world.service()
    request_id = world.include(service, "Finance")
    request = service.require(request_id)
    mine = LeaderLease(service.store, "a", name="target:x", seconds=1, now=world.clock)
    assert mine.acquire()
    run = Execution(service.store, request, mine, world.clock)
    run.fence()  # held: fine
    world.clock.offset += timedelta(seconds=2)
    theirs = LeaderLease(service.store, "b", name="target:x", seconds=30, now=world.clock)
    assert theirs.acquire() and theirs.token == mine.token + 1
    with pytest.raises(LeaseLost):
        run.fence()
    # and the first holder coming back does not get its old tenure back
    world.clock.offset += timedelta(seconds=60)
    assert mine.acquire() and mine.token == theirs.token + 1 and not theirs.still_held()


def test_quorum_one_and_two_approvers_at_once_is_one_decision_and_one_approved_row(world: World):
    services = [world.service(), world.service()]
    request_id = world.include(services[0], "Finance")
    barrier = threading.Barrier(2)

    def approve(service: ChangeService, who: str) -> None:
        barrier.wait()
        service.approve(request_id, who)

    threads = [threading.Thread(target=approve, args=(s, who)) for s, who in zip(services, (APPROVER, APPROVER2),
                                                                                  strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = [e for e in services[0].audit.recent(50) if e.action == f"approve #{request_id}"]
    assert [e.outcome for e in rows].count("approved") == 1
    assert services[0].require(request_id).state == State.SUCCEEDED and world.assign_posts() == 1


def test_a_holder_that_lost_its_lease_cannot_renew_it_back(world: World):
    service = world.service()
    mine = LeaderLease(service.store, "a", name="target:y", seconds=1, now=world.clock)
    assert mine.acquire() and mine.renew()
    world.clock.offset += timedelta(seconds=2)
    assert mine.renew()  # expired, but nobody held it since: still this tenure
    world.clock.offset += timedelta(seconds=2)
    theirs = LeaderLease(service.store, "b", name="target:y", seconds=1, now=world.clock)
    assert theirs.acquire()
    theirs.release()
    assert not mine.renew() and not mine.still_held()  # the heartbeat of a stalled run stays fenced off
