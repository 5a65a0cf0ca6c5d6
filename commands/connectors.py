"""`/mam connectors` (alias `/mam validate`): the connector card, acked in its checking state."""

from __future__ import annotations

import threading
import time
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.blocks import Block, Mrkdwn, actions, button, context, header, link, md, md_join, section
from bot.deps import Deps
from bot.errors import UsageError, new_correlation_id, run_guarded
from bot.registry import Subcommand, Verb
from bot.roles import Access, Role
from commands.approvals import ask_or_file, justification_modal
from commands.context import CommandRequest, Reply
from commands.ids import Action
from workflows.connector_change import ANDROID_MAM, KIND
from workflows.connectors import Check, ConnectorReport, Status, check_connectors, permissions_check

ICONS = {Status.OK: ":white_check_mark:", Status.WARN: ":warning:", Status.FAIL: ":x:",
         Status.INFO: ":information_source:"}
TITLE = "Defender for Endpoint connector"
ENABLE_CHANGE = {"flag": ANDROID_MAM, "value": True}


ENABLE_ANDROID = "enable-android"
RECHECK_AFTER = 2.0  # seconds: "Check again" within this long of a finished check is the same check
ENABLE_TITLE = "Turn on Android app protection evaluation in the Defender for Endpoint connector"


def register(app: App, deps: Deps) -> None:
    deps.registry.add_command(Subcommand(
        name="connectors", usage="/mam connectors",
        summary="Check the Defender-Intune connection and the Android app protection toggle.",
        access=Access.READ, handler=connectors_command, aliases=("validate",), group="Connectors",
        verbs=(Verb(ENABLE_ANDROID, f"/mam connectors {ENABLE_ANDROID} [why]",
                    "Ask to turn on Android app protection evaluation (an approver approves).", Access.ADMIN,
                    enable_command, what="ask to turn on Android app protection evaluation"),),
    ))
    deps.registry.add_interaction("action", Action.CONNECTORS_RECHECK, Access.READ, what="check the connector again")
    deps.registry.add_interaction("action", Action.CONNECTORS_ENABLE_ANDROID, Access.ADMIN,
                                  what="ask to turn on Android app protection evaluation")

    @app.action(Action.CONNECTORS_ENABLE_ANDROID)
    def enable_clicked(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        modal = justification_modal(KIND, ENABLE_CHANGE, ENABLE_TITLE, (body.get("channel") or {}).get("id", ""))
        deps.runner.submit(
            run_guarded, lambda: client.views_open(trigger_id=body["trigger_id"], view=modal),
            tell=lambda text: respond(text=text, response_type="ephemeral", replace_original=False),
            correlation_id=new_correlation_id(), what="open the justification modal")

    in_flight: set[str] = set()
    done_at: dict[str, float] = {}
    lock = threading.Lock()

    @app.action(Action.CONNECTORS_RECHECK)
    def recheck(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        # Impatient clicks on the same card add nothing but Graph calls: one check at a time, and
        # none within RECHECK_AFTER seconds of the last one (the card it filled is that fresh).
        card = f"{body.get('user', {}).get('id')}:{(body.get('container') or {}).get('message_ts')}"
        now = time.monotonic()
        with lock:
            if card in in_flight or now - done_at.get(card, -RECHECK_AFTER) < RECHECK_AFTER:
                return
            in_flight.add(card)
            if len(done_at) > 1000:  # cards nobody clicks any more
                for old in [c for c, at in done_at.items() if now - at >= RECHECK_AFTER]:
                    del done_at[old]

        def check() -> None:
            try:
                _check_and_fill(deps, respond, new_correlation_id(), viewer=str(body.get("user", {}).get("id") or ""))
            finally:
                with lock:
                    in_flight.discard(card)
                    done_at[card] = time.monotonic()

        deps.runner.submit(check)


def enable_command(req: CommandRequest) -> None:
    """`/mam connectors enable-android [why]`: the registry routes here (admins only)."""
    ask_or_file(req, KIND, ENABLE_CHANGE, ENABLE_TITLE, " ".join(req.args))


def connectors_command(req: CommandRequest) -> None:
    if req.args:
        raise UsageError(f"`/mam connectors` takes no arguments or `{ENABLE_ANDROID}` "
                         f"(got `{' '.join(req.args)}`).")
    # The ack carries the card in its checking state; one response_url update fills it in.
    req.ack(response_type="ephemeral", text=md("{}: checking…", TITLE), blocks=checking_card())
    req.deps.runner.submit(_check_and_fill, req.deps, req.respond, req.correlation_id, viewer=req.user_id)


def _check_and_fill(deps: Deps, respond: Reply, correlation_id: str, *, viewer: str) -> None:
    """The card is ephemeral, seen by `viewer` alone: it offers only what they may click."""
    can_request = Role.ADMIN in deps.roles.roles_of(viewer)

    def work() -> None:
        permissions = [permissions_check(deps.microsoft.check_permissions())]
        report = check_connectors(deps.microsoft.graph, now=deps.now(), cloud=deps.settings.mam_cloud.value,
                                  permissions=permissions)
        respond(replace_original=True, response_type="ephemeral", text=summary_text(report),
                blocks=connector_card(report, can_request=can_request))

    def tell(text: Mrkdwn) -> None:
        respond(replace_original=True, response_type="ephemeral", text=text,
                blocks=[header(TITLE), section(text), actions(button("Check again", Action.CONNECTORS_RECHECK))])

    run_guarded(work, tell=tell, correlation_id=correlation_id, what="connector check")


def checking_card() -> list[Block]:
    return [
        header(TITLE),
        section(Mrkdwn(":hourglass_flowing_sand: Checking the connector, its heartbeat and the Android "
                       "app protection toggle…")),
    ]


def summary_text(report: ConnectorReport) -> Mrkdwn:
    failing = [c.title for c in report.checks if c.status is Status.FAIL]
    if not failing:
        return md("{}: ready for Android app protection.", TITLE)
    return md("{}: needs attention ({}).", TITLE, ", ".join(failing))


def connector_card(report: ConnectorReport, *, can_request: bool = True) -> list[Block]:
    """`can_request`: the one person who sees the card is a mam-bot admin, so it may offer Enable."""
    verdict = Mrkdwn(":white_check_mark: *Ready*: Defender's device threat level reaches Android app protection."
                     if report.ready else
                     ":x: *Not ready*: fix the items marked :x: before relying on threat-level policies.")
    blocks: list[Block] = [header(TITLE), section(verdict)]
    blocks += [check_block(c) for c in report.checks]
    blocks.append(context(md("Checked {:%Y-%m-%d %H:%M} UTC. Read-only: nothing was changed.", report.checked_at)))
    buttons = [button("Check again", Action.CONNECTORS_RECHECK)]
    if report.android_app_toggle_off and can_request:
        buttons.insert(0, button("Enable (needs approval)", Action.CONNECTORS_ENABLE_ANDROID, style="primary"))
    elif report.android_app_toggle_off:
        blocks.append(context(md("A mam-bot admin can ask to turn it on: `/mam connectors {}`.", ENABLE_ANDROID)))
    blocks.append(actions(*buttons))
    return blocks


def check_block(check: Check) -> Block:
    lines = [md("{} *{}*: {}", Mrkdwn(ICONS[check.status]), check.title, check.detail)]
    if check.fix:
        lines.append(md("*Fix:* {}", check.fix))
    if check.link:
        lines.append(link(check.link, "Open the portal"))
    return section(md_join("\n", lines))
