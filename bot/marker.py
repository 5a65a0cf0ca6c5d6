"""The sandbox marker: on the simulated tenant, every message the bot posts says so.

With `MAM_CLOUD=sandbox` nothing reaches Microsoft: devices, users and policies are simulated. A
person who sees a card in Slack must not take it for their real tenant, so every message carries a
short context block (or, for a text-only message, the same words on a last line):

    :test_tube: Sandbox tenant: simulated data, nothing reaches Microsoft

`mark_message` does this to one message payload and is idempotent: a message that already carries
the marker (an update built from a marked card, say) is returned unchanged. It keeps within
Slack's 50-block limit: with no room for another block, the words join the last context block that
has room, or failing that the last section's text; only when neither can take them is the last
block given up for the marker, since an unmarked sandbox message is the one thing not allowed.

Where it is applied: the outbox marks what it posts and updates (`OutboxSettings(sandbox_marker=True)`),
and `SandboxMarkerMiddleware` marks the direct answers: what a listener acks (slash-command
answers, error apologies) and what it sends through `respond`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from slack_bolt import BoltResponse
from slack_bolt.context.ack import Ack
from slack_bolt.context.respond import Respond
from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest
from slack_sdk.models.attachments import Attachment
from slack_sdk.models.blocks import Block
from slack_sdk.webhook import WebhookResponse

MARKER_TEXT = ":test_tube: Sandbox tenant: simulated data, nothing reaches Microsoft"
MARKER_BLOCK_ID = "mam_sandbox_marker"

MAX_MESSAGE_BLOCKS = 50  # Slack's limit for a message (a modal or App Home has 100)
MAX_CONTEXT_ELEMENTS = 10
MAX_SECTION_TEXT = 3000

# Keys that make a response body something other than a message (Slack ignores text beside them).
_NOT_A_MESSAGE = ("response_action", "options", "option_groups", "errors", "delete_original")


def marker_block() -> dict[str, Any]:
    return {"type": "context", "block_id": MARKER_BLOCK_ID, "elements": [{"type": "mrkdwn", "text": MARKER_TEXT}]}


def _as_dict(block: Any) -> dict[str, Any]:
    return dict(block.to_dict() if hasattr(block, "to_dict") else block)


def blocks_are_marked(blocks: Sequence[Mapping[str, Any]]) -> bool:
    for block in blocks:
        if block.get("block_id") == MARKER_BLOCK_ID:
            return True
        kind = block.get("type")
        if kind == "context" and any(
            isinstance(e, Mapping) and e.get("text") == MARKER_TEXT for e in block.get("elements") or ()
        ):
            return True
        if kind == "section":
            text = block.get("text")
            if isinstance(text, Mapping) and str(text.get("text") or "").endswith(MARKER_TEXT):
                return True
    return False


def mark_text(text: str) -> str:
    """The same words on the last line of a text-only message."""
    if MARKER_TEXT in text:
        return text
    return f"{text}\n{MARKER_TEXT}" if text else MARKER_TEXT


def mark_blocks(blocks: Sequence[Any]) -> list[dict[str, Any]]:
    """The blocks with the marker, within 50 blocks; unchanged when already marked."""
    out = [_as_dict(b) for b in blocks]
    if blocks_are_marked(out):
        return out
    if len(out) < MAX_MESSAGE_BLOCKS:
        return [*out, marker_block()]
    # No room for a block: join the last context block that can take one more element ...
    for i in range(len(out) - 1, -1, -1):
        block = out[i]
        elements = list(block.get("elements") or [])
        if block.get("type") == "context" and len(elements) < MAX_CONTEXT_ELEMENTS:
            out[i] = {**block, "elements": [*elements, {"type": "mrkdwn", "text": MARKER_TEXT}]}
            return out
    # ... or the last section's mrkdwn text, when it stays within 3,000 characters ...
    for i in range(len(out) - 1, -1, -1):
        block = out[i]
        text = block.get("text")
        if (block.get("type") == "section" and isinstance(text, Mapping) and text.get("type") == "mrkdwn"
                and len(str(text.get("text") or "")) + 1 + len(MARKER_TEXT) <= MAX_SECTION_TEXT):
            out[i] = {**block, "text": {**text, "text": f"{text.get('text') or ''}\n{MARKER_TEXT}"}}
            return out
    # ... else the last block makes way: a sandbox message must never look like the real tenant's.
    return [*out[:-1], marker_block()]


def mark_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a message payload (`text`, optional `blocks`, other keys kept) carrying the marker.

    With blocks, a context block is added and `text` (the notification) is left as it is; without,
    the words are appended to `text`. Marking a marked message changes nothing.
    """
    marked = dict(message)
    blocks = marked.get("blocks")
    if blocks:
        marked["blocks"] = mark_blocks(blocks)
    else:
        marked["text"] = mark_text(str(marked.get("text") or ""))
    return marked


