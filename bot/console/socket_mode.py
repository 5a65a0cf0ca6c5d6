"""A local stand-in for Slack's Socket Mode: a real WebSocket server on 127.0.0.1.

FakeSlack's `apps.connections.open` hands out this server's `ws://127.0.0.1:PORT/link/?ticket=N` URLs, one
per call, as Slack does; slack_sdk's built-in client (behind Bolt's SocketModeHandler) speaks plain TCP to a
`ws://` URL on a port other than 443, so `mam-bot run` connects here unchanged. Like Slack, the server

- sends `{"type": "hello", ...}` on each new connection;
- delivers `slash_commands`, `interactive` and `events_api` envelopes, each with an `envelope_id` (and
  `accepts_response_payload` for the first two), spreading them over the open connections;
- records every ack (`envelope_id`, its `payload`, the connection it came on) and shows what the ack's
  payload says to the person, as FakeSlack does for an HTTP ack;
- re-delivers an envelope not acked within `ack_timeout` (or whose connection went away) with
  `retry_attempt` incremented and a `retry_reason`;
- sends `{"type": "disconnect", "reason": ...}` (`warning`, `refresh_requested`, `link_disabled`) and then
  closes that connection after `disconnect_grace` seconds, and can drop a connection with no word at all.

The WebSocket side runs an asyncio loop in a thread of its own; every public method is safe to call from
any thread. `websockets` answers the client's pings itself.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from bot.console.fake_slack import FakeSlack

log = logging.getLogger(__name__)

EnvelopeType = Literal["slash_commands", "interactive", "events_api"]
DisconnectReason = Literal["warning", "refresh_requested", "link_disabled"]
DISCONNECT_REASONS: tuple[DisconnectReason, ...] = ("warning", "refresh_requested", "link_disabled")
ACK_TIMEOUT_SECONDS = 3.0  # Slack's deadline for an ack
APP_ID = "A0MAMBOT1"


@dataclass
class Envelope:
    """One piece of work for the app, and what became of it."""

    envelope_id: str
    type: EnvelopeType
    payload: dict[str, Any]
    accepts_response_payload: bool
    on_ack: Callable[[dict[str, Any]], None] | None = None
    retry_attempt: int = 0
    retry_reason: str | None = None
    connection: int | None = None
    """The connection the latest copy went out on (None: waiting for one)."""
    sent_at: float = 0.0
    acked: bool = False

    def frame(self) -> dict[str, Any]:
        return {
            "envelope_id": self.envelope_id,
            "type": self.type,
            "payload": self.payload,
            "accepts_response_payload": self.accepts_response_payload,
            "retry_attempt": self.retry_attempt,
            "retry_reason": self.retry_reason or "",
        }


@dataclass(frozen=True)
class Delivery:
    envelope_id: str
    connection: int
    retry_attempt: int
    retry_reason: str | None


@dataclass(frozen=True)
class RecordedAck:
    envelope_id: str
    payload: dict[str, Any] | None
    connection: int
    at: float
    known: bool
    """False when no envelope with this id was waiting (a second ack, or a made-up id)."""


@dataclass
class _Conn:
    number: int
    ws: ServerConnection
    opened: float
    closing: bool = False
    """Told to go (a `disconnect` sent, or being cut): no new envelopes go out on it."""
    closed: bool = False


class SocketModeServer:
    """Slack's Socket Mode for one app, on `ws://127.0.0.1:<free port>`."""

    def __init__(
        self,
        slack: FakeSlack | None = None,
        *,
        ack_timeout: float = ACK_TIMEOUT_SECONDS,
        disconnect_grace: float = 1.0,
        max_retries: int = 3,
    ) -> None:
        self.slack = slack
        self.ack_timeout = ack_timeout
        self.disconnect_grace = disconnect_grace
        self.max_retries = max_retries
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._tickets = itertools.count(1)
        self._numbers = itertools.count(1)
        self._issued: set[str] = set()
        self._conns: dict[int, _Conn] = {}
        self._envelopes: dict[str, Envelope] = {}
        self._order: list[str] = []
        self._acks: list[RecordedAck] = []
        self._deliveries: list[Delivery] = []
        self._hellos = 0
        self._rr = 0
        self._disabled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> SocketModeServer:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(self._open())
                self._port = int(next(iter(self._server.sockets)).getsockname()[1])
                retry_task = loop.create_task(self._redeliver_forever())
            except BaseException as exc:  # the starting thread re-raises it
                failure.append(exc)
                started.set()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                retry_task.cancel()
                loop.run_until_complete(asyncio.gather(retry_task, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-socket-mode", daemon=True)
        self._thread.start()
        started.wait(timeout=10)
        if failure:
            raise failure[0]
        return self

    async def _open(self) -> Server:
        # no server-side pings: slack_sdk's client pings, and websockets answers those itself
        return await serve(self._handle, "127.0.0.1", 0, ping_interval=None, max_size=2**22)

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def shut() -> None:
            with self._lock:
                conns = [c for c in self._conns.values() if not c.closed]
            for conn in conns:  # no goodbyes at stop: the apps see a cut connection
                conn.ws.transport.abort()
            server.close()
            await asyncio.wait_for(server.wait_closed(), timeout=5)

        asyncio.run_coroutine_threadsafe(shut(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._loop = self._server = self._thread = None

    def __enter__(self) -> SocketModeServer:
        return self.start() if self._loop is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what apps.connections.open hands out ----------------------------------------------------

    def new_url(self) -> str:
        """A fresh WebSocket URL for one connection, as `apps.connections.open` returns."""
        if not self._port:
            raise RuntimeError("SocketModeServer is not started; call start() first")
        ticket = f"{next(self._tickets)}-{uuid.uuid4().hex[:12]}"
        with self._lock:
            self._issued.add(ticket)
        return f"ws://127.0.0.1:{self._port}/link/?ticket={ticket}&app_id={APP_ID}"

    @property
    def disabled(self) -> bool:
        """True after `link_disabled`: the app's Socket Mode is off, no new connection is allowed."""
        with self._lock:
            return self._disabled

    def enable(self) -> None:
        """Turn Socket Mode back on (after `disconnect("link_disabled")`)."""
        with self._lock:
            self._disabled = False

    # --- what tests read -------------------------------------------------------------------------

    @property
    def connections(self) -> list[int]:
        """The numbers of the open connections (each new connection gets the next number)."""
        with self._lock:
            return [n for n, c in self._conns.items() if not c.closed and not c.closing]

    @property
    def hellos(self) -> int:
        with self._lock:
            return self._hellos

    @property
    def acks(self) -> list[RecordedAck]:
        with self._lock:
            return list(self._acks)

    def acks_for(self, envelope_id: str) -> list[RecordedAck]:
        with self._lock:
            return [a for a in self._acks if a.envelope_id == envelope_id]

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def deliveries_of(self, envelope_id: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self._deliveries if d.envelope_id == envelope_id]

    def pending(self) -> list[str]:
        """Envelopes sent and not acked yet, oldest first."""
        with self._lock:
            return [e for e in self._order if not self._envelopes[e].acked]

    def wait_for_connections(self, count: int = 1, timeout: float = 15.0, *, after: int = 0) -> list[int]:
        """Wait until `count` connections numbered above `after` are open; returns the open ones."""
        def ready() -> bool:
            return sum(1 for n, c in self._conns.items() if n > after and not c.closed and not c.closing) >= count

        with self._changed:
            if not self._changed.wait_for(ready, timeout=timeout):
                raise TimeoutError(f"{count} Socket Mode connection(s) did not open within {timeout:.0f} s "
                                   f"(open: {self._open_numbers()})")
            return self._open_numbers()

    def _open_numbers(self) -> list[int]:  # with the lock held
        return [n for n, c in self._conns.items() if not c.closed and not c.closing]

    def wait_closed(self, connection: int, timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._conns[connection].closed, timeout=timeout):
                raise TimeoutError(f"connection {connection} is still open after {timeout:.0f} s")

    def wait_ack(self, envelope_id: str, timeout: float = 10.0) -> RecordedAck:
        """The first ack of `envelope_id`, waiting for it."""
        with self._changed:
            if not self._changed.wait_for(lambda: any(a.envelope_id == envelope_id for a in self._acks),
                                          timeout=timeout):
                raise TimeoutError(f"envelope {envelope_id} was not acked within {timeout:.0f} s")
            return next(a for a in self._acks if a.envelope_id == envelope_id)

    # --- sending ---------------------------------------------------------------------------------

    def send(
        self,
        type_: EnvelopeType,
        payload: Mapping[str, Any],
        *,
        on_ack: Callable[[dict[str, Any]], None] | None = None,
        connection: int | None = None,
    ) -> str:
        """Queue an envelope for the app; it goes out on an open connection now, or on the next one."""
        envelope = Envelope(
            envelope_id=str(uuid.uuid4()),
            type=type_,
            payload=dict(payload),
            accepts_response_payload=type_ in ("slash_commands", "interactive"),
            on_ack=on_ack,
        )
        with self._lock:
            self._envelopes[envelope.envelope_id] = envelope
            self._order.append(envelope.envelope_id)
        self._call(self._deliver(envelope, prefer=connection))
        return envelope.envelope_id

    def slash_command(self, text: str, *, user: str, channel: str = "C0CONSOLE", command: str = "/mam",
                      response_url: str | None = None, trigger_id: str | None = None) -> tuple[str, str]:
        """Send `/mam text` from `user` (text as Slack sends it); returns (envelope_id, response_url).

        The ack's reply is shown to the person through FakeSlack, as Slack shows it.
        """
        slack = self._fake()
        response_url = response_url or slack.new_response_url(channel=channel, user=user)
        payload = {
            "token": "legacy-unused", "team_id": "T0CONSOLE", "team_domain": "console",
            "channel_id": channel, "channel_name": slack.channel_name(channel) or "console",
            "user_id": user, "user_name": user.lower(), "command": command, "text": text,
            "api_app_id": APP_ID, "is_enterprise_install": "false", "response_url": response_url,
            "trigger_id": trigger_id or slack.new_trigger_id(user),
        }
        url = response_url
        return self.send("slash_commands", payload, on_ack=lambda ack: self._show_command_ack(url, ack)), url

    def interactive(self, payload: Mapping[str, Any]) -> str:
        """Send an interactivity payload (block_actions, view_submission, …); a view_submission's
        `response_action` is applied to the person's modals as Slack applies it."""
        return self.send("interactive", payload, on_ack=lambda ack: self._show_interactive_ack(payload, ack))

    def event(self, body: Mapping[str, Any]) -> str:
        """Send an Events API `event_callback` body."""
        return self.send("events_api", body)

    def redeliver(self, envelope_id: str, reason: str = "timeout", *, connection: int | None = None) -> None:
        """Send an envelope again, acked or not, as Slack does when an ack is lost with its connection
        (on `connection` if given and open, else on the next one in turn)."""
        with self._lock:
            envelope = self._envelopes[envelope_id]
            envelope.acked = False
            envelope.retry_attempt += 1
            envelope.retry_reason = reason
        self._call(self._deliver(envelope, prefer=connection))

    def disconnect(self, reason: DisconnectReason, connection: int | None = None) -> list[int]:
        """Send `disconnect` with `reason` on one connection (default: all), closing it after the grace.

        After `link_disabled` no new connection is accepted until `enable()`. Returns the connections told.
        """
        if reason not in DISCONNECT_REASONS:
            raise ValueError(f"Slack's disconnect reasons are {', '.join(DISCONNECT_REASONS)}; not {reason!r}")
        with self._lock:
            if reason == "link_disabled":
                self._disabled = True
            targets = [c for n, c in self._conns.items()
                       if not c.closed and not c.closing and (connection is None or n == connection)]
            for conn in targets:
                conn.closing = True
            self._changed.notify_all()
        message = {"type": "disconnect", "reason": reason,
                   "debug_info": {"host": "applink-local", "approximate_connection_time": 3600}}
        for conn in targets:
            log.info("Socket Mode connection %d: disconnect (%s)", conn.number, reason)
            self._call(self._tell_and_close(conn, message), wait=False)
        return [c.number for c in targets]

    def drop(self, connection: int | None = None) -> list[int]:
        """Cut one connection (default: all) with no close frame, as a network failure does."""
        with self._lock:
            targets = [c for n, c in self._conns.items() if not c.closed and (connection is None or n == connection)]
            for conn in targets:
                conn.closing = True
            self._changed.notify_all()
        for conn in targets:
            log.info("Socket Mode connection %d: dropped", conn.number)
            loop = self._loop
            if loop is not None:
                loop.call_soon_threadsafe(conn.ws.transport.abort)
        return [c.number for c in targets]

    # --- the WebSocket side (the loop's thread) --------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        ticket = path.partition("ticket=")[2].partition("&")[0]
        with self._lock:
            refused = "disabled" if self._disabled else ("unknown ticket" if ticket not in self._issued else "")
            if not refused:
                self._issued.discard(ticket)  # one connection per URL, as Slack's are
                conn = _Conn(next(self._numbers), ws, time.monotonic())
                self._conns[conn.number] = conn
                self._changed.notify_all()
        if refused:
            log.info("Socket Mode: refused a connection (%s)", refused)
            await ws.close(1008, refused)
            return
        try:
            count = len(self.connections)
            await ws.send(json.dumps({
                "type": "hello", "num_connections": count,
                "debug_info": {"host": "applink-local", "build_number": 1, "approximate_connection_time": 3600},
                "connection_info": {"app_id": APP_ID},
            }))
            with self._lock:
                self._hellos += 1
            await self._flush_waiting()
            async for raw in ws:
                self._on_frame(conn, raw)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                conn.closed = True
                self._changed.notify_all()
            await self._flush_waiting()  # what was on this connection goes to another one now

    def _on_frame(self, conn: _Conn, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("Socket Mode connection %d sent something that is not JSON", conn.number)
            return
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        if not envelope_id:
            return
        payload = message.get("payload")
        payload = payload if isinstance(payload, dict) else None
        with self._lock:
            envelope = self._envelopes.get(str(envelope_id))
            known = envelope is not None and not envelope.acked
            if envelope is not None:
                envelope.acked = True
            self._acks.append(RecordedAck(str(envelope_id), payload, conn.number, time.monotonic(), known))
            self._changed.notify_all()
        if known and envelope is not None and envelope.on_ack is not None:
            try:
                envelope.on_ack(payload or {})
            except Exception:
                log.exception("showing the ack of envelope %s failed", envelope_id)

    async def _deliver(self, envelope: Envelope, *, prefer: int | None = None) -> None:
        with self._lock:
            if envelope.acked:
                return
            open_ = [c for c in self._conns.values() if not c.closed and not c.closing]
            if not open_:
                envelope.connection = None  # the next connection gets it
                return
            chosen = next((c for c in open_ if c.number == prefer), None)
            if chosen is None:
                chosen = open_[self._rr % len(open_)]
                self._rr += 1
            envelope.connection = chosen.number
            envelope.sent_at = time.monotonic()
            self._deliveries.append(Delivery(envelope.envelope_id, chosen.number, envelope.retry_attempt,
                                             envelope.retry_reason))
            frame = json.dumps(envelope.frame())
        try:
            await chosen.ws.send(frame)
        except ConnectionClosed:
            with self._lock:
                envelope.connection = None

    async def _flush_waiting(self) -> None:
        """Send envelopes with no live connection: new ones plainly, ones that were out as retries."""
        with self._lock:
            if all(c.closed or c.closing for c in self._conns.values()):
                return  # nowhere to send them: the next connection's hello flushes them
            live = {n for n, c in self._conns.items() if not c.closed}
            waiting = [e for e in (self._envelopes[i] for i in self._order)
                       if not e.acked and e.connection not in live]
        for envelope in waiting:
            if envelope.sent_at:
                if envelope.retry_attempt >= self.max_retries:
                    continue
                envelope.retry_attempt += 1
                envelope.retry_reason = "timeout"
            await self._deliver(envelope)

    async def _redeliver_forever(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            with self._lock:
                live = {n for n, c in self._conns.items() if not c.closed}
                open_ = any(not c.closed and not c.closing for c in self._conns.values())
                due = [e for e in (self._envelopes[i] for i in self._order)
                       if not e.acked and e.sent_at and e.retry_attempt < self.max_retries
                       and (now - e.sent_at > self.ack_timeout or e.connection not in live)]
            for envelope in due:
                if not open_:
                    break  # nothing to send on: the next connection's hello flushes them
                envelope.retry_attempt += 1
                envelope.retry_reason = "timeout"
                log.info("Socket Mode: envelope %s not acked; sending it again (retry %d)",
                         envelope.envelope_id, envelope.retry_attempt)
                await self._deliver(envelope)

    async def _tell_and_close(self, conn: _Conn, message: dict[str, Any]) -> None:
        try:
            await conn.ws.send(json.dumps(message))
        except ConnectionClosed:
            return
        await asyncio.sleep(self.disconnect_grace)
        await conn.ws.close(1000, "disconnect")

    # --- showing acks to the person --------------------------------------------------------------

    def _show_command_ack(self, response_url: str, payload: dict[str, Any]) -> None:
        if payload:
            self._fake().deliver_ack(response_url, payload)

    def _show_interactive_ack(self, sent: Mapping[str, Any], payload: dict[str, Any]) -> None:
        if self.slack is not None:
            show_view_submission_ack(self.slack, sent, payload)

    # --- plumbing --------------------------------------------------------------------------------

    def _fake(self) -> FakeSlack:
        if self.slack is None:
            raise RuntimeError("this SocketModeServer has no FakeSlack to show acks in")
        return self.slack

    def _call(self, coro: Any, *, wait: bool = True) -> None:
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError("SocketModeServer is not started; call start() first")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        if wait:
            future.result(timeout=10)


def show_view_submission_ack(slack: FakeSlack, sent: Mapping[str, Any], payload: Mapping[str, Any]) -> None:
    """Apply a view_submission's ack to the person's modals as Slack does (other payloads: nothing).

    `errors` leaves the modal open; `update`, `push` and `clear` do what they say; anything else closes it.
    """
    if sent.get("type") != "view_submission":
        return
    view = sent.get("view")
    view = view if isinstance(view, dict) else {}
    who = sent.get("user")
    user = str(who.get("id", "")) if isinstance(who, dict) else ""
    view_id = str(view.get("id", ""))
    action = payload.get("response_action")
    if action == "errors":
        return
    if action == "update" and isinstance(payload.get("view"), dict):
        slack.replace_view(view_id, payload["view"])
    elif action == "push" and isinstance(payload.get("view"), dict):
        slack.push_view(user, payload["view"])
    elif action == "clear":
        slack.clear_modals(user)
    else:
        slack.close_view(view_id)
