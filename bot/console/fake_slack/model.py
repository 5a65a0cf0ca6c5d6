"""What the fake workspace is made of: its ids, people, messages, events, recorded calls and errors."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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

TS_BASE = 1_700_000_000
"""Where the fake's Slack-shaped timestamps and ids start counting."""

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
            "updated": TS_BASE,
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


def truthy(value: Any) -> bool:
    """A boolean argument as Slack reads it: JSON `true`, or `true`/`1` in a form body."""
    return value is True or str(value).lower() in ("true", "1")
