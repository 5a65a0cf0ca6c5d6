"""Block Kit to readable terminal text: what a message, modal or App Home would show in Slack.

Pure functions; the console session decides what to print and when. Interactive elements get a
running number (`[3] Approve`) so a person at a terminal can "click" them by typing the number.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.command_text import unescape

NameLookup = Callable[[str], str | None]
"""Maps a Slack id (U…, C…, S…) to a display name, or None when unknown."""

FIELD_COLUMN_WIDTH = 40
LINE_WIDTH = 100
MAX_LISTED_OPTIONS = 8

# Elements a person can act on from a message, modal or App Home; each gets a number.
CLICKABLE_ELEMENTS = frozenset(
    {
        "button",
        "static_select",
        "external_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "overflow",
        "datepicker",
        "timepicker",
        "radio_buttons",
        "checkboxes",
        "multi_static_select",
        "multi_users_select",
    }
)


@dataclass(frozen=True)
class ButtonRef:
    """A numbered interactive element as it was when rendered (the session re-reads the latest)."""

    number: int
    block_id: str
    action_id: str
    element: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.element.get("type", ""))

    @property
    def label(self) -> str:
        return element_label(self.element)


@dataclass(frozen=True)
class RenderedMessage:
    text: str
    buttons: list[ButtonRef] = field(default_factory=list)

    def __str__(self) -> str:
        return self.text


class Style:
    """ANSI emphasis when writing to a terminal, nothing otherwise (files, pipes, tests)."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.tty and text else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def green(self, text: str) -> str:
        return self._wrap("1;32", text)

    def red(self, text: str) -> str:
        return self._wrap("1;31", text)


# --- mrkdwn -------------------------------------------------------------------------------------

_CONTROL = re.compile(r"<([^<>\n]*)>")
_EMOJI = re.compile(r":([a-z0-9_+\-]+):")
# The shortcodes the bot's messages use most; others stay as `:name:`, still readable.
EMOJI = {
    "white_check_mark": "✅",
    "inbox_tray": "📥",
    "ballot_box_with_check": "☑️",
    "heavy_multiplication_x": "✖️",
    "heavy_check_mark": "✔️",
    "x": "❌",
    "warning": "⚠️",
    "no_entry": "⛔",
    "no_entry_sign": "🚫",
    "hourglass": "⌛",
    "hourglass_flowing_sand": "⏳",
    "information_source": "\u2139\ufe0f",
    "rotating_light": "🚨",
    "lock": "🔒",
    "unlock": "🔓",
    "key": "🔑",
    "bell": "🔔",
    "shield": "🛡️",
    "iphone": "📱",
    "calling": "📲",
    "robot_face": "🤖",
    "wave": "👋",
    "point_right": "👉",
    "eyes": "👀",
    "thumbsup": "👍",
    "+1": "👍",
    "tada": "🎉",
    "memo": "📝",
    "clipboard": "📋",
    "mag": "🔍",
    "gear": "⚙️",
    "link": "🔗",
    "arrows_counterclockwise": "🔄",
    "red_circle": "🔴",
    "large_orange_circle": "🟠",
    "large_yellow_circle": "🟡",
    "large_green_circle": "🟢",
    "large_blue_circle": "🔵",
    "white_circle": "⚪",
    "black_circle": "⚫",
    "question": "❓",
    "grey_question": "❔",
    "bulb": "💡",
    "busts_in_silhouette": "👥",
    "bust_in_silhouette": "👤",
    "calendar": "📆",
    "stopwatch": "⏱️",
    "zzz": "💤",
    "test_tube": "🧪",
    "alarm_clock": "⏰",
    "no_bell": "🔕",
}
_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")


def emojize(text: str) -> str:
    """Known `:shortcode:` emoji as the characters Slack would draw."""
    return _EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)


