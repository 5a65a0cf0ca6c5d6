"""Ask a person at a terminal for the value of one Block Kit element, as Slack's client would collect it.

A modal's input fields are asked one by one (ModalForm), and asked again after the app refuses them.
Every answer comes back in the exact shape Slack puts in `view.state.values[block][action]` (and,
with action_id/block_id added, in a block action), so the app can't tell the console from Slack.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bot.console.render import all_options, option_label, text_of

CANCEL = ":cancel"
CONSOLE_COMMANDS = frozenset({":as", ":in", ":dm", ":raw", ":home", ":click", ":close", ":users", ":help", ":quit"})
EXTERNAL_MIN_QUERY_LENGTH = 3  # Slack's default for external selects

TEXT_INPUTS = frozenset({"plain_text_input", "email_text_input", "url_text_input", "number_input"})
SINGLE_SELECTS = frozenset({"static_select", "radio_buttons", "overflow"})
MULTI_SELECTS = frozenset({"multi_static_select", "checkboxes"})
EXTERNAL_SELECTS = frozenset({"external_select", "multi_external_select"})
USER_SELECTS = frozenset({"users_select", "multi_users_select"})
CONVERSATION_SELECTS = frozenset(
    {"conversations_select", "channels_select", "multi_conversations_select", "multi_channels_select"}
)
ASKABLE = (
    TEXT_INPUTS
    | SINGLE_SELECTS
    | MULTI_SELECTS
    | EXTERNAL_SELECTS
    | USER_SELECTS
    | CONVERSATION_SELECTS
    | {"datepicker", "timepicker"}
)

Suggest = Callable[[str], Mapping[str, Any]]
"""Sends a block_suggestion with the typed query; returns the app's `{"options"| "option_groups"}`."""


class Cancelled(Exception):
    """The person typed :cancel (or input ran out) at a prompt."""


