"""Every Microsoft write is on the audit log with Microsoft's `request-id` and the bot's `client-request-id`
(what Microsoft support asks for), and a change's outcome row carries those of its last write, or of the call
that failed it."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from bot.clock import utcnow
from bot.logs import bind
from bot.microsoft import MicrosoftClients, build_clients
from bot.microsoft.transport import Answer
from bot.sandbox import SandboxConfig, SandboxTenant
from bot.sandbox.control import Answered
from bot.sandbox.schema import MDE_CONNECTOR_ID
from bot.settings import load_settings
from bot.store import AuditEntry, AuditLog, Store, create_store
from bot.store.audit import export_rows
from tests.databases import database_url  # noqa: F401  (fixture)
from workflows.changes import ChangeService, State
from workflows.connector_change import ANDROID_MAM, KIND, ConnectorToggle

ASSIGN_URL = ("https://graph.microsoft.com/beta/deviceAppManagement/androidManagedAppProtections/"
              "T_4f1c2b7e-0d6a-4a43-9a3e-5b1f8c2d9e10/assign")
REQUESTER, APPROVER = "UADMIN001", "UAPPROV01"
CONNECTOR_PATCH = "PATCH /deviceManagement/mobileThreatDefenseConnectors"


def answer(**fields: Any) -> Answer:
    values: dict[str, Any] = {"api": "graph", "method": "POST", "url": ASSIGN_URL, "status": 204, "seconds": 0.084,
                              "client_request_id": "cid-1", "request_id": "rid-1", "write": True, "attempt": 1}
    values.update(fields)
    return Answer(**values)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:  # noqa: F811  (the imported fixture)
    store = create_store(database_url)
    yield store
    store.close()


@pytest.fixture
def audit(store: Store) -> Iterator[AuditLog]:
    audit = AuditLog(store)
    yield audit
    audit.close()


def rows(audit: AuditLog) -> list[AuditEntry]:
    audit.flush()
    return list(reversed(audit.recent(100)))


# ---- the listener ----------------------------------------------------------------------------------


def test_a_write_is_recorded_with_both_ids_its_endpoint_its_status_and_what_it_was_for(audit: AuditLog):
    with bind(correlation_id="corr-7", slack_user=APPROVER, change_request=12):
        audit.record_write(answer())

    (row,) = rows(audit)
    assert row.actor == "mam-bot"
    assert row.action == "graph POST /beta/deviceAppManagement/androidManagedAppProtections/{id}/assign"
    assert row.target == ASSIGN_URL.removeprefix("https://graph.microsoft.com")  # the policy's id and all
    assert row.outcome == "204"
    assert (row.graph_request_id, row.client_request_id, row.correlation_id) == ("rid-1", "cid-1", "corr-7")
    assert row.detail == f"change #12, slack user {APPROVER}, attempt 1, 84 ms"


def test_a_write_that_got_no_answer_is_recorded_as_no_answer_with_the_bots_id(audit: AuditLog):
    with bind(job="registrations-index"):
        audit.record_write(answer(status=None, request_id=None, attempt=2, seconds=5.0))

    (row,) = rows(audit)
    assert row.outcome == "no answer"
    assert (row.graph_request_id, row.client_request_id) == ("", "cid-1")
    assert row.detail == "job registrations-index, attempt 2, 5000 ms"


def test_each_try_of_a_write_is_a_row_of_its_own(audit: AuditLog):
    audit.record_write(answer(status=429, request_id="rid-1"))
    audit.record_write(answer(status=204, request_id="rid-2", attempt=2))
    assert [(r.outcome, r.graph_request_id, r.client_request_id) for r in rows(audit)] == [
        ("429", "rid-1", "cid-1"), ("204", "rid-2", "cid-1")]


def test_reads_are_not_recorded(audit: AuditLog):
    audit.record_write(answer(method="GET", write=False, status=200))
    audit.record_write(answer(method="POST", url="https://graph.microsoft.com/v1.0/$batch", write=False))
    assert rows(audit) == []


def test_long_ids_are_cut_to_the_column_not_the_batch_lost(audit: AuditLog):
    audit.record_write(answer(request_id="r" * 100, client_request_id="c" * 100))
    (row,) = rows(audit)
    assert (row.graph_request_id, row.client_request_id) == ("r" * 64, "c" * 64)


def test_a_busy_log_still_flushes_what_was_queued_before(audit: AuditLog):
    """A change waits for its write rows before its outcome row: other rows queued meanwhile don't hold it up."""
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            audit.record_soon(actor="UADMIN001", action="/mam status", outcome="ok")
            time.sleep(0.001)

    producer = threading.Thread(target=busy)
    producer.start()
    try:
        time.sleep(0.2)
        audit.record_write(answer())
        assert audit.flush(timeout=2.0)
        assert [r.graph_request_id for r in audit.recent(10_000) if r.actor == "mam-bot"] == ["rid-1"]
    finally:
        stop.set()
        producer.join()


