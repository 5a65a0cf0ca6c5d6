"""What the person at the console sees: each thing that reached Slack, printed as Slack would show it.

Messages are numbered (m1, m2, …) in the order they appear, and every button or menu gets a running
number the person clicks by typing; the transcript remembers where each number lives, a message
(channel, ts) or a view, so a click can find the element again in the latest version.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from bot.console.fake_slack import AUTO_ACTION_ID_PREFIX, FakeSlack, SlackEvent
from bot.console.render import CLICKABLE_ELEMENTS, ButtonRef, Style, render_message, render_view, text_of

VIEW_SHOWN = frozenset({"view_open", "view_push", "view_update"})


@dataclass(frozen=True)
class Control:
    """A numbered element and where it lives: a message (channel, ts) or a view (view_id)."""

    ref: ButtonRef
    position: int
    channel: str | None = None
    ts: str | None = None
    view_id: str | None = None


class Transcript:
    """Prints events and views to `out`, numbering messages and the controls a person can click."""

    def __init__(self, slack: FakeSlack, out: TextIO, *, tty: bool, width: int | None) -> None:
        self.slack = slack
        self.out = out
        self.tty = tty
        self.width = width
        self.raw = False
        """Also print the raw Block Kit JSON (`:raw`)."""
        self._style = Style(tty)
        self._controls: dict[int, Control] = {}
        self.next_button = 1
        self._message_numbers: dict[tuple[str, str], int] = {}

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def control(self, number: int) -> Control | None:
        return self._controls.get(number)

    def controls_newest_first(self) -> list[Control]:
        return [self._controls[n] for n in sorted(self._controls, reverse=True)]

    def show_event(self, event: SlackEvent, *, viewer: str) -> None:
        """Print one event; `viewer` is who sits at the terminal (views of others are labelled so)."""
        if event.kind in ("post", "dm", "ephemeral", "update", "response"):
            assert event.channel is not None and event.ts is not None
            rendered = render_message(
                event.text,
                event.blocks,
                label=self._event_label(event),
                attachments=event.attachments,
                names=self.slack.display_name,
                tty=self.tty,
                number_from=self.next_button,
                width=self.width,
            )
            self._remember(rendered.buttons, channel=event.channel, ts=event.ts)
            self.say(rendered.text)
            if self.raw:
                raw = {"text": event.text, "blocks": event.blocks, "attachments": event.attachments}
                self._raw({k: v for k, v in raw.items() if v})
        elif event.kind in VIEW_SHOWN or event.kind == "home":
            assert event.view is not None
            self.show_view(event.view, self._view_label(event, viewer))
        elif event.kind == "delete":
            assert event.channel is not None and event.ts is not None
            self.say("┌ " + self.message_label(event.channel, event.ts) + " deleted")
        elif event.kind == "view_close" and event.view is not None:
            self.say(f"└ modal “{text_of(event.view.get('title'))}” closed")
        elif event.kind == "file" and event.file is not None:
            assert event.channel is not None
            size = event.file.get("size", 0)
            self.say(f"┌ {self.where(event.channel)} file “{event.file.get('title')}” ({size} bytes)")
            if event.text:
                self.say("│ " + event.text)

    def show_view(self, view: Mapping[str, Any], label: str) -> None:
        rendered = render_view(
            view,
            label=label,
            names=self.slack.display_name,
            tty=self.tty,
            number_from=self.next_button,
            width=self.width,
        )
        self._remember(rendered.buttons, view_id=str(view["id"]))
        self.say(rendered.text)
        if self.raw:
            self._raw(
                {k: view.get(k) for k in ("type", "callback_id", "private_metadata", "title", "blocks")}
            )

    def message_label(self, channel: str, ts: str) -> str:
        number = self._message_numbers.get((channel, ts))
        return f"{self.where(channel)} m{number}" if number else f"{self.where(channel)} message {ts}"

    def name(self, slack_id: str) -> str:
        return self.slack.display_name(slack_id) or slack_id

    def where(self, channel: str) -> str:
        owner = self.slack.dm_owner(channel)
        if owner is not None:
            return f"DM to @{self.name(owner)}"
        return "#" + self.channel_name(channel)

    def channel_name(self, channel: str) -> str:
        if self.slack.dm_owner(channel):
            return "directmessage"
        return self.slack.channel_name(channel) or channel

    def _remember(self, buttons: list[ButtonRef], **where: str) -> None:
        for position, ref in enumerate(buttons):
            self._controls[ref.number] = Control(ref, position, **where)
            self.next_button = ref.number + 1

    def _event_label(self, event: SlackEvent) -> str:
        assert event.channel is not None and event.ts is not None
        where = self.where(event.channel)
        only = f" (only @{self.name(event.user or '')} sees this)" if event.ephemeral else ""
        if event.kind == "update" or event.replaced:
            how = " (replace_original)" if event.replaced else ""
            return f"{self.message_label(event.channel, event.ts)} updated{how}{only}"
        number = self._number_message(event.channel, event.ts)
        what = {"post": " post", "dm": "", "ephemeral": " ephemeral", "response": " reply"}.get(
            event.kind, ""
        )
        label = f"{where}{what}{only} m{number}"
        if event.thread_ts:
            parent = self._message_numbers.get((event.channel, event.thread_ts))
            label += f" in thread of m{parent}" if parent else f" in thread {event.thread_ts}"
        return label

    def _view_label(self, event: SlackEvent, viewer: str) -> str:
        assert event.view is not None
        owner = event.user or ""
        if event.kind == "home":
            return f"App Home of @{self.name(owner)}"
        title = text_of(event.view.get("title"))
        verb = {"view_open": "", "view_push": " pushed", "view_update": " updated"}[event.kind]
        whose = "" if owner == viewer else f" for @{self.name(owner)}"
        return f"modal “{title}”{verb}{whose}"

    def _number_message(self, channel: str, ts: str) -> int:
        key = (channel, ts)
        if key not in self._message_numbers:
            self._message_numbers[key] = len(self._message_numbers) + 1
        return self._message_numbers[key]

    def _raw(self, data: Mapping[str, Any]) -> None:
        for line in json.dumps(data, indent=2, ensure_ascii=False).splitlines():
            self.say(self._style.dim("│ " + line))


def find_element(blocks: list[dict[str, Any]], control: Control) -> tuple[str, dict[str, Any]] | None:
    """The clicked element in the latest version of its message or view.

    Same block_id and action_id first; then the same action_id anywhere; then, if the layout kept
    its shape, the element at the same position (apps that let Slack assign ids).
    """
    found: list[tuple[str, dict[str, Any]]] = []
    for block in blocks:
        for element in _clickables(block):
            found.append((str(block.get("block_id", "")), element))
    ref = control.ref
    for block_id, element in found:
        if block_id == ref.block_id and element.get("action_id") == ref.action_id:
            return block_id, element
    same_action = [(b, e) for b, e in found if e.get("action_id") == ref.action_id]
    if len(same_action) == 1:
        return same_action[0]
    if control.position < len(found) and found[control.position][1].get("type") == ref.kind:
        candidate = found[control.position]
        auto = (str(candidate[1].get("action_id", "")), ref.action_id)
        if all(a.startswith(AUTO_ACTION_ID_PREFIX) for a in auto):
            return candidate
    return None


def _clickables(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    if block.get("type") == "actions":
        return [e for e in block.get("elements") or [] if e.get("type") in CLICKABLE_ELEMENTS]
    accessory = block.get("accessory")
    if (
        block.get("type") == "section"
        and isinstance(accessory, dict)
        and accessory.get("type") in CLICKABLE_ELEMENTS
    ):
        return [accessory]
    return []