class FieldAsker:
    """Prompts for one element's value; `ask` reads a line, `say` writes one."""

    def __init__(
        self,
        ask: Callable[[str], str],
        say: Callable[[str], None],
        *,
        find_user: Callable[[str], str | None],
        find_channel: Callable[[str], str | None],
    ) -> None:
        self._ask = ask
        self._say = say
        self._find_user = find_user
        self._find_channel = find_channel

    def prompt(self, text: str) -> str:
        try:
            answer = self._ask(text)
        except (EOFError, KeyboardInterrupt) as stop:
            raise Cancelled from stop
        word = answer.strip().split(" ", 1)[0]
        if word == CANCEL:
            raise Cancelled
        if word in CONSOLE_COMMANDS:
            # a console command typed into a form must never become its answer (a justification
            # reading ":quit" once filed a real change request); close the form instead
            self._say(f"({word} is a console command: the form is closed without sending; "
                      "type it again now, or answer the form's fields)")
            raise Cancelled
        return answer

    def confirm(self, confirm: Mapping[str, Any]) -> bool:
        """A button's `confirm` dialog: yes only on an explicit y."""
        title = text_of(confirm.get("title")) or "Are you sure?"
        yes = text_of(confirm.get("confirm")) or "Yes"
        no = text_of(confirm.get("deny")) or "Cancel"
        self._say(f"? {title}: {text_of(confirm.get('text'))}")
        return self.prompt(f"{yes} / {no} [y/N]: ").strip().lower() in ("y", "yes")

    def value(
        self,
        element: Mapping[str, Any],
        *,
        label: str,
        optional: bool = False,
        suggest: Suggest | None = None,
    ) -> dict[str, Any]:
        kind = str(element.get("type"))
        if kind in TEXT_INPUTS:
            return {"type": kind, "value": self._text(element, label, optional)}
        if kind in SINGLE_SELECTS:
            options = self._choose(all_options(element), element, label, optional, many=False)
            return {"type": kind, "selected_option": options[0] if options else None}
        if kind in MULTI_SELECTS:
            return {
                "type": kind,
                "selected_options": self._choose(all_options(element), element, label, optional),
            }
        if kind in EXTERNAL_SELECTS:
            if suggest is None:
                raise ValueError("an external select needs a way to send block_suggestion")
            many = kind.startswith("multi_")
            chosen = self._external(element, label, optional, suggest, many=many)
            return (
                {"type": kind, "selected_options": chosen}
                if many
                else {
                    "type": kind,
                    "selected_option": chosen[0] if chosen else None,
                }
            )
        if kind in USER_SELECTS:
            return self._people(element, kind, label, optional)
        if kind in CONVERSATION_SELECTS:
            return self._conversations(element, kind, label, optional)
        if kind == "datepicker":
            return {"type": kind, "selected_date": self._date_or_time(element, label, optional, date=True)}
        if kind == "timepicker":
            return {"type": kind, "selected_time": self._date_or_time(element, label, optional, date=False)}
        raise ValueError(f"the console can't fill a {kind} element")

    # --- text ---------------------------------------------------------------------------------

    def _text(self, element: Mapping[str, Any], label: str, optional: bool) -> str | None:
        kind = element.get("type")
        initial = element.get("initial_value")
        suffix = " (optional)" if optional else ""
        if initial:
            suffix += f" [{initial}]"
        if element.get("multiline"):
            self._say(f"  ({label}: several lines — type \\n where a new line goes)")
        while True:
            answer = self.prompt(f"{label}{suffix}: ").strip()
            if not answer:
                if initial:
                    return str(initial)
                if optional:
                    return None
                self._say("  ✗ required")
                continue
            if element.get("multiline"):
                answer = answer.replace("\\n", "\n")
            problem = _text_problem(kind, answer, element)
            if problem:
                self._say(f"  ✗ {problem}")
                continue
            return answer

    # --- selects ------------------------------------------------------------------------------

    def _list(self, element: Mapping[str, Any], options: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Numbered options, under their group labels when the element has option_groups."""
        number = 1
        if options is None and element.get("option_groups"):
            for group in element["option_groups"]:
                self._say(f"  {text_of(group.get('label'))}:")
                for option in group.get("options") or []:
                    self._say(f"    {number}) {option_label(option)}{_description(option)}")
                    number += 1
            return
        for option in options if options is not None else all_options(element):
            self._say(f"  {number}) {option_label(option)}{_description(option)}")
            number += 1

    def _choose(
        self,
        options: Sequence[Mapping[str, Any]],
        element: Mapping[str, Any],
        label: str,
        optional: bool,
        *,
        many: bool = True,
        listed: bool = False,
    ) -> list[dict[str, Any]]:
        if not options:
            self._say(f"  ({label}: no options to choose from)")
            if optional:
                return []
            raise Cancelled
        if not listed:
            self._list(element)
        initial = _initial_options(element)
        hint = "numbers, comma-separated" if many else f"1-{len(options)}"
        suffix = " (optional)" if optional else ""
        if initial:
            suffix += " [" + ", ".join(option_label(o) for o in initial) + "]"
        while True:
            answer = self.prompt(f"{label}{suffix} — {hint}: ").strip()
            if not answer:
                if initial:
                    return [copy.deepcopy(dict(o)) for o in initial]
                if optional:
                    return []
                self._say("  ✗ required")
                continue
            picks = _numbers(answer, len(options))
            if picks is None or (not many and len(picks) != 1):
                self._say(f"  ✗ type {hint}")
                continue
            limit = element.get("max_selected_items")
            if many and limit and len(picks) > int(limit):
                self._say(f"  ✗ at most {limit}")
                continue
            return [copy.deepcopy(dict(options[i - 1])) for i in picks]

    def _external(
        self, element: Mapping[str, Any], label: str, optional: bool, suggest: Suggest, *, many: bool
    ) -> list[dict[str, Any]]:
        initial = _initial_options(element)
        min_length = int(element.get("min_query_length", EXTERNAL_MIN_QUERY_LENGTH))
        suffix = " (optional)" if optional else ""
        if initial:
            suffix += " [" + ", ".join(option_label(o) for o in initial) + "]"
        while True:
            query = self.prompt(f"{label}{suffix} — search: ").strip()
            if not query and (initial or optional):
                return [copy.deepcopy(dict(o)) for o in initial]
            if len(query) < min_length:
                self._say(f"  ✗ type at least {min_length} characters to search")
                continue
            answer = suggest(query)
            found = list(answer.get("options") or [])
            for group in answer.get("option_groups") or []:
                found.extend(group.get("options") or [])
            if not found:
                self._say(f"  no matches for {query!r}; search again")
                continue
            self._list(dict(answer), None if answer.get("option_groups") else found)
            return self._choose(found, {"type": "static_select"}, label, optional, many=many, listed=True)

    # --- people, channels, dates -------------------------------------------------------------

    def _people(self, element: Mapping[str, Any], kind: str, label: str, optional: bool) -> dict[str, Any]:
        many = kind.startswith("multi_")
        initial = (
            [element["initial_user"]]
            if element.get("initial_user")
            else list(element.get("initial_users") or [])
        )
        ids = self._ids(label, optional, initial, many, self._find_user, "user id, @name or email")
        return (
            {"type": kind, "selected_users": ids}
            if many
            else {
                "type": kind,
                "selected_user": ids[0] if ids else None,
            }
        )

    def _conversations(
        self, element: Mapping[str, Any], kind: str, label: str, optional: bool
    ) -> dict[str, Any]:
        many = kind.startswith("multi_")
        key = "channel" if "channels" in kind else "conversation"
        initial_one = element.get(f"initial_{key}")
        initial = [initial_one] if initial_one else list(element.get(f"initial_{key}s") or [])
        ids = self._ids(label, optional, initial, many, self._find_channel, "channel id or #name")
        if many:
            return {"type": kind, f"selected_{key}s": ids}
        return {"type": kind, f"selected_{key}": ids[0] if ids else None}

    def _ids(
        self,
        label: str,
        optional: bool,
        initial: list[str],
        many: bool,
        find: Callable[[str], str | None],
        what: str,
    ) -> list[str]:
        suffix = " (optional)" if optional else ""
        if initial:
            suffix += f" [{', '.join(initial)}]"
        hint = f"{what}{', comma-separated' if many else ''}"
        while True:
            answer = self.prompt(f"{label}{suffix} — {hint}: ").strip()
            if not answer:
                if initial or optional:
                    return initial
                self._say("  ✗ required")
                continue
            refs = [r.strip() for r in answer.split(",") if r.strip()] if many else [answer]
            ids = [find(r) for r in refs]
            if all(ids):
                return [i for i in ids if i]
            self._say(f"  ✗ unknown: {', '.join(r for r, i in zip(refs, ids, strict=True) if not i)}")

    def _date_or_time(
        self, element: Mapping[str, Any], label: str, optional: bool, *, date: bool
    ) -> str | None:
        initial = element.get("initial_date" if date else "initial_time")
        shape = "YYYY-MM-DD" if date else "HH:MM"
        suffix = (" (optional)" if optional else "") + (f" [{initial}]" if initial else "")
        while True:
            answer = self.prompt(f"{label}{suffix} — {shape}: ").strip()
            if not answer:
                if initial or optional:
                    return str(initial) if initial else None
                self._say("  ✗ required")
                continue
            try:
                if date:
                    dt.date.fromisoformat(answer)
                elif not re.fullmatch(r"\d{2}:\d{2}", answer):
                    raise ValueError(answer)
                else:
                    dt.time.fromisoformat(answer)
            except ValueError:
                self._say(f"  ✗ type {shape}")
                continue
            return answer


class ModalForm:
    """A modal's input fields, asked one by one; the answers are kept per view, so when the app refuses a
    submission with errors only the fields it names are asked again."""

    def __init__(self, fields: FieldAsker, say: Callable[[str], None]) -> None:
        self._fields = fields
        self._say = say
        self._answers: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {}
        self._errors: dict[str, dict[str, str]] = {}

    def refused(self, view_id: str, errors: Mapping[Any, Any]) -> None:
        """The app acked the view's submission with `response_action: errors` ({block_id: message})."""
        self._errors[view_id] = {str(k): str(v) for k, v in errors.items()}

    def fill(
        self, view: Mapping[str, Any], suggester: Callable[[str, str], Suggest]
    ) -> dict[str, dict[str, Any]]:
        """The view's `state.values`; `suggester(action_id, block_id)` sends an external select's queries."""
        view_id = str(view["id"])
        kept_hash, answers = self._answers.get(view_id, ("", {}))
        errors = self._errors.pop(view_id, {})
        if kept_hash != view["hash"]:
            answers, errors = {}, {}
        blocks = input_blocks(view)
        for block_id, message in errors.items():
            label = next((text_of(b.get("label")) for b in blocks if b["block_id"] == block_id), block_id)
            self._say(f"  ✗ {label}: {message}")
        # Re-ask only the fields the app complained about; if it named none we know, ask them all.
        redo = {b["block_id"] for b in blocks if b["block_id"] in errors}
        keep = set(answers) - redo if redo else set()
        values: dict[str, dict[str, Any]] = {}
        for block in blocks:
            block_id = block["block_id"]
            element = block["element"]
            action_id = str(element.get("action_id", ""))
            if block_id in keep:
                values[block_id] = answers[block_id]
                continue
            state = self._fields.value(
                element,
                label=text_of(block.get("label")),
                optional=bool(block.get("optional")),
                suggest=suggester(action_id, block_id),
            )
            values[block_id] = {action_id: state}
        self._answers[view_id] = (str(view["hash"]), values)
        return values


def input_blocks(view: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The view's input blocks the console can ask for (none: the modal is only buttons)."""
    return [
        b
        for b in view.get("blocks") or []
        if b.get("type") == "input"
        and isinstance(b.get("element"), dict)
        and b["element"].get("type") in ASKABLE
    ]


def _text_problem(kind: Any, answer: str, element: Mapping[str, Any]) -> str | None:
    """What Slack's client would refuse before submitting (it validates these itself)."""
    if kind == "number_input":
        try:
            number = float(answer) if element.get("is_decimal_allowed") else int(answer)
        except ValueError:
            return "type a number" if element.get("is_decimal_allowed") else "type a whole number"
        if element.get("min_value") is not None and number < float(element["min_value"]):
            return f"at least {element['min_value']}"
        if element.get("max_value") is not None and number > float(element["max_value"]):
            return f"at most {element['max_value']}"
        return None
    if kind == "email_text_input" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", answer):
        return "type an email address"
    if kind == "url_text_input" and not re.match(r"https?://\S+$", answer):
        return "type a URL starting with http:// or https://"
    if element.get("min_length") and len(answer) < int(element["min_length"]):
        return f"at least {element['min_length']} characters"
    if element.get("max_length") and len(answer) > int(element["max_length"]):
        return f"at most {element['max_length']} characters"
    return None


def _numbers(answer: str, count: int) -> list[int] | None:
    picks = []
    for part in answer.replace(" ", ",").split(","):
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= count:
            return None
        if int(part) not in picks:
            picks.append(int(part))
    return picks or None


def _initial_options(element: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if element.get("initial_option"):
        return [element["initial_option"]]
    return list(element.get("initial_options") or [])


def _description(option: Mapping[str, Any]) -> str:
    description = text_of(option.get("description"))
    return f" — {description}" if description else ""
