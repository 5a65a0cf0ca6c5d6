"""The payloads Slack sends the app for what a person does, and how Slack reads the app's ack.

Shaped as Socket Mode delivers them (the console dispatches in-process, without a signing secret).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltResponse
from slack_bolt.context.ack import Ack

from bot.console.fake_slack import APP_ID, BOT_USER_ID, TEAM_DOMAIN, TEAM_ID


class ObservedAck(Ack):
    """Tells the session the moment the listener acks, before any work it hands to the runner.

    Slack acts on an ack as soon as it arrives (shows the reply, closes or updates the modal), so
    applying it here keeps the console's order of events the same as Slack's.
    """

    def __init__(self, on_ack: Callable[[BoltResponse], None]) -> None:
        super().__init__()
        self._on_ack = on_ack

    def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:
        response = super().__call__(*args, **kwargs)
        self._on_ack(response)
        return response


def parse_ack(body: str) -> dict[str, Any]:
    """A Bolt ack body as Slack reads it: JSON when it looks like JSON, else the text of a reply."""
    if not body:
        return {}
    if body.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                return parsed
    return {"text": body}


def slash_command(
    command: str,
    text: str,
    *,
    user: str,
    user_name: str,
    channel: str,
    channel_name: str,
    response_url: str,
    trigger_id: str,
) -> dict[str, Any]:
    """A slash command's payload; `text` already escaped as Slack sends it."""
    return {
        "token": "console",
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel,
        "channel_name": channel_name,
        "user_id": user,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def interaction(kind: str, *, user: str, user_name: str) -> dict[str, Any]:
    """What every interactive payload (block_actions, view_submission, …) starts with."""
    return {
        "type": kind,
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "user": {"id": user, "username": user_name, "name": user_name, "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": "console",
        "enterprise": None,
        "is_enterprise_install": False,
    }


def event_envelope(event: dict[str, Any], n: int) -> dict[str, Any]:
    """The Events API envelope of the `n`th event the console sends."""
    return {
        "token": "console",
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": f"Ev{n:010d}",
        "event_time": 1_700_000_000 + n,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }


def event_ts(n: int) -> str:
    """An `event_ts` / `action_ts` for the `n`th thing the console sends."""
    return f"{1_700_000_000 + n}.{n % 1_000_000:06d}"
