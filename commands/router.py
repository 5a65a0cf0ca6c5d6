"""The `/mam` command: run the route the authorization middleware found, record it in the audit log."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.blocks import escape
from bot.command_text import CommandText
from bot.deps import Deps
from bot.errors import UsageError, UserError, new_correlation_id
from bot.registry import COMMAND_KEY, ROUTE_KEY, Route
from commands.context import CommandRequest

GENERAL_USAGE = "Usage: `/mam &lt;command&gt; [arguments]`. `/mam help` lists the commands you can run."


def register(app: App, deps: Deps) -> None:
    deps.registry.slack_commands.add("/mam")

    @app.command("/mam")
    def mam(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient, context: BoltContext) -> None:
        user_id = body.get("user_id", "")
        correlation_id = new_correlation_id()
        # Read and routed once, by the authorization middleware: the route run is the route checked.
        command: CommandText | None = context.get(COMMAND_KEY)
        route: Route | None = context.get(ROUTE_KEY)
        if command is None:  # never reached through the middleware: run nothing
            ack(response_type="ephemeral", text=":x: That command was not checked, so I did not run it.")
            return
        text = command.text
        if command.error:
            ack(response_type="ephemeral", text=f":x: I couldn't read that: {escape(command.error)}.\n{GENERAL_USAGE}")
            _audit(deps, user_id, text, "not understood", correlation_id)
            return
        if route is None:
            ack(response_type="ephemeral", text=unknown_command_text(deps, command.name))
            _audit(deps, user_id, text, "unknown", correlation_id)
            return
        request = CommandRequest(
            deps=deps, user_id=user_id, channel_id=body.get("channel_id", ""), name=route.name,
            args=route.args, text=text, ack=ack, respond=respond, client=client,
            trigger_id=body.get("trigger_id", ""), correlation_id=correlation_id, body=body,
        )
        try:
            route.handler(request)
        except UsageError as exc:
            ack(response_type="ephemeral", text=f":x: {exc}\nUsage: `{escape(route.usage)}`")
            _audit(deps, user_id, text, "not understood", correlation_id)
            return
        except UserError as exc:  # understood, but not possible as asked: the words say why
            ack(response_type="ephemeral", text=f":x: {exc}")
            _audit(deps, user_id, text, "not possible", correlation_id)
            return
        # "accepted": the command was understood and allowed; what it then did (a change cancelled, a
        # request filed, a policy not found) is in its own rows or in the answer
        _audit(deps, user_id, text, "accepted", correlation_id)


def unknown_command_text(deps: Deps, name: str) -> str:
    if not name:
        return f":grey_question: That command starts with an empty word (`\"\"`).\n{GENERAL_USAGE}"
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
