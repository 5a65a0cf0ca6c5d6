"""What the fake keeps of a workspace, and the queries tests and the console read it with.

The people, channels and user groups; every message (ephemerals and deleted ones too), modal, view
and App Home; the trigger_ids and response_urls handed out; the calls answered, the events worth
rendering (told to subscribers as they happen) and the payloads refused for breaking Slack's limits.
The Web API (web_api.py), the response_urls (response_urls.py) and the console session change it
through the methods here, all under one lock.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bot.console.fake_slack.model import (
    APP_ID,
    AUTO_ACTION_ID_PREFIX,
    AUTO_BLOCK_ID_PREFIX,
    BOT_ID,
    BOT_USER,
    BOT_USER_ID,
    CONSOLE_CHANNEL,
    TEAM_ID,
    TS_BASE,
    ApiError,
    EventKind,
    FakeMessage,
    FakeUser,
    FakeUsergroup,
    LimitError,
    LimitViolation,
    RecordedCall,
    SlackEvent,
    default_users,
)
from bot.slack_limits import message_problems, options_problems, view_problems

log = logging.getLogger(__name__)

TRIGGER_TTL_SECONDS = 3.0


@dataclass
class ResponseUrl:
    """A response_url handed out with a payload: where its replies go, and how often it was used."""

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


class Recording:
    """The state of one fake workspace; FakeSlack adds the Web API, the response_urls and the HTTP server."""

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
        self._session = secrets.token_hex(4)  # makes trigger ids unique across runs
        self._counter = 0
        self._ts_counter = 0
        self._calls: list[RecordedCall] = []
        self._events: list[SlackEvent] = []
        self._subscribers: list[Callable[[SlackEvent], None]] = []
        self._messages: dict[tuple[str, str], FakeMessage] = {}
        self._response_urls: dict[str, ResponseUrl] = {}
        self._triggers: dict[str, _Trigger] = {}
        self._views: dict[str, _View] = {}
        self._modal_stacks: dict[str, list[str]] = {}
        self._homes: dict[str, str] = {}
        self._opened_dms: set[str] = set()
        self._uploads: dict[str, dict[str, Any]] = {}
        self._violations: list[LimitViolation] = []
        self._port: int | None = None  # where FakeSlack's HTTP server listens, once started

    @property
    def base_url(self) -> str:
        """Where the fake answers HTTP (response_urls and upload URLs start with it): FakeSlack's server."""
        if self._port is None:
            raise RuntimeError("FakeSlack is not started; call start() first")
        return f"http://127.0.0.1:{self._port}"

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
            # unique across sessions too, as Slack's are: a console run within minutes of the last one keeps
            # its database, where the bot remembers recent trigger ids to drop a copy of a request
            digest = hashlib.sha256(f"{self._session}:{n}".encode()).hexdigest()[:20]
            trigger_id = f"{TS_BASE + n}.{TEAM_ID[1:]}.{digest}"
            self._triggers[trigger_id] = _Trigger(user, self._clock())
            return trigger_id

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

    # --- helpers (lock held) --------------------------------------------------------------------

    def _next(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _next_ts(self) -> str:
        """Unique, increasing, Slack-shaped: 1700000000.000100, 1700000000.000200, …"""
        self._ts_counter += 1
        micros = self._ts_counter * 100
        return f"{TS_BASE + micros // 1_000_000}.{micros % 1_000_000:06d}"

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
            "hash": f"{TS_BASE + self._next()}.{hashlib.sha256(view_id.encode()).hexdigest()[:8]}",
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


def _usergroups(spec: Mapping[str, Sequence[str]] | Iterable[FakeUsergroup]) -> dict[str, FakeUsergroup]:
    if isinstance(spec, Mapping):
        return {gid: FakeUsergroup(gid, gid.lower(), tuple(users)) for gid, users in spec.items()}
    return {g.id: g for g in spec}


def _ts_key(message: FakeMessage) -> tuple[int, int]:
    seconds, _, fraction = message.ts.partition(".")
    return int(seconds), int(fraction or 0)
