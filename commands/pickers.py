"""External-select options for groups and policies, so modals work in directories of any size.

Options requests must be answered within Slack's 3 seconds with the options themselves, so these
are the one place a Graph read happens before the ack: one short call, with a small cache in front.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bot.microsoft.errors import MicrosoftError
from bot.mrkdwn import clean, cut_plain
from bot.roles import Access
from commands.context import Interaction
from commands.ids import Action
from commands.listen import Listeners

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

OPTION_TEXT_MAX = 75


def option(text: str, value: str) -> dict[str, Any]:
    """Option text is plain_text: not escaped (Slack does not parse it), but cleaned and cut with `…`."""
    return {"text": {"type": "plain_text", "text": cut_plain(clean(text), OPTION_TEXT_MAX) or " "}, "value": value}


listeners = Listeners()


@listeners.options(Action.PICK_GROUP, Access.ADMIN, what="search groups")
def groups(ctx: Interaction) -> None:
    query = ctx.value.strip()
    if len(query) < 2:
        ctx.ack(options=[])
        return
    try:
        found = ctx.deps.microsoft.within_ack().graph.find_groups(query, limit=50)
    except MicrosoftError as exc:
        log.warning("group search for the picker failed: %s", exc)
        ctx.ack(options=[option(f"Search failed: {exc.message}", "error")])
        return
    ctx.ack(options=[option(f"{g.displayName or g.id}{' (dynamic)' if g.is_dynamic else ''}", g.id) for g in found])


@listeners.options(Action.PICK_POLICY, Access.ADMIN, what="search policies")
def policies(ctx: Interaction) -> None:
    deps, query = ctx.deps, " ".join(ctx.value.split()).casefold()
    try:
        items = deps.policy_names.get()
        if items is None:  # cold: one short read, and warm the cache for the next keystroke
            items = [(p.id, p.displayName) for p in deps.microsoft.within_ack().graph.iter_android_policies()]
            deps.runner.submit(deps.policy_names.refresh)
    except MicrosoftError as exc:
        ctx.ack(options=[option(f"Reading policies failed: {exc.message}", "error")])
        return
    matches = [(pid, name) for pid, name in items if query in name.casefold()][:100]
    ctx.ack(options=[option(name, pid) for pid, name in matches])
