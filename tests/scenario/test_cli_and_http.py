"""The real `mam-bot` processes: the main scenarios over both transports (`serve` over HTTP with signed
requests, `run` over Socket Mode with the local Socket Mode server), and start-up failures."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.console.fake_slack import FakeSlack
from bot.local import CONSOLE_CHANNELS, DEMO_ADMIN, DEMO_APPROVER
from bot.sandbox import SEED_POLICY_ID, SandboxServer, SandboxTenant
from bot.store import AuditLog, create_store
from commands.alerts import AlertAction
from commands.ids import Action, View
from tests.scenario.conftest import block_text
from tests.scenario.live import ROOT, TRANSPORTS, LiveBot, bot_env, free_port, start_bot, wait_until
from tests.scenario.slack_requests import command_body
from tests.scenario.test_policy_requests import NAME as POLICY_NAME
from tests.scenario.test_policy_requests import policy_form
from workflows.connector_change import ANDROID_MAM

__all__ = ["ROOT", "bot_env", "free_port"]  # other scenario modules start processes the same way

pytestmark = pytest.mark.http

WHY = "turn on MAM threat signals for the pilot (CHG0042)"


def mam_bot(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def tenant(sandbox: SandboxServer) -> SandboxTenant:
    return sandbox.tenant


@pytest.fixture(params=TRANSPORTS)
def live(request, tmp_path, slack, sandbox) -> Iterator[LiveBot]:
    """`mam-bot serve` (http) or `mam-bot run` (socket) against FakeSlack and the sandbox tenant."""
    bot = start_bot(request.param, tmp_path, slack, MAM_GRAPH_URL=sandbox.url, MAM_DEFENDER_URL=sandbox.url)
    yield bot
    bot.stop()


@pytest.fixture
def server(tmp_path, slack) -> Iterator[str]:
    """`mam-bot serve` alone: for what only HTTP has (signatures, /healthz)."""
    bot = start_bot("http", tmp_path, slack)
    yield bot.base
    bot.stop()


def post_signed(base: str, body: str, **sign) -> httpx.Response:
    from tests.scenario.slack_requests import signed_headers

    headers = {k: v[0] for k, v in signed_headers(body, **sign).items()}
    return httpx.post(f"{base}/slack/events", content=body, headers=headers, timeout=10)


def test_help_is_answered_in_the_ack(live: LiveBot):
    started = time.monotonic()
    payload, _url = live.command("help")
    elapsed = time.monotonic() - started
    assert payload["response_type"] == "ephemeral"
    assert "/mam connectors" in json.dumps(payload["blocks"])
    assert elapsed < 3  # Slack's deadline, not a performance target (see benchmarks/)
    [shown] = live.slack.ephemerals(DEMO_ADMIN)  # what the person sees: the ack's reply
    assert "/mam connectors" in block_text(shown.blocks)


def test_the_connector_card_is_filled_through_the_sandbox(live: LiveBot):
    payload, url = live.command("connectors")
    assert "checking" in json.dumps(payload).lower()
    wait_until(lambda: live.slack.response_url_uses(url) >= 1, what="the connector card's update")
    assert live.slack.response_url_uses(url) == 1


def test_a_change_request_approved_by_another_person_is_executed_once(live: LiveBot, tenant: SandboxTenant):
    payload, _url = live.command(f"connectors enable-android {WHY}")
    assert "Filing a change request" in payload["text"]
    filed = wait_until(lambda: [e for e in live.slack.events
                                if e.kind == "response" and "Filed change request #" in e.text],
                       what="the change request being filed")
    request_id = int(filed[-1].text.split("#")[1].split(":")[0])
    card = wait_until(lambda: [m for m in live.slack.messages(DEMO_APPROVER) if "Change request #" in m.text],
                      what="the approval card in the approver's DM")[-1]
    assert tenant.connector()[ANDROID_MAM] is False

    live.click(Action.APPROVE, user=DEMO_APPROVER, value=str(request_id), channel=card.channel, message_ts=card.ts)

    wait_until(lambda: "Done" in block_text((live.slack.message(card.channel, card.ts) or card).blocks),
               what="the approval card saying Done")
    assert tenant.connector()[ANDROID_MAM] is True
    assert tenant.stats.count("PATCH", "mobileThreatDefenseConnectors") == 1
    database = live_database(live)
    actions = [(r.actor, r.outcome) for r in database]
    assert actions.count(("mam-bot", "executing")) == 1 and actions.count(("mam-bot", "succeeded")) == 1
    assert (DEMO_APPROVER, "approved") in actions


def test_a_policy_form_files_a_request_that_creates_the_policy(live: LiveBot, tenant: SandboxTenant):
    live.command("policy new")
    form = wait_until(lambda: [v for v in live.slack.views_open if v["callback_id"] == View.POLICY_NEW],
                      what="the policy form opening")[-1]
    pilot = str(tenant.group("MAM Pilot")["id"])
    mistakes = live.submit(View.POLICY_NEW, view_id=form["id"], state=policy_form(name="", include=(pilot,)))
    assert mistakes["response_action"] == "errors" and set(mistakes["errors"]) == {"name"}
    assert live.slack.view_is_open(form["id"])  # the errors show in the open form

    ack = live.submit(View.POLICY_NEW, view_id=form["id"], state=policy_form(include=(pilot,)))
    assert ack["response_action"] == "update"
    assert "Checking the tenant" in block_text((live.slack.view(form["id"]) or {})["blocks"])  # the ack's view
    wait_until(lambda: "Filed change request #" in block_text((live.slack.view(form["id"]) or {})["blocks"]),
               what="the form saying the request was filed")
    card = wait_until(lambda: [m for m in live.slack.messages(DEMO_APPROVER) if "Change request #" in m.text],
                      what="the approval card")[-1]
    request_id = card.text.split("#")[1].split(":")[0].split()[0]
    live.click(Action.APPROVE, user=DEMO_APPROVER, value=request_id, channel=card.channel, message_ts=card.ts)
    policy = wait_until(lambda: [p for p in tenant.policies if p["displayName"] == POLICY_NAME],
                        what="the policy in the tenant")[0]
    assert policy["maximumAllowedDeviceThreatLevel"] == "low"


def live_database(live: LiveBot) -> list:
    store = create_store(f"sqlite:///{live.log_path.parent}/serve.db")
    try:
        return list(AuditLog(store).iter_all())
    finally:
        store.close()


def test_serve_rejects_bad_signatures_and_stale_timestamps(server, slack):
    body = command_body("help", user="UADMIN001", response_url=slack.new_response_url())
    assert post_signed(server, body, secret="wrong").status_code == 401
    assert post_signed(server, body, timestamp=int(time.time()) - 6 * 60).status_code == 401


def test_healthz(server):
    response = httpx.get(f"{server}/healthz", timeout=5)
    assert response.status_code == 200 and response.json() == {"status": "ok", "database": "sqlite"}


def test_run_without_app_token_is_one_line_naming_it(tmp_path):
    result = mam_bot("run", env=bot_env(tmp_path, SLACK_BOT_TOKEN="xoxb-test", PYTHONPATH=str(ROOT)), cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mam-bot run: SLACK_APP_TOKEN is not set")


def test_serve_without_signing_secret_refuses_to_start(tmp_path):
    result = mam_bot("serve", env=bot_env(tmp_path, SLACK_BOT_TOKEN="xoxb-test", PYTHONPATH=str(ROOT)), cwd=tmp_path)
    assert result.returncode != 0 and "SLACK_SIGNING_SECRET is not set" in result.stderr


def test_a_malformed_setting_stops_start_up_with_one_line(tmp_path):
    result = mam_bot("run", env=bot_env(tmp_path, MAM_CLOUD="azure", PYTHONPATH=str(ROOT)), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "MAM_CLOUD: 'azure' is not allowed; expected one of global, gcc, gcc-high, dod, china, sandbox"]


def test_run_with_a_refused_bot_token_says_so(tmp_path, slack):
    env = bot_env(tmp_path, SLACK_BOT_TOKEN="xoxb-revoked", SLACK_APP_TOKEN="xapp-1", SLACK_API_URL=slack.api_url,
                  MAM_CLOUD="sandbox", PYTHONPATH=str(ROOT))
    slack.fail_next("auth.test", "invalid_auth")
    result = mam_bot("run", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN: Slack refused it (invalid_auth)" in result.stderr


def test_manifest_http_variant_and_check(tmp_path):
    env = bot_env(tmp_path, PYTHONPATH=str(ROOT))
    result = mam_bot("manifest", "--http-url", "https://mam.example.com", env=env, cwd=tmp_path)
    assert result.returncode == 0 and "request_url: https://mam.example.com/slack/events" in result.stdout
    check = mam_bot("check", env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stdout
    assert "mode run" in check.stdout and "needs SLACK_APP_TOKEN, SLACK_BOT_TOKEN" in check.stdout
    assert "feature connector-status" in check.stdout


def test_audit_export(tmp_path):
    env = bot_env(tmp_path, PYTHONPATH=str(ROOT))
    from bot.store import AuditLog, create_store

    store = create_store(env["DATABASE_URL"])
    AuditLog(store).record(actor="UADMIN001", action="/mam help", outcome="ok")
    store.close()
    csv_out = mam_bot("audit", "export", "--format", "csv", env=env, cwd=tmp_path)
    assert csv_out.stdout.splitlines()[0].startswith("id,at,actor,action")
    jsonl = mam_bot("audit", "export", "--format", "jsonl", env=env, cwd=tmp_path)
    assert json.loads(jsonl.stdout.splitlines()[0])["action"] == "/mam help"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_sweeps_alert_card_is_posted_and_acknowledged(transport, tmp_path, sandbox):
    """The sweep runs by itself first (`mam-bot jobs run`, no bot holds the scheduler yet) and queues its
    cards; the bot, once up, posts them, and an approver's Acknowledge edits the card in place."""
    sandbox.tenant.policies_store.update(SEED_POLICY_ID, {"maximumAllowedDeviceThreatLevel": "medium",
                                                          "mobileThreatDefenseRemediationAction": "block"}, True)
    sandbox.tenant.set_connector(androidMobileApplicationManagementEnabled=True)  # Intune enforces the level
    alerts = "C0ALERTS"
    with FakeSlack(channels=CONSOLE_CHANNELS) as slack:
        shared = {"MAM_GRAPH_URL": sandbox.url, "MAM_DEFENDER_URL": sandbox.url, "MAM_ALERT_CHANNEL": alerts}
        env = bot_env(tmp_path, SLACK_BOT_TOKEN="xoxb-test", SLACK_API_URL=slack.api_url, PYTHONPATH=str(ROOT),
                      MAM_APPROVERS=DEMO_APPROVER, **shared)
        swept = subprocess.run([sys.executable, "-m", "bot.cli", "jobs", "run", "threat-sweep"], env=env,
                               cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert swept.returncode == 0, swept.stderr
        bot = start_bot(transport, tmp_path, slack, **shared)
        try:
            cards = wait_until(lambda: [m for m in slack.messages(alerts)
                                        if not m.thread_ts and "App blocked" in block_text(m.blocks)],
                               timeout=30, what="the sweep's alert cards posted by the bot")
            card = cards[0]
            ack = next(el for b in card.blocks if b["type"] == "actions" for el in b["elements"]
                       if el["action_id"] == AlertAction.ACK)
            bot.click(AlertAction.ACK, user=DEMO_APPROVER, value=ack["value"], channel=alerts, message_ts=card.ts)
            wait_until(lambda: f"Acknowledged by <@{DEMO_APPROVER}>" in block_text(
                (slack.message(alerts, card.ts) or card).blocks), what="the card saying who acknowledged it")
            assert len([m for m in slack.messages(alerts) if not m.thread_ts]) == len(cards)  # edited, not reposted
        finally:
            bot.stop()


def test_a_second_console_run_on_the_same_database_answers_its_first_command(tmp_path):
    """The console keeps its database between runs; each run's fake Slack must make trigger ids of its own,
    or the bot's duplicate check takes the next run's first command for a copy of the last run's."""
    env = bot_env(tmp_path, PYTHONPATH=str(ROOT), MAM_CLOUD="sandbox")
    outputs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "bot.cli", "console"], input="/mam help\n", cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert all("/mam connectors" in out for out in outputs), outputs[1]
