"""App Home: what the person may do here, kept in step with `/mam help`."""

from __future__ import annotations

from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.deps import Deps
from bot.errors import new_correlation_id, run_guarded
from commands.help import help_blocks


def register(app: App, deps: Deps) -> None:
    deps.registry.slack_events.add("app_home_opened")

    @app.event("app_home_opened")
    def home_opened(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        user_id = event.get("user", "")
        deps.runner.submit(
            run_guarded, lambda: publish_home(deps, client, user_id),
            tell=lambda _text: None, correlation_id=new_correlation_id(), what="app home",
        )


def publish_home(deps: Deps, client: WebClient, user_id: str) -> None:
    roles = deps.roles.roles_of(user_id)
    blocks = help_blocks(deps.registry, roles, has_admins=deps.roles.has_admins)
    client.views_publish(user_id=user_id, view={"type": "home", "blocks": blocks})
