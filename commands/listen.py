"""One way to write a Slack listener: declared at module level, with who may use it, in one call.

    listeners = Listeners()

    @listeners.command("status", "/mam status", "The bot's status.", Access.READ, group="Watch")
    def status_command(req: CommandRequest) -> None: ...

    @listeners.action(Action.APPROVE, Access.APPROVER, what="approve change requests")
    def approve(ctx: Interaction) -> None:
        ctx.ack()
        ref = ctx.data(RequestRef)
        ctx.later(lambda: ..., "approve")

A module's `listeners` are installed into an app by `commands.register_all`: each command goes into
the registry (the router runs it), and each button, form, options menu and event into the Bolt app
and, with its access rule, into the registry that the authorization middleware reads. So a listener
cannot be added without saying who may use it.

Every handler gets an `Interaction` (`commands.context`). A `UserError` it raises is told to the person
in words (after acking, if the handler had not); anything else reaches the app's error handler.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.errors import UserError, correlation_id
from bot.registry import Subcommand, Verb
from bot.roles import Access
from commands.context import CommandRequest, Interaction

if TYPE_CHECKING:
    from bot.deps import Deps

Kind = Literal["action", "view", "options", "event", "slash"]
Handler = Callable[[Interaction], None]
H = TypeVar("H", bound=Callable[..., None])


@dataclass(frozen=True)
class Listener:
    kind: Kind
    ident: str  # action id, view callback id, event type or slash command
    access: Access | None  # None for events and the slash command: the handler (or the router) decides
    what: str  # in words, for refusals: "approve change requests"
    handler: Handler
    family: bool = False  # an action id with a suffix after ':' ("assign_pick:group:…") is the same listener


@dataclass
class Listeners:
    """A module's commands and listeners; `install` wires them into one app."""

    commands: list[Subcommand] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)

    # ---- declaring ---------------------------------------------------------------------------------

    def command(self, name: str, usage: str, summary: str, access: Access, *, group: str = "General",
                aliases: tuple[str, ...] = (), verbs: Sequence[Verb] = ()) -> Callable[[H], H]:
        """A `/mam` subcommand; its handler receives a `CommandRequest`."""

        def register(handler: H) -> H:
            self.commands.append(Subcommand(name=name, usage=usage, summary=summary, access=access,
                                            handler=handler, aliases=aliases, group=group, verbs=tuple(verbs)))
            return handler

        return register

    def action(self, action_id: str, access: Access, *, what: str, family: bool = False) -> Callable[[H], H]:
        """A button (block_actions)."""
        return self._add("action", action_id, access, what, family=family)

    def view(self, callback_id: str, access: Access, *, what: str) -> Callable[[H], H]:
        """A form's submission (view_submission)."""
        return self._add("view", callback_id, access, what)

    def options(self, action_id: str, access: Access, *, what: str) -> Callable[[H], H]:
        """An external select's options (block_suggestion); the handler acks with `options=[…]`."""
        return self._add("options", action_id, access, what)

    def event(self, event_type: str) -> Callable[[H], H]:
        """An Events API event; it carries no privileged action, so the handler decides what to show."""
        return self._add("event", event_type, None, "")

    def slash(self, command: str) -> Callable[[H], H]:
        """The slash command itself (the router); what each subcommand requires is in the registry."""
        return self._add("slash", command, None, "")

    def _add(self, kind: Kind, ident: str, access: Access | None, what: str, *, family: bool = False
             ) -> Callable[[H], H]:
        def register(handler: H) -> H:
            self.listeners.append(Listener(kind, ident, access, what, handler, family))
            return handler

        return register

    # ---- installing --------------------------------------------------------------------------------

    def install(self, app: App, deps: Deps) -> None:
        registry = deps.registry
        for sub in self.commands:
            registry.add_command(sub)
        for listener in self.listeners:
            run = _bolt_listener(listener, deps)
            if listener.kind == "slash":
                registry.slack_commands.add(listener.ident)
                app.command(listener.ident)(run)
            elif listener.kind == "event":
                registry.slack_events.add(listener.ident)
                app.event(listener.ident)(run)
            else:
                assert listener.access is not None
                registry.add_interaction(listener.kind, listener.ident, listener.access, what=listener.what)
                if listener.kind == "view":
                    app.view(listener.ident)(run)
                elif listener.kind == "options":
                    app.options(listener.ident)(run)
                elif listener.family:
                    app.action({"action_id": re.compile(f"^{re.escape(listener.ident)}(:.*)?$")})(run)
                else:
                    app.action(listener.ident)(run)


def interaction(deps: Deps, body: dict[str, Any], ack: Ack, respond: Any, client: WebClient,
                context: Mapping[str, Any] | None = None) -> Interaction:
    """The context of one request, whatever its kind."""
    event = body.get("event") or {}
    user = body.get("user")
    user_id = str((user or {}).get("id") if isinstance(user, dict) else body.get("user_id") or event.get("user") or "")
    channel = body.get("channel")
    channel_id = str((channel or {}).get("id") if isinstance(channel, dict)
                     else body.get("channel_id") or event.get("channel") or "")
    return Interaction(deps=deps, body=body, user_id=user_id, channel_id=channel_id,
                       trigger_id=str(body.get("trigger_id") or ""), correlation_id=correlation_id(),
                       ack=_Acked(ack), respond=respond, client=client, context=context or {})


class _Acked:
    """Bolt's ack, remembering whether it was called (a refusal raised before the ack acks first)."""

    def __init__(self, ack: Ack) -> None:
        self._ack = ack
        self.called = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.called = True
        return self._ack(*args, **kwargs)


def _bolt_listener(listener: Listener, deps: Deps) -> Callable[..., None]:
    def run(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        ctx = interaction(deps, body, ack, context.respond, client, context)
        try:
            listener.handler(ctx)
        except UserError as exc:
            acked = ctx.ack
            if isinstance(acked, _Acked) and not acked.called:
                acked()
            ctx.refuse(exc)

    return run


__all__ = ["CommandRequest", "Interaction", "Listener", "Listeners", "interaction"]
