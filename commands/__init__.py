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

    for module in (help, connectors, policies, policy_new, assignments, pickers, approvals, alerts, nudges, status,
                   home):
        module.register(app, deps)
    router.register(app, deps)  # last: the /mam listener dispatches to what the others registered
