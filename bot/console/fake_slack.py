"""A local stand-in for Slack's Web API and response_urls: a real HTTP server on 127.0.0.1.

Bolt builds a fresh `WebClient` per request from `app.client.base_url`, and `respond()` posts to
the payload's `response_url` with urllib, so the fake has to answer HTTP, in-process. It keeps the
workspace state a Slack client would show (messages, ephemerals, modals, App Homes), records every
call, and tells subscribers about everything worth rendering.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from bot import slack_limits
from bot.slack_limits import block_problems as block_problems  # re-exported: tests check blocks with it
from bot.slack_limits import message_problems, options_problems, view_problems

if TYPE_CHECKING:
    from bot.console.socket_mode import SocketModeServer

log = logging.getLogger(__name__)

TEAM_ID = "T0CONSOLE"
TEAM_DOMAIN = "console"
BOT_USER_ID = "UMAMBOT01"
BOT_ID = "BMAMBOT01"
BOT_NAME = "mam"
APP_ID = "A0MAMBOT1"
BOT_TOKEN = "xoxb-console"  # noqa: S105  (the fake workspace's bot token)
CONSOLE_CHANNEL = "C0CONSOLE"
# Prefixes of the ids Slack would make up for blocks and elements the app left without one.
AUTO_BLOCK_ID_PREFIX = "auto-b"
AUTO_ACTION_ID_PREFIX = "auto-a"

RESPONSE_URL_MAX_USES = 5
RESPONSE_URL_TTL_SECONDS = 30 * 60
# Slack documents "5 times within 30 minutes" but not its answer beyond that; 410 Gone with a
# one-word body (`used_url` / `expired_url`) is our stand-in. slack_sdk's WebhookClient (behind
# Bolt's respond()) does not raise on it, it returns the status, so tests assert on uses instead.
RESPONSE_URL_SPENT_STATUS = 410
TRIGGER_TTL_SECONDS = 3.0
MAX_MESSAGE_BLOCKS = slack_limits.MESSAGE_BLOCKS
MAX_VIEW_BLOCKS = slack_limits.VIEW_BLOCKS
MAX_MESSAGE_TEXT = slack_limits.MESSAGE_TEXT
_TS_BASE = 1_700_000_000

EventKind = Literal[
    "post",
    "dm",
    "ephemeral",
    "update",
    "response",
    "delete",
    "view_open",
    "view_update",
    "view_push",
    "view_close",
    "home",
    "file",
]


@dataclass(frozen=True)
class FakeUser:
    id: str
    name: str
    real_name: str = ""
    email: str = ""
    is_admin: bool = False
    is_bot: bool = False
    tz: str = "Europe/London"

    def to_api(self) -> dict[str, Any]:
        real_name = self.real_name or self.name
        profile: dict[str, Any] = {
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": self.name,
            "display_name_normalized": self.name,
            "team": TEAM_ID,
        }
        if self.email:
            profile["email"] = self.email
        if self.is_bot:
            profile["bot_id"] = BOT_ID
        return {
            "id": self.id,
            "team_id": TEAM_ID,
            "name": self.name,
            "deleted": False,
            "real_name": real_name,
            "tz": self.tz,
            "tz_offset": 0,
            "is_admin": self.is_admin,
            "is_owner": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": _TS_BASE,
            "profile": profile,
        }


@dataclass(frozen=True)
class FakeUsergroup:
    id: str
    handle: str
    users: tuple[str, ...] = ()
    name: str = ""

    def to_api(self, *, include_users: bool) -> dict[str, Any]:
        group: dict[str, Any] = {
            "id": self.id,
            "team_id": TEAM_ID,
            "is_usergroup": True,
            "name": self.name or self.handle,
            "handle": self.handle,
            "description": "",
            "user_count": len(self.users),
        }
        if include_users:
            group["users"] = list(self.users)
        return group


def default_users() -> list[FakeUser]:
    """An admin, two approvers and an end user: enough people to walk through a quorum of two."""
    return [
        FakeUser("UADMIN001", "alex", "Alex Admin", "alex@contoso.example", is_admin=True),
        FakeUser("UAPPROV01", "sam", "Sam Approver", "sam@contoso.example"),
        FakeUser("UAPPROV02", "kim", "Kim Approver", "kim@contoso.example"),
        FakeUser("UENDUSR01", "jordan", "Jordan User", "jordan@contoso.example"),
    ]


BOT_USER = FakeUser(BOT_USER_ID, BOT_NAME, "MAM Bot", is_bot=True)


@dataclass(frozen=True)
class FakeMessage:
    """One message as Slack stores it; replaced wholesale on update so readers never see it half-done."""

    channel: str
    ts: str
    text: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    user: str = BOT_USER_ID
    thread_ts: str | None = None
    audience: str | None = None
    """The only user who can see it (ephemeral recipient or DM owner); None for a channel message."""
    ephemeral: bool = False
    files: list[dict[str, Any]] = field(default_factory=list)
    edits: int = 0
    deleted: bool = False

    def visible_to(self, user: str) -> bool:
        return self.audience is None or self.audience == user

    def to_api(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "message", "text": self.text, "user": self.user, "ts": self.ts}
        message["team"] = TEAM_ID
        if self.user == BOT_USER_ID:
            message.update({"bot_id": BOT_ID, "app_id": APP_ID})
        if self.blocks:
            message["blocks"] = copy.deepcopy(self.blocks)
        if self.attachments:
            message["attachments"] = copy.deepcopy(self.attachments)
        if self.thread_ts:
            message["thread_ts"] = self.thread_ts
        if self.files:
            message["files"] = copy.deepcopy(self.files)
        if self.edits:
            message["edited"] = {"user": self.user, "ts": self.ts}
        return message


@dataclass(frozen=True)
class RecordedCall:
    """One request the fake answered: a Web API method, `response_url` or `upload`."""

    method: str
    args: dict[str, Any]
    time: float
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok", True))


@dataclass(frozen=True)
class SlackEvent:
    """Something a person in Slack would notice: a message appearing or changing, a modal, a home tab."""

    seq: int
    kind: EventKind
    channel: str | None = None
    user: str | None = None
    """Whose eyes: the ephemeral recipient, DM owner, or the owner of a view or App Home."""
    ts: str | None = None
    text: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    view: dict[str, Any] | None = None
    thread_ts: str | None = None
    ephemeral: bool = False
    replaced: bool = False
    """A response_url reply (`replace_original`) that rewrote the message it came from."""
    file: dict[str, Any] | None = None
    time: float = 0.0


class ApiError(Exception):
    """Slack's `{"ok": false, "error": ...}` (HTTP 200 unless `status` says otherwise)."""

    def __init__(self, error: str, *, status: int = 200, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra


class LimitError(ApiError):
    """A payload over one of Slack's documented limits (bot.slack_limits): answered, and recorded."""

    def __init__(self, error: str, problems: Sequence[str]) -> None:
        messages = [f"[ERROR] {p}" for p in problems]
        extra: dict[str, Any] = {"response_metadata": {"messages": messages}}
        if error == "invalid_blocks":
            extra["errors"] = list(problems)
        super().__init__(error, **extra)
        self.problems = tuple(problems)


@dataclass(frozen=True)
class LimitViolation:
    """A payload the fake refused because Slack would have: tests fail on any that are left."""

    method: str
    """The Web API method, `response_url`, `ack` (a slash command's or view submission's ack) or `options`."""
    error: str
    problems: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.method}: {self.error}: " + "; ".join(self.problems)


