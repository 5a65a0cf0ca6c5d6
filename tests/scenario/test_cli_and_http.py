"""The real `mam-bot` processes: `serve` over HTTP with signed requests, and start-up failures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bot.console.fake_slack import FakeSlack
from tests.scenario.slack_requests import SIGNING_SECRET, command_body, signed_headers

pytestmark = pytest.mark.http

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bot_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AZURE_", "MAM_", "DATABASE_"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path}/serve.db", "MAM_ADMINS": "UADMIN001", "PYTHONUNBUFFERED": "1",
                "MAM_CLOUD": "sandbox"})  # with real Slack tokens MAM_CLOUD must be set: this is the fake Slack
    env.update(extra)
    return env


def mam_bot(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def slack():
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture
def server(tmp_path, slack):
    port = free_port()
    env = bot_env(tmp_path, SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET=SIGNING_SECRET,
                  SLACK_API_URL=slack.api_url, MAM_CLOUD="sandbox")
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
        if proc.poll() is not None:
            pytest.fail(f"mam-bot serve exited: {proc.stdout.read() if proc.stdout else ''}")
    else:
        proc.kill()
        pytest.fail("mam-bot serve did not become healthy in 30 s")
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def post_signed(base: str, body: str, **sign) -> httpx.Response:
    headers = {k: v[0] for k, v in signed_headers(body, **sign).items()}
    return httpx.post(f"{base}/slack/events", content=body, headers=headers, timeout=10)


def test_serve_answers_a_signed_help_over_http(server, slack):
    body = command_body("help", user="UADMIN001", response_url=slack.new_response_url(user="UADMIN001"))
    started = time.monotonic()
    response = post_signed(server, body)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    payload = json.loads(response.text)
    assert payload["response_type"] == "ephemeral"
    assert "/mam connectors" in json.dumps(payload["blocks"])
    assert elapsed < 3  # Slack's deadline, not a performance target (see benchmarks/)


def test_serve_fills_the_connector_card_through_the_sandbox(server, slack):
    url = slack.new_response_url(user="UADMIN001")
    response = post_signed(server, command_body("connectors", user="UADMIN001", response_url=url))
    assert response.status_code == 200 and "checking" in response.text.lower()
    deadline = time.monotonic() + 10
    while slack.response_url_uses(url) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert slack.response_url_uses(url) == 1


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