def test_the_export_has_both_ids():
    entry = AuditEntry(id=1, at=datetime(2026, 12, 8, tzinfo=UTC), actor="mam-bot", action="graph PATCH /beta/x",
                       outcome="200", graph_request_id="rid-1", client_request_id="cid-1")
    header, line = "".join(export_rows(iter([entry]), "csv")).splitlines()
    assert header.endswith(",graph_request_id,client_request_id") and line.endswith(",rid-1,cid-1")
    assert json.loads("".join(export_rows(iter([entry]), "jsonl")))["client_request_id"] == "cid-1"


# ---- through the transport, against the sandbox ----------------------------------------------------


@dataclass
class Tenant:
    sandbox: SandboxTenant
    refuse_connects: bool = False  # PATCHes never reach it: a connection error

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            if self.refuse_connects and request.method == "PATCH":
                raise httpx.ConnectError("connection refused", request=request)
            return self.sandbox.handle(request)

        return httpx.MockTransport(handle)

    @property
    def heard(self) -> list[Answered]:
        return self.sandbox.stats.answers

    def writes(self) -> list[Answered]:
        return [a for a in self.heard if a.write]


def clients(tenant: Tenant, *listeners: Any) -> MicrosoftClients:
    settings = load_settings(mam_cloud="sandbox", mam_graph_url=None, mam_defender_url=None)
    return build_clients(settings, transport=tenant.transport(), sleep=lambda _seconds: None, listeners=listeners)


def write_rows(audit: AuditLog) -> list[AuditEntry]:
    return [r for r in rows(audit) if r.action.startswith(("graph ", "defender "))]


def test_the_rows_carry_the_ids_the_tenant_got_and_answered_with(audit: AuditLog):
    tenant = Tenant(SandboxTenant())
    graph = clients(tenant, audit.record_write).graph
    graph.update_connector(MDE_CONNECTOR_ID, **{ANDROID_MAM: True})

    (write,) = tenant.writes()
    (row,) = write_rows(audit)
    assert (row.graph_request_id, row.client_request_id) == (write.request_id, write.client_request_id)
    assert row.target == write.path and row.outcome == "200"
    assert len({h.request_id for h in tenant.heard}) == len(tenant.heard) > 1  # the reads: ids, but no rows


def test_a_failing_listener_or_audit_log_never_fails_the_call(audit: AuditLog, store: Store,
                                                              caplog: pytest.LogCaptureFixture):
    def broken(_answer: Answer) -> None:
        raise RuntimeError("listener bug")

    tenant = Tenant(SandboxTenant())
    graph = clients(tenant, broken, audit.record_write).graph
    graph.update_connector(MDE_CONNECTOR_ID, **{ANDROID_MAM: True})
    assert len(write_rows(audit)) == 1  # the listener after the broken one still heard it
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_log"))

    with caplog.at_level(logging.ERROR):
        graph.update_connector(MDE_CONNECTOR_ID, **{ANDROID_MAM: False})
        assert audit.flush()

    assert tenant.sandbox.connector()[ANDROID_MAM] is False
    assert "a listener failed on graph PATCH" in caplog.text
    assert "could not write the audit row 'graph PATCH" in caplog.text


# ---- a change's rows ---------------------------------------------------------------------------------


class Quiet:
    def filed(self, request: Any) -> None: ...

    def changed(self, request: Any) -> None: ...

    def reminded(self, request: Any) -> None: ...


