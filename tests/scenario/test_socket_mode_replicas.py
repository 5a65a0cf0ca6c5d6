"""Two `mam-bot run` processes on one PostgreSQL database, each with its own Socket Mode connection:
Slack spreads the envelopes over both, and everything is still done once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from bot.local import DEMO_ADMIN, DEMO_APPROVER
from bot.store import AuditLog, create_store
from commands.ids import Action
from tests.scenario.live import ROOT, LiveBot, bot_env, wait_until
from tests.scenario.live import replicas as start_replicas
from workflows.connector_change import ANDROID_MAM

pytestmark = [pytest.mark.http, pytest.mark.postgres]

WHY = "turn on MAM threat signals for the pilot (CHG0042)"


@pytest.fixture
def database_url(pg_url: str) -> str:
    return pg_url


@pytest.fixture
def replicas(tmp_path, slack, sandbox, database_url) -> Iterator[tuple[LiveBot, LiveBot]]:
    with start_replicas("socket", tmp_path, slack, sandbox.url, database_url) as (a, b):
        yield a, b


def test_two_replicas_share_the_envelopes_and_do_everything_once(replicas, slack, sandbox, database_url, tmp_path):
    a, _b = replicas
    server = slack.socket_mode()
    connections = server.wait_for_connections(2)
    assert len(connections) == 2

    # every command answered once, and both replicas answered some
    for _ in range(6):
        payload, _url = a.command("help")
        assert payload["response_type"] == "ephemeral"
    helps = a.envelopes[-6:]
    assert all(len(server.acks_for(e)) == 1 for e in helps)
    assert {server.acks_for(e)[0].connection for e in helps} == set(connections)
    assert len([m for m in slack.ephemerals(DEMO_ADMIN) if "/mam connectors" in str(m.blocks)]) == 6

    # a change approved on one replica, its approval sent again to the other: executed once
    payload, _ = a.command(f"connectors enable-android {WHY}")
    assert "Filing a change request" in payload["text"]
    card = wait_until(lambda: [m for m in slack.messages(DEMO_APPROVER) if "Change request #" in m.text],
                      what="the approval card")[-1]
    request_id = card.text.split("#")[1].split(":")[0].split()[0]
    a.click(Action.APPROVE, user=DEMO_APPROVER, value=request_id, channel=card.channel, message_ts=card.ts)
    click = a.envelopes[-1]
    wait_until(lambda: sandbox.tenant.connector()[ANDROID_MAM], what="the change executed")
    first = server.acks_for(click)[0].connection
    [other] = [c for c in connections if c != first]
    server.redeliver(click, connection=other)
    wait_until(lambda: len(server.acks_for(click)) == 2, what="the second copy acked")
    assert server.acks_for(click)[1].connection == other
    assert sandbox.tenant.stats.count("PATCH", "mobileThreatDefenseConnectors") == 1
    store = create_store(database_url)
    try:
        outcomes = [(r.actor, r.outcome) for r in AuditLog(store).iter_all()]
    finally:
        store.close()
    assert outcomes.count(("mam-bot", "executing")) == 1 and outcomes.count(("mam-bot", "succeeded")) == 1

    # one of them leads the scheduler
    jobs = subprocess.run([sys.executable, "-m", "bot.cli", "jobs", "list"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60,
                          env=bot_env(tmp_path, DATABASE_URL=database_url, PYTHONPATH=str(ROOT)))
    assert jobs.returncode == 0, jobs.stderr
    leader = jobs.stdout.splitlines()[0]
    pids = {str(bot.proc.pid) for bot in replicas}
    assert leader.startswith("leader: ") and "(lease until" in leader, leader
    holder = leader.removeprefix("leader: ").split(" ")[0]
    assert holder.split(":")[1] in pids, (holder, pids)
