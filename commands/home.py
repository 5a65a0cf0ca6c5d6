"""App Home: what the person may do here, kept in step with `/mam help`."""

from __future__ import annotations

from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.blocks import Block, divider, escape, fields_section, header, section
from bot.deps import Deps
from bot.errors import new_correlation_id, run_guarded
from bot.microsoft.errors import MicrosoftError
from bot.roles import Role
from commands.approvals import summary_line
from commands.connectors import summary_text
from commands.help import help_blocks
from workflows.connectors import check_connectors
from workflows.status import Status, gather


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
    if roles:  # the watch and the tenant are for admins and approvers, not for everyone who opens Home
        blocks = [*overview_blocks(deps, roles), divider(), *blocks]
    client.views_publish(user_id=user_id, view={"type": "home", "blocks": blocks[:100]})


def overview_blocks(deps: Deps, roles: frozenset[Role]) -> list[Block]:
    status = gather(deps)
    blocks: list[Block] = [header("mam-bot"), fields_section([
        f"*Active blocks*\n{status.active_blocks}",
        f"*Pending onboarding*\n{status.pending_onboarding}",
        f"*Open change requests*\n{status.open_requests}",
        f"*Last threat sweep*\n{_sweep_time(status)}",
    ])]
    try:
        report = check_connectors(deps.microsoft.graph, now=deps.now(), cloud=deps.settings.mam_cloud.value)
        icon, health = (":white_check_mark:" if report.ready else ":warning:"), summary_text(report)
    except MicrosoftError as exc:
        icon, health = ":warning:", f"Defender for Endpoint connector: could not read it ({exc.message})"
    blocks.append(section(f"{icon} {escape(health)} (`/mam connectors` for the details)"))
    if Role.APPROVER in roles:
        pending = [r for r in deps.changes.open_requests() if r.state == "pending"]
        lines = [summary_line(r) for r in pending[:10]] or ["Nothing waits for your approval."]
        blocks.append(section("*Waiting for approval*\n" + "\n".join(lines)))
    return blocks


def _sweep_time(status: Status) -> str:
    sweep = status.last_sweep
    if sweep is None or sweep.finished_at is None:
        return "none yet"
    return f"{sweep.finished_at:%Y-%m-%d %H:%M} UTC" + ("" if sweep.ok else " (failed)")
