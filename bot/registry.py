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
class Subcommand:
    name: str
    usage: str
    summary: str
    access: Access
    handler: Callable[[CommandRequest], None]
    aliases: tuple[str, ...] = ()
    group: str = "General"


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

    def visible_to(self, roles: frozenset[Role]) -> list[Subcommand]:
        return [s for s in self.unique() if allowed(s.access, roles)]

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
