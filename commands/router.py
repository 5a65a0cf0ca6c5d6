"""The `/mam` command: parse, find the subcommand, hand it over, record it in the audit log."""

from __future__ import annotations

import shlex
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.blocks import escape
from bot.deps import Deps
from bot.errors import UsageError, new_correlation_id
from commands.context import CommandRequest

GENERAL_USAGE = "Usage: `/mam &lt;command&gt; [arguments]`. `/mam help` lists the commands you can run."

_SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


def parse(text: str) -> list[str]:
    """Split like a shell, so `"Sales EMEA"` stays one argument; Slack's curly quotes count too."""
    try:
        return shlex.split(text.translate(_SMART_QUOTES))
    except ValueError as exc:
        raise UsageError(f"I couldn't read that: {exc} (a quote is not closed?).") from None


def register(app: App, deps: Deps) -> None:
    deps.registry.slack_commands.add("/mam")

    @app.command("/mam")
    def mam(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        user_id = body.get("user_id", "")
        text = (body.get("text") or "").strip()
        correlation_id = new_correlation_id()
        try:
            words = parse(text)
        except UsageError as exc:
            ack(response_type="ephemeral", text=f":x: {exc}\n{GENERAL_USAGE}")
            _audit(deps, user_id, text, "not understood", correlation_id)
            return
        name = words[0].lower() if words else "help"
        sub = deps.registry.lookup(name)
        if sub is None:
            ack(response_type="ephemeral", text=unknown_command_text(deps, name))
            _audit(deps, user_id, text, "unknown", correlation_id)
            return
        request = CommandRequest(
            deps=deps, user_id=user_id, channel_id=body.get("channel_id", ""), name=sub.name,
            args=words[1:], text=text, ack=ack, respond=respond, client=client,
            trigger_id=body.get("trigger_id", ""), correlation_id=correlation_id, body=body,
        )
        try:
            sub.handler(request)
        except UsageError as exc:
            ack(response_type="ephemeral", text=f":x: {exc}\nUsage: `{escape(sub.usage)}`")
            _audit(deps, user_id, text, "not understood", correlation_id)
            return
        # "accepted": the command was understood and allowed; what it then did (a change cancelled, a
        # request filed, a policy not found) is in its own rows or in the answer
        _audit(deps, user_id, text, "accepted", correlation_id)


def unknown_command_text(deps: Deps, name: str) -> str:
    lines = [f":grey_question: I don't know `/mam {escape(name)}`."]
    close = deps.registry.closest(name)
    if close:
        lines.append("Did you mean " + " or ".join(f"`/mam {c}`" for c in close) + "?")
    lines.append(GENERAL_USAGE)
    return "\n".join(lines)


def _audit(deps: Deps, user_id: str, text: str, outcome: str, correlation_id: str) -> None:
    # queued for the audit writer: the commit must not delay Slack's 3 seconds
    deps.audit.record_soon(actor=user_id, action=f"/mam {text}".strip(), outcome=outcome,
                           correlation_id=correlation_id)
