"""A change through Slack, on the audit log as Microsoft support needs it: every Graph write the tenant got is a
row with the `request-id` the tenant answered and the `client-request-id` the bot sent, under the change's id;
the change's outcome row carries its last write's ids, or those of the write the tenant refused; `mam-bot audit
export` shows them.

The bot is the one `bot.compose.build_deps` builds: its Microsoft clients' listeners include the audit log's
`record_write`. The sandbox notes the ids of each call it answers (`SandboxStats.answers`).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from bot.local import DEMO_APPROVER
from bot.sandbox import SandboxConfig
from bot.sandbox.control import Answered
from bot.store import AuditEntry
from bot.store.audit import export_rows
from commands.ids import Action
from tests.scenario.conftest import Bot
from tests.scenario.test_card_is_the_call import file_connector_toggle, file_policy_create
from workflows.changes import State

REFUSE_CONNECTOR_PATCH = {"PATCH /deviceManagement/mobileThreatDefenseConnectors": [403]}


def approve(bot: Bot, request_id: int) -> tuple[list[Answered], list[tuple[str, str]]]:
    """Approve by a signed click; the writes the tenant answered for it, and those it applied (its own log)."""
    tenant = bot.sandbox
    assert tenant is not None
    answered, applied = len(tenant.stats.answers), len(tenant.stats.write_requests)
    bot.click(Action.APPROVE, user=DEMO_APPROVER, value=str(request_id))
    return ([a for a in tenant.stats.answers[answered:] if a.write],
            [(w.method, w.path) for w in tenant.stats.write_requests[applied:]])


def write_rows(bot: Bot) -> list[AuditEntry]:
    return [r for r in bot.audit() if r.actor == "mam-bot" and r.action.startswith(("graph ", "defender "))]


def outcome_row(bot: Bot, request_id: int, kind: str) -> AuditEntry:
    (row,) = [r for r in bot.audit() if r.action == f"execute #{request_id} {kind}"
              and r.outcome not in ("executing", "resumed")]
    return row


def assert_on_record(bot: Bot, request_id: int, writes: list[Answered]) -> None:
    """Each write has exactly one row: the tenant's request-id, the bot's client-request-id, the change's id."""
    rows = write_rows(bot)
    for write in writes:
        found = [r for r in rows if r.graph_request_id == write.request_id]
        assert len(found) == 1, f"{write.method} {write.path} ({write.request_id}): rows {found}"
        (row,) = found
        assert row.client_request_id == write.client_request_id and row.client_request_id
        assert row.action.startswith(f"graph {write.method} /") and row.target == write.path
        assert row.outcome == str(write.status)
        assert row.detail.startswith(f"change #{request_id}, "), row.detail
        # run after the approver's click acked: the click's context followed the work (bot.app.BotApp.dispatch)
        assert f"slack user {DEMO_APPROVER}" in row.detail, row.detail
    assert len({r.correlation_id for r in rows if r.graph_request_id in {w.request_id for w in writes}}) == 1
    assert all(r.correlation_id for r in rows)


def test_each_write_of_a_change_is_on_record_with_the_tenants_and_the_bots_ids(make_bot: Callable[..., Bot]):
    bot = make_bot()
    request_id = file_policy_create(bot)

    writes, applied = approve(bot, request_id)

    assert bot.deps.changes.require(request_id).state == State.SUCCEEDED
    assert [(w.method, w.path) for w in writes] == applied
    assert len(writes) == 3  # create, targetApps, assign
    assert_on_record(bot, request_id, writes)
    done = outcome_row(bot, request_id, "policy_create")
    assert done.outcome == "succeeded"
    # the click, its approval and the writes it set off share one correlation id, which its log lines carry too
    (approved,) = [r for r in bot.audit() if r.action == f"approve #{request_id}" and r.outcome == "approved"]
    click = approved.correlation_id
    assert click and {r.correlation_id for r in write_rows(bot) if r.detail.startswith(f"change #{request_id}")} == {
        click}
    assert done.correlation_id == click
    assert (done.graph_request_id, done.client_request_id) == (writes[-1].request_id, writes[-1].client_request_id)

    exported = [json.loads(line) for line in export_rows(bot.deps.audit.iter_all(), "jsonl")]
    assert {(e["graph_request_id"], e["client_request_id"]) for e in exported} >= {
        (w.request_id, w.client_request_id) for w in writes}


def test_a_refused_write_is_on_record_and_its_ids_are_on_the_failed_row(make_bot: Callable[..., Bot]):
    bot = make_bot(SandboxConfig(fail=REFUSE_CONNECTOR_PATCH))
    request_id = file_connector_toggle(bot)

    writes, applied = approve(bot, request_id)

    request = bot.deps.changes.require(request_id)
    assert request.state == State.FAILED, request.result
    assert applied == [] and [(w.method, w.status) for w in writes] == [("PATCH", 403)]
    assert_on_record(bot, request_id, writes)
    failed = outcome_row(bot, request_id, "connector_toggle")
    assert failed.outcome == "failed"
    assert (failed.graph_request_id, failed.client_request_id) == (writes[0].request_id, writes[0].client_request_id)
    assert writes[0].request_id in request.error  # and the person is told the same id
