"""The table of what every command, button, modal and options menu requires.

Command modules register here; the one authorisation middleware reads it. Anything not in the
table is refused, so a new button cannot ship without saying who may press it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.roles import Access, Role, allowed

if TYPE_CHECKING:
    from commands.context import CommandRequest


@dataclass(frozen=True)
class Verb:
    """A second word that needs a different role, e.g. `/mam connectors enable-android` (admins)."""

    name: str
    usage: str
    summary: str
    access: Access


@dataclass(frozen=True)
class Subcommand:
    name: str
    usage: str
    summary: str
    access: Access
    handler: Callable[[CommandRequest], None]
    aliases: tuple[str, ...] = ()
    group: str = "General"
    verbs: tuple[Verb, ...] = ()

    def access_for(self, args: list[str]) -> tuple[str, Access]:
        """The name and access of what `args` asks for: a verb's own, else the subcommand's."""
        if args:
            for verb in self.verbs:
                if verb.name == args[0].lower():
                    return f"/mam {self.name} {verb.name}", verb.access
        return f"/mam {self.name}", self.access

    def entries(self) -> list[tuple[str, str, Access]]:
        """(usage, summary, access) for help: the subcommand and each verb."""
        return [(self.usage, self.summary, self.access), *((v.usage, v.summary, v.access) for v in self.verbs)]


@dataclass
class Registry:
    commands: dict[str, Subcommand] = field(default_factory=dict)
    interactions: dict[tuple[str, str], Access] = field(default_factory=dict)
    # what the Bolt app listens to, held against app_manifest.yaml by a test
    slack_commands: set[str] = field(default_factory=set)
    slack_events: set[str] = field(default_factory=set)

    def add_command(self, sub: Subcommand) -> None:
        for name in (sub.name, *sub.aliases):
            if name in self.commands:
                raise ValueError(f"/mam {name} is registered twice")
            self.commands[name] = sub

    def add_interaction(self, kind: str, ident: str, access: Access) -> None:
        """kind: 'action' (block_actions), 'view' (view callback_id) or 'options' (block_suggestion)."""
        self.interactions[(kind, ident)] = access

    def lookup(self, name: str) -> Subcommand | None:
        return self.commands.get(name.lower())

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
        return difflib.get_close_matches(name.lower(), list(self.commands), n=n, cutoff=0.5)

    def access_for_interaction(self, body: dict[str, Any]) -> tuple[str, Access | None]:
        """What the incoming interaction requires, and a name for it (for messages and the audit)."""
        kind = body.get("type")
        if kind == "block_actions":
            action_id = (body.get("actions") or [{}])[0].get("action_id", "")
            return action_id, self._match("action", action_id)
        if kind in ("view_submission", "view_closed"):
            callback_id = (body.get("view") or {}).get("callback_id", "")
            return callback_id, self._match("view", callback_id)
        if kind == "block_suggestion":
            action_id = body.get("action_id", "")
            return action_id, self._match("options", action_id)
        return str(kind), None

    def _match(self, kind: str, ident: str) -> Access | None:
        if (kind, ident) in self.interactions:
            return self.interactions[(kind, ident)]
        # ids may carry a suffix after ':' (e.g. "approve:42") so one entry covers the family
        base = ident.split(":", 1)[0]
        return self.interactions.get((kind, base))