class ReadsBackOff:
    """Graph takes the write, but the connector reads back unchanged: the change fails after its write."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph

    def get_mde_connector(self) -> Any:
        return self.graph.get_mde_connector()

    def update_connector(self, connector_id: str, **flags: bool) -> Any:
        before = self.graph.get_connector(connector_id)
        self.graph.update_connector(connector_id, **flags)
        return before


def service(store: Store, audit: AuditLog, graph: Any) -> ChangeService:
    return ChangeService(store, audit, {KIND: ConnectorToggle(graph)}, Quiet(), is_approver=lambda u: u == APPROVER,
                         now=utcnow, expiry=timedelta(hours=1))


def run_change(changes: ChangeService, before_approval: Callable[[], object] = lambda: None) -> int:
    request = changes.file(KIND, {"flag": ANDROID_MAM, "value": True}, requester=REQUESTER,
                           justification="MAM threat signals (CHG0042)")
    assert request.id is not None
    before_approval()
    with bind(correlation_id="corr-9", slack_user=APPROVER):  # as the approver's click binds them
        changes.approve(request.id, APPROVER)
    return request.id


def outcome_row(audit: AuditLog, request_id: int) -> AuditEntry:
    (row,) = [r for r in rows(audit) if r.action == f"execute #{request_id} {KIND}"
              and r.outcome not in ("executing", "resumed")]
    return row


def test_a_change_records_each_write_with_its_ids_and_its_outcome_the_last_ones(store: Store, audit: AuditLog):
    tenant = Tenant(SandboxTenant())
    changes = service(store, audit, clients(tenant, audit.record_write).graph)
    request_id = run_change(changes)

    assert changes.require(request_id).state == State.SUCCEEDED
    (write,) = tenant.writes()
    (row,) = write_rows(audit)
    assert (row.graph_request_id, row.client_request_id) == (write.request_id, write.client_request_id)
    assert row.correlation_id == "corr-9" and row.detail.startswith(f"change #{request_id}, slack user {APPROVER}, ")
    done = outcome_row(audit, request_id)
    assert done.outcome == "succeeded"
    assert (done.graph_request_id, done.client_request_id) == (write.request_id, write.client_request_id)
    order = [r.id for r in rows(audit) if f"#{request_id}" in r.action + r.detail]
    assert order.index(row.id) < order.index(done.id), "the write's row comes before the change's outcome"


def test_a_change_with_nothing_to_write_has_no_ids(store: Store, audit: AuditLog):
    tenant = Tenant(SandboxTenant())
    changes = service(store, audit, clients(tenant, audit.record_write).graph)
    request_id = run_change(changes, lambda: tenant.sandbox.set_connector(**{ANDROID_MAM: True}))

    done = outcome_row(audit, request_id)
    assert done.outcome == "no-op" and (done.graph_request_id, done.client_request_id) == ("", "")
    assert write_rows(audit) == []


def test_a_refused_write_puts_its_ids_on_the_failed_row(store: Store, audit: AuditLog):
    tenant = Tenant(SandboxTenant(SandboxConfig(fail={CONNECTOR_PATCH: [400]})))
    changes = service(store, audit, clients(tenant, audit.record_write).graph)
    request_id = run_change(changes)

    assert changes.require(request_id).state == State.FAILED
    (write,) = tenant.writes()
    assert write.status == 400
    (row,) = write_rows(audit)
    assert row.outcome == "400" and row.graph_request_id == write.request_id
    failed = outcome_row(audit, request_id)
    assert failed.outcome == "failed"
    assert (failed.graph_request_id, failed.client_request_id) == (write.request_id, write.client_request_id)


def test_a_write_that_never_got_an_answer_puts_the_bots_id_on_the_failed_row(store: Store, audit: AuditLog):
    tenant = Tenant(SandboxTenant(), refuse_connects=True)
    changes = service(store, audit, clients(tenant, audit.record_write).graph)
    request_id = run_change(changes)

    tries = write_rows(audit)
    assert [r.outcome for r in tries] == ["no answer"] * len(tries) and len(tries) > 1  # a connect error is retried
    assert len({r.client_request_id for r in tries}) == 1 and tries[0].graph_request_id == ""
    failed = outcome_row(audit, request_id)
    assert failed.outcome == "failed"
    assert (failed.graph_request_id, failed.client_request_id) == ("", tries[0].client_request_id)


def test_a_change_found_wrong_after_its_write_fails_with_that_writes_ids(store: Store, audit: AuditLog):
    tenant = Tenant(SandboxTenant())
    changes = service(store, audit, ReadsBackOff(clients(tenant, audit.record_write).graph))
    request_id = run_change(changes)

    (write,) = tenant.writes()
    failed = outcome_row(audit, request_id)
    assert failed.outcome == "failed" and "still reads off" in failed.detail
    assert (failed.graph_request_id, failed.client_request_id) == (write.request_id, write.client_request_id)


def test_writes_outside_a_change_run_leave_no_ids_for_it(audit: AuditLog):
    with audit.last_write_of(5) as last:
        with bind(change_request=6):
            audit.record_write(answer(request_id="rid-other"))
        with bind(change_request=5):
            audit.record_write(answer(request_id="rid-mine", client_request_id="cid-mine"))
    with bind(change_request=5):
        audit.record_write(answer(request_id="rid-later"))
    assert (last.request_id, last.client_request_id) == ("rid-mine", "cid-mine")
