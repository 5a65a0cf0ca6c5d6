"""Small pure Block Kit builders shared by every Slack surface.

They take `Mrkdwn` (`bot/mrkdwn.py`) wherever Slack parses text, so a raw `str` there is a type error;
`plain_text` objects (headers, button labels) are not parsed and are only cleaned and cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.mrkdwn import MESSAGE_TEXT_MAX, Mrkdwn, clean, cut_mrkdwn, cut_plain

Block = dict[str, Any]

SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
CONTEXT_TEXT_MAX = 3000
PLAIN_TEXT_MAX = 3000
HEADER_TEXT_MAX = 150
BUTTON_TEXT_MAX = 75


# ---- text objects and blocks ------------------------------------------------------------------------


def plain(text: str, emoji: bool = True, *, limit: int = PLAIN_TEXT_MAX) -> dict[str, Any]:
    """A plain_text object: not parsed by Slack, so never escaped; bidi controls are still removed."""
    return {"type": "plain_text", "text": cut_plain(clean(text), limit) or " ", "emoji": emoji}


def mrkdwn(text: Mrkdwn, *, limit: int = SECTION_TEXT_MAX) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": cut_mrkdwn(text, limit) or " "}


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, limit=HEADER_TEXT_MAX)}


def section(text: Mrkdwn, *, fields: Sequence[Mrkdwn] | None = None, block_id: str | None = None,
            accessory: dict[str, Any] | None = None) -> Block:
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if fields:
        block["fields"] = [mrkdwn(f, limit=FIELD_TEXT_MAX) for f in fields[:10]]
    if block_id:
        block["block_id"] = block_id
    if accessory:
        block["accessory"] = accessory
    return block


def fields_section(fields: Sequence[Mrkdwn]) -> Block:
    return {"type": "section", "fields": [mrkdwn(f, limit=FIELD_TEXT_MAX) for f in fields[:10]]}


def context(*texts: Mrkdwn) -> Block:
    return {"type": "context", "elements": [mrkdwn(t, limit=CONTEXT_TEXT_MAX) for t in texts[:10]]}


def divider() -> Block:
    return {"type": "divider"}


def button(text: str, action_id: str, value: str = "", *, style: str | None = None,
           url: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "button", "text": plain(text, limit=BUTTON_TEXT_MAX), "action_id": action_id}
    if value:
        element["value"] = value[:2000]
    if style:
        element["style"] = style
    if url:
        element["url"] = url
    return element


def actions(*elements: dict[str, Any], block_id: str | None = None) -> Block:
    block: Block = {"type": "actions", "elements": list(elements)[:25]}
    if block_id:
        block["block_id"] = block_id
    return block


def message(text: Mrkdwn, blocks: list[Block]) -> dict[str, Any]:
    """A message payload: `text` is the notification/fallback, blocks are what people see."""
    return {"text": cut_mrkdwn(text, MESSAGE_TEXT_MAX), "blocks": blocks[:50]}
