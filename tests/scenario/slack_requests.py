"""Signed Slack request bodies, shaped like bolt-python's own scenario tests.

Like Slack, every body gets its own trigger_id, action_ts and event_id unless a test passes one: the
bot treats a second request with the same one as a double click or a retry (bot/dedupe.py).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # a test secret, not a real one

_counter = itertools.count(1)


def new_trigger_id() -> str:
    """A fresh trigger_id, shaped like Slack's."""
    return f"{13345224609 + next(_counter)}.738474920.{uuid.uuid4().hex[:20]}"


def new_action_ts() -> str:
    """A fresh action_ts: now, to the microsecond, never the same twice in a run."""
    return f"{int(time.time())}.{next(_counter) % 1_000_000:06d}"


def new_event_id() -> str:
    return f"Ev{uuid.uuid4().hex[:10].upper()}"


def signed_headers(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None,
                   content_type: str = "application/x-www-form-urlencoded") -> dict[str, list[str]]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {
        "content-type": [content_type],
        "x-slack-signature": [signature],
        "x-slack-request-timestamp": [ts],
    }


def command_body(text: str, *, user: str, channel: str = "C0CONSOLE", response_url: str,
                 trigger_id: str | None = None) -> str:
    return urlencode({
        "token": "legacy-unused",
        "team_id": "T0CONSOLE",
        "team_domain": "console",
        "channel_id": channel,
        "channel_name": "console",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/mam",
        "text": text,
        "api_app_id": "A0MAMBOT1",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or new_trigger_id(),
    })


def action_body(action_id: str, *, user: str, response_url: str, value: str = "",
                channel: str = "C0CONSOLE", message_ts: str = "1700000000.000100",
                trigger_id: str | None = None, action_ts: str | None = None) -> str:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": "T0CONSOLE", "domain": "console"},
        "user": {"id": user, "username": user.lower(), "team_id": "T0CONSOLE"},
        "api_app_id": "A0MAMBOT1",
        "token": "legacy-unused",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": True},
        "trigger_id": trigger_id or new_trigger_id(),
        "channel": {"id": channel, "name": "console"},
        "response_url": response_url,
        "actions": [{
            "action_id": action_id, "block_id": "b1", "type": "button", "value": value,
            "text": {"type": "plain_text", "text": "x"}, "action_ts": action_ts or new_action_ts(),
        }],
    }
    return urlencode({"payload": json.dumps(payload)})


def event_body(event: dict[str, Any], *, event_id: str | None = None) -> str:
    return json.dumps({
        "token": "legacy-unused", "team_id": "T0CONSOLE", "api_app_id": "A0MAMBOT1", "event": event,
        "type": "event_callback", "event_id": event_id or new_event_id(), "event_time": int(time.time()),
    })


def view_body(callback_id: str, *, user: str, values: dict[str, str], private_metadata: str = "",
              view_id: str = "V0TEST", view_hash: str = "1") -> str:
    """A view_submission whose plain-text inputs (block id → text) carry `values`."""
    payload = {
        "type": "view_submission",
        "team": {"id": "T0CONSOLE", "domain": "console"},
        "user": {"id": user, "username": user.lower(), "team_id": "T0CONSOLE"},
        "api_app_id": "A0MAMBOT1",
        "token": "legacy-unused",
        "trigger_id": new_trigger_id(),
        "view": {
            "id": view_id, "type": "modal", "callback_id": callback_id, "private_metadata": private_metadata,
            "state": {"values": {block: {"value": {"type": "plain_text_input", "value": text}}
                                 for block, text in values.items()}},
            "hash": view_hash, "title": {"type": "plain_text", "text": "x"}, "blocks": [],
        },
        "response_urls": [],
    }
    return urlencode({"payload": json.dumps(payload)})


def options_body(action_id: str, *, user: str, value: str, block_id: str = "b1", callback_id: str = "") -> str:
    payload = {
        "type": "block_suggestion",
        "user": {"id": user, "username": user.lower(), "team_id": "T0CONSOLE"},
        "team": {"id": "T0CONSOLE", "domain": "console"},
        "api_app_id": "A0MAMBOT1",
        "token": "legacy-unused",
        "action_id": action_id,
        "block_id": block_id,
        "value": value,
        "container": {"type": "view", "view_id": "V0TEST"},
        "view": {"id": "V0TEST", "type": "modal", "callback_id": callback_id, "private_metadata": "", "blocks": []},
    }
    return urlencode({"payload": json.dumps(payload)})


def view_state_body(callback_id: str, *, user: str, state: dict, view_id: str = "V0TEST",
                    private_metadata: str = "") -> str:
    """A view_submission with a full `state.values` (selects, multi-selects, radio buttons)."""
    payload = {
        "type": "view_submission",
        "team": {"id": "T0CONSOLE", "domain": "console"},
        "user": {"id": user, "username": user.lower(), "team_id": "T0CONSOLE"},
        "api_app_id": "A0MAMBOT1",
        "token": "legacy-unused",
        "trigger_id": new_trigger_id(),
        "view": {"id": view_id, "type": "modal", "callback_id": callback_id, "private_metadata": private_metadata,
                 "state": {"values": state}, "hash": "1", "title": {"type": "plain_text", "text": "x"},
                 "blocks": []},
        "response_urls": [],
    }
    return urlencode({"payload": json.dumps(payload)})
