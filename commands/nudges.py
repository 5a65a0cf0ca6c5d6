"""Onboarding nudges by DM: Microsoft's steps to get Defender onto the device, and the recipient's buttons.

Only the person a nudge was sent to may press its buttons: each value names their Slack user id
(`NudgeRef.to`), which the authorisation middleware compares with whoever clicked (Access.DM_RECIPIENT).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum

from bot.deps import Deps
from bot.errors import UserError
from bot.mrkdwn import Mrkdwn, link, md, md_join
from bot.roles import Access
from bot.store.watch import OnboardingCase
from commands.blocks import Block, actions, button, context, section
from commands.context import Interaction
from commands.listen import Listeners
from commands.payloads import NudgeRef
from workflows.onboarding import (
    NotTheRecipient,
    WatchSettings,
    mark_done,
    stop_nudges,
)
from workflows.policies import app_label

log = logging.getLogger(__name__)

COMPANY_PORTAL = "https://play.google.com/store/apps/details?id=com.microsoft.windowsintune.companyportal"
DEFENDER = "https://play.google.com/store/apps/details?id=com.microsoft.scmx"
EXAMPLE_APP = "com.microsoft.office.outlook"


class NudgeAction(StrEnum):
    DONE = "nudge_done"
    STOP = "nudge_stop"


# ---- the messages ---------------------------------------------------------------------------------


def steps(app: str) -> list[Mrkdwn]:
    """Microsoft's end-user steps for app protection with Defender on Android, in their order."""
    return [
        md("Make sure *Intune Company Portal* is installed: {}. You don't have to open it; the work apps use it in "
           "the background.", link(COMPANY_PORTAL, "get it from Google Play")),
        md("Open *{}* and sign in with your work account.", app),
        md("Tap *Continue*."),
        md("Tap *Download* and install *Microsoft Defender* from Google Play ({}).",
           link(DEFENDER, "Microsoft Defender")),
        md("Come back to *{}* and tap *Continue* &gt; *Launch*.", app),
        md("Finish Defender's onboarding: sign in and allow what it asks for."),
        md("Tap *Continue* to sign in to *{}*.", app),
    ]


def first_app(case: OnboardingCase) -> str:
    apps = case.app_list
    preferred = EXAMPLE_APP if EXAMPLE_APP in apps or not apps else sorted(apps)[0]
    return app_label(preferred)


def nudge_text(case: OnboardingCase, number: int) -> Mrkdwn:
    if number > 1:
        return Mrkdwn("Reminder: set up Microsoft Defender to keep using your work apps on Android")
    return Mrkdwn("Set up Microsoft Defender to use your work apps on Android")


def nudge_blocks(case: OnboardingCase, slack_user: str, number: int, of: int, *,
                 status: Mrkdwn | None = None) -> list[Block]:
    """The DM: why, the steps, and Done / Stop buttons (left off once one was pressed: `status`)."""
    first = (case.user_name or "").split(" ")[0]
    hello = md("Hi {}, ", first) if first else Mrkdwn("Hi, ")
    apps = ", ".join(app_label(p) for p in case.app_list)
    devices = ", ".join(d.get("name") or "your Android device" for d in case.device_list)
    if case.kind == "unregistered":
        why = md("{}your organisation protects work apps such as Outlook and Teams on Android with Microsoft "
                 "Defender. When you start using them on an Android phone or tablet, set Defender up like this:", hello)
    else:
        why = md("{}your organisation protects *{}* on *{}* with Microsoft Defender. Until Defender is set up there, "
                 "the app stops at a setup screen. It takes about five minutes:",
                 hello, apps or "your work apps", devices or "your Android device")
    numbered = md_join("\n", (md("{}. {}", i, text) for i, text in enumerate(steps(first_app(case)), 1)))
    blocks: list[Block] = [section(why), section(numbered)]
    note = md("Once Defender reports your device (usually within a few hours) I'll stop reminding you.{}",
              md(" Reminder {} of {}.", number, of) if number > 1 else "")
    blocks.append(context(note))
    if status:
        blocks.append(section(status))
    else:
        value = NudgeRef(to=slack_user, user=case.user_id, round=case.round, n=number).encode()
        blocks.append(actions(button("Done", NudgeAction.DONE, value, style="primary"),
                              button("Stop reminding me", NudgeAction.STOP, value)))
    return blocks


def thanks_text(case: OnboardingCase) -> Mrkdwn:
    devices = ", ".join(d.get("name") or "" for d in case.device_list if d.get("name"))
    return md(":tada: Thank you! Microsoft Defender now reports your device{}, so your work apps will let you in. "
              "Nothing more to do.", md(" on {}", devices) if devices else "")


DONE_STATUS = Mrkdwn(":white_check_mark: Thanks! Defender usually reports a device within a few hours; I'll hold "
                     "the reminders meanwhile and say thanks when it shows up.")
STOP_STATUS = Mrkdwn(":no_bell: OK, I won't remind you again. Your organisation still asks for Microsoft Defender "
                     "on this device: `/mam me` shows what that means for your work apps right now.")


# ---- the buttons ------------------------------------------------------------------------------------


listeners = Listeners()


def _pressed(ctx: Interaction, change: Callable[[Deps, str, str], OnboardingCase | None], status: Mrkdwn,
             what: str) -> None:
    ctx.ack()
    clicked, clicker, deps = ctx.data(NudgeRef), ctx.user_id, ctx.deps
    settings = WatchSettings.from_settings(deps.settings)

    def work() -> None:
        try:  # the clicker is checked against the reminder's own record before anything changes
            case = change(deps, clicked.user, clicker)
        except NotTheRecipient:
            deps.audit.record(actor=clicker, action=f"onboarding nudge: {what}", outcome="refused",
                              target=f"user {clicked.user}", detail="not the person the reminder was sent to")
            raise UserError("Only the person this message was sent to can use these buttons.") from None
        if case is None:
            raise UserError("I have no record of this reminder any more: nothing to do.")
        key = clicked.message_key
        if deps.outbox.get(key) is not None:  # the DM loses its buttons and says what happens next
            deps.outbox.update(f"{key}:{what}", of=key, text=nudge_text(case, clicked.n),
                               blocks=nudge_blocks(case, clicker, clicked.n, settings.max_nudges, status=status))
        deps.audit.record(actor=clicker, action=f"onboarding nudge: {what}", outcome="ok",
                          target=f"user {clicked.user}")

    ctx.later(work, f"onboarding {what}", tell=ctx.dm)


@listeners.action(NudgeAction.DONE, Access.DM_RECIPIENT, what="answer this reminder")
def done(ctx: Interaction) -> None:
    _pressed(ctx, lambda deps, user, clicker: mark_done(deps.store, user, deps.now(),
                                                        WatchSettings.from_settings(deps.settings),
                                                        recipient=clicker), DONE_STATUS, "done")


@listeners.action(NudgeAction.STOP, Access.DM_RECIPIENT, what="stop these reminders")
def stop(ctx: Interaction) -> None:
    _pressed(ctx, lambda deps, user, clicker: stop_nudges(deps.store, user, deps.now(), recipient=clicker),
             STOP_STATUS, "stop")
