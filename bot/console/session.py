"""Drive the real Bolt App from a terminal (Errbot text mode / Hubot shell style).

Lines become the payloads Slack would send (slash commands, block actions, view submissions,
events), dispatched in-process in Socket Mode shape, so no signing secret and no Slack are needed.
Everything the app sends back lands in a FakeSlack and is printed as Slack would show it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import sys
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.context.ack import Ack

from bot.console.fake_slack import (
    APP_ID,
    AUTO_ACTION_ID_PREFIX,
    BOT_NAME,
    BOT_USER_ID,
    CONSOLE_CHANNEL,
    TEAM_DOMAIN,
    TEAM_ID,
    ApiError,
    FakeSlack,
    SlackEvent,
)
from bot.console.forms import ASKABLE, Cancelled, FieldAsker
from bot.console.render import CLICKABLE_ELEMENTS, ButtonRef, Style, render_message, render_view, text_of
from bot.console.slack_text import command_text


class WaitsIdle(Protocol):
    """What the session waits on after each dispatch: the app's background work (and its outbox)."""

    def wait_idle(self, timeout: float = ...) -> bool: ...


log = logging.getLogger(__name__)

VIEW_SHOWN = frozenset({"view_open", "view_push", "view_update"})
HELP = """\
Type what you would type in Slack:
  /mam <args>        run a slash command (any /command the app registered)
  <text>             say something in the current channel (message event)
  <n>  or :click <n> click button (or choose in menu) number n
Console commands:
  :as <user>         act as someone else (id, @name or email)
  :in <channel>      talk in a channel (id or #name)      :dm    your DM with the bot
  :home              open the bot's App Home tab           :close close the open modal
  :raw               also print the raw Block Kit JSON     :users who is in the workspace
  :help              this list                             :quit  leave (or Ctrl-D)
In a modal, answer each field; :cancel at any prompt closes it."""


class ScriptedInput:
    """An `ask` that answers from a list (tests, demos); EOFError when the script runs out.

    With `echo`, each prompt and answer is written there, so a transcript reads like a session.
    """

    def __init__(self, answers: Iterable[str] = (), *, echo: TextIO | None = None) -> None:
        self._answers: deque[str] = deque(answers)
        self._echo = echo
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self._answers:
            raise EOFError
        answer = self._answers.popleft()
        if self._echo is not None:
            self._echo.write(f"{prompt}{answer}\n")
        return answer

    def extend(self, answers: Iterable[str]) -> None:
        self._answers.extend(answers)

    @property
    def remaining(self) -> list[str]:
        return list(self._answers)


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


@dataclass(frozen=True)
class _Control:
    """A numbered element and where it lives: a message (channel, ts) or a view (view_id)."""

    ref: ButtonRef
    position: int
    channel: str | None = None
    ts: str | None = None
    view_id: str | None = None


