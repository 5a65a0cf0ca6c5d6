"""Slack surfaces. Each module declares its commands and listeners in a module-level `listeners`
(`commands.listen.Listeners`); `register_all` installs them into an app."""

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
        drift,
        help,
        home,
        me,
        nudges,
        pickers,
        policies,
        policy_edit,
        policy_new,
        router,
        status,
        sweep,
    )

    # The /mam listener goes first: Bolt tries listeners in order on every request, and nearly every
    # request is a /mam command. It finds subcommands in the registry at request time, so the modules
    # registered after it are there when it needs them.
    for module in (router, help, me, connectors, policies, policy_new, policy_edit, assignments, pickers, approvals,
                   alerts, drift, nudges, status, sweep, home):
        module.listeners.install(app, deps)
