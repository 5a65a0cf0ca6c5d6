"""App Home: what the person may do here, kept in step with `/mam help`."""

from __future__ import annotations

from slack_sdk import WebClient

from bot import slack_limits
from bot.deps import Deps
from bot.microsoft.errors import MicrosoftError
from bot.mrkdwn import Mrkdwn, md
from bot.roles import Role
from bot.store.index import OFF
from commands.alerts import enforcement_off_blocks
from commands.approvals import listed_section, summary_line
from commands.blocks import Block, context, divider, fields_section, header, section
from commands.connectors import summary_text
from commands.context import Interaction
from commands.help import help_blocks
from commands.listen import Listeners
from workflows.changes import State
from workflows.connectors import check_connectors
from workflows.status import Status, gather

listeners = Listeners()


@listeners.event("app_home_opened")
def home_opened(ctx: Interaction) -> None:
    ctx.ack()
    if ctx.event.get("tab", "home") != "home":
        return
    # a failure is logged with its reference; the person who opened Home is not sent a DM about it
    ctx.later(lambda: publish_home(ctx.deps, ctx.client, ctx.user_id), "app home", tell=lambda _text: None)


def publish_home(deps: Deps, client: WebClient, user_id: str) -> None:
    roles = deps.roles.roles_of(user_id)
    blocks = help_blocks(deps.registry, roles, has_admins=deps.roles.has_admins)
    if roles:  # the watch and the tenant are for admins and approvers, not for everyone who opens Home
        blocks = [*overview_blocks(deps, roles), divider(), *blocks]
    if len(blocks) > slack_limits.VIEW_BLOCKS:  # a Home tab holds 100 blocks
        blocks = [*blocks[:slack_limits.VIEW_BLOCKS - 1],
                  context(Mrkdwn("…and more: `/mam help` lists every command you can run."))]
    client.views_publish(user_id=user_id, view={"type": "home", "blocks": blocks})


def overview_blocks(deps: Deps, roles: frozenset[Role]) -> list[Block]:
    status = gather(deps)
    off = status.enforcement.state == OFF
    unlicensed = md(" ({} can't be protected: no licence)", status.unlicensed) if status.unlicensed else ""
    blocks: list[Block] = [header("mam-bot"), *(enforcement_off_blocks(status.enforcement) if off else []),
                           fields_section([
        md("*Active blocks*\n{}", "none enforced (enforcement off)" if off else status.active_blocks),
        md("*Pending onboarding*\n{}{}", status.pending_onboarding, unlicensed),
        md("*Open change requests*\n{}", status.open_requests),
        md("*Last threat sweep*\n{}", _sweep_time(status)),
    ])]
    try:
        report = check_connectors(deps.microsoft.graph, now=deps.now(), cloud=deps.settings.mam_cloud.value)
        icon, health = (":white_check_mark:" if report.ready else ":warning:"), summary_text(report)
    except MicrosoftError as exc:
        icon, health = ":warning:", md("Defender for Endpoint connector: could not read it ({})", exc.message)
    blocks.append(section(md("{} {} (`/mam connectors` for the details)", Mrkdwn(icon), health)))
    if Role.APPROVER in roles:
        pending = [r for r in deps.changes.open_requests() if r.state == State.PENDING][:HOME_PENDING]
        if pending:
            blocks.append(listed_section(md("*Waiting for approval*"), [summary_line(r) for r in pending],
                                         deps.changes.count_open(State.PENDING), WHERE_PENDING))
        else:
            blocks.append(section(Mrkdwn("*Waiting for approval*\nNothing waits for your approval.")))
    return blocks


HOME_PENDING = 10
WHERE_PENDING = Mrkdwn("`/mam requests` lists the open requests, and each has its approval card")


def _sweep_time(status: Status) -> str:
    sweep = status.last_sweep
    if sweep is None or sweep.finished_at is None:
        return "none yet"
    return f"{sweep.finished_at:%Y-%m-%d %H:%M} UTC" + ("" if sweep.ok else " (failed)")
