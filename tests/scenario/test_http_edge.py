"""Hostile and repeated requests against `mam-bot serve` as a real process: the signature is checked on
the raw bytes before anything parses the body, the body limit holds while reading, each bad request is
at most one log line and never a traceback, and replays, double clicks and event retries act once."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from bot.console.fake_slack import FakeSlack
from bot.http import MAX_BODY_BYTES
from bot.sandbox import SEED_POLICY_ID, SEED_POLICY_NAME
from commands.ids import Action
from tests.scenario.live import LiveBot, start_bot
from tests.scenario.slack_requests import (
    SIGNING_SECRET,
    action_body,
    command_body,
    event_body,
    new_action_ts,
    new_event_id,
    new_trigger_id,
    signed_headers,
)

pytestmark = pytest.mark.http

ADMIN = "UADMIN001"
WHY = "protect finance phones (CHG0042)"


@dataclass
class Served:
    """`mam-bot serve` (tests.scenario.live) and what these tests read of it: its log, memory, database."""

    bot: LiveBot
    db: Path
    _read: int = 0

    @property
    def base(self) -> str:
        return self.bot.base

    @property
    def url(self) -> str:
        return f"{self.base}/slack/events"

    def new_log_lines(self) -> list[str]:
        """The lines the server logged since the last call (after a moment for them to arrive)."""
        time.sleep(0.3)
        text = self.bot.log()
        new, self._read = text[self._read:], len(text)
        return new.splitlines()

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.bot.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def change_requests(self) -> int:
        with sqlite3.connect(self.db) as conn:
            return int(conn.execute("SELECT count(*) FROM change_requests").fetchone()[0])


@pytest.fixture
def served(tmp_path: Path, slack: FakeSlack) -> Iterator[Served]:
    bot = start_bot("http", tmp_path, slack)
    try:
        server = Served(bot, tmp_path / "serve.db")  # live.bot_env's database
        server.new_log_lines()  # start-up lines are not the requests'
        yield server
    finally:
        bot.stop()


def post(server: Served, body: str | bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(server.url, content=body, headers=headers, timeout=10)


def signed(body: str, **sign: object) -> dict[str, str]:
    return {k: v[0] for k, v in signed_headers(body, **sign).items()}  # type: ignore[arg-type]


def assert_quiet_log(lines: list[str], requests: int) -> None:
    assert not any("Traceback" in line for line in lines), "\n".join(lines)
    assert len(lines) <= requests, "\n".join(lines)


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


# ---- before the body is parsed: the signature ------------------------------------------------------------


def test_unsigned_and_badly_timed_requests_are_401_with_one_log_line_each(served, slack):
    url = slack.new_response_url(user=ADMIN)
    good = command_body("help", user=ADMIN, response_url=url)
    now = str(int(time.time()))
    json_type = {"content-type": "application/json"}
    form_type = {"content-type": "application/x-www-form-urlencoded"}
    cases = [
        ("unsigned JSON", '{"type": "event_callback", "event": {', json_type),
        ("unsigned malformed payload=", "payload=%7Bnot-json", form_type),
        ("unsigned, timestamp only", good, {**form_type, "x-slack-request-timestamp": now}),
        ("non-numeric timestamp", good, {**signed(good), "x-slack-request-timestamp": "soon"}),
        ("Unicode digits", good, {**signed(good), "x-slack-request-timestamp": ("\u0661\u0667" * 5).encode()}),
        ("stale", good, signed(good, timestamp=int(time.time()) - 6 * 60)),
        ("from the future", good, signed(good, timestamp=int(time.time()) + 6 * 60)),
        ("wrong secret", good, signed(good, secret="not-the-secret")),
        ("signature of another body", good + "&x=1", signed(good)),
    ]
    for name, body, headers in cases:
        response = post(served, body, headers)
        assert response.status_code == 401, (name, response.status_code, response.text)
    assert_quiet_log(served.new_log_lines(), len(cases))
    assert slack.response_url_uses(url) == 0
    # the bot is still serving
    assert post(served, good, signed(good)).status_code == 200


def test_signed_but_malformed_bodies_are_400_and_one_log_line_each(served):
    cases = [
        ("application/json", '{"type": "block_actions", '),
        ("application/json", "[1, 2, 3]"),
        ("application/x-www-form-urlencoded", "payload=%7Bnot-json"),
        ("application/x-www-form-urlencoded", "payload=%5B1%5D"),
        ("application/x-www-form-urlencoded", "hello"),
        ("text/plain", "just some text=1"),
        ("application/json", '{"user": "U1"}'),
        # shaped unlike anything Slack sends: each failed deep inside Bolt or the audit log, with a traceback
        ("application/json", '{"type": "view_submission", "user": {"id": "U1"}, "view": {"id": "V1"}}'),
        ("application/json", '{"type": "block_actions", "user": {"id": ["U1"]}, "actions": []}'),
        ("application/json", '{"type": "event_callback", "event": "app_home_opened"}'),
        ("application/json", '{"command": "/mam", "text": 5, "user_id": {"id": "U1"}}'),
        ("application/json", '{"type": "block_actions", "user": {"id": "U1"}, "actions": ["x"]}'),
    ]
    for content_type, body in cases:
        response = post(served, body, signed(body, content_type=content_type))
        assert response.status_code == 400, (body, response.status_code, response.text)
    raw = b"\xff\xfe not utf-8"
    ts = str(int(time.time()))
    signature = "v0=" + hmac.new(SIGNING_SECRET.encode(), f"v0:{ts}:".encode() + raw, hashlib.sha256).hexdigest()
    response = post(served, raw, {"content-type": "application/x-www-form-urlencoded",
                                  "x-slack-request-timestamp": ts, "x-slack-signature": signature})
    assert response.status_code == 400
    lines = served.new_log_lines()
    assert_quiet_log(lines, len(cases) + 1)
    assert len(lines) == len(cases) + 1, "\n".join(lines)  # exactly one line each


# ---- the body limit while reading -----------------------------------------------------------------------


def test_a_declared_oversized_body_is_413_before_it_is_sent(served):
    with socket.create_connection(("127.0.0.1", int(served.base.rsplit(":", 1)[1])), timeout=5) as sock:
        sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 400000000\r\n\r\n" + b"{" * 1000)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert_quiet_log(served.new_log_lines(), 1)


def test_an_oversized_chunked_upload_is_413_without_buffering_it(served):
    upload = 50 * 1024 * 1024
    chunk = b"a" * (64 * 1024)
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        while sent < upload:
            sent += len(chunk)
            yield chunk

    before = served.rss_kb()
    response = httpx.post(served.url, content=chunks(), timeout=30,
                          headers={"content-type": "application/x-www-form-urlencoded",
                                   "x-slack-request-timestamp": str(int(time.time())),
                                   "x-slack-signature": "v0=" + "0" * 64})
    after = served.rss_kb()
    assert response.status_code == 413
    assert sent < upload, "the server read the whole upload"
    # the limit is 1 MB: far less than the 50 MB offered (allow for the allocator and the thread pool)
    assert (after - before) * 1024 < 8 * MAX_BODY_BYTES, (before, after)
    assert_quiet_log(served.new_log_lines(), 1)
    assert httpx.get(f"{served.base}/healthz", timeout=5).status_code == 200


def test_a_body_just_under_the_limit_still_reaches_the_signature_check(served):
    body = "x=" + "a" * (MAX_BODY_BYTES - 10)
    assert post(served, body, signed(body, secret="wrong")).status_code == 401
    too_big = "x=" + "a" * MAX_BODY_BYTES
    assert post(served, too_big, signed(too_big)).status_code == 413


# ---- replays and double submits -------------------------------------------------------------------------


def test_the_same_signed_assign_sent_three_times_files_one_request(served, slack):
    url = slack.new_response_url(user=ADMIN)
    body = command_body(f'assign "{SEED_POLICY_NAME}" "Finance" --why "{WHY}"', user=ADMIN, response_url=url)
    headers = signed(body)
    responses = [post(served, body, headers) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert responses[0].text and responses[1].text == "" and responses[2].text == ""
    wait_for(lambda: served.change_requests() >= 1)
    time.sleep(1.0)  # time for any second filing to show up
    assert served.change_requests() == 1
    lines = served.new_log_lines()
    assert sum("replayed" in line for line in lines) == 2, "\n".join(lines)
    assert_quiet_log([line for line in lines if "replayed" in line], 2)


def test_the_same_command_signed_again_is_still_one_command(served, slack):
    """Signed afresh (another timestamp), the same trigger_id is the same invocation."""
    url = slack.new_response_url(user=ADMIN)
    body = command_body(f'assign "{SEED_POLICY_NAME}" "Finance" --why "{WHY}"', user=ADMIN, response_url=url)
    first = post(served, body, signed(body))
    second = post(served, body, signed(body, timestamp=int(time.time()) - 30))
    assert first.status_code == second.status_code == 200 and second.text == ""
    wait_for(lambda: served.change_requests() >= 1)
    time.sleep(1.0)
    assert served.change_requests() == 1


def test_the_same_click_delivered_twice_does_the_work_once_and_a_new_click_again(served, slack):
    url = slack.new_response_url(user=ADMIN, kind="actions")
    action_ts = new_action_ts()
    clicks = [action_body(Action.POLICY_SHOW, user=ADMIN, response_url=url, value=SEED_POLICY_ID,
                          action_ts=action_ts, trigger_id=new_trigger_id()) for _ in range(2)]
    assert clicks[0] != clicks[1]  # two requests, two signatures, one click (same action_ts): a resend
    assert [post(served, body, signed(body)).status_code for body in clicks] == [200, 200]
    wait_for(lambda: slack.response_url_uses(url) >= 1)
    time.sleep(1.0)
    assert slack.response_url_uses(url) == 1
    again = action_body(Action.POLICY_SHOW, user=ADMIN, response_url=url, value=SEED_POLICY_ID)
    assert post(served, again, signed(again)).status_code == 200
    wait_for(lambda: slack.response_url_uses(url) >= 2)


def test_an_events_api_retry_is_handled_once(served, slack):
    event_id = new_event_id()
    event = {"type": "app_home_opened", "user": ADMIN, "channel": "D0ADMIN", "tab": "home",
             "event_ts": f"{time.time():.6f}"}
    body = event_body(event, event_id=event_id)
    first = post(served, body, signed(body, content_type="application/json"))
    assert first.status_code == 200
    wait_for(lambda: len(slack.calls_to("views.publish")) >= 1)
    # Slack's retry: the same event_id, signed afresh, with X-Slack-Retry-Num
    retry = post(served, body, {**signed(body, content_type="application/json", timestamp=int(time.time()) + 1),
                                "x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"})
    assert retry.status_code == 200 and retry.text == ""
    time.sleep(1.0)
    assert len(slack.calls_to("views.publish")) == 1
    other = event_body(event)  # another event: handled
    assert post(served, other, signed(other, content_type="application/json")).status_code == 200
    wait_for(lambda: len(slack.calls_to("views.publish")) >= 2)


def test_options_requests_are_never_deduplicated(served):
    payload = {"type": "block_suggestion", "user": {"id": ADMIN}, "team": {"id": "T0CONSOLE"},
               "api_app_id": "A0MAMBOT1", "action_id": Action.PICK_POLICY, "block_id": "policy", "value": "byod",
               "container": {"type": "view", "view_id": "V0TEST"}, "view": {"id": "V0TEST", "type": "modal"}}
    body = urlencode({"payload": json.dumps(payload)})
    # the same options request, signed twice (a person typing the same letters again)
    answers = [post(served, body, signed(body, timestamp=int(time.time()) - i)) for i in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert all(SEED_POLICY_ID in a.text for a in answers), [a.text for a in answers]
