"""Drive the real Bolt App from a terminal (Errbot text mode / Hubot shell style).

Lines become the payloads Slack would send (slash commands, block actions, view submissions,
events), dispatched in-process in Socket Mode shape, so no signing secret and no Slack are needed.
Everything the app sends back lands in a FakeSlack and is printed as Slack would show it.

This module reads the lines and the console's own `:` commands; what a line does in Slack is the
simulated client's (client.py), and what gets printed is the transcript's (transcript.py).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TextIO

from slack_bolt import App

from bot.console.client import SimulatedClient, WaitsIdle
from bot.console.fake_slack import BOT_NAME, CONSOLE_CHANNEL, FakeSlack
from bot.console.portal import portal

if TYPE_CHECKING:
    from bot.sandbox import SandboxTenant

log = logging.getLogger(__name__)

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
  :portal …          change the sandbox tenant outside the bot, as an admin in the Intune portal
                     (:portal policy "<name>" maximumAllowedDeviceThreatLevel=high; :portal for more)
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


class ConsoleSession(SimulatedClient):
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
        sandbox: SandboxTenant | None = None,
    ) -> None:
        super().__init__(
            app,
            slack,
            runner,
            user=user,
            channel=channel,
            out=out if out is not None else sys.stdout,
            ask=ask,
            tty=tty,
            # Wrap to the terminal when there is one; files and tests get unwrapped, stable lines.
            width=width if width is not None else (shutil.get_terminal_size().columns if tty else None),
            wait_timeout=wait_timeout,
        )
        self.echo = echo
        self.sandbox = sandbox  # what `:portal` changes, outside the bot

    # --- the terminal ------------------------------------------------------------------------------

    @property
    def prompt(self) -> str:
        me = self._name(self.user)
        where = f"@{BOT_NAME}" if self.slack.dm_owner(self.channel) else self.transcript.where(self.channel)
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
        if self.transcript.tty:
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
            self.transcript.raw = not self.transcript.raw
            self._say(f"(raw Block Kit JSON {'on' if self.transcript.raw else 'off'})")
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
        elif word == ":portal":
            self._say(portal(self.sandbox, arg))
        elif word == ":users":
            for user in self.slack.users:
                me = "  ← you" if user.id == self.user else ""
                self._say(f"  @{user.name:<12} {user.id}  {user.real_name}{me}")
        else:
            self._say(
                f"(unknown {word}; try :help, :as, :in, :dm, :home, :click, :close, :raw, :users, :portal, :quit)"
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
        self._say(f"(now in {self.transcript.where(channel)})")
