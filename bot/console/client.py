"""The Slack client a person in the console uses, simulated: what they do becomes what Slack sends the app.

Slash commands, messages, the App Home tab, clicks on numbered buttons and menus, and modals filled
in field by field become the payloads Slack would send, dispatched in-process to the real Bolt App
in Socket Mode shape; what the app sends back lands in a FakeSlack and is printed by the transcript.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TextIO

from slack_bolt import App, BoltRequest, BoltResponse

from bot.console.fake_slack import BOT_NAME, BOT_USER_ID, TEAM_ID, ApiError, FakeSlack, SlackEvent
from bot.console.forms import ASKABLE, Cancelled, FieldAsker, ModalForm, input_blocks
from bot.console.payloads import ObservedAck, event_envelope, event_ts, interaction, parse_ack, slash_command
from bot.console.render import text_of
from bot.console.slack_text import command_text
from bot.console.transcript import VIEW_SHOWN, Control, Transcript, find_element


class WaitsIdle(Protocol):
    """What the session waits on after each dispatch: the app's background work (and its outbox)."""

    def wait_idle(self, timeout: float = ...) -> bool: ...


class SimulatedClient:
    """One person's Slack client in the console workspace, talking to the app under test."""

    def __init__(
        self,
        app: App,
        slack: FakeSlack,
        runner: WaitsIdle,
        *,
        user: str,
        channel: str,
        out: TextIO,
        ask: Callable[[str], str],
        tty: bool,
        width: int | None,
        wait_timeout: float,
    ) -> None:
        self.app = app
        self.slack = slack
        self.runner = runner
        if slack.user(user) is None:
            raise ValueError(f"{user} is not a user in this FakeSlack")
        self.user = user
        self.channel = channel
        self.ask = ask
        self.done = False
        self.wait_timeout = wait_timeout
        self.transcript = Transcript(slack, out, tty=tty, width=width)
        self._cursor = 0
        self._in_modal = False
        self._notes: list[str] = []
        self._counter = 0
        self._fields = FieldAsker(
            lambda prompt: self.ask(prompt),  # late-bound: callers may swap `ask` after construction
            self.transcript.say,
            find_user=self._find_user_id,
            find_channel=self._find_channel_id,
        )
        self._form = ModalForm(self._fields, self.transcript.say)

    # --- what the person does -------------------------------------------------------------------

    def flush(self) -> list[SlackEvent]:
        """Print everything that reached Slack since the last flush (and open any new modal)."""
        events = self.slack.events_since(self._cursor)
        for event in events:
            self._cursor = max(self._cursor, event.seq)
            self.transcript.show_event(event, viewer=self.user)
        if not self._in_modal and any(e.kind in VIEW_SHOWN and e.user == self.user for e in events):
            self._run_modals()
        return events

    def command(self, command: str, text: str = "") -> None:
        """A slash command typed in the current channel, escaped the way Slack sends it (`should_escape`)."""
        response_url = self.slack.new_response_url(channel=self.channel, user=self.user)
        escaped = command_text(text, find_user=self._find_user_id,
                               find_channel=lambda name: self._find_channel_id("#" + name))
        body = slash_command(
            command,
            escaped,
            user=self.user,
            user_name=self._name(self.user),
            channel=self.channel,
            channel_name=self.transcript.channel_name(self.channel),
            response_url=response_url,
            trigger_id=self.slack.new_trigger_id(self.user),
        )

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
        control = self.transcript.control(number)
        if control is None:
            known = f"1-{self.transcript.next_button - 1}" if self.transcript.next_button > 1 else "none yet"
            self._say(f"(no button [{number}]; buttons so far: {known})")
            return
        if control.view_id is not None:
            self._click_in_view(control)
        else:
            self._click_in_message(control)

    def button_number(self, label: str) -> int | None:
        """The newest numbered button or menu labelled `label` that the current user can see."""
        for control in self.transcript.controls_newest_first():
            text = control.ref.element.get("text") or {}
            if not (isinstance(text, dict) and text.get("text") == label):
                continue
            if control.channel is not None and control.ts is not None:
                message = self.slack.message(control.channel, control.ts)
                if message is None or not message.visible_to(self.user):
                    continue
            return control.ref.number
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
            self.transcript.show_view(home, f"App Home of @{self._name(self.user)}")

    # --- clicks ---------------------------------------------------------------------------------

    def _click_in_message(self, control: Control) -> None:
        assert control.channel is not None and control.ts is not None
        label = self.transcript.message_label(control.channel, control.ts)
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
        found = find_element(message.blocks, control)
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
            "channel": {"id": message.channel, "name": self.transcript.channel_name(message.channel)}
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

    def _click_in_view(self, control: Control) -> None:
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
        found = find_element(view["blocks"], control)
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
            return parse_ack(response.body) if response.status == 200 else {}

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
                if not input_blocks(view):
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
        container = {"type": "view", "view_id": str(view["id"])}
        return self._form.fill(
            view, lambda action_id, block_id: self._suggester(action_id, block_id, container, {"view": view})
        )

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
                self._form.refused(view_id, payload.get("errors") or {})
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

    # --- dispatch ------------------------------------------------------------------------------------

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
            payload = parse_ack(response.body)
            acked.append(payload)
            if on_ack is not None:
                on_ack(payload)

        request = BoltRequest(body=body, mode="socket_mode", context={"ack": ObservedAck(hook)})
        response = self.app.dispatch(request)
        if not acked and on_ack is not None and response.status == 200:
            on_ack(parse_ack(response.body))  # acked without our Ack (a middleware answered)
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

    # --- small helpers --------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        self.transcript.say(text)

    def _name(self, slack_id: str) -> str:
        return self.transcript.name(slack_id)

    def _interaction_base(self, kind: str) -> dict[str, Any]:
        user = self.slack.user(self.user)
        return interaction(kind, user=self.user, user_name=user.name if user else self.user)

    def _event_envelope(self, event: dict[str, Any]) -> dict[str, Any]:
        self._counter += 1
        return event_envelope(event, self._counter)

    def _event_ts(self) -> str:
        self._counter += 1
        return event_ts(self._counter)

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


_MENTION = re.compile(r"(?<![<\w])@([A-Za-z0-9][\w.-]*)")
"""`@sam` typed in a message: Slack's client turns a picked name into `<@UAPPROV01>`."""

