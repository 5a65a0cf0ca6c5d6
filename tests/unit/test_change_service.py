"""The change-request core against the sandbox tenant, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.errors import UserError
from bot.microsoft import build_clients
from bot.sandbox import SandboxConfig, SandboxTenant
from bot.settings import load_settings
from bot.store import AuditLog, create_store
from tests.databases import database_url  # noqa: F401  (fixture)
from workflows.changes import ChangeService, State
from workflows.connector_change import ANDROID_MAM, KIND, ConnectorToggle
from workflows.execution import EXECUTION_LEASE

REQUESTER, APPROVER, APPROVER2, OUTSIDER = "UADMIN001", "UAPPROV01", "UAPPROV02", "UENDUSR01"
ENABLE = {"flag": ANDROID_MAM, "value": True}
PATCHES = ("PATCH", "mobileThreatDefenseConnectors")


class Clock:
    def __init__(self) -> None:
        self.value = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.value

    def advance(self, **delta: float) -> None:
        self.value += timedelta(**delta)


@dataclass
class RecordingNotifier:
    events: list[tuple[str, int, str]] = field(default_factory=list)

    def filed(self, request: Any) -> None:
        self.events.append(("filed", request.id, request.state))

    def changed(self, request: Any) -> None:
        self.events.append(("changed", request.id, request.state))

    def reminded(self, request: Any) -> None:
        self.events.append(("reminded", request.id, request.state))


class Crash(BaseException):
    """Stands in for the process dying: nothing in the bot catches a BaseException."""


class CrashOnce:
    name = KIND

    def __init__(self, inner: ConnectorToggle) -> None:
        self.inner, self.crashed = inner, False

    def plan(self, change: Any) -> Any:
        return self.inner.plan(change)

    def apply(self, change: Any, snapshot: Any, run: Any) -> Any:
        if not self.crashed:
            self.crashed = True
            raise Crash
        return self.inner.apply(change, snapshot, run)


@dataclass
class World:
    url: str
    tenant: SandboxTenant
    clock: Clock
    notifier: RecordingNotifier
    quorum: int = 1

    def service(self, kind: Any = None) -> ChangeService:
        settings = load_settings(mam_cloud="sandbox", mam_graph_url=None, mam_defender_url=None)
        graph = build_clients(settings, transport=self.tenant.transport()).graph
        store = create_store(self.url)
        return ChangeService(store, AuditLog(store, clock=self.clock), {KIND: kind or ConnectorToggle(graph)},
                             self.notifier, is_approver=lambda u: u in (APPROVER, APPROVER2, REQUESTER),
                             now=self.clock, quorum=self.quorum, expiry=timedelta(hours=24),
                             destinations=lambda: [APPROVER, APPROVER2])

    def patches(self) -> int:
        return self.tenant.stats.count(*PATCHES)

    def toggle(self) -> bool:
        return bool(self.tenant.connector().get(ANDROID_MAM))


@pytest.fixture
def world(database_url: str) -> World:  # noqa: F811
    return World(database_url, SandboxTenant(SandboxConfig()), Clock(), RecordingNotifier())


def file(service: ChangeService, who: str = REQUESTER) -> int:
    request = service.file(KIND, ENABLE, requester=who, justification="turn on MAM threat signals (CHG0042)")
    assert request.id is not None
    return request.id


def test_filing_records_the_change_snapshot_and_graph_calls(world: World):
    service = world.service()
    request = service.require(file(service))
    assert request.state == State.PENDING and request.quorum == 1
    plan = json.loads(request.plan)
    assert [c["method"] for c in plan] == ["GET", "PATCH"]
    assert plan[1]["body"][ANDROID_MAM] is True and "androidEnabled" in plan[1]["body"]
    assert json.loads(request.snapshot)[ANDROID_MAM] is False
    assert world.notifier.events == [("filed", request.id, "pending")]
    assert json.loads(request.card_destinations) == [APPROVER, APPROVER2]
    assert world.patches() == 0


def test_a_justification_is_required(world: World):
    with pytest.raises(UserError, match="justification"):
        world.service().file(KIND, ENABLE, requester=REQUESTER, justification="  ")


def test_nothing_to_request_when_already_on(world: World):
    world.tenant.set_connector(**{ANDROID_MAM: True})
    with pytest.raises(UserError, match="already on"):
        file(world.service())


def test_the_requester_never_approves_their_own_request(world: World):
    service = world.service()
    request_id = file(service)
    result = service.approve(request_id, REQUESTER)
    assert not result.ok and "can't approve" in result.message
    assert service.require(request_id).state == State.PENDING and world.patches() == 0


def test_a_non_approver_is_refused(world: World):
    service = world.service()
    result = service.approve(file(service), OUTSIDER)
    assert not result.ok and "Only approvers" in result.message


def test_approval_executes_the_change_once(world: World):
    service = world.service()
    request_id = file(service)
    result = service.approve(request_id, APPROVER)
    assert result.ok
    request = service.require(request_id)
    assert request.state == State.SUCCEEDED and request.decided_by == APPROVER
    assert world.toggle() is True and world.patches() == 1
    states = [s for kind, _, s in world.notifier.events if kind == "changed"]
    assert states == ["approved", "executing", "succeeded"]
    outcomes = [e.outcome for e in service.audit.recent(10)]
    assert {"pending", "approved", "executing", "succeeded"} <= set(outcomes)


def test_quorum_of_two_and_an_approver_counts_once(world: World):
    world.quorum = 2
    service = world.service()
    request_id = file(service)
    assert service.approve(request_id, APPROVER).ok
    again = service.approve(request_id, APPROVER)
    assert not again.ok and "counts once" in again.message
    assert service.require(request_id).state == State.PENDING and world.patches() == 0
    assert service.approve(request_id, APPROVER2).ok
    assert service.require(request_id).state == State.SUCCEEDED and world.patches() == 1


def test_reject_with_a_reason_ends_the_request(world: World):
    service = world.service()
    request_id = file(service)
    assert not service.reject(request_id, APPROVER, " ").ok
    assert service.reject(request_id, APPROVER, "not during the freeze").ok
    request = service.require(request_id)
    assert request.state == State.REJECTED and request.reject_reason == "not during the freeze"
    assert not service.approve(request_id, APPROVER2).ok and world.patches() == 0


def test_expiry_and_one_reminder(world: World):
    service = world.service()
    request_id = file(service)
    world.clock.advance(hours=11)
    assert service.remind_due() == 0
    world.clock.advance(hours=2)
    assert service.remind_due() == 1 and service.remind_due() == 0
    world.clock.advance(hours=12)
    assert service.expire_due() == 1 and service.expire_due() == 0
    assert service.require(request_id).state == State.EXPIRED
    assert not service.approve(request_id, APPROVER).ok and world.patches() == 0
    assert ("reminded", request_id, "pending") in world.notifier.events


def test_cancel_is_for_the_requester_and_only_while_pending(world: World):
    service = world.service()
    request_id = file(service)
    assert not service.cancel(request_id, APPROVER).ok
    assert service.cancel(request_id, REQUESTER).ok
    assert not service.cancel(request_id, REQUESTER).ok
    assert service.require(request_id).state == State.CANCELLED


def test_two_approvers_at_the_same_moment_lead_to_one_write(world: World):
    service = world.service()
    request_id = file(service)
    barrier = threading.Barrier(2)
    results = []

    def approve(who: str) -> None:
        barrier.wait()
        results.append(world.service().approve(request_id, who))

    threads = [threading.Thread(target=approve, args=(who,)) for who in (APPROVER, APPROVER2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # the slower one is either counted (and finds the quorum already met) or told it is already decided
    assert any(r.ok for r in results)
    assert all(r.ok or "already" in r.message for r in results)
    assert world.patches() == 1 and service.require(request_id).state == State.SUCCEEDED


def test_the_same_click_delivered_twice_at_once_runs_once(world: World):
    service = world.service()
    request_id = file(service)
    barrier = threading.Barrier(4)

    def click() -> None:
        barrier.wait()
        world.service().approve(request_id, APPROVER)

    threads = [threading.Thread(target=click) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert world.patches() == 1 and len(service.approvals(request_id)) == 1


def test_a_crash_between_approval_and_the_graph_call_completes_once_after_restart(world: World):
    service = world.service(kind=CrashOnce(ConnectorToggle(
        build_clients(load_settings(mam_cloud="sandbox"), transport=world.tenant.transport()).graph)))
    request_id = file(service)
    with pytest.raises(Crash):
        service.approve(request_id, APPROVER)
    assert service.require(request_id).state == State.EXECUTING and world.patches() == 0

    restarted = world.service()  # a new process: new engine, same database and tenant
    assert restarted.take_over() == 0  # the lease protects an execution that may still be running
    world.clock.advance(seconds=EXECUTION_LEASE.total_seconds() + 1)
    assert restarted.take_over() == 1
    assert restarted.require(request_id).state == State.SUCCEEDED
    assert world.patches() == 1 and world.toggle() is True
    assert restarted.take_over() == 0 and world.patches() == 1


def test_approved_but_never_run_is_run_on_start(world: World):
    service = world.service()
    request_id = file(service)
    service._transition(request_id, [State.PENDING], State.APPROVED)  # as if the process died right here
    assert world.service().take_over() == 1 and world.patches() == 1


def test_drift_is_reported_and_only_the_delta_applied(world: World):
    service = world.service()
    request_id = file(service)
    world.tenant.set_connector(androidEnabled=False)  # someone changed another toggle in the portal meanwhile
    service.approve(request_id, APPROVER)
    request = service.require(request_id)
    assert request.state == State.SUCCEEDED
    assert "androidEnabled changed from on to off since the request" in request.result
    connector = world.tenant.connector()
    assert connector[ANDROID_MAM] is True and connector["androidEnabled"] is False


def test_a_change_already_in_place_is_a_recorded_no_op(world: World):
    service = world.service()
    request_id = file(service)
    world.tenant.set_connector(**{ANDROID_MAM: True})
    service.approve(request_id, APPROVER)
    request = service.require(request_id)
    assert request.state == State.SUCCEEDED and "no change made" in request.result
    assert world.patches() == 0
    assert service.audit.recent(1)[0].outcome == "no-op"


def test_a_failed_execution_can_be_retried_without_a_new_approval(database_url: str):  # noqa: F811
    tenant = SandboxTenant(SandboxConfig(fail={"PATCH /beta/deviceManagement/mobileThreatDefenseConnectors": [400]}))
    world = World(database_url, tenant, Clock(), RecordingNotifier())
    service = world.service()
    request_id = file(service)
    service.approve(request_id, APPROVER)
    failed = service.require(request_id)
    assert failed.state == State.FAILED and failed.error
    assert not service.retry(request_id, OUTSIDER).ok
    result = service.retry(request_id, REQUESTER)
    assert result.ok and service.require(request_id).state == State.SUCCEEDED
    assert world.toggle() is True and service.require(request_id).attempts == 2


def test_retry_is_refused_once_the_approval_has_expired(world: World):
    service = world.service()
    request_id = file(service)
    service._transition(request_id, [State.PENDING], State.FAILED)
    world.clock.advance(hours=25)
    result = service.retry(request_id, REQUESTER)
    assert not result.ok and "expired" in result.message
