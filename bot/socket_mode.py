"""`mam-bot run`: the Bolt app over Slack's Socket Mode, and what the connection's life asks of it.

Bolt's SocketModeHandler runs slack_sdk's built-in client, which reconnects on every `disconnect`
message before any listener sees it. That is right for `warning` (the connection is about to go) and
`refresh_requested` (Slack wants a new one), and wrong for `link_disabled`: Socket Mode was turned off
for the app, or its app-level token revoked, and reconnecting would only loop. `BotSocketModeClient`
reads the reason first; on `link_disabled` it stops reconnecting and `run_socket_mode` returns
`LINK_DISABLED_EXIT`, after one log line saying what to do, so a supervisor sees the exit and alerts.

slack_sdk also notices a connection that vanished without a close frame (a network cut) only after
five failed pings; here the first failed ping replaces it, so a cut costs about two ping intervals
(`MAM_SOCKET_PING_SECONDS`). Envelopes Slack sent meanwhile come again (`retry_attempt`), and
bot/dedupe.py makes a second copy of the same command, click or event a no-op.

A stop (`stop` set: bot/cli.py does it on SIGTERM or SIGINT) takes no new envelope: one that arrives
from then on is never acked, so Slack sends it to another connection. The envelopes already taken are
acked (within Slack's 3 s), the connection is closed, and `run_socket_mode` returns `STOPPED_EXIT`;
the work those envelopes handed to the runner is bot/cli.py's to finish.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient

log = logging.getLogger(__name__)

LINK_DISABLED_EXIT = 3
STOPPED_EXIT = 0
ACK_SECONDS = 3.0  # Slack's deadline for an ack: envelopes taken before a stop are acked within it
LINK_DISABLED_LINE = (
    "mam-bot run: Slack ended the Socket Mode connection for good (link_disabled): Socket Mode was turned "
    "off for this app, or its app-level token was revoked. Turn Socket Mode back on in the app's settings "
    "(api.slack.com/apps, Socket Mode), or make a new app-level token with connections:write and set "
    "SLACK_APP_TOKEN to it, then start mam-bot again."
)


class SocketModeRefused(Exception):
    """Slack would not open a Socket Mode connection at start (a bad or revoked app-level token)."""


class BotSocketModeClient(SocketModeClient):
    """slack_sdk's client, except that `link_disabled` ends it instead of reconnecting, and that it can
    stop taking envelopes (`drain`) before it closes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.link_disabled = threading.Event()
        self.draining = threading.Event()
        self._taken = 0  # messages queued for the listeners and not yet through them
        self._settled = threading.Condition()
        super().__init__(*args, **kwargs)

    def enqueue_message(self, message: str) -> None:
        # called on the receiving thread, in order, before slack_sdk's processor reconnects on it
        if self.draining.is_set():
            log.info("stopping: a Socket Mode message left for Slack to send to another connection")
            return
        if '"disconnect"' in message:
            try:
                parsed = json.loads(message)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and parsed.get("type") == "disconnect":
                reason = parsed.get("reason")
                if reason == "link_disabled":
                    self.auto_reconnect_enabled = self.default_auto_reconnect_enabled = False
                    self.link_disabled.set()
                    return
                log.info("Slack asked for a new Socket Mode connection (%s); reconnecting", reason)
                super().enqueue_message(message)  # slack_sdk's processor reconnects; no listener runs
                return
        with self._settled:  # with `drain`'s flag: a message is either taken, and waited for, or left
            if self.draining.is_set():
                return
            self._taken += 1
        super().enqueue_message(message)

    def run_message_listeners(self, message: dict[str, Any], raw_message: str) -> None:
        try:
            super().run_message_listeners(message, raw_message)  # for an envelope: Bolt, then the ack
        finally:
            with self._settled:
                self._taken -= 1
                self._settled.notify_all()

    def drain(self, timeout: float = ACK_SECONDS) -> bool:
        """Take no more envelopes, and wait until the ones taken are through Bolt and acked; False if
        some were not within `timeout` seconds."""
        self.auto_reconnect_enabled = self.default_auto_reconnect_enabled = False
        with self._settled:
            self.draining.set()
            return self._settled.wait_for(lambda: self._taken <= 0, timeout)

    def _monitor_current_session(self) -> None:
        super()._monitor_current_session()
        session = self.current_session
        # slack_sdk gives up on a dead socket after five failed pings; one is proof enough
        if (self.auto_reconnect_enabled and session is not None and session.is_active()
                and session.consecutive_check_state_error_count >= 1):
            log.info("the Socket Mode connection stopped answering; opening a new one")
            session.disconnect()
            try:
                self.connect_to_new_endpoint()
            except Exception as exc:  # the next check tries again
                log.warning("could not reconnect to Slack over Socket Mode yet: %s", type(exc).__name__)


    def close(self) -> None:
        # slack_sdk closes the socket under the lock its receiving thread holds while it waits in recv()
        # (up to 3 s); shutting the socket down first wakes that thread at once
        session = self.current_session
        sock = session.sock if session is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already gone
                sock.shutdown(socket.SHUT_RDWR)
        self.closed = True  # then wake the message processor, which waits up to 1 s for a message
        self.message_queue.put(None)
        super().close()


class SocketLink:
    """Whether the Socket Mode connection is open now: /healthz's readiness over Socket Mode (bot/health.py)."""

    def __init__(self) -> None:
        self.client: BotSocketModeClient | None = None

    def is_up(self) -> bool:
        client = self.client
        return client is not None and not client.draining.is_set() and client.is_connected()


class _Handler(SocketModeHandler):
    """Bolt's handler around a client made here (its own __init__ always builds the stock client)."""

    def __init__(self, app: App, client: SocketModeClient) -> None:
        self.app = app
        self.app_token = client.app_token
        self.client = client
        client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]


def run_socket_mode(app: App, app_token: str, *, ping_seconds: float = 5.0,
                    stop: threading.Event | None = None, link: SocketLink | None = None) -> int:
    """Serve `app` over Socket Mode until `stop` is set (`STOPPED_EXIT`, once the envelopes taken are
    acked and the connection is closed) or Slack disables the link (`LINK_DISABLED_EXIT`).

    Raises SocketModeRefused when Slack refuses the app-level token at start. `link` is told the client, so
    readiness can ask whether it is connected.
    """
    client = BotSocketModeClient(app_token=app_token, logger=app.logger, web_client=app.client,
                                 proxy=app.client.proxy, ping_interval=ping_seconds)
    if link is not None:
        link.client = client
    handler = _Handler(app, client)
    stop = stop or threading.Event()
    try:
        try:
            handler.connect()
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            raise SocketModeRefused(
                f"SLACK_APP_TOKEN: Slack refused to open a Socket Mode connection ({error or 'no reason given'}); "
                "check it is this app's app-level token (xapp-…) with connections:write"
            ) from None
        log.info("connected to Slack over Socket Mode")
        while not client.link_disabled.is_set():
            if stop.wait(0.1):  # in slices: the main thread takes signals between them
                if not client.drain(ACK_SECONDS):
                    log.warning("stopping: an envelope was not acked within %g s; Slack sends it again", ACK_SECONDS)
                log.warning("stopping: closing the Socket Mode connection; Slack sends new envelopes to other ones")
                return STOPPED_EXIT
    finally:
        client.close()
    log.error(LINK_DISABLED_LINE)
    return LINK_DISABLED_EXIT
