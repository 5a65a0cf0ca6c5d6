"""The table of what every command, button, modal and options menu requires.

Command modules register here; the one authorisation middleware reads it. Anything not in the
table is refused, so a new button cannot ship without saying who may press it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.command_text import CommandText, command_name
from bot.roles import Access, Role, allowed

# A subcommand's or verb's handler. It is called with a commands.context.CommandRequest; the registry sits
# below commands/ (lint-imports) and never looks inside the request, so it names no type from there.
Handler = Callable[[Any], None]

COMMAND_KEY = "mam_command"  # in a request's context: the parsed `/mam` text (bot.command_text.CommandText)
ROUTE_KEY = "mam_route"  # and its Route, or None when no subcommand has the name


@dataclass(frozen=True)
class Verb:
    """A second word with its own handler and role, e.g. `/mam connectors enable-android` (admins).

    The verb's handler receives the words after the verb; what it requires is checked before it runs.
    """

    name: str
    usage: str
    summary: str
    access: Access
    handler: Handler
    what: str = ""  # for refusals: "ask to turn on …" (the usage is named when empty)


@dataclass(frozen=True)
class Route:
    """Where a parsed `/mam` goes: what it requires and the handler that runs it.

    The authorization middleware and the router both act on this one value (the middleware finds it
    and puts it in the request's context; the router runs it), so the role checked is always the
    role of the handler that runs.
    """

    name: str  # "/mam connectors enable-android"
    what: str  # for refusals, in words: "run `/mam assign`"
    access: Access
    handler: Handler
    args: list[str]
    usage: str


@dataclass(frozen=True)
class Subcommand:
    name: str
    usage: str
    summary: str
    access: Access
    handler: Handler
    aliases: tuple[str, ...] = ()
    group: str = "General"
    verbs: tuple[Verb, ...] = ()

    def route(self, args: Sequence[str]) -> Route:
        """A verb's own route when the first argument names one (compared like the subcommand), else the
        subcommand's."""
        if args:
            asked = command_name(args[0])
            for verb in self.verbs:
                if verb.name == asked:
                    name = f"/mam {self.name} {verb.name}"
                    return Route(name, verb.what or f"run `{name}`", verb.access, verb.handler, list(args[1:]),
                                 verb.usage)
        name = f"/mam {self.name}"
        return Route(name, f"run `{name}`", self.access, self.handler, list(args), self.usage)

    def entries(self) -> list[tuple[str, str, Access]]:
        """(usage, summary, access) for help: the subcommand and each verb."""
        return [(self.usage, self.summary, self.access), *((v.usage, v.summary, v.access) for v in self.verbs)]


@dataclass
class Registry:
    commands: dict[str, Subcommand] = field(default_factory=dict)
    interactions: dict[tuple[str, str], tuple[Access, str]] = field(default_factory=dict)
    # what the Bolt app listens to, held against app_manifest.yaml by a test
    slack_commands: set[str] = field(default_factory=set)
    slack_events: set[str] = field(default_factory=set)

    def add_command(self, sub: Subcommand) -> None:
        for name in (sub.name, *sub.aliases):
            if name in self.commands:
                raise ValueError(f"/mam {name} is registered twice")
            self.commands[name] = sub

    def add_interaction(self, kind: str, ident: str, access: Access, *, what: str) -> None:
        """kind: 'action' (block_actions), 'view' (view callback_id) or 'options' (block_suggestion).
        `what` says in words what it does, for refusals: "approve change requests"."""
        self.interactions[(kind, ident)] = (access, what)

    def lookup(self, name: str) -> Subcommand | None:
        return self.commands.get(command_name(name))

    def route(self, command: CommandText) -> Route | None:
        """The route of a parsed `/mam`, or None for a name no subcommand has (the router answers it)."""
        if command.error:
            return None
        sub = self.lookup(command.name)
        return sub.route(command.args) if sub is not None else None

    def unique(self) -> list[Subcommand]:
        seen: dict[str, Subcommand] = {}
        for sub in self.commands.values():
            seen.setdefault(sub.name, sub)
        return list(seen.values())

    def visible_to(self, roles: frozenset[Role]) -> list[tuple[Subcommand, str, str]]:
        """(subcommand, usage, summary) of everything these roles may run."""
        return [(s, usage, summary) for s in self.unique() for usage, summary, access in s.entries()
                if allowed(access, roles)]

    def entry_count(self) -> int:
        return sum(len(s.entries()) for s in self.unique())

    def closest(self, name: str, n: int = 3) -> list[str]:
        return difflib.get_close_matches(command_name(name), list(self.commands), n=n, cutoff=0.5)

    def access_for_interaction(self, body: dict[str, Any]) -> tuple[str, Access | None, str]:
        """What the incoming interaction requires: its id (for the audit), its access (None: not
        registered, refused) and what it does in words (for refusals)."""
        kind = body.get("type")
        if kind == "block_actions":
            ident, table = str((body.get("actions") or [{}])[0].get("action_id", "")), "action"
        elif kind in ("view_submission", "view_closed"):
            ident, table = str((body.get("view") or {}).get("callback_id", "")), "view"
        elif kind == "block_suggestion":
            ident, table = str(body.get("action_id", "")), "options"
        else:
            return str(kind), None, "use this"
        found = self._match(table, ident)
        if found is None:
            return ident, None, "use this"
        return ident, found[0], found[1]

    def _match(self, kind: str, ident: str) -> tuple[Access, str] | None:
        if (kind, ident) in self.interactions:
            return self.interactions[(kind, ident)]
        # ids may carry a suffix after ':' (e.g. "approve:42") so one entry covers the family
        base = ident.split(":", 1)[0]
        return self.interactions.get((kind, base))