class ConsoleSession:
    """One person at a terminal, acting in the console workspace through the app under test."""

    def __init__(
        self,
        app: App,
        slack: FakeSlack,
        runner: WaitsIdle,
        *,
        user: str = "UADMIN001",
        channel: str = CONSOLE_CHANNEL,
        out: TextIO | None = None,
        ask: Callable[[str], str] = input,
        tty: bool = False,
        echo: bool = False,
        width: int | None = None,
        wait_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.slack = slack
        self.runner = runner
        if slack.user(user) is None:
            raise ValueError(f"{user} is not a user in this FakeSlack")
        self.user = user
        self.channel = channel
        self.out: TextIO = out if out is not None else sys.stdout
        self.ask = ask
        self.tty = tty
        self.echo = echo
        # Wrap to the terminal when there is one; files and tests get unwrapped, stable lines.
        self.width = width if width is not None else (shutil.get_terminal_size().columns if tty else None)
        self.raw = False
        self.done = False
        self.wait_timeout = wait_timeout
        self._style = Style(tty)
        self._cursor = 0
        self._controls: dict[int, _Control] = {}
        self._next_button = 1
        self._message_numbers: dict[tuple[str, str], int] = {}
        self._answers: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {}
        self._errors: dict[str, dict[str, str]] = {}
        self._in_modal = False
        self._notes: list[str] = []
        self._counter = 0
        self._fields = FieldAsker(
            lambda prompt: self.ask(prompt),  # late-bound: callers may swap `ask` after construction
            self._say,
            find_user=self._find_user_id,
            find_channel=self._find_channel_id,
        )

    # --- the public surface ---------------------------------------------------------------------

    @property
    def prompt(self) -> str:
        me = self._name(self.user)
        where = f"@{BOT_NAME}" if self.slack.dm_owner(self.channel) else self._where(self.channel)
        return f"[@{me} ➡ {where}] {BOT_NAME}> "

    def send(self, line: str) -> None:
        """Handle one line as typed at the prompt."""
        if self.done:
            return
        if self.echo:
            self._say(f"{self.prompt}{line}")
        line = line.strip()
        if not line:
            return
        if line.startswith(":"):
            self._meta(line)
        elif line.startswith("/"):
            command, _, text = line.partition(" ")
            self.command(command, text.strip())
        elif line.isdigit():
            self.click(int(line))
        else:
            self.say_in_channel(line)

    def repl(self) -> None:
        """Read lines until :quit or end of input, like Errbot's text backend."""
        if self.tty:
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401  (line editing and history for input())
        self._say(f"Console for @{BOT_NAME} — you are @{self._name(self.user)}. :help lists what you can do.")
        self.flush()
        while not self.done:
            try:
                line = self.ask(self.prompt)
            except (EOFError, KeyboardInterrupt):
                self._say("")
                break
            try:
                self.send(line)
            except Exception as error:  # keep the console alive; the traceback goes to the log
                log.exception("console failed on %r", line)
                self._say(f"(console error: {error})")

    def flush(self) -> list[SlackEvent]:
        """Print everything that reached Slack since the last flush (and open any new modal)."""
        events = self.slack.events_since(self._cursor)
        for event in events:
            self._cursor = max(self._cursor, event.seq)
            self._render_event(event)
        if not self._in_modal and any(e.kind in VIEW_SHOWN and e.user == self.user for e in events):
            self._run_modals()
        return events

    def command(self, command: str, text: str = "") -> None:
        """A slash command typed in the current channel, escaped the way Slack sends it (`should_escape`)."""
        response_url = self.slack.new_response_url(channel=self.channel, user=self.user)
        body = {
            "token": "console",
            "team_id": TEAM_ID,
            "team_domain": TEAM_DOMAIN,
            "channel_id": self.channel,
            "channel_name": self._channel_name(self.channel),
            "user_id": self.user,
            "user_name": self._name(self.user),
            "command": command,
            "text": command_text(text, find_user=self._find_user_id,
                                 find_channel=lambda name: self._find_channel_id("#" + name)),
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": self.slack.new_trigger_id(self.user),
        }

        def show_ack(payload: dict[str, Any]) -> None:
            try:
                self.slack.deliver_ack(response_url, payload)
            except ApiError as error:
                self._notes.append(
                    f"(Slack would reject this reply: {error.error} {error.extra.get('errors', '')})"
                )

        self._dispatch(body, on_ack=show_ack, what=command)

    def click(self, number: int) -> None:
        """Click button `number` (or pick from the menu with that number)."""
        control = self._controls.get(number)
        if control is None:
            known = f"1-{self._next_button - 1}" if self._next_button > 1 else "none yet"
            self._say(f"(no button [{number}]; buttons so far: {known})")
            return
        if control.view_id is not None:
            self._click_in_view(control)
        else:
            self._click_in_message(control)

    def button_number(self, label: str) -> int | None:
        """The newest numbered button or menu labelled `label` that the current user can see."""
        for number in sorted(self._controls, reverse=True):
            control = self._controls[number]
            text = control.ref.element.get("text") or {}
            if not (isinstance(text, dict) and text.get("text") == label):
                continue
            if control.channel is not None and control.ts is not None:
                message = self.slack.message(control.channel, control.ts)
                if message is None or not message.visible_to(self.user):
                    continue
            return number
        return None

    def say_in_channel(self, text: str) -> None:
        """A plain message typed in the current channel, sent to the app as a message event."""
        text = _MENTION.sub(self._mention, text)
        message = self.slack.post_user_message(self.user, self.channel, text)
        event = {
            "type": "message",
            "channel": message.channel,
            "user": self.user,
            "text": text,
            "ts": message.ts,
            "team": TEAM_ID,
            "event_ts": message.ts,
            "channel_type": "im" if message.channel.startswith("D") else "channel",
        }
        response = self._dispatch(self._event_envelope(event), what="message", quiet_unhandled=True)
        handled = response.status != 404
        if f"<@{BOT_USER_ID}>" in text:
            mention = {**event, "type": "app_mention"}
            mention.pop("channel_type")
            response = self._dispatch(self._event_envelope(mention), what="mention", quiet_unhandled=True)
            handled = handled or response.status != 404
        if not handled:
            self._say(f"(nothing in the app reads plain messages; commands start with /{BOT_NAME})")

    def open_home(self) -> None:
        """Open the App Home tab: an app_home_opened event, then the home view as published."""
        home = self.slack.home(self.user)
        event: dict[str, Any] = {
            "type": "app_home_opened",
            "user": self.user,
            "channel": self.slack.dm_channel(self.user),
            "tab": "home",
            "event_ts": self._event_ts(),
        }
        if home is not None:
            event["view"] = home
        before = self._cursor
        self._dispatch(self._event_envelope(event), what="app_home_opened", quiet_unhandled=True)
        published = [e for e in self.slack.events_since(before) if e.kind == "home" and e.user == self.user]
        if published:
            return
        home = self.slack.home(self.user)
        if home is None:
            self._say(f"(the app published no App Home for @{self._name(self.user)})")
        else:
            self._show_view(home, f"App Home of @{self._name(self.user)}")

    # --- meta commands --------------------------------------------------------------------------

    def _meta(self, line: str) -> None:
        word, _, arg = line.partition(" ")
        arg = arg.strip()
        if word == ":help":
            self._say(HELP)
        elif word == ":quit":
            self.done = True
        elif word == ":as":
            self._switch_user(arg)
        elif word == ":in":
            self._switch_channel(arg)
        elif word == ":dm":
            self.channel = self.slack.dm_channel(self.user)
            self._say(f"(now in your DM with @{BOT_NAME})")
        elif word == ":raw":
            self.raw = not self.raw
            self._say(f"(raw Block Kit JSON {'on' if self.raw else 'off'})")
        elif word == ":home":
            self.open_home()
        elif word == ":click":
            if arg.isdigit():
                self.click(int(arg))
            else:
                self._say("(usage: :click <number>)")
        elif word in (":close", ":cancel"):
            top = self.slack.top_modal(self.user)
            if top is None:
                self._say("(no modal is open)")
            else:
                self._close_modals(top)
        elif word == ":users":
            for user in self.slack.users:
                me = "  ← you" if user.id == self.user else ""
                self._say(f"  @{user.name:<12} {user.id}  {user.real_name}{me}")
        else:
            self._say(
                f"(unknown {word}; try :help, :as, :in, :dm, :home, :click, :close, :raw, :users, :quit)"
            )

    def _switch_user(self, ref: str) -> None:
        user = self.slack.find_user(ref) if ref else None
        if user is None or user.is_bot:
            names = ", ".join(f"@{u.name}" for u in self.slack.users if not u.is_bot)
            self._say(f"(no user {ref!r}; people here: {names})")
            return
        was_dm = self.slack.dm_owner(self.channel) is not None
        self.user = user.id
        if was_dm:
            self.channel = self.slack.dm_channel(user.id)
        self._say(f"(you are now @{user.name} — {user.real_name or user.name}, {user.id})")

    def _switch_channel(self, ref: str) -> None:
        channel = self._find_channel_id(ref) if ref else None
        if channel is None:
            self._say("(usage: :in <channel id or #name>)")
            return
        owner = self.slack.dm_owner(channel)
        if owner is not None and owner != self.user:
            self._say(f"(that is @{self._name(owner)}'s DM; use :as {self._name(owner)} first)")
            return
        self.channel = channel
        self._say(f"(now in {self._where(channel)})")

    # --- clicks ---------------------------------------------------------------------------------

    def _click_in_message(self, control: _Control) -> None:
        assert control.channel is not None and control.ts is not None
        label = self._message_label(control.channel, control.ts)
        message = self.slack.message(control.channel, control.ts)
        if message is None or message.deleted:
            self._say(f"({label} was deleted)")
            return
        if not message.visible_to(self.user):
            owner = message.audience or ""
            why = (
                "a DM to" if message.channel.startswith("D") and not message.ephemeral else "only visible to"
            )
            self._say(
                f"(@{self._name(self.user)} can't see {label}: it is {why} @{self._name(owner)}; "
                f":as {self._name(owner)} to act as them)"
            )
            return
        found = _find_element(message.blocks, control)
        if found is None:
            self._say(f"(button [{control.ref.number}] is no longer on {label}: the message was updated)")
            return
        block_id, element = found
        container = {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": message.channel,
            "is_ephemeral": message.ephemeral,
        }
        extra: dict[str, Any] = {
            "channel": {"id": message.channel, "name": self._channel_name(message.channel)}
        }
        if not message.ephemeral:
            extra["message"] = message.to_api()
        action = self._action(element, block_id, container, extra)
        if action is None:
            return
        body = {
            **self._interaction_base("block_actions"),
            "container": container,
            "trigger_id": self.slack.new_trigger_id(self.user),
            "response_url": self.slack.new_response_url(
                channel=message.channel, user=self.user, original_ts=message.ts, kind="actions"
            ),
            "state": {"values": {}},
            "actions": [action],
            **extra,
        }
        self._dispatch(body, what=f"button {control.ref.label!r}")

    def _click_in_view(self, control: _Control) -> None:
        assert control.view_id is not None
        view = self.slack.view(control.view_id)
        owner = self.slack.view_owner(control.view_id)
        is_home = view is not None and view["type"] == "home"
        if view is None or not self.slack.view_is_open(control.view_id):
            self._say("(that modal is closed)")
            return
        if owner != self.user:
            kind = "App Home" if is_home else "modal"
            self._say(
                f"(that {kind} belongs to @{self._name(owner or '')}; :as {self._name(owner or '')} first)"
            )
            return
        found = _find_element(view["blocks"], control)
        if found is None:
            self._say(f"(button [{control.ref.number}] is no longer there: the view was updated)")
            return
        block_id, element = found
        container = {"type": "view", "view_id": view["id"]}
        extra = {"view": view}
        action = self._action(element, block_id, container, extra)
        if action is None:
            return
        body = {
            **self._interaction_base("block_actions"),
            "container": container,
            "trigger_id": self.slack.new_trigger_id(self.user),
            "view": view,
            "actions": [action],
        }
        self._dispatch(body, what=f"button {control.ref.label!r}")

    def _action(
        self, element: Mapping[str, Any], block_id: str, container: dict[str, Any], extra: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The `actions[0]` Slack sends for this element, asking for a choice when it is a menu."""
        kind = str(element.get("type"))
        action_id = str(element.get("action_id", ""))
        try:
            if element.get("confirm") and not self._fields.confirm(element["confirm"]):
                self._say("(cancelled)")
                return None
            if kind == "button":
                action: dict[str, Any] = {"type": "button", "text": element.get("text")}
                for key in ("value", "style", "url"):
                    if key in element:
                        action[key] = element[key]
            elif kind in ASKABLE:
                label = text_of(element.get("placeholder")) or kind.replace("_", " ")
                suggest = self._suggester(action_id, block_id, container, extra)
                action = self._fields.value(element, label=label, suggest=suggest)
            else:
                self._say(f"(the console can't use a {kind})")
                return None
        except Cancelled:
            self._say("(cancelled)")
            return None
        return {**action, "action_id": action_id, "block_id": block_id, "action_ts": self._event_ts()}

    def _suggester(
        self, action_id: str, block_id: str, container: dict[str, Any], extra: Mapping[str, Any]
    ) -> Callable[[str], Mapping[str, Any]]:
        def suggest(query: str) -> Mapping[str, Any]:
            body = {
                **self._interaction_base("block_suggestion"),
                "container": container,
                "action_id": action_id,
                "block_id": block_id,
                "value": query,
                **extra,
            }
            response = self._dispatch(body, what="options", render=False)
            return _parse_body(response.body) if response.status == 200 else {}

        return suggest

    # --- modals ---------------------------------------------------------------------------------

    def _run_modals(self) -> None:
        """Fill and submit the top modal until the app closes the stack (or the person cancels)."""
        self._in_modal = True
        try:
            while not self.done:
                view = self.slack.top_modal(self.user)
                if view is None:
                    return
                if not _input_blocks(view):
                    self._say("(modal open: click its buttons by number, or :close it)")
                    return
                try:
                    values = self._fill(view)
                except Cancelled:
                    self._close_modals(view)
                    return
                if not self._submit(view, values):
                    return
        finally:
            self._in_modal = False

    def _fill(self, view: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        view_id = str(view["id"])
        kept_hash, answers = self._answers.get(view_id, ("", {}))
        errors = self._errors.pop(view_id, {})
        if kept_hash != view["hash"]:
            answers, errors = {}, {}
        blocks = _input_blocks(view)
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
            suggest = self._suggester(
                action_id, block_id, {"type": "view", "view_id": view_id}, {"view": view}
            )
            state = self._fields.value(
                element,
                label=text_of(block.get("label")),
                optional=bool(block.get("optional")),
                suggest=suggest,
            )
            values[block_id] = {action_id: state}
        self._answers[view_id] = (str(view["hash"]), values)
        return values

    def _submit(self, view: Mapping[str, Any], values: dict[str, dict[str, Any]]) -> bool:
        """Send a view_submission; False when the app did not take it (the modal stays open)."""
        submitted = {**view, "state": {"values": values}}
        body = {
            **self._interaction_base("view_submission"),
            "trigger_id": self.slack.new_trigger_id(self.user),
            "view": submitted,
            "response_urls": [],
        }
        view_id = str(view["id"])
        self._say(f"(pressed “{text_of(view.get('submit')) or 'Submit'}”)")

        def apply(payload: dict[str, Any]) -> None:
            action = payload.get("response_action")
            if action == "errors":
                self._errors[view_id] = {str(k): str(v) for k, v in (payload.get("errors") or {}).items()}
            elif action == "update" and isinstance(payload.get("view"), dict):
                self.slack.replace_view(view_id, payload["view"])
            elif action == "push" and isinstance(payload.get("view"), dict):
                self.slack.push_view(self.user, payload["view"])
            elif action == "clear":
                self.slack.clear_modals(self.user)
            else:
                self.slack.close_view(view_id)

        response = self._dispatch(body, on_ack=apply, what=f"submit {text_of(view.get('title'))!r}")
        if response.status != 200:
            # Slack keeps the modal open and shows an error; the person can retry or close it.
            self._say("(the modal stays open: :close closes it)")
            return False
        return True

    def _close_modals(self, view: Mapping[str, Any]) -> None:
        """The person pressed Close: the whole stack goes, view_closed sent only if asked for."""
        stack = self.slack.modal_stack(self.user)
        self.slack.clear_modals(self.user)
        self.flush()
        if view.get("notify_on_close"):
            body = {
                **self._interaction_base("view_closed"),
                "view": dict(view),
                "is_cleared": len(stack) > 1,
            }
            self._dispatch(body, what="view_closed", quiet_unhandled=True)

    # --- dispatch and rendering -----------------------------------------------------------------

    def _dispatch(
        self,
        body: dict[str, Any],
        *,
        on_ack: Callable[[dict[str, Any]], None] | None = None,
        what: str,
        render: bool = True,
        quiet_unhandled: bool = False,
    ) -> BoltResponse:
        acked: list[dict[str, Any]] = []

        def hook(response: BoltResponse) -> None:
            payload = _parse_body(response.body)
            acked.append(payload)
            if on_ack is not None:
                on_ack(payload)

        request = BoltRequest(body=body, mode="socket_mode", context={"ack": ObservedAck(hook)})
        response = self.app.dispatch(request)
        if not acked and on_ack is not None and response.status == 200:
            on_ack(_parse_body(response.body))  # acked without our Ack (a middleware answered)
        if not self.runner.wait_idle(timeout=self.wait_timeout):
            self._say(f"(background work still running after {self.wait_timeout:.0f}s)")
        self.slack.wait_idle()
        for note in self._notes:
            self._say(note)
        self._notes.clear()
        if response.status == 404 and not quiet_unhandled:
            self._say(f"(nothing in the app answered {what}: no listener matched, or it never called ack())")
        elif response.status not in (200, 404):
            self._say(f"(the app answered {what} with HTTP {response.status}: {response.body[:200]})")
        if render:
            self.flush()
        return response

    def _render_event(self, event: SlackEvent) -> None:
        if event.kind in ("post", "dm", "ephemeral", "update", "response"):
            assert event.channel is not None and event.ts is not None
            rendered = render_message(
                event.text,
                event.blocks,
                label=self._event_label(event),
                attachments=event.attachments,
                names=self.slack.display_name,
                tty=self.tty,
                number_from=self._next_button,
                width=self.width,
            )
            self._remember(rendered.buttons, channel=event.channel, ts=event.ts)
            self._say(rendered.text)
            if self.raw:
                raw = {"text": event.text, "blocks": event.blocks, "attachments": event.attachments}
                self._raw({k: v for k, v in raw.items() if v})
        elif event.kind in VIEW_SHOWN or event.kind == "home":
            assert event.view is not None
            self._show_view(event.view, self._view_label(event))
        elif event.kind == "delete":
            assert event.channel is not None and event.ts is not None
            self._say("┌ " + self._message_label(event.channel, event.ts) + " deleted")
        elif event.kind == "view_close" and event.view is not None:
            self._say(f"└ modal “{text_of(event.view.get('title'))}” closed")
        elif event.kind == "file" and event.file is not None:
            assert event.channel is not None
            size = event.file.get("size", 0)
            self._say(f"┌ {self._where(event.channel)} file “{event.file.get('title')}” ({size} bytes)")
            if event.text:
                self._say("│ " + event.text)

    def _show_view(self, view: Mapping[str, Any], label: str) -> None:
        rendered = render_view(
            view,
            label=label,
            names=self.slack.display_name,
            tty=self.tty,
            number_from=self._next_button,
            width=self.width,
        )
        self._remember(rendered.buttons, view_id=str(view["id"]))
        self._say(rendered.text)
        if self.raw:
            self._raw(
                {k: view.get(k) for k in ("type", "callback_id", "private_metadata", "title", "blocks")}
            )

    def _remember(self, buttons: list[ButtonRef], **where: str) -> None:
        for position, ref in enumerate(buttons):
            self._controls[ref.number] = _Control(ref, position, **where)
            self._next_button = ref.number + 1

    def _event_label(self, event: SlackEvent) -> str:
        assert event.channel is not None and event.ts is not None
        where = self._where(event.channel)
        only = f" (only @{self._name(event.user or '')} sees this)" if event.ephemeral else ""
        if event.kind == "update" or event.replaced:
            how = " (replace_original)" if event.replaced else ""
            return f"{self._message_label(event.channel, event.ts)} updated{how}{only}"
        number = self._number_message(event.channel, event.ts)
        what = {"post": " post", "dm": "", "ephemeral": " ephemeral", "response": " reply"}.get(
            event.kind, ""
        )
        label = f"{where}{what}{only} m{number}"
        if event.thread_ts:
            parent = self._message_numbers.get((event.channel, event.thread_ts))
            label += f" in thread of m{parent}" if parent else f" in thread {event.thread_ts}"
        return label

    def _view_label(self, event: SlackEvent) -> str:
        assert event.view is not None
        owner = event.user or ""
        if event.kind == "home":
            return f"App Home of @{self._name(owner)}"
        title = text_of(event.view.get("title"))
        verb = {"view_open": "", "view_push": " pushed", "view_update": " updated"}[event.kind]
        whose = "" if owner == self.user else f" for @{self._name(owner)}"
        return f"modal “{title}”{verb}{whose}"

    def _message_label(self, channel: str, ts: str) -> str:
        number = self._message_numbers.get((channel, ts))
        return f"{self._where(channel)} m{number}" if number else f"{self._where(channel)} message {ts}"

    def _number_message(self, channel: str, ts: str) -> int:
        key = (channel, ts)
        if key not in self._message_numbers:
            self._message_numbers[key] = len(self._message_numbers) + 1
        return self._message_numbers[key]

    # --- small helpers --------------------------------------------------------------------------

    def _interaction_base(self, kind: str) -> dict[str, Any]:
        user = self.slack.user(self.user)
        name = user.name if user else self.user
        return {
            "type": kind,
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "user": {"id": self.user, "username": name, "name": name, "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": "console",
            "enterprise": None,
            "is_enterprise_install": False,
        }

    def _event_envelope(self, event: dict[str, Any]) -> dict[str, Any]:
        self._counter += 1
        return {
            "token": "console",
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{self._counter:010d}",
            "event_time": 1_700_000_000 + self._counter,
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

    def _event_ts(self) -> str:
        self._counter += 1
        return f"{1_700_000_000 + self._counter}.{self._counter % 1_000_000:06d}"

    def _name(self, slack_id: str) -> str:
        return self.slack.display_name(slack_id) or slack_id

    def _where(self, channel: str) -> str:
        owner = self.slack.dm_owner(channel)
        if owner is not None:
            return f"DM to @{self._name(owner)}"
        return "#" + self._channel_name(channel)

    def _channel_name(self, channel: str) -> str:
        if self.slack.dm_owner(channel):
            return "directmessage"
        return self.slack.channel_name(channel) or channel

    def _mention(self, match: re.Match[str]) -> str:
        user_id = self._find_user_id(match.group(1))
        return f"<@{user_id}>" if user_id else match.group(0)

    def _find_user_id(self, ref: str) -> str | None:
        user = self.slack.find_user(ref)
        return user.id if user else None

    def _find_channel_id(self, ref: str) -> str | None:
        ref = ref.strip()
        if ref.startswith("#"):
            name = ref[1:]
            return next((c for c, n in self.slack.channels.items() if n == name), None)
        if ref[:1] in ("C", "G") and ref.isalnum():
            return ref
        if ref.startswith("D") and self.slack.dm_owner(ref):
            return ref
        return None

    def _say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _raw(self, data: Mapping[str, Any]) -> None:
        for line in json.dumps(data, indent=2, ensure_ascii=False).splitlines():
            self._say(self._style.dim("│ " + line))


_MENTION = re.compile(r"(?<![<\w])@([A-Za-z0-9][\w.-]*)")
"""`@sam` typed in a message: Slack's client turns a picked name into `<@UAPPROV01>`."""


def _parse_body(body: str) -> dict[str, Any]:
    """A Bolt ack body as Slack reads it: JSON when it looks like JSON, else the text of a reply."""
    if not body:
        return {}
    if body.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                return parsed
    return {"text": body}


def _input_blocks(view: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        b
        for b in view.get("blocks") or []
        if b.get("type") == "input"
        and isinstance(b.get("element"), dict)
        and b["element"].get("type") in ASKABLE
    ]


def _find_element(blocks: list[dict[str, Any]], control: _Control) -> tuple[str, dict[str, Any]] | None:
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
