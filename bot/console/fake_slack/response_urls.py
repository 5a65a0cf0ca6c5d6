"""response_urls: handed out with each payload, posted to by Bolt's `respond()`, shown as Slack does.

A reply is ephemeral to the person unless it says `in_channel`; `replace_original` and
`delete_original` act on the message a block action came from. A slash command's ack body is shown
the same way, without counting as a use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from bot.console.fake_slack.model import (
    CONSOLE_CHANNEL,
    TEAM_ID,
    TS_BASE,
    ApiError,
    FakeMessage,
    LimitError,
    RecordedCall,
    truthy,
)
from bot.console.fake_slack.recording import Recording, ResponseUrl

RESPONSE_URL_MAX_USES = 5
RESPONSE_URL_TTL_SECONDS = 30 * 60
# Slack documents "5 times within 30 minutes" but not its answer beyond that; 410 Gone with a
# one-word body (`used_url` / `expired_url`) is our stand-in. slack_sdk's WebhookClient (behind
# Bolt's respond()) does not raise on it, it returns the status, so tests assert on uses instead.
RESPONSE_URL_SPENT_STATUS = 410


class ResponseUrls(Recording):
    """The response_urls of the workspace's payloads, and Slack's way with what is posted to them."""

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
            path = f"/hooks/{kind}/{TEAM_ID}/{TS_BASE + n}/{secret}"
            self._response_urls[path] = ResponseUrl(channel, user, self._clock(), original=original_ts)
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

    def _respond(self, state: ResponseUrl, payload: dict[str, Any]) -> FakeMessage | None:
        original = self._messages.get((state.channel, state.original)) if state.original else None
        if original is not None and original.deleted:
            original = None
        if truthy(payload.get("delete_original")):
            if original is not None:
                self._messages[(original.channel, original.ts)] = replace(original, deleted=True)
                self._emit("delete", channel=original.channel, ts=original.ts, user=original.audience)
            return None
        if not (payload.get("text") or payload.get("blocks") or payload.get("attachments")):
            raise ApiError("no_text")
        self._checked_message(payload)
        blocks = self._checked_blocks(payload.get("blocks"))
        if truthy(payload.get("replace_original")) and original is not None:
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
