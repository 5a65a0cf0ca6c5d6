from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse

from bot.console.fake_slack import FakeSlack, default_users
from bot.console.payloads import ObservedAck
from bot.console.slack_text import command_text
from bot.local import CONSOLE_CHANNELS, DEMO_ADMIN, DEMO_APPROVER, LocalWorkspace
from bot.sandbox import SandboxConfig, SandboxServer, SandboxTenant, serve_sandbox
from bot.settings import load_settings
from tests.databases import postgres_database
from tests.scenario.slack_requests import (
    SIGNING_SECRET,
    action_body,
    command_body,
    event_body,
    options_body,
    signed_headers,
    view_body,
    view_state_body,
)


@dataclass
class Bot:
    """The real Bolt app with its deps, a FakeSlack and the sandbox tenant, driven by signed requests."""

    ws: LocalWorkspace
    sandbox: SandboxTenant

    @property
    def slack(self):
        return self.ws.slack

    @property
    def deps(self):
        return self.ws.deps

    def dispatch(self, body: str, *, content_type: str = "application/x-www-form-urlencoded",
                 on_ack: Callable[[BoltResponse], None] | None = None, **sign: Any) -> BoltResponse:
        context = {"ack": ObservedAck(on_ack)} if on_ack else {}
        response = self.ws.app.dispatch(BoltRequest(body=body, context=context, headers=signed_headers(
            body, content_type=content_type, **sign)))
        self.deps.wait_idle()
        return response

    def command(self, text: str, *, user: str = DEMO_ADMIN, **sign: Any) -> tuple[BoltResponse, str]:
        response_url = self.slack.new_response_url(channel="C0CONSOLE", user=user)

        def show(ack: BoltResponse) -> None:  # Slack shows the ack's reply before any later update
            if ack.status == 200 and ack.body:
                self.slack.deliver_ack(response_url, json.loads(ack.body))

        # typed as in Slack's client: Slack escapes it and turns known people into mentions (should_escape)
        typed = command_text(text, find_user=lambda name: (found.id if (found := self.slack.find_user(name)) else None))
        body = command_body(typed, user=user, response_url=response_url, trigger_id=self.slack.new_trigger_id(user))
        response = self.dispatch(body, on_ack=show, **sign)
        return response, response_url

    def click(self, action_id: str, *, user: str = DEMO_ADMIN, value: str = "") -> tuple[BoltResponse, str]:
        response_url = self.slack.new_response_url(channel="C0CONSOLE", user=user)
        body = action_body(action_id, user=user, response_url=response_url, value=value,
                           trigger_id=self.slack.new_trigger_id(user))
        return self.dispatch(body), response_url

    def submit(self, callback_id: str, *, user: str = DEMO_ADMIN, values: dict[str, str],
               private_metadata: str = "") -> BoltResponse:
        return self.dispatch(view_body(callback_id, user=user, values=values, private_metadata=private_metadata))

    def submit_state(self, callback_id: str, *, state: dict[str, Any], user: str = DEMO_ADMIN,
                     view_id: str = "V0TEST", private_metadata: str = "") -> BoltResponse:
        return self.dispatch(view_state_body(callback_id, user=user, state=state, view_id=view_id,
                                             private_metadata=private_metadata))

    def options(self, action_id: str, value: str, *, user: str = DEMO_ADMIN) -> BoltResponse:
        response = self.dispatch(options_body(action_id, user=user, value=value))
        if response.status == 200 and response.body:  # the answer goes back to Slack: within its limits
            self.slack.check_options(json.loads(response.body))
        return response

    def dm_messages(self, user: str) -> list[Any]:
        return self.slack.messages(user)

    def event(self, event: dict[str, Any]) -> BoltResponse:
        return self.dispatch(event_body(event), content_type="application/json")

    def audit(self) -> list[Any]:
        return list(reversed(self.deps.audit.recent(100)))


def ack_json(response: BoltResponse) -> dict[str, Any]:
    assert response.status == 200, response.body
    return json.loads(response.body) if response.body else {}


def block_text(blocks: list[dict[str, Any]]) -> str:
    """Every piece of text in a list of blocks, for assertions."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text"):
                parts.append(node.get("text", ""))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return "\n".join(parts)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A fake Slack on a local port, for tests that run the bot as a process (or several)."""
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for replicas to share; skips, saying why, when no server is reachable."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def any_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """The test on SQLite (one process) and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/bot.db"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    """The sandbox tenant on a local port, so a test can see what a bot process changed in it."""
    served = serve_sandbox(SandboxTenant(), host="127.0.0.1", port=0)
    try:
        yield served
    finally:
        served.shutdown()


@pytest.fixture
def make_bot(tmp_path) -> Iterator[Any]:
    made: list[LocalWorkspace] = []

    def make(config: SandboxConfig | None = None, **settings: Any) -> Bot:
        values = {
            "database_url": f"sqlite:///{tmp_path}/bot-{len(made)}.db",
            "mam_admins": [DEMO_ADMIN],
            "mam_approvers": [DEMO_APPROVER],
            "mam_cloud": "sandbox",
            "mam_graph_url": None,
            "mam_defender_url": None,
        }
        values.update(settings)
        sandbox = SandboxTenant(config or SandboxConfig())
        # only the console's own people: tests add the tenant's users to Slack when they need them
        slack = FakeSlack(users=default_users(), channels=CONSOLE_CHANNELS).start()
        ws = LocalWorkspace.start(load_settings(**values), sandbox=sandbox, signing_secret=SIGNING_SECRET,
                                  slack=slack)
        made.append(ws)
        return Bot(ws, sandbox)

    yield make
    for ws in made:
        ws.close()


@pytest.fixture
def bot(make_bot) -> Bot:
    return make_bot()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[httpx.Request]]:
    """Every request the bot sends the sandbox tenant (patched before a bot is made, so its transport has it)."""
    requests: list[httpx.Request] = []
    original = SandboxTenant.handle

    def handle(self: SandboxTenant, request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return original(self, request)

    monkeypatch.setattr(SandboxTenant, "handle", handle)
    yield requests
