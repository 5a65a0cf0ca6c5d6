"""MAM_LOG_FORMAT in a real `mam-bot --log-level debug serve`: with json, each line of stderr is one JSON object
and what the bot logs while handling a /mam command carries that request's correlation id, user and team; in
either format no secret value (the bot token, the signing secret, Azure's client secret) reaches stderr."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.console.fake_slack import FakeSlack
from bot.local import DEMO_ADMIN, DEMO_APPROVER
from bot.sandbox import SandboxServer
from tests.scenario.live import ROOT, LiveBot, bot_env, free_port, wait_until
from tests.scenario.slack_requests import SIGNING_SECRET

pytestmark = pytest.mark.http

BOT_TOKEN = "xoxb-4242-4343-JsonLogsBotTokenValue"
CLIENT_SECRET = "Zq8~JsonLogs.ClientSecret_0123456789"  # the sandbox signs in with no secret: it is only there to leak
SECRETS = (BOT_TOKEN, SIGNING_SECRET, CLIENT_SECRET)


def serve(tmp_path: Path, slack: FakeSlack, sandbox: SandboxServer, fmt: str) -> LiveBot:
    """`mam-bot --log-level debug serve` with the secrets above, its stderr alone in the LiveBot's log."""
    port = free_port()
    env = bot_env(tmp_path, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                  AZURE_CLIENT_SECRET=CLIENT_SECRET, SLACK_API_URL=slack.api_url, MAM_APPROVERS=DEMO_APPROVER,
                  MAM_GRAPH_URL=sandbox.url, MAM_DEFENDER_URL=sandbox.url, MAM_LOG_FORMAT=fmt, MAM_METRICS_PORT="0",
                  PYTHONPATH=str(ROOT))
    log_path = tmp_path / f"stderr-{fmt}.log"
    with log_path.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--log-level", "debug", "serve", "--port", str(port)],
                                env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr)
    bot = LiveBot("http", slack, proc, log_path, base=f"http://127.0.0.1:{port}")
    try:
        wait_until(lambda: proc.poll() is not None or _healthy(bot.base), timeout=30,
                   what="mam-bot serve answering /healthz")
        assert proc.poll() is None, f"mam-bot serve exited ({proc.returncode}): {bot.log()}"
    except BaseException:
        bot.stop()
        raise
    return bot


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def handle_one_command(bot: LiveBot) -> str:
    """`/mam policy show` with the secrets pasted as the name, then the process stopped. The ack quotes the name
    (Bolt logs the ack's body at debug); after the ack the runner reads the tenant and answers through the
    response_url, quoting it again (slack_sdk logs the body it sends). Returns the response_url."""
    try:
        payload, url = bot.command(f'policy show "{BOT_TOKEN} {SIGNING_SECRET} {CLIENT_SECRET}"')
        assert CLIENT_SECRET in payload["text"]  # what the log would hold, unredacted
        wait_until(lambda: bot.slack.response_url_uses(url) >= 1, what="the answer after the ack")
    finally:
        bot.stop()
    return url


@pytest.fixture
def json_bot(tmp_path, slack, sandbox) -> Iterator[LiveBot]:
    bot = serve(tmp_path, slack, sandbox, "json")
    yield bot
    bot.stop()


@pytest.fixture
def text_bot(tmp_path, slack, sandbox) -> Iterator[LiveBot]:
    bot = serve(tmp_path, slack, sandbox, "text")
    yield bot
    bot.stop()


def test_json_lines_carry_the_requests_correlation_id_and_no_secret(json_bot: LiveBot):
    url = handle_one_command(json_bot)
    written = json_bot.log()
    assert not [secret for secret in SECRETS if secret in written]
    lines: list[dict[str, Any]] = [json.loads(line) for line in written.splitlines() if line.startswith("{")]
    assert len(lines) > 10, written  # at debug: Bolt, the transport, the scheduler, slack_sdk
    assert all({"ts", "level", "logger", "message", "thread"} <= set(line) for line in lines)
    # the listener on the request's thread, the tenant read and the answer after the ack on the runner's
    [start] = [n for n, line in enumerate(lines) if line["message"].startswith("Running listener")]
    [end] = [n for n, line in enumerate(lines) if line["message"].startswith(f"Sending a request - url: {url}")]
    listener, answer = lines[start], lines[end]
    graph = [line for line in lines[start:end] if line["logger"] == "bot.microsoft.transport"
             and line["thread"] == answer["thread"]]  # not the start-up's warm-up, on the same pool
    assert graph and answer["thread"].startswith("mam-work") and listener["thread"] != answer["thread"]
    correlation_id = listener.get("correlation_id")
    assert correlation_id and all(line.get("correlation_id") == correlation_id for line in [answer, *graph])
    assert "***" in answer["message"]
    # whatever carries it names the person and the team
    carrying = [line for line in lines if line.get("correlation_id") == correlation_id]
    assert all(line.get("slack_user") == DEMO_ADMIN and line.get("slack_team") for line in carrying)


def test_text_lines_hold_no_secret(text_bot: LiveBot):
    url = handle_one_command(text_bot)
    written = text_bot.log()
    assert not [secret for secret in SECRETS if secret in written]
    [answer] = [line for line in written.splitlines() if f"Sending a request - url: {url}" in line]
    assert "***" in answer and re.search(rf" \[cid=[0-9a-f]{{12}} user={DEMO_ADMIN} team=T\w+\]$", answer), answer
    assert not [line for line in written.splitlines() if line.startswith("{")]
