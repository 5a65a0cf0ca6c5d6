"""`mam-bot run` as a real process through its Socket Mode connection's life: Slack's `disconnect`
messages, a cut connection, envelopes sent again, and the link being disabled for good."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from bot.console.fake_slack import FakeSlack
from bot.local import DEMO_ADMIN, DEMO_APPROVER
from bot.sandbox import SandboxServer
from bot.socket_mode import LINK_DISABLED_EXIT, LINK_DISABLED_LINE
from commands.ids import Action
from tests.scenario.live import ROOT, LiveBot, bot_env, start_bot, wait_until
from workflows.connector_change import ANDROID_MAM

pytestmark = pytest.mark.http

WHY = "turn on MAM threat signals for the pilot (CHG0042)"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    fake.socket_mode(disconnect_grace=0.3)
    yield fake
    fake.stop()


@pytest.fixture
def run(tmp_path, slack, sandbox) -> Iterator[LiveBot]:
    bot = start_bot("socket", tmp_path, slack, MAM_GRAPH_URL=sandbox.url, MAM_DEFENDER_URL=sandbox.url)
    yield bot
    bot.stop()


def answers_to(bot: LiveBot, user: str = DEMO_ADMIN) -> int:
    return len([m for m in bot.slack.ephemerals(user) if "/mam connectors" in str(m.blocks)])


@pytest.mark.parametrize("how", ["refresh_requested", "warning", "dropped"])
def test_after_a_disconnect_or_a_cut_the_bot_reconnects_and_answers_what_came_meanwhile(run: LiveBot, how: str):
    server = run.socket
    [first] = server.connections
    if how == "dropped":
        server.drop(first)
    else:
        server.disconnect(how, first)  # type: ignore[arg-type]
    # sent while the bot is between connections: it must arrive, and be answered once
    envelope_id, _url = server.slash_command("help", user=DEMO_ADMIN)
    server.wait_closed(first)
    [second] = server.wait_for_connections(1, after=first, timeout=10)
    ack = server.wait_ack(envelope_id)
    assert ack.payload and ack.payload["response_type"] == "ephemeral"
    wait_until(lambda: answers_to(run) == 1, what="the help answer shown")
    assert len(server.acks_for(envelope_id)) == 1 and answers_to(run) == 1
    # the new connection carries the next command as the old one did
    payload, _ = run.command("help")
    assert payload["response_type"] == "ephemeral" and server.connections == [second]
    assert run.proc.poll() is None


def test_an_approval_sent_again_after_its_ack_was_lost_executes_once(run: LiveBot, sandbox: SandboxServer):
    payload, _ = run.command(f"connectors enable-android {WHY}")
    assert "Filing a change request" in payload["text"]
    card = wait_until(lambda: [m for m in run.slack.messages(DEMO_APPROVER) if "Change request #" in m.text],
                      what="the approval card")[-1]
    request_id = card.text.split("#")[1].split(":")[0].split()[0]
    run.click(Action.APPROVE, user=DEMO_APPROVER, value=request_id, channel=card.channel, message_ts=card.ts)
    click = run.envelopes[-1]
    wait_until(lambda: sandbox.tenant.connector()[ANDROID_MAM], what="the change executed")

    run.socket.redeliver(click)  # as Slack does when the ack went down with a connection

    wait_until(lambda: len(run.socket.acks_for(click)) == 2, what="the second copy acked")
    second = run.socket.acks_for(click)[1]
    assert second.known and not second.payload  # a duplicate: acked, nothing else
    assert sandbox.tenant.stats.count("PATCH", "mobileThreatDefenseConnectors") == 1
    assert [d.retry_attempt for d in run.socket.deliveries_of(click)] == [0, 1]


def test_link_disabled_exits_non_zero_with_one_line_and_does_not_reconnect(run: LiveBot, tmp_path):
    server = run.socket
    hellos = server.hellos
    server.disconnect("link_disabled")
    assert run.proc.wait(timeout=15) == LINK_DISABLED_EXIT
    log = run.log()
    assert log.count(LINK_DISABLED_LINE) == 1, log
    assert server.hellos == hellos and server.connections == []
    assert len(run.slack.calls_to("apps.connections.open")) == 1  # no attempt to come back
    # the clean-up ran: the scheduler's lease was handed back rather than left to run out
    jobs = subprocess.run([sys.executable, "-m", "bot.cli", "jobs", "list"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env=bot_env(tmp_path, PYTHONPATH=str(ROOT)))
    assert jobs.returncode == 0, jobs.stderr
    assert jobs.stdout.startswith("leader: none (the last one,"), jobs.stdout


def test_a_refused_app_token_stops_run_with_one_line(tmp_path, slack):
    slack.fail_next("apps.connections.open", "invalid_auth")
    bot_proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env=bot_env(tmp_path, SLACK_BOT_TOKEN="xoxb-test", SLACK_APP_TOKEN="xapp-1-revoked",
                    SLACK_API_URL=slack.api_url, PYTHONPATH=str(ROOT)))
    assert bot_proc.returncode == 2
    assert ("SLACK_APP_TOKEN: Slack refused to open a Socket Mode connection (invalid_auth)"
            in bot_proc.stderr.splitlines()[-1]), bot_proc.stderr