def is_message_body(body: Mapping[str, Any]) -> bool:
    """A JSON answer that Slack shows as a message (not a form reply, options or a deletion)."""
    return (bool(body.get("text")) or bool(body.get("blocks"))) and not any(k in body for k in _NOT_A_MESSAGE)


def mark_response(response: BoltResponse) -> None:
    """Mark, in place, a Bolt response whose body is a message; leave any other response alone."""
    body = response.body
    if response.status != 200 or not body:
        return
    if body[0] == "{":
        try:
            parsed = json.loads(body)
        except ValueError:
            return
        if isinstance(parsed, dict) and is_message_body(parsed):
            response.body = json.dumps(mark_message(parsed))
        return
    # A plain-text body: Bolt's `ack("…")` for a slash command, shown to the user as a message.
    response.body = mark_text(body)


class MarkedAck(Ack):
    """`ack` whose response, however it is set (a listener's ack, the error handler), is marked.

    With `inner` (the ack the console and the tests put in the context to watch acks as they
    happen), the answer is built and marked first and then handed to `inner` whole, so whoever
    watches `inner` sees the marked answer.
    """

    _marked_response: BoltResponse | None = None

    def __init__(self, inner: Ack | None = None) -> None:
        super().__init__()
        self._inner = inner

    @property
    def response(self) -> BoltResponse | None:
        return self._marked_response

    @response.setter
    def response(self, value: BoltResponse | None) -> None:
        if value is not None:
            mark_response(value)
        self._marked_response = value

    def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:
        built = Ack()(*args, **kwargs)
        mark_response(built)
        if self._inner is None:
            self.response = built
            return built
        body = built.body
        response = self._inner(json.loads(body) if body.startswith("{") else body) if body else self._inner()
        self.response = response
        return response


class MarkedRespond(Respond):
    """`respond` that marks every message it sends to the `response_url`."""

    def __init__(self, inner: Callable[..., WebhookResponse]) -> None:
        super().__init__(response_url=getattr(inner, "response_url", None), proxy=getattr(inner, "proxy", None),
                         ssl=getattr(inner, "ssl", None))
        self._inner = inner

    def __call__(
        self,
        text: str | dict[Any, Any] = "",
        blocks: Sequence[dict[Any, Any] | Block] | None = None,
        attachments: Sequence[dict[Any, Any] | Attachment] | None = None,
        response_type: str | None = None,
        replace_original: bool | None = None,
        delete_original: bool | None = None,
        unfurl_links: bool | None = None,
        unfurl_media: bool | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WebhookResponse:
        if isinstance(text, dict):
            return self._inner(text if text.get("delete_original") else mark_message(text))
        if not delete_original:
            if blocks:
                blocks = mark_blocks(blocks)
            elif not attachments:
                text = mark_text(text)
        return self._inner(text, blocks, attachments, response_type, replace_original, delete_original,
                           unfurl_links, unfurl_media, thread_ts, metadata)


class SandboxMarkerMiddleware(Middleware):
    """Marks the direct answers of a bot on the sandbox tenant: acks and `respond`.

    Install it first (before the authorization middleware, so its refusals sent through `respond`
    are marked too), and only when `MAM_CLOUD=sandbox`: on a real tenant it is not there at all,
    so it costs the ack nothing. Bolt runs global middleware before the listener rather than around
    it, so the marking is done by the `ack` and `respond` this puts in the request's context.
    """

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        context = req.context
        ack = context.get("ack")
        if not isinstance(ack, MarkedAck):
            context["ack"] = MarkedAck(ack if isinstance(ack, Ack) else None)
        if context.response_url is not None:
            inner = context.respond
            if inner is not None and not isinstance(inner, MarkedRespond):
                context["respond"] = MarkedRespond(inner)
        return next()