def display_mrkdwn(text: str, *, names: NameLookup | None = None, style: Style | None = None) -> str:
    """Slack mrkdwn as a reader would see it: mentions as @name, links as `label (url)`, escapes undone."""
    style = style or Style(tty=False)
    out: list[str] = []
    pos = 0
    for match in _CONTROL.finditer(text):
        out.append(emojize(unescape(text[pos : match.start()])))
        out.append(_display_control(match.group(1), names))
        pos = match.end()
    out.append(emojize(unescape(text[pos:])))
    shown = "".join(out)
    if style.tty:
        shown = _BOLD.sub(lambda m: style.bold(m.group(1)), shown)
    return shown


def _display_control(inner: str, names: NameLookup | None) -> str:
    target, _, label = inner.partition("|")
    label = unescape(label)
    if target.startswith("@"):
        return "@" + (_lookup(names, target[1:]) or label.lstrip("@") or target[1:])
    if target.startswith("#"):
        return "#" + (label or _lookup(names, target[1:]) or target[1:])
    if target.startswith("!subteam^"):
        group_id = target.removeprefix("!subteam^")
        return "@" + (label.lstrip("@") or _lookup(names, group_id) or group_id)
    if target in ("!here", "!channel", "!everyone"):
        return "@" + target[1:]
    if target.startswith("!"):
        return label or target
    url = unescape(target)
    if not label or label == url or "mailto:" + label == url:
        return url.removeprefix("mailto:")
    return f"{label} ({url})"


def _lookup(names: NameLookup | None, slack_id: str) -> str | None:
    return names(slack_id) if names and slack_id else None


def text_of(obj: Any, *, names: NameLookup | None = None, style: Style | None = None) -> str:
    """A Block Kit text object (plain_text or mrkdwn) or a bare string, as displayed."""
    if obj is None:
        return ""
    if isinstance(obj, str):
        return obj
    if isinstance(obj, Mapping):
        raw = str(obj.get("text", ""))
        if obj.get("type") == "mrkdwn":
            return display_mrkdwn(raw, names=names, style=style)
        return raw if obj.get("emoji") is False else emojize(raw)
    return str(obj)


def element_label(element: Mapping[str, Any]) -> str:
    """Short human name of an interactive element (button text, select placeholder, …)."""
    for key in ("text", "placeholder"):
        if key in element:
            return text_of(element[key])
    return str(element.get("type", "element")).replace("_", " ")


def option_label(option: Mapping[str, Any]) -> str:
    return text_of(option.get("text"))


