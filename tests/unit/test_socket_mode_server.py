"""The local Socket Mode server, driven by slack_sdk's own built-in client (the one Bolt's handler runs)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.console.fake_slack import FakeSlack
from bot.socket_mode import BotSocketModeClient

Listener = Callable[[SocketModeClient, SocketModeRequest], None]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture
def connect(slack: FakeSlack) -> Iterator[Callable[..., SocketModeClient]]:
    made: list[SocketModeClient] = []

    def make(listener: Listener | None = None, *, cls: type[SocketModeClient] = BotSocketModeClient,
             ping_interval: float = 5) -> SocketModeClient:
        client = cls(app_token="xapp-1-test", web_client=WebClient(token="xoxb-test", base_url=slack.api_url),
                     ping_interval=ping_interval)
        if listener is not None:
            client.socket_mode_request_listeners.append(listener)
        made.append(client)
        client.connect()
        return client

    yield make
    closing = [threading.Thread(target=client.close) for client in made]  # the stock one takes ~3 s each
    for thread in closing:
        thread.start()
    for thread in closing:
        thread.join()


class Recorder:
    """A listener that remembers every envelope and acks it (unless told not to)."""

    def __init__(self, answer: dict[str, Any] | None = None, *, ack: bool = True) -> None:
        self.answer, self.ack = answer, ack
        self.seen: list[SocketModeRequest] = []
        self.lock = threading.Lock()

    def __call__(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        with self.lock:
            self.seen.append(request)
        if self.ack:
            client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id, payload=self.answer))

    def ids(self) -> list[str]:
        with self.lock:
            return [r.envelope_id for r in self.seen]


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_each_connections_open_is_a_new_single_use_url(slack: FakeSlack) -> None:
    slack.socket_mode()
    web = WebClient(token="xoxb-test", base_url=slack.api_url)
    first = web.apps_connections_open(app_token="xapp-1")["url"]
    second = web.apps_connections_open(app_token="xapp-1")["url"]
    assert first != second and first.startswith("ws://127.0.0.1:")
    with pytest.raises(SlackApiError, match="not_allowed_token_type"):
        web.apps_connections_open(app_token="xoxb-not-an-app-token")


def test_hello_then_a_slash_command_whose_ack_is_the_answer(slack: FakeSlack, connect) -> None:
    server = slack.socket_mode()
    recorder = Recorder({"response_type": "ephemeral", "text": "Here is what I can do"})
    connect(recorder, cls=SocketModeClient)  # the stock client, as Bolt's handler runs it
    server.wait_for_connections(1)
    wait_until(lambda: server.hellos == 1)
    envelope_id, _url = server.slash_command("help", user="UADMIN001")
    ack = server.wait_ack(envelope_id)
    assert ack.payload == {"response_type": "ephemeral", "text": "Here is what I can do"} and ack.known
    request = recorder.seen[0]
    assert request.type == "slash_commands" and request.accepts_response_payload is True
    assert request.payload["text"] == "help" and request.payload["user_id"] == "UADMIN001"
    [shown] = slack.ephemerals("UADMIN001")
    assert shown.text == "Here is what I can do" and shown.ephemeral


def test_events_do_not_accept_a_response_payload_and_interactive_ones_do(slack: FakeSlack, connect) -> None:
    server = slack.socket_mode()
    recorder = Recorder()
    connect(recorder)
    server.wait_for_connections(1)
    event = server.event({"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_home_opened"}})
    click = server.interactive({"type": "block_actions", "user": {"id": "UADMIN001"}, "actions": []})
    server.wait_ack(event)
    server.wait_ack(click)
    kinds = {r.envelope_id: (r.type, r.accepts_response_payload) for r in recorder.seen}
    assert kinds == {event: ("events_api", False), click: ("interactive", True)}


def test_a_view_submission_ack_updates_the_modal(slack: FakeSlack, connect) -> None:
    server = slack.socket_mode()
    opened = WebClient(token="xoxb-test", base_url=slack.api_url).views_open(
        trigger_id=slack.new_trigger_id("UADMIN001"),
        view={"type": "modal", "title": {"type": "plain_text", "text": "Form"},
              "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "first"}}]})
    view_id = opened["view"]["id"]
    answer = {"response_action": "update", "view": {
        "type": "modal", "title": {"type": "plain_text", "text": "Done"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "second"}}]}}
    connect(Recorder(answer))
    server.wait_for_connections(1)
    server.wait_ack(server.interactive({"type": "view_submission", "user": {"id": "UADMIN001"},
                                        "view": {"id": view_id, "callback_id": "x"}}))
    top = slack.top_modal("UADMIN001")
    assert top is not None and top["title"]["text"] == "Done"


def test_an_envelope_not_acked_in_time_comes_again_with_retry_attempt(slack: FakeSlack, connect) -> None:
    server = slack.socket_mode(ack_timeout=0.3)
    silent = Recorder(ack=False)
    connect(silent)
    server.wait_for_connections(1)
    envelope_id = server.event({"type": "event_callback", "event_id": "Ev2", "event": {"type": "app_home_opened"}})
    wait_until(lambda: len(silent.seen) >= 2)
    first, again = silent.seen[0], silent.seen[1]
    assert first.envelope_id == again.envelope_id == envelope_id
    assert (first.retry_attempt, again.retry_attempt, again.retry_reason) == (0, 1, "timeout")
    assert envelope_id in server.pending()


def test_envelopes_are_spread_over_the_open_connections(slack: FakeSlack, connect) -> None:
    server = slack.socket_mode()
    one, two = Recorder(), Recorder()
    connect(one)
    connect(two)
    assert len(server.wait_for_connections(2)) == 2
    sent = [server.event({"type": "event_callback", "event_id": f"Ev{i}", "event": {"type": "x"}}) for i in range(6)]
    for envelope_id in sent:
        server.wait_ack(envelope_id)
    assert len(one.seen) == len(two.seen) == 3
    assert sorted(one.ids() + two.ids()) == sorted(sent)


def test_refresh_requested_moves_the_client_to_a_new_connection_and_loses_nothing(slack: FakeSlack,
                                                                                    connect) -> None:
    server = slack.socket_mode(disconnect_grace=0.2)
    recorder = Recorder()
    connect(recorder)
    [first] = server.wait_for_connections(1)
    assert server.disconnect("refresh_requested") == [first]
    envelope_id = server.event({"type": "event_callback", "event_id": "Ev3", "event": {"type": "x"}})
    [second] = server.wait_for_connections(1, after=first)
    server.wait_closed(first)
    assert server.wait_ack(envelope_id).connection == second
    assert recorder.ids() == [envelope_id]


def test_a_dropped_connection_is_replaced_and_what_was_sent_meanwhile_arrives(slack: FakeSlack, connect) -> None:
    server = slack.socket_mode()
    recorder = Recorder()
    connect(recorder, cls=BotSocketModeClient, ping_interval=0.2)
    [first] = server.wait_for_connections(1)
    server.drop()
    server.wait_closed(first)
    envelope_id = server.event({"type": "event_callback", "event_id": "Ev4", "event": {"type": "x"}})
    [second] = server.wait_for_connections(1, after=first, timeout=5)
    ack = server.wait_ack(envelope_id)
    assert ack.connection == second and recorder.ids() == [envelope_id]
    assert [d.connection for d in server.deliveries_of(envelope_id)] == [second]


def test_link_disabled_stops_the_bot_client_and_closes_socket_mode(slack: FakeSlack, connect) -> None:
    server = slack.socket_mode(disconnect_grace=0.1)
    client = connect(Recorder(), cls=BotSocketModeClient, ping_interval=0.2)
    assert isinstance(client, BotSocketModeClient)
    [first] = server.wait_for_connections(1)
    server.disconnect("link_disabled")
    assert client.link_disabled.wait(timeout=5)
    server.wait_closed(first)
    time.sleep(0.6)  # three pings' worth: the client must not have come back
    assert server.connections == [] and server.hellos == 1
    with pytest.raises(SlackApiError, match="invalid_auth"):
        WebClient(token="xoxb-test", base_url=slack.api_url).apps_connections_open(app_token="xapp-1")


def test_the_stock_client_reconnects_on_a_warning(slack: FakeSlack, connect) -> None:
    server = slack.socket_mode(disconnect_grace=0.2)
    connect(Recorder(), cls=SocketModeClient)
    [first] = server.wait_for_connections(1)
    server.disconnect("warning")
    server.wait_for_connections(1, after=first)


def test_acks_are_recorded_with_their_payload_even_twice(slack: FakeSlack, connect) -> None:
    server = slack.socket_mode()
    client = connect(Recorder(ack=False))
    server.wait_for_connections(1)
    envelope_id = server.event({"type": "event_callback", "event_id": "Ev5", "event": {"type": "x"}})
    wait_until(lambda: bool(server.deliveries_of(envelope_id)))
    for _ in range(2):
        client.send_message(json.dumps({"envelope_id": envelope_id, "payload": {"n": 1}}))
    wait_until(lambda: len(server.acks_for(envelope_id)) == 2)
    assert [(a.payload, a.known) for a in server.acks_for(envelope_id)] == [({"n": 1}, True), ({"n": 1}, False)]
    assert server.pending() == []
