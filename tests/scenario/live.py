"""Real `mam-bot` processes, driven over either transport by one set of helpers.

`http`: `mam-bot serve`, and signed requests to its /slack/events. `socket`: `mam-bot run`, and
envelopes from the local Socket Mode server that FakeSlack's `apps.connections.open` points it at.
Either way the person's side is FakeSlack: an ack's reply is shown there as Slack shows it, and
everything the bot posts or updates lands there.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

import httpx

from bot.console.fake_slack import FakeSlack
from bot.console.slack_text import command_text
from bot.console.socket_mode import SocketModeServer, show_view_submission_ack
from bot.local import DEMO_ADMIN, DEMO_APPROVER
from tests.scenario.slack_requests import SIGNING_SECRET, action_body, command_body, signed_headers, view_state_body

ROOT = Path(__file__).resolve().parents[2]
Transport = Literal["http", "socket"]
TRANSPORTS: tuple[Transport, ...] = ("http", "socket")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bot_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AZURE_", "MAM_", "DATABASE_"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path}/serve.db", "MAM_ADMINS": DEMO_ADMIN, "PYTHONUNBUFFERED": "1",
                "MAM_CLOUD": "sandbox",  # with real Slack tokens MAM_CLOUD must be set: this is the fake Slack
                "MAM_SHUTDOWN_DRAIN_SECONDS": "0",  # no load balancer to drain: a stop is not held up 5 s
                "MAM_METRICS_PORT": "0"})  # processes side by side: each operator port a free one (LiveBot.operator)
    env.update(extra)
    return env


def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} was not met within {timeout:.0f} s")
        time.sleep(0.05)


@dataclass
class LiveBot:
    """One `mam-bot serve` or `mam-bot run` process, and how to talk to it like Slack does."""

    transport: Transport
    slack: FakeSlack
    proc: subprocess.Popen[bytes]
    log_path: Path
    base: str = ""
    envelopes: list[str] = field(default_factory=list)

    @property
    def socket(self) -> SocketModeServer:
        return self.slack.socket_mode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def operator(self) -> str:
        """The base URL of the process's /metrics, /healthz and /livez, as its start line printed it."""
        found = re.search(r"mam-bot metrics at (http://\S+)/metrics", self.log())
        assert found, f"no operator port in the log: {self.log()[-2000:]}"
        return found.group(1)

    def command(self, text: str, *, user: str = DEMO_ADMIN, channel: str = "C0CONSOLE") -> tuple[dict[str, Any], str]:
        """`/mam text` typed by `user`: returns the ack's payload ({} for an empty ack) and the response_url."""
        typed = command_text(text, find_user=lambda n: (u.id if (u := self.slack.find_user(n)) else None))
        if self.transport == "socket":
            envelope_id, url = self.socket.slash_command(typed, user=user, channel=channel)
            self.envelopes.append(envelope_id)
            return self.socket.wait_ack(envelope_id).payload or {}, url
        url = self.slack.new_response_url(channel=channel, user=user)
        body = command_body(typed, user=user, channel=channel, response_url=url,
                            trigger_id=self.slack.new_trigger_id(user))
        response = self.post(body)
        assert response.status_code == 200, response.text
        payload = json.loads(response.text) if response.text else {}
        if payload:
            self.slack.deliver_ack(url, payload)  # Slack shows the ack's reply before any later update
        return payload, url

    def click(self, action_id: str, *, user: str, value: str = "", channel: str = "C0CONSOLE",
              message_ts: str = "1700000000.000100") -> dict[str, Any]:
        """A button press by `user` in `channel`; returns the ack's payload."""
        url = self.slack.new_response_url(channel=channel, user=user, original_ts=message_ts, kind="actions")
        body = action_body(action_id, user=user, response_url=url, value=value, channel=channel,
                           message_ts=message_ts, trigger_id=self.slack.new_trigger_id(user))
        if self.transport == "socket":
            envelope_id = self.socket.interactive(json.loads(parse_qs(body)["payload"][0]))
            self.envelopes.append(envelope_id)
            return self.socket.wait_ack(envelope_id).payload or {}
        response = self.post(body)
        assert response.status_code == 200, response.text
        return json.loads(response.text) if response.text else {}

    def submit(self, callback_id: str, *, view_id: str, state: dict[str, Any], user: str = DEMO_ADMIN,
               private_metadata: str = "") -> dict[str, Any]:
        """Press Submit on an open modal with `state.values` = `state`; returns the ack's payload, which
        is applied to the modal as Slack applies it (errors, update, push, clear, or close)."""
        body = view_state_body(callback_id, user=user, state=state, view_id=view_id,
                               private_metadata=private_metadata)
        sent = json.loads(parse_qs(body)["payload"][0])
        if self.transport == "socket":
            envelope_id = self.socket.interactive(sent)
            self.envelopes.append(envelope_id)
            return self.socket.wait_ack(envelope_id).payload or {}
        response = self.post(body)
        assert response.status_code == 200, response.text
        payload = json.loads(response.text) if response.text else {}
        show_view_submission_ack(self.slack, sent, payload)
        return payload

    def post(self, body: str, **sign: Any) -> httpx.Response:
        headers = {k: v[0] for k, v in signed_headers(body, **sign).items()}
        return httpx.post(f"{self.base}/slack/events", content=body, headers=headers, timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_bot(transport: Transport, tmp_path: Path, slack: FakeSlack, *, name: str = "bot",
              **env: str) -> LiveBot:
    """Start `mam-bot serve` (http) or `mam-bot run` (socket) against `slack`; returns once it is reachable."""
    variables = bot_env(tmp_path, SLACK_BOT_TOKEN="xoxb-test", SLACK_API_URL=slack.api_url, PYTHONPATH=str(ROOT),
                        MAM_APPROVERS=DEMO_APPROVER, **env)
    log_path = tmp_path / f"{name}.log"
    with log_path.open("wb") as out:
        if transport == "http":
            port = free_port()
            variables["SLACK_SIGNING_SECRET"] = SIGNING_SECRET
            args = ["serve", "--port", str(port)]
        else:
            server = slack.socket_mode()
            before = max(server.connections, default=0)
            variables.setdefault("SLACK_APP_TOKEN", "xapp-1-A0MAMBOT1-test")
            variables.setdefault("MAM_SOCKET_PING_SECONDS", "0.5")
            args = ["--log-level", variables.pop("LOG_LEVEL", "info"), "run"]
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", *args], env=variables, cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT)
    bot = LiveBot(transport, slack, proc, log_path)
    try:
        if transport == "http":
            bot.base = f"http://127.0.0.1:{port}"
            wait_until(lambda: _healthy(bot), timeout=30, what="mam-bot serve answering /healthz")
        else:
            wait_until(lambda: proc.poll() is not None or any(n > before for n in server.connections),
                       timeout=30, what="mam-bot run opening a Socket Mode connection")
        if proc.poll() is not None:
            raise AssertionError(f"mam-bot {args[-1]} exited ({proc.returncode}): {bot.log()}")
    except BaseException:
        bot.stop()
        raise
    return bot


def _healthy(bot: LiveBot) -> bool:
    if bot.proc.poll() is not None:
        return True  # start_bot reports the exit
    try:
        return httpx.get(f"{bot.base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def lease_holder(database_url: str, name: str = "scheduler") -> str | None:
    """Who holds a lease row now (expired or not), read from the database the bots share."""
    from bot.store import create_store
    from bot.store.models import Lease

    store = create_store(database_url)
    try:
        with store.session() as session:
            lease = session.get(Lease, name)
            return lease.holder if lease else None
    finally:
        store.close()


@contextmanager
def replicas(transport: Transport, tmp_path: Path, slack: FakeSlack, sandbox_url: str, database_url: str,
             count: int = 2) -> Iterator[list[LiveBot]]:
    """`count` bot processes sharing one database and one sandbox tenant, as replicas in production do."""
    started: list[LiveBot] = []
    try:
        for n in range(count):
            started.append(start_bot(transport, tmp_path, slack, name=f"replica-{'ab'[n] if n < 2 else n}",
                                     DATABASE_URL=database_url, MAM_GRAPH_URL=sandbox_url,
                                     MAM_DEFENDER_URL=sandbox_url))
        yield started
    finally:
        for bot in started:
            bot.stop()
