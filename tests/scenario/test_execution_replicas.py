"""Two real `mam-bot serve` replicas on one PostgreSQL database and one sandbox tenant holding writes:
two changes to one policy approved at the same moment both land, and a replica killed mid-execution
is finished by the other, with one write."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlmodel import col, select

from bot.local import DEMO_APPROVER
from bot.sandbox import SEED_POLICY_ID, SEED_POLICY_NAME
from bot.store import ChangeRequest, create_store
from commands.ids import Action
from commands.payloads import RequestRef
from tests.scenario.live import LiveBot, wait_until
from tests.scenario.live import replicas as start_replicas
from workflows.changes import State

pytestmark = [pytest.mark.http, pytest.mark.postgres]

WHY = "pilot MAM threat signals (CHG0042)"


@pytest.fixture
def replicas(tmp_path, slack, sandbox, pg_url) -> Iterator[tuple[LiveBot, LiveBot]]:
    with start_replicas("http", tmp_path, slack, sandbox.url, pg_url) as (a, b):
        yield a, b


def requests(database_url: str) -> list[ChangeRequest]:
    store = create_store(database_url)
    try:
        with store.session() as session:
            return list(session.exec(select(ChangeRequest).order_by(col(ChangeRequest.id))))
    finally:
        store.close()


def file(bot: LiveBot, group: str, database_url: str) -> int:
    before = len(requests(database_url))
    bot.command(f'assign "{SEED_POLICY_NAME}" "{group}" --why "{WHY}"')
    filed = wait_until(lambda: requests(database_url)[before:], timeout=30, what=f"the request for {group}")
    return int(filed[0].id)


def approve(bot: LiveBot, request_id: int) -> None:
    bot.click(Action.APPROVE, user=DEMO_APPROVER, value=RequestRef(id=request_id).encode())


def state_of(database_url: str, request_id: int) -> ChangeRequest:
    return next(r for r in requests(database_url) if r.id == request_id)


def groups(sandbox) -> set[str]:
    policy = next(p for p in sandbox.tenant.policies if p["id"] == SEED_POLICY_ID)
    return {str(a["target"].get("groupId")) for a in policy["assignments"]}


def test_two_changes_to_one_policy_approved_at_once_on_two_replicas_both_land(replicas, sandbox, pg_url):
    a, b = replicas
    finance, sales = file(a, "Finance", pg_url), file(b, "Sales EMEA", pg_url)
    hold = sandbox.tenant.hold_writes(timeout=30)
    clicks = [threading.Thread(target=approve, args=(a, finance)), threading.Thread(target=approve, args=(b, sales))]
    for click in clicks:
        click.start()
    for click in clicks:
        click.join()
    assert hold.wait_for_writes(1, timeout=30)  # one assign in flight: the other waits for the policy's lease
    hold.release()
    wait_until(lambda: {state_of(pg_url, i).state for i in (finance, sales)} == {State.SUCCEEDED},
               timeout=60, what="both changes done")
    ids = {str(sandbox.tenant.group(name)["id"]) for name in ("Finance", "Sales EMEA")}
    assert ids <= groups(sandbox)
    assert sandbox.tenant.stats.count("POST", "/assign") == 2


def test_a_replica_killed_mid_execution_is_finished_by_the_other_with_one_write(replicas, sandbox, pg_url):
    a, _b = replicas
    request_id = file(a, "Finance", pg_url)
    hold = sandbox.tenant.hold_writes(timeout=60)
    approve(a, request_id)
    assert hold.wait_for_writes(1, timeout=30)
    assert state_of(pg_url, request_id).state == State.EXECUTING
    a.proc.kill()  # kill -9, with its write in flight
    a.proc.wait(timeout=10)
    hold.release()  # the write the dead process sent lands now
    done = wait_until(lambda: (r := state_of(pg_url, request_id)).state == State.SUCCEEDED and r,
                      timeout=90, what="the other replica finishing the change")
    assert done.resumed == 1 and "resumed" in done.result
    assert "the earlier run of this change wrote it" in done.result
    assert sandbox.tenant.stats.count("POST", "/assign") == 1
    assert str(sandbox.tenant.group("Finance")["id"]) in groups(sandbox)
