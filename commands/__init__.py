"""Slack surfaces. Each module exposes `register(app, deps)`; `register_all` wires them up."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.deps import Deps


def register_all(app: App, deps: Deps) -> None:
    from commands import (
        alerts,
        approvals,
        assignments,
        connectors,
        help,
        home,
        nudges,
        pickers,
        policies,
        policy_new,
        router,
        status,
    )

    # The /mam listener goes first: Bolt tries listeners in order on every request, and nearly every
    # request is a /mam command. It finds subcommands in the registry at request time, so the modules
    # registered after it are there when it needs them.
    router.register(app, deps)
    for module in (help, connectors, policies, policy_new, assignments, pickers, approvals, alerts, nudges, status,
                   home):
        module.register(app, deps)
