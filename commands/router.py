"""The `/mam` command: run the route the authorization middleware found, record it in the audit log."""

from __future__ import annotations

from bot.command_text import CommandText
from bot.deps import Deps
from bot.errors import UsageError, UserError
from bot.mrkdwn import Mrkdwn, escape, md
from bot.registry import COMMAND_KEY, ROUTE_KEY, Route
from commands.context import CommandRequest, Interaction
from commands.listen import Listeners

GENERAL_USAGE = "Usage: `/mam &lt;command&gt; [arguments]`. `/mam help` lists the commands you can run."


listeners = Listeners()


@listeners.slash("/mam")
def mam(ctx: Interaction) -> None:
    deps, user_id, ack, correlation_id = ctx.deps, ctx.user_id, ctx.ack, ctx.correlation_id
    context = ctx.context
    # Read and routed once, by the authorization middleware: the route run is the route checked.
    command: CommandText | None = context.get(COMMAND_KEY)
    route: Route | None = context.get(ROUTE_KEY)
    if command is None:  # never reached through the middleware: run nothing
        ack(response_type="ephemeral", text=Mrkdwn(":x: That command was not checked, so I did not run it."))
        return
    text = command.text
    if command.error:
        ack(response_type="ephemeral",
            text=Mrkdwn(f":x: I couldn't read that: {escape(command.error)}.\n{GENERAL_USAGE}"))
        _audit(deps, user_id, text, "not understood", correlation_id)
        return
    if route is None:
        ack(response_type="ephemeral", text=unknown_command_text(deps, command.name))
        _audit(deps, user_id, text, "unknown", correlation_id)
        return
    request = CommandRequest(**vars(ctx), name=route.name, args=route.args, text=text)
    try:
        route.handler(request)
    except UsageError as exc:
        ack(response_type="ephemeral", text=Mrkdwn(f":x: {exc}\nUsage: `{escape(route.usage)}`"))
        _audit(deps, user_id, text, "not understood", correlation_id)
        return
    except UserError as exc:  # understood, but not possible as asked: the words say why
        ack(response_type="ephemeral", text=md(":x: {}", exc.mrkdwn))
        _audit(deps, user_id, text, "not possible", correlation_id)
        return
    # "accepted": the command was understood and allowed; what it then did (a change cancelled, a
    # request filed, a policy not found) is in its own rows or in the answer
    _audit(deps, user_id, text, "accepted", correlation_id)


def unknown_command_text(deps: Deps, name: str) -> Mrkdwn:
    if not name:
        return Mrkdwn(f":grey_question: That command starts with an empty word (`\"\"`).\n{GENERAL_USAGE}")
    lines = [f":grey_question: I don't know `/mam {escape(name)}`."]
    close = deps.registry.closest(name)
    if close:
        lines.append("Did you mean " + " or ".join(f"`/mam {c}`" for c in close) + "?")
    lines.append(GENERAL_USAGE)
    return Mrkdwn("\n".join(lines))


def _audit(deps: Deps, user_id: str, text: str, outcome: str, correlation_id: str) -> None:
    # queued for the audit writer: the commit must not delay Slack's 3 seconds
    deps.audit.record_soon(actor=user_id, action=f"/mam {text}".strip(), outcome=outcome,
                           correlation_id=correlation_id)
