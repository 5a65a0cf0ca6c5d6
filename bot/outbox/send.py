"""The Slack call that delivers one outbox row: chat.postMessage, chat.update or files_upload_v2."""

from __future__ import annotations

import base64
import copy
from typing import Any

from slack_sdk import WebClient

from bot.marker import mark_message, mark_text
from bot.outbox.table import POST, UPDATE, UPLOAD, OutboxMessage

Delivered = tuple[str, str | None, str | None]
"""Where Slack put the message: (channel, ts, file id)."""


def outbox_client(client: WebClient) -> WebClient:
    """`client` without slack_sdk's retry handlers: one call, one HTTP request.

    The rate-limit handler sleeps Retry-After inside the call, holding a worker and a claimed row while
    the pacer knows nothing of it; the connection handler would resend a post the outbox has not yet
    recorded. The outbox does both itself. A handler that only observes (`observes_only`: the metrics' meter,
    bot.slack.SlackCallMeter) is kept.
    """
    kept = [h for h in client.retry_handlers if getattr(h, "observes_only", False)]
    if len(kept) == len(client.retry_handlers):
        return client
    clone = copy.copy(client)
    clone.retry_handlers = kept
    return clone


def call_slack(
    client: WebClient, msg: OutboxMessage, parent: OutboxMessage | None, *, sandbox_marker: bool
) -> Delivered:
    """Make the Slack call for `msg` (`parent`: the delivered message it replies to or updates)."""
    payload = msg.payload
    if sandbox_marker and msg.kind in (POST, UPDATE):
        payload = mark_message({"text": payload.get("text") or "", "blocks": payload.get("blocks") or None})
    if msg.kind == POST:
        return _post(client, msg, payload, parent)
    if msg.kind == UPDATE:
        assert parent is not None and parent.result_channel and parent.result_ts
        return _update(client, payload, parent)
    if msg.kind == UPLOAD:
        return _upload(client, msg, payload, parent, sandbox_marker=sandbox_marker)
    raise ValueError(f"unknown outbox kind {msg.kind!r}")


def _post(client: WebClient, msg: OutboxMessage, p: dict[str, Any], parent: OutboxMessage | None) -> Delivered:
    kwargs: dict[str, Any] = {"channel": msg.channel, "text": p.get("text") or ""}
    if p.get("blocks") is not None:
        kwargs["blocks"] = p["blocks"]
    if parent is not None:
        kwargs.update(channel=parent.result_channel, thread_ts=parent.result_ts)
    resp = client.chat_postMessage(**kwargs)
    return str(resp["channel"]), str(resp["ts"]), None


def _update(client: WebClient, p: dict[str, Any], parent: OutboxMessage) -> Delivered:
    resp = client.chat_update(
        channel=str(parent.result_channel),
        ts=str(parent.result_ts),
        text=p.get("text") or "",
        blocks=p.get("blocks") or [],
    )
    return str(resp.get("channel") or parent.result_channel), str(resp.get("ts") or parent.result_ts), None


def _upload(
    client: WebClient, msg: OutboxMessage, p: dict[str, Any], parent: OutboxMessage | None, *, sandbox_marker: bool
) -> Delivered:
    channel = msg.channel
    thread_ts = None
    if parent is not None:
        channel, thread_ts = str(parent.result_channel), parent.result_ts
    elif channel[:1] in ("U", "W"):
        # files.completeUploadExternal wants a conversation id, not a user id.
        opened = client.conversations_open(users=channel)
        channel = str(opened["channel"]["id"])
    comment = p.get("initial_comment")
    resp = client.files_upload_v2(
        channel=channel,
        filename=p["filename"],
        content=base64.b64decode(p["content"]),
        title=p.get("title"),
        initial_comment=mark_text(comment or "") if sandbox_marker else comment,
        thread_ts=thread_ts,
    )
    file = resp.get("file") or {}
    return channel, None, str(file.get("id") or "") or None