def all_options(element: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Options of a select, flattening option_groups (their labels are lost; the values are not)."""
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options.extend(group.get("options") or [])
    return options


# --- blocks -------------------------------------------------------------------------------------


class _Renderer:
    def __init__(self, *, names: NameLookup | None, tty: bool, number_from: int) -> None:
        self.names = names
        self.style = Style(tty)
        self.next_number = number_from
        self.buttons: list[ButtonRef] = []

    def text(self, obj: Any) -> str:
        return text_of(obj, names=self.names, style=self.style)

    def blocks(self, blocks: Iterable[Mapping[str, Any]]) -> list[str]:
        lines: list[str] = []
        for block in blocks:
            lines.extend(self.block(block))
        return lines

    def block(self, block: Mapping[str, Any]) -> list[str]:
        kind = block.get("type")
        block_id = str(block.get("block_id", ""))
        if kind == "header":
            title = self.text(block.get("text"))
            return [self.style.bold(title), "═" * min(len(title), LINE_WIDTH)]
        if kind == "divider":
            return ["─" * FIELD_COLUMN_WIDTH]
        if kind == "section":
            return self.section(block, block_id)
        if kind == "context":
            parts = [self.context_element(el) for el in block.get("elements") or []]
            return [self.style.dim(line) for line in "  ".join(p for p in parts if p).splitlines()]
        if kind == "image":
            title = self.text(block.get("title"))
            return [f"[image: {block.get('alt_text', '')}]" + (f" {title}" if title else "")]
        if kind == "actions":
            controls = [self.control(el, block_id) for el in block.get("elements") or []]
            return _wrap_controls(controls)
        if kind == "input":
            return self.input(block)
        if kind == "rich_text":
            return _rich_text_lines(block, self.names)
        if kind == "markdown":
            return str(block.get("text", "")).splitlines()
        if kind == "file":
            return [f"[file {block.get('external_id', '')}]"]
        if kind == "video":
            return [f"[video: {self.text(block.get('title'))}] {block.get('video_url', '')}"]
        return [f"[{kind} block not shown in the console]"]

    def section(self, block: Mapping[str, Any], block_id: str) -> list[str]:
        lines = self.text(block.get("text")).splitlines() if block.get("text") else []
        fields = [_field_line(self.text(f)) for f in block.get("fields") or []]
        lines.extend(_field_rows(fields))
        accessory = block.get("accessory")
        if accessory:
            if accessory.get("type") == "image":
                lines.append(f"[image: {accessory.get('alt_text', '')}]")
            else:
                lines.append(self.control(accessory, block_id))
        return lines

    def context_element(self, element: Mapping[str, Any]) -> str:
        if element.get("type") == "image":
            return f"[{element.get('alt_text', 'image')}]"
        return self.text(element)

    def number(self, element: Mapping[str, Any], block_id: str) -> int:
        number = self.next_number
        self.next_number += 1
        self.buttons.append(ButtonRef(number, block_id, str(element.get("action_id", "")), element))
        return number

    def control(self, element: Mapping[str, Any], block_id: str) -> str:
        kind = element.get("type")
        if kind not in CLICKABLE_ELEMENTS:
            return f"({str(kind).replace('_', ' ')})"
        tag = f"[{self.number(element, block_id)}]"
        if kind == "button":
            label = self.text(element.get("text"))
            if element.get("style") == "primary":
                label = self.style.green(label) if self.style.tty else f"{label} (primary)"
            elif element.get("style") == "danger":
                label = self.style.red(label) if self.style.tty else f"{label} (danger)"
            if element.get("url"):
                label += f" ↗ {element['url']}"
            return f"{tag} {label}"
        return f"{tag} {self.describe(element)}"

    def describe(self, element: Mapping[str, Any]) -> str:
        """What an element offers, e.g. `▾ Pick a group: Sales / Field` (selected ones marked)."""
        kind = str(element.get("type"))
        placeholder = self.text(element.get("placeholder"))
        if kind == "overflow":
            return "⋯ " + _option_list(element, self.text)
        if kind in ("static_select", "multi_static_select", "radio_buttons", "checkboxes"):
            name = placeholder or {"radio_buttons": "choose one", "checkboxes": "choose any"}.get(
                kind, "choose"
            )
            many = " (several)" if kind in ("multi_static_select", "checkboxes") else ""
            return f"▾ {name}{many}: {_option_list(element, self.text)}"
        if kind in ("external_select", "multi_external_select"):
            chosen = _selected_labels(element, self.text)
            many = " (several)" if kind.startswith("multi") else ""
            return f"▾ {placeholder or 'search'}{many} (type to search)" + (f" = {chosen}" if chosen else "")
        if kind in ("users_select", "multi_users_select"):
            initial = (
                [element["initial_user"]] if element.get("initial_user") else element.get("initial_users")
            )
            shown = " ".join("@" + (_lookup(self.names, u) or u) for u in initial or [])
            return f"▾ {placeholder or 'a user'}" + (f" = {shown}" if shown else "")
        if kind in ("conversations_select", "channels_select", "multi_conversations_select"):
            return f"▾ {placeholder or 'a channel'}"
        if kind == "datepicker":
            return f"date {element.get('initial_date', 'YYYY-MM-DD')}"
        if kind == "timepicker":
            return f"time {element.get('initial_time', 'HH:MM')}"
        if kind in ("plain_text_input", "email_text_input", "url_text_input", "number_input"):
            what = {"email_text_input": "email", "url_text_input": "URL", "number_input": "number"}.get(
                kind, "text"
            )
            if element.get("multiline"):
                what += ", several lines"
            shown = f"✎ {what}"
            if placeholder:
                shown += f" — {placeholder}"
            if element.get("initial_value"):
                shown += f" = {element['initial_value']!r}"
            return shown
        return kind.replace("_", " ")

    def input(self, block: Mapping[str, Any]) -> list[str]:
        label = self.text(block.get("label"))
        if block.get("optional"):
            label += " (optional)"
        lines = [self.style.bold(label), "  " + self.describe(block.get("element") or {})]
        if block.get("hint"):
            lines.append(self.style.dim("  " + self.text(block["hint"])))
        return lines


def _option_list(element: Mapping[str, Any], text: Callable[[Any], str]) -> str:
    selected = {o.get("value") for o in _initial_options(element)}
    options = all_options(element)
    shown = [text(o.get("text")) + (" (selected)" if o.get("value") in selected else "") for o in options]
    if len(shown) > MAX_LISTED_OPTIONS:
        shown = [*shown[:MAX_LISTED_OPTIONS], f"… +{len(options) - MAX_LISTED_OPTIONS} more"]
    return " / ".join(shown) or "(no options)"


def _initial_options(element: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if element.get("initial_option"):
        return [element["initial_option"]]
    return list(element.get("initial_options") or [])


def _selected_labels(element: Mapping[str, Any], text: Callable[[Any], str]) -> str:
    return ", ".join(text(o.get("text")) for o in _initial_options(element))


def _field_line(field_text: str) -> str:
    """`*Policy:*\\nAndroid MAM` (Slack's usual label-over-value field) reads as one line."""
    lines = field_text.splitlines()
    if len(lines) == 2:
        label, value = lines
        bare = label.strip().strip("*").strip()
        return (
            f"{label.strip()} {value.strip()}" if bare.endswith(":") else f"{label.strip()}: {value.strip()}"
        )
    return field_text


def _field_rows(fields: Sequence[str]) -> list[str]:
    """Two columns like Slack when every field fits one short line, else one field per line."""
    if not fields:
        return []
    fits = all("\n" not in f and _visible_len(f) < FIELD_COLUMN_WIDTH for f in fields)
    if not fits:
        return [line for f in fields for line in f.splitlines()]
    rows = []
    for i in range(0, len(fields), 2):
        left = fields[i]
        if i + 1 < len(fields):
            rows.append(left + " " * (FIELD_COLUMN_WIDTH - _visible_len(left)) + fields[i + 1])
        else:
            rows.append(left)
    return rows


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _visible_len(text: str) -> int:
    return len(_ANSI.sub("", text))


def _wrap_controls(controls: Sequence[str]) -> list[str]:
    lines: list[str] = []
    current = ""
    for control in controls:
        candidate = f"{current}  {control}" if current else control
        if current and _visible_len(candidate) > LINE_WIDTH:
            lines.append(current)
            current = control
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _rich_text_lines(block: Mapping[str, Any], names: NameLookup | None) -> list[str]:
    lines: list[str] = []
    for element in block.get("elements") or []:
        kind = element.get("type")
        if kind == "rich_text_list":
            for index, item in enumerate(element.get("elements") or [], start=1):
                bullet = f"{index}." if element.get("style") == "ordered" else "•"
                indent = "  " * int(element.get("indent", 0))
                lines.append(f"{indent}{bullet} {_rich_inline(item.get('elements') or [], names)}")
        elif kind == "rich_text_preformatted":
            lines.extend(
                "    " + ln for ln in _rich_inline(element.get("elements") or [], names).splitlines()
            )
        elif kind == "rich_text_quote":
            lines.extend("> " + ln for ln in _rich_inline(element.get("elements") or [], names).splitlines())
        else:
            lines.extend(_rich_inline(element.get("elements") or [], names).splitlines())
    return lines


def _rich_inline(elements: Iterable[Mapping[str, Any]], names: NameLookup | None) -> str:
    parts: list[str] = []
    for el in elements:
        kind = el.get("type")
        if kind == "text":
            parts.append(str(el.get("text", "")))
        elif kind == "link":
            url = str(el.get("url", ""))
            label = el.get("text")
            parts.append(f"{label} ({url})" if label and label != url else url)
        elif kind == "user":
            parts.append("@" + (_lookup(names, el.get("user_id", "")) or str(el.get("user_id", ""))))
        elif kind == "usergroup":
            parts.append(
                "@" + (_lookup(names, el.get("usergroup_id", "")) or str(el.get("usergroup_id", "")))
            )
        elif kind == "channel":
            parts.append("#" + (_lookup(names, el.get("channel_id", "")) or str(el.get("channel_id", ""))))
        elif kind == "broadcast":
            parts.append("@" + str(el.get("range", "here")))
        elif kind == "emoji":
            parts.append(f":{el.get('name', '')}:")
    return "".join(parts)


def _attachment_lines(attachment: Mapping[str, Any], r: _Renderer) -> list[str]:
    lines: list[str] = []
    for key in ("pretext", "title", "text"):
        if attachment.get(key):
            lines.extend(display_mrkdwn(str(attachment[key]), names=r.names, style=r.style).splitlines())
    for f in attachment.get("fields") or []:
        lines.append(f"{f.get('title', '')}: {display_mrkdwn(str(f.get('value', '')), names=r.names)}")
    lines.extend(r.blocks(attachment.get("blocks") or []))
    if not lines and attachment.get("fallback"):
        lines.append(str(attachment["fallback"]))
    return ["▌ " + line for line in lines]


def _frame(label: str, body: Sequence[str], style: Style, width: int | None) -> str:
    """`┌ label` then `│ line`s; with a width, long lines wrap inside the frame instead of past it."""
    if width:
        body = [part for line in body for part in _wrap(line, max(20, width - 2))]
    head = "┌ " + style.bold(label)
    return "\n".join([head, *("│ " + line if line else "│" for line in body)])


def _wrap(line: str, width: int) -> list[str]:
    if _visible_len(line) <= width:
        return [line]
    indent = line[: len(line) - len(line.lstrip())]
    return textwrap.wrap(
        line, width, subsequent_indent=indent + "  ", break_long_words=False, break_on_hyphens=False
    ) or [line]


# --- public entry points ------------------------------------------------------------------------


def render_message(
    text: str,
    blocks: Sequence[Mapping[str, Any]] | None,
    *,
    label: str,
    attachments: Sequence[Mapping[str, Any]] | None = None,
    names: NameLookup | None = None,
    tty: bool = False,
    number_from: int = 1,
    width: int | None = None,
) -> RenderedMessage:
    """A message as Slack shows it: the blocks when there are any, else the (fallback) text."""
    r = _Renderer(names=names, tty=tty, number_from=number_from)
    body = r.blocks(blocks) if blocks else display_mrkdwn(text or "", names=names, style=r.style).splitlines()
    for attachment in attachments or []:
        body.extend(_attachment_lines(attachment, r))
    return RenderedMessage(_frame(label, body, r.style, width), r.buttons)


def render_view(
    view: Mapping[str, Any],
    *,
    label: str | None = None,
    names: NameLookup | None = None,
    tty: bool = False,
    number_from: int = 1,
    width: int | None = None,
) -> RenderedMessage:
    """A modal or App Home view; `str()` of the result is the text, `.buttons` its numbered elements."""
    r = _Renderer(names=names, tty=tty, number_from=number_from)
    if label is None:
        label = "App Home" if view.get("type") == "home" else f"modal “{text_of(view.get('title'))}”"
    body = r.blocks(view.get("blocks") or [])
    footer = []
    if view.get("type") == "modal":
        if view.get("submit"):
            footer.append(f"( {text_of(view['submit'])} )")
        footer.append(f"( {text_of(view.get('close')) or 'Close'} )")
        body.extend(["", "  ".join(footer)])
    return RenderedMessage(_frame(label, body, r.style, width), r.buttons)
