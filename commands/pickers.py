"""External-select options for groups and policies, so modals work in directories of any size.

Options requests must be answered within Slack's 3 seconds with the options themselves, so these
are the one place a Graph read happens before the ack: one short call, with a small cache in front.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App

from bot.blocks import clean, cut_plain
from bot.microsoft.errors import MicrosoftError
from bot.roles import Access
from commands.ids import Action

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)

OPTION_TEXT_MAX = 75


def option(text: str, value: str) -> dict[str, Any]:
    """Option text is plain_text: not escaped (Slack does not parse it), but cleaned and cut with `…`."""
    return {"text": {"type": "plain_text", "text": cut_plain(clean(text), OPTION_TEXT_MAX) or " "}, "value": value}


def register(app: App, deps: Deps) -> None:
    deps.registry.add_interaction("options", Action.PICK_GROUP, Access.ADMIN, what="search groups")
    deps.registry.add_interaction("options", Action.PICK_POLICY, Access.ADMIN, what="search policies")

    @app.options(Action.PICK_GROUP)
    def groups(ack: Ack, payload: dict[str, Any]) -> None:
        query = str(payload.get("value", "")).strip()
        if len(query) < 2:
            ack(options=[])
            return
        try:
            found = deps.microsoft.within_ack().graph.find_groups(query, limit=50)
        except MicrosoftError as exc:
            log.warning("group search for the picker failed: %s", exc)
            ack(options=[option(f"Search failed: {exc.message}", "error")])
            return
        ack(options=[option(f"{g.displayName or g.id}{' (dynamic)' if g.is_dynamic else ''}", g.id)
                     for g in found])

    @app.options(Action.PICK_POLICY)
    def policies(ack: Ack, payload: dict[str, Any]) -> None:
        query = " ".join(str(payload.get("value", "")).split()).casefold()
        try:
            items = deps.policy_names.get()
            if items is None:  # cold: one short read, and warm the cache for the next keystroke
                items = [(p.id, p.displayName) for p in deps.microsoft.within_ack().graph.iter_android_policies()]
                deps.runner.submit(deps.policy_names.refresh)
        except MicrosoftError as exc:
            ack(options=[option(f"Reading policies failed: {exc.message}", "error")])
            return
        matches = [(pid, name) for pid, name in items if query in name.casefold()][:100]
        ack(options=[option(name, pid) for pid, name in matches])