_LIVE: weakref.WeakSet[FakeSlack] = weakref.WeakSet()
_TRACKERS: list[list[FakeSlack]] = []


def live_fakes() -> list[FakeSlack]:
    """Every FakeSlack not yet garbage-collected (the test suite checks their limit violations)."""
    return list(_LIVE)


@contextmanager
def tracking_fakes() -> Iterator[list[FakeSlack]]:
    """A list that every FakeSlack made inside the block joins (held there, so none is collected unseen)."""
    made: list[FakeSlack] = []
    _TRACKERS.append(made)
    try:
        yield made
    finally:
        _TRACKERS.remove(made)


@dataclass
class _ResponseUrl:
    channel: str
    user: str | None
    created: float
    uses: int = 0
    original: str | None = None
    """ts of the message `replace_original` / `delete_original` act on."""


@dataclass
class _Trigger:
    user: str
    issued: float
    used: bool = False


@dataclass
class _View:
    view: dict[str, Any]
    owner: str
    open: bool = True


class _Bucket:
    """Token bucket: `burst` calls at once, then `per_second` on average."""

    def __init__(self, per_second: float, burst: int, per_channel: bool) -> None:
        self.per_second = per_second
        self.burst = burst
        self.per_channel = per_channel
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float) -> float:
        """0 when the call may go ahead, else seconds until it may."""
        tokens, last = self._state.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.per_second)
        if tokens >= 1.0:
            self._state[key] = (tokens - 1.0, now)
            return 0.0
        self._state[key] = (tokens, now)
        return (1.0 - tokens) / self.per_second


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeSlack


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.server.fake._serve(self)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:  # the console owns the terminal
        pass


_JSON_ARGS = ("blocks", "attachments", "view", "files", "metadata")


