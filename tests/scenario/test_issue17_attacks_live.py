"""Issue 17 under attack, in a real `mam-bot serve`: with MAM_LOG_FORMAT=json, is every line of stderr JSON, and does
the operator's port survive hostile clients while the bot serves Slack?"""

from __future__ import annotations

import json
import re
import socket
import time

import httpx
import pytest

from tests.scenario.live import LiveBot
from tests.scenario.test_json_logs import serve

pytestmark = pytest.mark.http


def operator_url(bot: LiveBot) -> str:
    found = re.search(r"metrics at (http://[\d.]+:\d+)/metrics", bot.log())
    assert found, bot.log()
    return found.group(1)


def test_with_json_logs_every_line_of_stderr_is_a_json_object(tmp_path, slack, sandbox):
    """Fixed (low): bot/cli.py prints its start lines ("mam-bot metrics at …", "mam-bot serving Slack at …") as
    plain text on stderr whatever MAM_LOG_FORMAT says; a pipeline that parses each line as JSON (the ConfigMap sets
    json) gets parse errors on every start. tests/scenario/test_json_logs.py keeps only lines starting with `{`."""
    bot = serve(tmp_path, slack, sandbox, "json")
    try:
        bot.command("help")
    finally:
        bot.stop()
    bad = []
    for line in bot.log().splitlines():
        try:
            if not isinstance(json.loads(line), dict):
                bad.append(line)
        except ValueError:
            bad.append(line)
    assert not bad, bad[:5]


def test_the_operator_port_of_a_serving_bot_survives_hostile_clients(tmp_path, slack, sandbox):
    bot = serve(tmp_path, slack, sandbox, "json")
    try:
        base = operator_url(bot)
        host, port = base.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port))) for _ in range(20)]
        try:
            with socket.create_connection((host, int(port))) as junk:
                junk.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64)  # a TLS hello
            started = time.monotonic()
            for path in ("/livez", "/healthz", "/metrics"):
                assert httpx.get(f"{base}{path}", timeout=2).status_code == 200, path
            assert time.monotonic() - started < 2
            payload, _ = bot.command("help")  # Slack's port unaffected
            assert payload
        finally:
            for sock in idle:
                sock.close()
    finally:
        bot.stop()
