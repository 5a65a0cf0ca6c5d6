"""`/mam connectors` (alias `/mam validate`): the connector card, acked in its checking state."""

from __future__ import annotations

import threading
import time

from bot.errors import UsageError, run_guarded
from bot.mrkdwn import Mrkdwn, link, md, md_join
from bot.registry import Verb
from bot.roles import Access, Role
from commands.approvals import ask_or_file, justification_modal
from commands.blocks import Block, actions, button, context, header, section
from commands.context import CommandRequest, Interaction
from commands.ids import Action
from commands.listen import Listeners
from workflows.connector_change import ANDROID_MAM, KIND
from workflows.connectors import Check, ConnectorReport, Status, check_connectors, permissions_check

ICONS = {Status.OK: ":white_check_mark:", Status.WARN: ":warning:", Status.FAIL: ":x:",
         Status.INFO: ":information_source:"}
TITLE = "Defender for Endpoint connector"
ENABLE_CHANGE = {"flag": ANDROID_MAM, "value": True}


ENABLE_ANDROID = "enable-android"
RECHECK_AFTER = 2.0  # seconds: "Check again" within this long of a finished check is the same check
ENABLE_TITLE = "Turn on Android app protection evaluation in the Defender for Endpoint connector"


listeners = Listeners()


@listeners.action(Action.CONNECTORS_ENABLE_ANDROID, Access.ADMIN,
                  what="ask to turn on Android app protection evaluation")
def enable_clicked(ctx: Interaction) -> None:
    ctx.ack()
    ctx.open_form(justification_modal(KIND, ENABLE_CHANGE, ENABLE_TITLE, ctx.channel_id),
                  "open the justification modal")


class _RecheckGate:
    """Impatient clicks on the same card add nothing but Graph calls: one check at a time per card, and none
    within RECHECK_AFTER seconds of the last one (the card it filled is that fresh). A card is keyed by the
    app's collaborators too, so two apps in one process (tests) never share one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: set[tuple[int, str, str]] = set()
        self._done_at: dict[tuple[int, str, str], float] = {}

    def enter(self, card: tuple[int, str, str]) -> bool:
        now = time.monotonic()
        with self._lock:
            if card in self._in_flight or now - self._done_at.get(card, -RECHECK_AFTER) < RECHECK_AFTER:
                return False
            self._in_flight.add(card)
            if len(self._done_at) > 1000:  # cards nobody clicks any more
                for old in [c for c, at in self._done_at.items() if now - at >= RECHECK_AFTER]:
                    del self._done_at[old]
            return True

    def leave(self, card: tuple[int, str, str]) -> None:
        with self._lock:
            self._in_flight.discard(card)
            self._done_at[card] = time.monotonic()


_rechecks = _RecheckGate()


@listeners.action(Action.CONNECTORS_RECHECK, Access.READ, what="check the connector again")
def recheck(ctx: Interaction) -> None:
    ctx.ack()
    card = (id(ctx.deps), ctx.user_id, str((ctx.body.get("container") or {}).get("message_ts")))
    if not _rechecks.enter(card):
        return

    def check() -> None:
        try:
            _check_and_fill(ctx)
        finally:
            _rechecks.leave(card)

    ctx.deps.runner.submit(check)


def enable_command(req: CommandRequest) -> None:
    """`/mam connectors enable-android [why]`: the registry routes here (admins only)."""
    ask_or_file(req, KIND, ENABLE_CHANGE, ENABLE_TITLE, " ".join(req.args))


@listeners.command("connectors", "/mam connectors",
                   "Check the Defender-Intune connection and the Android app protection toggle.", Access.READ,
                   aliases=("validate",), group="Connectors",
                   verbs=(Verb(ENABLE_ANDROID, f"/mam connectors {ENABLE_ANDROID} [why]",
                               "Ask to turn on Android app protection evaluation (an approver approves).",
                               Access.ADMIN, enable_command,
                               what="ask to turn on Android app protection evaluation"),))
def connectors_command(req: CommandRequest) -> None:
    if req.args:
        raise UsageError(f"`/mam connectors` takes no arguments or `{ENABLE_ANDROID}` "
                         f"(got `{' '.join(req.args)}`).")
    # The ack carries the card in its checking state; one response_url update fills it in.
    req.ack(response_type="ephemeral", text=md("{}: checking…", TITLE), blocks=checking_card())
    req.deps.runner.submit(_check_and_fill, req)


def _check_and_fill(ctx: Interaction) -> None:
    """The card is ephemeral, seen by the clicker alone: it offers only what they may click."""
    deps = ctx.deps
    can_request = Role.ADMIN in deps.roles.roles_of(ctx.user_id)

    def work() -> None:
        permissions = [permissions_check(deps.microsoft.check_permissions())]
        report = check_connectors(deps.microsoft.graph, now=deps.now(), cloud=deps.settings.mam_cloud.value,
                                  permissions=permissions)
        ctx.answer(summary_text(report), connector_card(report, can_request=can_request), replace=True)

    def tell(text: Mrkdwn) -> None:
        ctx.answer(text, [header(TITLE), section(text), actions(button("Check again", Action.CONNECTORS_RECHECK))],
                   replace=True)

    run_guarded(work, tell=tell, correlation_id=ctx.correlation_id, what="connector check")


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