class FakeSlack:
    """Slack's Web API and response_urls for one workspace, on `127.0.0.1:<free port>`."""

    def __init__(
        self,
        users: Iterable[FakeUser] | None = None,
        usergroups: Mapping[str, Sequence[str]] | Iterable[FakeUsergroup] | None = None,
        channels: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        trigger_ttl: float = TRIGGER_TTL_SECONDS,
    ) -> None:
        if users is None:
            users = default_users()
            usergroups = {"S0APPROVE": ["UAPPROV01"]} if usergroups is None else usergroups
        self._users: dict[str, FakeUser] = {u.id: u for u in users}
        self._users.setdefault(BOT_USER_ID, BOT_USER)
        self._usergroups = _usergroups(usergroups or {})
        self._channels: dict[str, str] = dict(channels or {CONSOLE_CHANNEL: "console"})
        self._clock = clock
        self._trigger_ttl = trigger_ttl

        self._lock = threading.RLock()
        self._counter = 0
        self._ts_counter = 0
        self._calls: list[RecordedCall] = []
        self._events: list[SlackEvent] = []
        self._subscribers: list[Callable[[SlackEvent], None]] = []
        self._messages: dict[tuple[str, str], FakeMessage] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._triggers: dict[str, _Trigger] = {}
        self._views: dict[str, _View] = {}
        self._modal_stacks: dict[str, list[str]] = {}
        self._homes: dict[str, str] = {}
        self._opened_dms: set[str] = set()
        self._uploads: dict[str, dict[str, Any]] = {}
        self._limits: dict[str, _Bucket] = {}
        self._failures: dict[str, list[ApiError]] = {}
        self._violations: list[LimitViolation] = []
        _LIVE.add(self)
        for made in _TRACKERS:
            made.append(self)

        self._inflight = 0
        self._idle = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._socket_mode: SocketModeServer | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-slack", daemon=True
        )
        self._thread.start()
        return self

    def socket_mode(self, **options: Any) -> SocketModeServer:
        """Turn on Socket Mode: a local WebSocket server whose URLs `apps.connections.open` hands out.

        `options` go to SocketModeServer (ack_timeout, disconnect_grace, max_retries); a second call
        returns the running server.
        """
        from bot.console.socket_mode import SocketModeServer

        if self._socket_mode is None:
            self._socket_mode = SocketModeServer(self, **options).start()
        return self._socket_mode

    def stop(self) -> None:
        if self._socket_mode is not None:
            self._socket_mode.stop()
            self._socket_mode = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeSlack is not started; call start() first")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/"

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no HTTP request is being answered (calls already sent have fully landed)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout=timeout)

    # --- what tests and the console read ---------------------------------------------------------

    @property
    def calls(self) -> list[RecordedCall]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[RecordedCall]:
        with self._lock:
            return [c for c in self._calls if c.method == method]

    @property
    def events(self) -> list[SlackEvent]:
        with self._lock:
            return list(self._events)

    def events_since(self, seq: int) -> list[SlackEvent]:
        """Events with a sequence number above `seq`, in order."""
        with self._lock:
            return [e for e in self._events if e.seq > seq]

    def subscribe(self, callback: Callable[[SlackEvent], None]) -> Callable[[], None]:
        """Call `callback` with each event, in order, on the thread that caused it; returns an unsubscribe.

        Called while the fake holds its lock: keep callbacks short and don't wait on other threads.
        """
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def messages(self, channel: str) -> list[FakeMessage]:
        """Messages everyone in `channel` sees (a user id means that user's DM with the bot)."""
        with self._lock:
            channel = self.dm_channel(channel) if channel.startswith("U") else channel
            found = [m for (c, _), m in self._messages.items() if c == channel]
            return sorted((m for m in found if not m.ephemeral and not m.deleted), key=_ts_key)

    def ephemerals(self, user: str) -> list[FakeMessage]:
        with self._lock:
            found = [m for m in self._messages.values() if m.ephemeral and m.audience == user]
            return sorted((m for m in found if not m.deleted), key=_ts_key)

    def message(self, channel: str, ts: str) -> FakeMessage | None:
        """The latest version of a message, deleted ones included (check `.deleted`)."""
        with self._lock:
            return self._messages.get((channel, ts))

    @property
    def views_open(self) -> list[dict[str, Any]]:
        """Modal views currently open, oldest stack first, bottom of each stack first."""
        with self._lock:
            return [
                copy.deepcopy(self._views[v].view) for stack in self._modal_stacks.values() for v in stack
            ]

    def view(self, view_id: str) -> dict[str, Any] | None:
        with self._lock:
            stored = self._views.get(view_id)
            return copy.deepcopy(stored.view) if stored else None

    def view_is_open(self, view_id: str) -> bool:
        with self._lock:
            stored = self._views.get(view_id)
            return bool(stored and stored.open)

    def view_owner(self, view_id: str) -> str | None:
        with self._lock:
            stored = self._views.get(view_id)
            return stored.owner if stored else None

    def modal_stack(self, user: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(self._views[v].view) for v in self._modal_stacks.get(user, [])]

    def top_modal(self, user: str) -> dict[str, Any] | None:
        stack = self.modal_stack(user)
        return stack[-1] if stack else None

    def home(self, user: str) -> dict[str, Any] | None:
        """The App Home view last published for `user`."""
        with self._lock:
            view_id = self._homes.get(user)
            return copy.deepcopy(self._views[view_id].view) if view_id else None

    @property
    def limit_violations(self) -> list[LimitViolation]:
        """Payloads refused for breaking Slack's Block Kit limits, oldest first."""
        with self._lock:
            return list(self._violations)

    def take_limit_violations(self) -> list[LimitViolation]:
        """The violations so far, forgotten: for tests that send a bad payload on purpose."""
        with self._lock:
            taken, self._violations = self._violations, []
            return taken

    def check_options(self, payload: Mapping[str, Any]) -> list[str]:
        """An external select's options answer (it goes back in the HTTP response, not through the API)."""
        problems = options_problems(payload)
        if problems:
            with self._lock:
                self._record("options", LimitError("invalid_arguments", problems))
        return problems

    def response_url_uses(self, url: str) -> int:
        with self._lock:
            state = self._response_urls.get(urlsplit(url).path)
            return state.uses if state else 0

    def uploaded(self, file_id: str) -> bytes | None:
        with self._lock:
            upload = self._uploads.get(file_id)
            return upload.get("data") if upload else None

    # --- the workspace directory ----------------------------------------------------------------

    @property
    def users(self) -> list[FakeUser]:
        with self._lock:
            return list(self._users.values())

    def user(self, user_id: str) -> FakeUser | None:
        return self._users.get(user_id)

    def find_user(self, ref: str) -> FakeUser | None:
        """A user by id, `@name`, name or email."""
        ref = ref.strip().lstrip("@")
        for user in self._users.values():
            if ref in (user.id, user.name) or (user.email and ref.lower() == user.email.lower()):
                return user
        return None

    def add_user(self, user: FakeUser) -> None:
        with self._lock:
            self._users[user.id] = user

    def dm_channel(self, user_id: str) -> str:
        """The bot's DM with a user: stable per user (UADMIN001 -> DADMIN001)."""
        return "D" + user_id[1:]

    def dm_owner(self, channel: str) -> str | None:
        if not channel.startswith("D"):
            return None
        user_id = "U" + channel[1:]
        return user_id if user_id in self._users else None

    @property
    def channels(self) -> dict[str, str]:
        """Channel ids and names the workspace knows (channels posted to are added)."""
        with self._lock:
            return dict(self._channels)

    def channel_name(self, channel: str) -> str | None:
        return self._channels.get(channel)

    def display_name(self, slack_id: str) -> str | None:
        """Name for a user, user group or channel id: the render module's name lookup."""
        if slack_id in self._users:
            return self._users[slack_id].name
        if slack_id in self._usergroups:
            return self._usergroups[slack_id].handle
        return self._channels.get(slack_id)

    # --- what a Slack client does (the console session drives these) ------------------------------

    def new_trigger_id(self, user: str) -> str:
        """A trigger_id for a payload from `user`: usable once, within TRIGGER_TTL_SECONDS."""
        with self._lock:
            n = self._next()
            trigger_id = f"{_TS_BASE + n}.{TEAM_ID[1:]}.{hashlib.sha256(str(n).encode()).hexdigest()[:20]}"
            self._triggers[trigger_id] = _Trigger(user, self._clock())
            return trigger_id

    def new_response_url(
        self,
        *,
        channel: str = CONSOLE_CHANNEL,
        user: str | None = None,
        original_ts: str | None = None,
        kind: Literal["commands", "actions"] = "commands",
    ) -> str:
        """A response_url for a payload; `original_ts` is the message a block action came from."""
        with self._lock:
            n = self._next()
            secret = hashlib.sha256(f"response-url-{n}".encode()).hexdigest()[:24]
            path = f"/hooks/{kind}/{TEAM_ID}/{_TS_BASE + n}/{secret}"
            self._response_urls[path] = _ResponseUrl(channel, user, self._clock(), original=original_ts)
        return self.base_url + path

    def deliver_ack(self, response_url: str, payload: Mapping[str, Any]) -> FakeMessage | None:
        """Show a slash command's ack body (text/blocks) as Slack does; it is not a response_url use."""
        if not (payload.get("text") or payload.get("blocks") or payload.get("attachments")):
            return None
        with self._lock:
            state = self._response_urls.get(urlsplit(response_url).path)
            if state is None:
                raise KeyError(f"unknown response_url {response_url}")
            try:
                return self._respond(state, dict(payload))
            except LimitError as error:  # Slack shows the person an error instead of the reply
                self._record("ack", error)
                return None

    def post_user_message(self, user: str, channel: str, text: str) -> FakeMessage:
        """Record a message a person typed (no event: the terminal already shows it)."""
        with self._lock:
            channel = self.dm_channel(user) if channel.startswith("U") else channel
            message = FakeMessage(channel, self._next_ts(), text, user=user, audience=self.dm_owner(channel))
            self._messages[(channel, message.ts)] = message
            return message

    def close_view(self, view_id: str) -> None:
        """The person closed (or the app's ack closed) a modal: it and any view above it go."""
        with self._lock:
            stored = self._views.get(view_id)
            if stored is None or not stored.open:
                return
            stack = self._modal_stacks.get(stored.owner, [])
            if view_id in stack:
                for closed in stack[stack.index(view_id) :]:
                    self._views[closed].open = False
                del stack[stack.index(view_id) :]
            stored.open = False
            self._emit("view_close", user=stored.owner, view=copy.deepcopy(stored.view))

    def clear_modals(self, user: str) -> None:
        with self._lock:
            stack = self._modal_stacks.get(user, [])
            if stack:
                self.close_view(stack[0])

    def replace_view(self, view_id: str, view: Mapping[str, Any]) -> dict[str, Any]:
        """`response_action: update` from a view_submission ack."""
        with self._lock:
            self._checked_view("ack", view, expected_type="modal")
            return self._update_view(self._open_view(view_id), dict(view), hash_=None)

    def push_view(self, user: str, view: Mapping[str, Any]) -> dict[str, Any]:
        """`response_action: push` from a view_submission ack."""
        with self._lock:
            self._checked_view("ack", view, expected_type="modal")
            return self._push_modal(user, dict(view))

    # --- fault injection --------------------------------------------------------------------------

    def rate_limit(
        self,
        method: str,
        per_second: float | None = 1.0,
        *,
        burst: int | None = None,
        per_channel: bool = False,
    ) -> None:
        """Answer 429 + Retry-After beyond `per_second` (after `burst` at once); None turns it off.

        `per_channel=True` keeps one bucket per channel, like chat.postMessage's 1/s per channel.
        """
        with self._lock:
            if per_second is None:
                self._limits.pop(method, None)
            else:
                self._limits[method] = _Bucket(
                    per_second, burst or max(1, math.floor(per_second)), per_channel
                )

    def fail_next(
        self, method: str, error: str = "internal_error", *, times: int = 1, status: int = 200
    ) -> None:
        """Make the next `times` calls to `method` fail with `error` (HTTP `status`)."""
        with self._lock:
            self._failures.setdefault(method, []).extend(ApiError(error, status=status) for _ in range(times))

    # --- HTTP ----------------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        with self._idle:
            self._inflight += 1
        try:
            url = urlsplit(handler.path)
            raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
            content_type = handler.headers.get("Content-Type", "")
            try:
                if url.path.startswith("/api/"):
                    auth = handler.headers.get("Authorization", "")
                    status, headers, body = self._web_api(url.path[5:], url.query, raw, content_type, auth)
                elif url.path.startswith("/hooks/"):
                    status, headers, body = self._response_url_post(url.path, raw, content_type)
                elif url.path.startswith("/upload/v1/"):
                    status, headers, body = self._upload(url.path.rsplit("/", 1)[-1], raw)
                else:
                    status, headers, body = 404, {}, b"not_found"
            except Exception:
                log.exception("fake Slack failed on %s", url.path)
                status, headers, body = 500, {}, b'{"ok": false, "error": "internal_error"}'
            handler.send_response(status)
            for name, value in {"Content-Type": "application/json; charset=utf-8", **headers}.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    def _web_api(
        self, method: str, query: str, raw: bytes, content_type: str, auth: str
    ) -> tuple[int, dict[str, str], bytes]:
        headers: dict[str, str] = {}
        with self._lock:
            try:
                args = _parse_args(query, raw, content_type)
            except ApiError as error:
                args, status, response = {}, 200, {"ok": False, "error": error.error}
            else:
                token = auth.removeprefix("Bearer ").strip() or str(args.get("token") or "")
                args.pop("token", None)
                status, response, retry_after = self._call(method, args, token)
                if retry_after:
                    headers["Retry-After"] = str(retry_after)
            self._calls.append(RecordedCall(method, args, self._clock(), status, response))
        return status, headers, json.dumps(response).encode()

    def _call(self, method: str, args: dict[str, Any], token: str) -> tuple[int, dict[str, Any], int]:
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, 0
        if not token.startswith(("xox", "xapp-")):
            return 200, {"ok": False, "error": "invalid_auth"}, 0
        if method == "apps.connections.open" and not token.startswith("xapp-"):
            return 200, {"ok": False, "error": "not_allowed_token_type"}, 0
        bucket = self._limits.get(method)
        if bucket is not None:
            key = str(args.get("channel", "")) if bucket.per_channel else ""
            wait = bucket.take(key, self._clock())
            if wait:
                return 429, {"ok": False, "error": "ratelimited"}, max(1, math.ceil(wait))
        failures = self._failures.get(method)
        if failures:
            failure = failures.pop(0)
            return failure.status, {"ok": False, "error": failure.error}, 0
        handler = self._methods().get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, 0
        try:
            return 200, {"ok": True, **handler(args)}, 0
        except ApiError as error:
            if isinstance(error, LimitError):
                self._record(method, error)
            return error.status, {"ok": False, "error": error.error, **error.extra}, 0

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.open": self._conversations_open,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.push": self._views_push,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "users.list": self._users_list,
            "users.lookupByEmail": self._users_lookup_by_email,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "apps.connections.open": self._apps_connections_open,
        }

    # --- Web API methods (called with the lock held) ----------------------------------------------

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.example/",
            "team": "Console",
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(args.get("channel"))
        message = self._new_message(channel, args)
        kind: EventKind = "dm" if channel.startswith("D") else "post"
        self._emit_message(kind, message)
        return {"channel": channel, "ts": message.ts, "message": message.to_api()}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(args.get("channel"))
        user = str(args.get("user") or "")
        owner = self.dm_owner(channel)
        if user not in self._users or (owner is not None and owner != user):
            raise ApiError("user_not_in_channel")
        message = self._new_message(channel, args, ephemeral_to=user)
        self._emit_message("ephemeral", message)
        return {"message_ts": message.ts}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        # Ephemeral messages live only in one client: chat.update can't find them (respond() can).
        current = self._existing_message(args, allow_ephemeral=False)
        self._checked_message(args)
        changes: dict[str, Any] = {"edits": current.edits + 1}
        if "text" in args:
            changes["text"] = str(args.get("text") or "")
        if "blocks" in args:
            changes["blocks"] = self._checked_blocks(args.get("blocks"))
        if "attachments" in args:
            changes["attachments"] = list(args.get("attachments") or [])
        updated = replace(current, **changes)
        if not (updated.text or updated.blocks or updated.attachments):
            raise ApiError("no_text")
        self._messages[(updated.channel, updated.ts)] = updated
        self._emit_message("update", updated)
        return {
            "channel": updated.channel,
            "ts": updated.ts,
            "text": updated.text,
            "message": updated.to_api(),
        }

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        current = self._existing_message(args, allow_ephemeral=False)
        self._messages[(current.channel, current.ts)] = replace(current, deleted=True)
        self._emit("delete", channel=current.channel, ts=current.ts, user=current.audience)
        return {"channel": current.channel, "ts": current.ts}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        current = self._messages.get((str(args.get("channel") or ""), str(args.get("message_ts") or "")))
        if current is None or current.deleted or current.ephemeral:
            raise ApiError("message_not_found")
        permalink = (
            f"https://{TEAM_DOMAIN}.slack.example/archives/{current.channel}/p{current.ts.replace('.', '')}"
        )
        return {"channel": current.channel, "permalink": permalink}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("channel"):
            return {"channel": {"id": self._resolve_channel(args["channel"])}}
        users = _id_list(args.get("users"))
        if not users:
            raise ApiError("users_list_not_supplied")
        unknown = [u for u in users if u not in self._users]
        if unknown:
            raise ApiError("user_not_found")
        if len(users) == 1:
            channel = self.dm_channel(users[0])
            already = channel in self._opened_dms
            self._opened_dms.add(channel)
            opened: dict[str, Any] = {"channel": {"id": channel}}
            if already:
                opened.update({"no_op": True, "already_open": True})
            return opened
        # A group DM: stable id for the same set of people.
        digest = hashlib.sha256(",".join(sorted(users)).encode()).hexdigest()[:8].upper()
        channel = f"G{digest}"
        self._channels.setdefault(channel, "mpdm-" + "--".join(self._users[u].name for u in sorted(users)))
        return {"channel": {"id": channel}}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self._exchange_trigger(args.get("trigger_id"))
        view = self._view_arg(args, expected_type="modal")
        self.clear_modals(user)
        return {"view": self._push_modal(user, view, kind="view_open")}

    def _views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self._exchange_trigger(args.get("trigger_id"))
        view = self._view_arg(args, expected_type="modal")
        if not self._modal_stacks.get(user):
            raise ApiError(
                "not_found", response_metadata={"messages": ["[ERROR] no open modal to push onto"]}
            )
        if len(self._modal_stacks[user]) >= 3:
            raise ApiError("push_limit_reached")
        return {"view": self._push_modal(user, view)}

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = args.get("view_id")
        if not view_id and args.get("external_id"):
            view_id = next(
                (k for k, v in self._views.items() if v.view["external_id"] == args["external_id"]), None
            )
        if not view_id:
            raise ApiError("not_found") if args.get("external_id") else ApiError("invalid_arguments")
        stored = self._open_view(str(view_id))
        view = self._view_arg(args, expected_type=stored.view["type"])
        kind: EventKind = "home" if stored.view["type"] == "home" else "view_update"
        return {"view": self._update_view(stored, view, hash_=args.get("hash"), kind=kind)}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("user_id") or "")
        if user not in self._users:
            raise ApiError("user_not_found")
        view = self._view_arg(args, expected_type="home")
        home_id = self._homes.get(user)
        if home_id is not None:
            full = self._update_view(self._views[home_id], view, hash_=args.get("hash"), kind="home")
        else:
            full = self._store_view(user, view, previous=None)
            self._homes[user] = full["id"]
            self._emit("home", user=user, view=copy.deepcopy(full))
        return {"view": full}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self._users.get(str(args.get("user") or ""))
        if user is None:
            raise ApiError("user_not_found")
        return {"user": user.to_api()}

    def _users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "members": [u.to_api() for u in self._users.values()],
            "response_metadata": {"next_cursor": ""},
        }

    def _users_lookup_by_email(self, args: dict[str, Any]) -> dict[str, Any]:
        email = str(args.get("email") or "").strip().lower()
        for user in self._users.values():
            if user.email and user.email.lower() == email:
                return {"user": user.to_api()}
        raise ApiError("users_not_found")

    def _usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        include = _truthy(args.get("include_users"))
        return {"usergroups": [g.to_api(include_users=include) for g in self._usergroups.values()]}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = self._usergroups.get(str(args.get("usergroup") or ""))
        if group is None:
            raise ApiError("no_such_subteam")
        return {"users": list(group.users)}

    def _files_get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("filename") or not str(args.get("length") or "").isdigit():
            raise ApiError("invalid_arguments")
        file_id = f"F{self._next():08d}"
        self._uploads[file_id] = {
            "filename": str(args["filename"]),
            "length": int(args["length"]),
            "data": None,
        }
        return {"upload_url": f"{self.base_url}/upload/v1/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        if not isinstance(files, list) or not files:
            raise ApiError("invalid_arguments")
        shared = []
        for item in files:
            upload = self._uploads.get(str(item.get("id")))
            if upload is None or upload["data"] is None:
                raise ApiError("file_not_found")
            shared.append(
                {
                    "id": item["id"],
                    "name": upload["filename"],
                    "title": item.get("title") or upload["filename"],
                    "size": len(upload["data"]),
                    "user": BOT_USER_ID,
                }
            )
        channel_arg = args.get("channel_id") or next(iter(_id_list(args.get("channels"))), None)
        if channel_arg:
            channel = self._resolve_channel(channel_arg)
            comment = str(args.get("initial_comment") or "")
            message = FakeMessage(
                channel,
                self._next_ts(),
                comment,
                files=shared,
                thread_ts=args.get("thread_ts"),
                audience=self.dm_owner(channel),
            )
            self._messages[(channel, message.ts)] = message
            for item in shared:
                self._emit(
                    "file",
                    channel=channel,
                    ts=message.ts,
                    text=comment,
                    file=dict(item),
                    user=message.audience,
                )
        return {"files": shared}

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        server = self._socket_mode
        if server is None:
            raise ApiError(
                "not_allowed_token_type",
                response_metadata={"messages": [
                    "[ERROR] this FakeSlack has no Socket Mode: start it with socket_mode() first"
                ]},
            )
        if server.disabled:  # after link_disabled: Socket Mode is off for the app
            raise ApiError("invalid_auth")
        return {"url": server.new_url()}

    # --- response_url and uploads ---------------------------------------------------------------

    def _response_url_post(
        self, path: str, raw: bytes, content_type: str
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            state = self._response_urls.get(path)
            args: dict[str, Any] = {"url": self.base_url + path}
            if state is None:
                status, body = 404, "no_service"
            elif self._clock() - state.created > RESPONSE_URL_TTL_SECONDS:
                status, body = RESPONSE_URL_SPENT_STATUS, "expired_url"
            elif state.uses >= RESPONSE_URL_MAX_USES:
                status, body = RESPONSE_URL_SPENT_STATUS, "used_url"
            else:
                try:
                    payload = _parse_hook_payload(raw, content_type)
                    args.update(payload)
                    state.uses += 1
                    self._respond(state, payload)
                    status, body = 200, "ok"
                except ApiError as error:
                    if isinstance(error, LimitError):
                        self._record("response_url", error)
                    status, body = 400, error.error
            self._calls.append(
                RecordedCall("response_url", args, self._clock(), status, {"ok": status == 200})
            )
        return status, {"Content-Type": "text/html"}, body.encode()

    def _respond(self, state: _ResponseUrl, payload: dict[str, Any]) -> FakeMessage | None:
        original = self._messages.get((state.channel, state.original)) if state.original else None
        if original is not None and original.deleted:
            original = None
        if _truthy(payload.get("delete_original")):
            if original is not None:
                self._messages[(original.channel, original.ts)] = replace(original, deleted=True)
                self._emit("delete", channel=original.channel, ts=original.ts, user=original.audience)
            return None
        if not (payload.get("text") or payload.get("blocks") or payload.get("attachments")):
            raise ApiError("no_text")
        self._checked_message(payload)
        blocks = self._checked_blocks(payload.get("blocks"))
        if _truthy(payload.get("replace_original")) and original is not None:
            message = replace(
                original,
                text=str(payload.get("text") or ""),
                blocks=blocks,
                attachments=list(payload.get("attachments") or []),
                edits=original.edits + 1,
            )
            self._messages[(message.channel, message.ts)] = message
            self._emit_message("response", message, replaced=True)
            return message
        ephemeral = payload.get("response_type") != "in_channel"
        message = FakeMessage(
            state.channel,
            self._next_ts(),
            str(payload.get("text") or ""),
            blocks,
            list(payload.get("attachments") or []),
            thread_ts=payload.get("thread_ts"),
            audience=state.user if ephemeral else self.dm_owner(state.channel),
            ephemeral=ephemeral,
        )
        self._messages[(message.channel, message.ts)] = message
        if state.original is None:
            state.original = message.ts
        self._emit_message("response", message)
        return message

    def _upload(self, file_id: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            upload = self._uploads.get(file_id)
            if upload is None:
                status, body = 404, "not_found"
            else:
                upload["data"] = raw
                status, body = 200, f"OK - {len(raw)}"
            self._calls.append(
                RecordedCall("upload", {"file_id": file_id, "length": len(raw)}, self._clock(), status)
            )
        return status, {"Content-Type": "text/plain"}, body.encode()

    # --- helpers (lock held) --------------------------------------------------------------------

    def _next(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _next_ts(self) -> str:
        """Unique, increasing, Slack-shaped: 1700000000.000100, 1700000000.000200, …"""
        self._ts_counter += 1
        micros = self._ts_counter * 100
        return f"{_TS_BASE + micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _resolve_channel(self, channel: Any) -> str:
        """A channel id as chat.postMessage accepts it: C…/G… as given, U… becomes that user's DM."""
        channel = str(channel or "")
        if channel.startswith("U") and channel in self._users:
            return self.dm_channel(channel)
        if channel.startswith("D") and self.dm_owner(channel):
            return channel
        if channel[:1] in ("C", "G") and len(channel) > 2 and channel.isalnum():
            self._channels.setdefault(channel, channel)
            return channel
        raise ApiError("channel_not_found")

    def _new_message(
        self, channel: str, args: Mapping[str, Any], *, ephemeral_to: str | None = None
    ) -> FakeMessage:
        text = str(args.get("text") or "")
        if not (text or args.get("blocks") or args.get("attachments")):
            raise ApiError("no_text")
        self._checked_message(args)
        message = FakeMessage(
            channel,
            self._next_ts(),
            text,
            self._checked_blocks(args.get("blocks")),
            list(args.get("attachments") or []),
            thread_ts=args.get("thread_ts") or None,
            audience=ephemeral_to or self.dm_owner(channel),
            ephemeral=ephemeral_to is not None,
        )
        self._messages[(channel, message.ts)] = message
        return message

    def _existing_message(self, args: Mapping[str, Any], *, allow_ephemeral: bool = True) -> FakeMessage:
        channel = str(args.get("channel") or "")
        if not (channel.startswith(("C", "G")) or self.dm_owner(channel)):
            raise ApiError("channel_not_found")
        message = self._messages.get((channel, str(args.get("ts") or "")))
        if message is None or message.deleted or (message.ephemeral and not allow_ephemeral):
            raise ApiError("message_not_found")
        if message.user != BOT_USER_ID:
            raise ApiError("cant_update_message")
        return message

    def _checked_message(self, payload: Mapping[str, Any]) -> None:
        """Slack's answer to a message over its limits: `msg_too_long` for the text, else `invalid_blocks`."""
        if payload.get("blocks") is not None and not isinstance(payload.get("blocks"), list):
            raise ApiError("invalid_blocks_format")
        problems = message_problems(payload)
        text_problems = [p for p in problems if p.endswith("[json-pointer:/text]")]
        if text_problems:
            raise LimitError("msg_too_long", text_problems)
        if problems:
            raise LimitError("invalid_blocks", problems)

    def _checked_blocks(self, blocks: Any) -> list[dict[str, Any]]:
        """Blocks of a message already through `_checked_message`, with the ids Slack fills in."""
        if blocks is None:
            return []
        if not isinstance(blocks, list):
            raise ApiError("invalid_blocks_format")
        return self._with_ids(blocks)

    def _checked_view(self, method: str, view: Mapping[str, Any], *, expected_type: str) -> None:
        """A view from an ack (`response_action`): Slack refuses it like a views.* call would."""
        problems = view_problems(view, expected_type=expected_type)
        if problems:
            error = LimitError("invalid_arguments", problems)
            self._record(method, error)
            raise error

    def _record(self, method: str, error: LimitError) -> None:
        violation = LimitViolation(method, error.error, error.problems)
        log.warning("Slack would refuse this payload: %s", violation)
        self._violations.append(violation)

    def _with_ids(self, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Slack fills in block_id and action_id when the app leaves them out; payloads carry them."""
        blocks = copy.deepcopy(blocks)
        for block in blocks:
            block.setdefault("block_id", f"{AUTO_BLOCK_ID_PREFIX}{self._next()}")
            for element in _interactive_elements(block):
                element.setdefault("action_id", f"{AUTO_ACTION_ID_PREFIX}{self._next()}")
        return blocks

    def _exchange_trigger(self, trigger_id: Any) -> str:
        trigger = self._triggers.get(str(trigger_id or ""))
        if trigger is None:
            raise ApiError("invalid_trigger_id")
        if trigger.used:
            raise ApiError("exchanged_trigger_id")
        if self._clock() - trigger.issued > self._trigger_ttl:
            raise ApiError("expired_trigger_id")
        trigger.used = True
        return trigger.user

    def _view_arg(self, args: Mapping[str, Any], *, expected_type: str) -> dict[str, Any]:
        view = args.get("view")
        if not isinstance(view, dict):
            raise ApiError(
                "invalid_arguments", response_metadata={"messages": ["[ERROR] missing required field: view"]}
            )
        problems = view_problems(view, expected_type=expected_type)
        if problems:
            raise LimitError("invalid_arguments", problems)
        return view

    def _open_view(self, view_id: str) -> _View:
        stored = self._views.get(view_id)
        if stored is None or not stored.open:
            raise ApiError("not_found")
        return stored

    def _store_view(self, owner: str, view: Mapping[str, Any], *, previous: str | None) -> dict[str, Any]:
        view_id = f"V{self._next():08d}"
        full = self._full_view(view_id, view, previous=previous, root=None)
        self._views[view_id] = _View(full, owner)
        return full

    def _full_view(
        self, view_id: str, view: Mapping[str, Any], *, previous: str | None, root: str | None
    ) -> dict[str, Any]:
        external_id = str(view.get("external_id") or "")
        if external_id and any(
            v.view["external_id"] == external_id and v.view["id"] != view_id for v in self._views.values()
        ):
            raise ApiError("duplicate_external_id")
        full: dict[str, Any] = {
            "id": view_id,
            "team_id": TEAM_ID,
            "type": view["type"],
            "blocks": self._with_ids(list(view.get("blocks") or [])),
            "private_metadata": str(view.get("private_metadata") or ""),
            "callback_id": str(view.get("callback_id") or ""),
            "state": {"values": {}},
            "hash": f"{_TS_BASE + self._next()}.{hashlib.sha256(view_id.encode()).hexdigest()[:8]}",
            "title": view.get("title"),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "previous_view_id": previous,
            "root_view_id": root or view_id,
            "app_id": APP_ID,
            "external_id": external_id,
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
        }
        return full

    def _push_modal(
        self, user: str, view: Mapping[str, Any], kind: EventKind = "view_push"
    ) -> dict[str, Any]:
        stack = self._modal_stacks.setdefault(user, [])
        previous = stack[-1] if stack else None
        full = self._store_view(user, view, previous=previous)
        if previous is not None:
            full["root_view_id"] = self._views[previous].view["root_view_id"]
        stack.append(full["id"])
        self._emit(kind, user=user, view=copy.deepcopy(full))
        return copy.deepcopy(full)

    def _update_view(
        self, stored: _View, view: Mapping[str, Any], *, hash_: Any, kind: EventKind = "view_update"
    ) -> dict[str, Any]:
        if hash_ and hash_ != stored.view["hash"]:
            raise ApiError("hash_conflict")
        old = stored.view
        full = self._full_view(old["id"], view, previous=old["previous_view_id"], root=old["root_view_id"])
        stored.view = full
        self._emit(kind, user=stored.owner, view=copy.deepcopy(full))
        return copy.deepcopy(full)

    def _emit_message(self, kind: EventKind, message: FakeMessage, *, replaced: bool = False) -> None:
        self._emit(
            kind,
            channel=message.channel,
            user=message.audience,
            ts=message.ts,
            text=message.text,
            blocks=copy.deepcopy(message.blocks),
            attachments=copy.deepcopy(message.attachments),
            thread_ts=message.thread_ts,
            ephemeral=message.ephemeral,
            replaced=replaced,
        )

    def _emit(self, kind: EventKind, **fields: Any) -> None:
        with self._lock:
            event = SlackEvent(seq=len(self._events) + 1, kind=kind, time=self._clock(), **fields)
            self._events.append(event)
            for callback in list(self._subscribers):
                try:
                    callback(event)
                except Exception:
                    log.exception("FakeSlack subscriber failed")


# --- blocks: the elements Slack gives ids to ------------------------------------------------------


def _interactive_elements(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    kind = block.get("type")
    if kind == "actions":
        return [e for e in block.get("elements") or [] if isinstance(e, dict)]
    if kind == "section" and isinstance(block.get("accessory"), dict):
        accessory = block["accessory"]
        return [] if accessory.get("type") == "image" else [accessory]
    if kind == "input" and isinstance(block.get("element"), dict):
        return [block["element"]]
    return []


# --- parsing ------------------------------------------------------------------------------------


def _parse_args(query: str, raw: bytes, content_type: str) -> dict[str, Any]:
    """Web API arguments from the query, a JSON body or a form body; JSON-in-form fields decoded."""
    args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "application/json":
        try:
            body = json.loads(raw or b"{}")
        except ValueError as error:
            raise ApiError("invalid_json") from error
        if not isinstance(body, dict):
            raise ApiError("invalid_json")
        args.update(body)
    elif raw and not media_type.startswith("multipart/"):
        args.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    for key in _JSON_ARGS:
        value = args.get(key)
        if isinstance(value, str) and value.strip():
            try:
                args[key] = json.loads(value)
            except ValueError as error:
                raise ApiError("invalid_blocks_format" if key == "blocks" else "invalid_arguments") from error
    return args


def _parse_hook_payload(raw: bytes, content_type: str) -> dict[str, Any]:
    """A response_url body: JSON (what respond() sends) or the older `payload=<json>` form."""
    text = raw.decode("utf-8")
    if not content_type.lower().startswith("application/json") and text.startswith("payload="):
        text = dict(parse_qsl(text)).get("payload", "")
    try:
        payload = json.loads(text)
    except ValueError as error:
        raise ApiError("invalid_payload") from error
    if not isinstance(payload, dict):
        raise ApiError("invalid_payload")
    return payload


def _usergroups(spec: Mapping[str, Sequence[str]] | Iterable[FakeUsergroup]) -> dict[str, FakeUsergroup]:
    if isinstance(spec, Mapping):
        return {gid: FakeUsergroup(gid, gid.lower(), tuple(users)) for gid, users in spec.items()}
    return {g.id: g for g in spec}


def _id_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _ts_key(message: FakeMessage) -> tuple[int, int]:
    seconds, _, fraction = message.ts.partition(".")
    return int(seconds), int(fraction or 0)
