"""`/mam me`: anyone's own view of their devices and work apps, and the "Send me the steps again" button.

No role is needed, and nobody sees anyone else: the command takes no arguments, and the person is
whoever Slack says clicked or typed it. Their Slack email (users.info; the app has users:read.email)
must name exactly one Entra user (`workflows.me.identify`), or the answer says why the bot can't tell
who they are. What it shows comes from the database (`workflows.me.my_view`), never from Defender live.

The button DMs the steps to set up Defender to whoever pressed it, and only to them; one DM per card
and person (its outbox key carries the card's nonce), so a double click sends one message.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from enum import StrEnum
from typing import ClassVar

from pydantic import Field
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.errors import UsageError, UserError, new_correlation_id
from bot.mrkdwn import Mrkdwn, clean, cut_plain, md, md_join
from bot.roles import Access
from bot.text import count
from commands.alerts import duration_text, level_text, slack_date
from commands.blocks import Block, actions, button, context, divider, header, section
from commands.context import CommandRequest, Interaction
from commands.listen import Listeners
from commands.nudges import EXAMPLE_APP, steps
from commands.payloads import Payload
from workflows.entra_users import EntraUsers
from workflows.me import (
    WARN,
    WIPE,
    DeviceState,
    Finding,
    MyDevice,
    MyView,
    NotIdentified,
    Why,
    identify,
    my_view,
)
from workflows.policies import app_label

log = logging.getLogger(__name__)

DEVICE_LIMIT = 15  # devices on the card (one block each); the rest are counted
APP_LIMIT = 10  # app names per device
FINDING_LIMIT = 3  # policies explained per device
NAME_MAX = 80  # a device, model or person's name as shown
POLICY_MAX = 100
APP_MAX = 200  # a package id carried by the button


class MeAction(StrEnum):
    SEND_STEPS = "me_send_steps"


class StepsRef(Payload):
    """"Send me the steps again": which card it was on (so one DM per card and person) and the app the steps
    name as their example. It names nobody: the steps go to whoever pressed it."""

    unreadable: ClassVar[str] = "This button comes from a message I can't read any more; run `/mam me` again."
    card: str = Field(pattern=r"^[0-9a-f]{1,32}$")
    app: str = Field(default=EXAMPLE_APP, min_length=1, max_length=APP_MAX)


ICONS = {
    DeviceState.BLOCKED: ":no_entry:",
    DeviceState.WIPED: ":warning:",
    DeviceState.WARNED: ":large_yellow_circle:",
    DeviceState.AT_RISK: ":large_yellow_circle:",
    DeviceState.WAITING: ":hourglass_flowing_sand:",
    DeviceState.UNPROTECTED: ":no_entry_sign:",
    DeviceState.UNMATCHED: ":grey_question:",
    DeviceState.UNCHECKED: ":white_circle:",
    DeviceState.OK: ":white_check_mark:",
}
SUMMARY_WORDS = {
    DeviceState.BLOCKED: "blocked",
    DeviceState.WIPED: "losing work data",
    DeviceState.WARNED: "warned",
    DeviceState.AT_RISK: "at risk",
    DeviceState.WAITING: "waiting for Defender",
    DeviceState.UNPROTECTED: "can't be protected",
    DeviceState.UNMATCHED: "not matched with Defender",
    DeviceState.UNCHECKED: "not checked yet",
    DeviceState.OK: "OK",
}
ASK_ADMIN = "Ask an admin for help: your Slack email address must be the same as your work account's."
NOT_IDENTIFIED = {
    Why.NO_EMAIL: ":grey_question: I can't tell who you are: Slack doesn't show me an email address for you (guest "
                  "accounts have none I can read, or the bot can't read email addresses). " + ASK_ADMIN,
    Why.NOT_AN_EMAIL: ":grey_question: I can't tell who you are: the email Slack shows for you ({}) isn't a mail "
                      "address I can look up. " + ASK_ADMIN,
    Why.NO_MATCH: ":grey_question: I can't tell who you are: no work account in your organisation's directory has "
                  "the email address Slack shows for you ({}). " + ASK_ADMIN,
    Why.AMBIGUOUS: ":grey_question: I can't tell who you are: more than one work account in your organisation's "
                   "directory has the email address Slack shows for you ({}), so I can't tell which is yours. "
                   + ASK_ADMIN,
    Why.UNAVAILABLE: ":hourglass: I can't check who you are right now: Microsoft's directory didn't answer. Try "
                     "`/mam me` again in a few minutes.",
}
WHAT_TO_DO = Mrkdwn("*What to do:* open the *Microsoft Defender* app on this device and follow its recommendations, "
                    "then open the app again. Defender usually tells your organisation about the change within a "
                    "few hours.")
WHAT_TO_DO_ANYWAY = Mrkdwn("*What to do:* open the *Microsoft Defender* app on this device and follow its "
                           "recommendations anyway, so your work apps keep working when Intune checks again.")
NOT_ENFORCED = Mrkdwn(":information_source: Intune is not currently enforcing the threat-level check on Android, so "
                      "your apps are not being blocked for it.")
FOOTER = Mrkdwn("Worked out by mam-bot from Intune's list of your apps and Defender's last rating of your devices "
                "(it doesn't ask Defender live). Only you can see this.")


# ---- small pure builders -------------------------------------------------------------------------------


def shown(text: str, limit: int = NAME_MAX) -> str:
    """Outside text as the card shows it: cleaned and cut (still to be escaped by `md`)."""
    return cut_plain(clean(text).strip(), limit)


def names(items: tuple[str, ...] | list[str], limit: int = APP_LIMIT) -> str:
    """`Outlook`, `Outlook and Teams`, `Outlook, Teams and Word`, then `and 3 more`."""
    listed = [shown(i, 40) for i in items[:limit]]
    more = len(items) - len(listed)
    if more > 0:
        return ", ".join(listed) + f" and {more} more"
    if len(listed) < 2:
        return "".join(listed)
    return ", ".join(listed[:-1]) + " and " + listed[-1]


def example_app(packages: tuple[str, ...] | list[str]) -> str:
    """The app the steps name (as the onboarding nudge picks it): Outlook when they have it or nothing is known."""
    known = [p for p in packages if p and len(p) <= APP_MAX]
    return EXAMPLE_APP if EXAMPLE_APP in known or not known else sorted(known)[0]


def steps_text(package: str) -> Mrkdwn:
    """The onboarding nudge's steps (`commands.nudges.steps`), numbered."""
    return md_join("\n", (md("{}. {}", i, text) for i, text in enumerate(steps(app_label(package)), 1)))


def finding_text(finding: Finding, *, enforced: bool) -> Mrkdwn:
    apps = names(list(finding.apps)) or "your work apps"
    one = len(finding.apps) == 1
    why = md("Defender rates this device *{}* and the policy *{}* allows at most *{}*", level_text(finding.level),
             shown(finding.policy, POLICY_MAX), level_text(finding.maximum))
    since = md(" (since {})", slack_date(finding.since)) if finding.since else Mrkdwn("")
    if not enforced:
        return md("*Not blocked for now:* {}, but Intune isn't enforcing that check on Android at the moment.", why)
    if finding.action == WIPE:
        return md("*Work data removed:* the work data in {} is removed from this device at the app's next check-in, "
                  "because {}{}.", apps, why, since)
    if finding.action == WARN:
        return md("*Warning:* {} warn{} you when you open {} but let{} you in, because {}{}.", apps, "s" if one else "",
                  "it" if one else "them", "s" if one else "", why, since)
    return md("*Blocked:* {} won't let you in on this device, because {}{}.", apps, why, since)


def state_lines(device: MyDevice, view: MyView) -> list[Mrkdwn]:
    state = device.state
    if device.findings and state in (DeviceState.BLOCKED, DeviceState.WIPED, DeviceState.WARNED,
                                     DeviceState.AT_RISK):
        lines = [finding_text(f, enforced=view.enforced) for f in device.findings[:FINDING_LIMIT]]
        if len(device.findings) > FINDING_LIMIT:
            lines.append(md("…and {} more.", count(len(device.findings) - FINDING_LIMIT, "policy", "policies")))
        return [*lines, WHAT_TO_DO if view.enforced else WHAT_TO_DO_ANYWAY]
    if state is DeviceState.WAITING:
        if view.enforced:
            return [Mrkdwn("*Waiting for Defender:* Microsoft Defender isn't set up on this device yet, so your work "
                           "apps stop at a setup screen. *What to do:* follow the steps below.")]
        return [Mrkdwn("*Waiting for Defender:* Microsoft Defender isn't set up on this device yet. *What to do:* "
                       "follow the steps below, so your work apps keep working when Intune checks again.")]
    if state is DeviceState.UNPROTECTED:
        return [md("*Can't be protected:* your account has {}: ask IT.", view.gap or "no licence for this")]
    if state is DeviceState.UNMATCHED:
        return [Mrkdwn("*Can't check:* the bot can't match this device with Defender (Intune's report gives no Entra "
                       "device ID for it), so it can't tell whether Defender's rating blocks your apps there.")]
    if state is DeviceState.UNCHECKED:
        return [Mrkdwn("*Not checked yet:* no check of Defender's ratings has run yet.")]
    return [md("*OK* as of the last check ({}).", slack_date(view.sweep_at))]


def device_block(device: MyDevice, view: MyView) -> Block:
    title = md("{} *{}*", Mrkdwn(ICONS[device.state]), shown(device.name) or "A device")
    if device.model:
        title = md("{} ({})", title, shown(device.model))
    if device.device_id:
        title = md("{} · device `{}`", title, device.short_id)
    lines = [title]
    if device.apps:
        lines.append(md("Work apps: {}", names(list(device.apps))))
    return section(md_join("\n", [*lines, *state_lines(device, view)]))


def freshness(view: MyView, now: datetime) -> Block:
    if view.index_at is not None:
        apps = md("Apps and devices: Intune's list from {} ago (refreshed hourly).",
                  duration_text(max(now - view.index_at, timedelta(0))))
    else:
        apps = Mrkdwn("Apps and devices: not listed yet (the list is refreshed hourly).")
    checked = (md("Defender's ratings: the last check was {}.", slack_date(view.sweep_at)) if view.sweep_at
               else Mrkdwn("Defender's ratings: not checked yet."))
    return context(apps, checked)


def me_summary(view: MyView) -> Mrkdwn:
    """The notification line (and fallback)."""
    if not view.devices:
        return Mrkdwn("Your work apps: I know of none for you yet")
    tally = Counter(d.state for d in view.devices)
    parts = [f"{count(n, 'device')} {SUMMARY_WORDS[state]}" for state, n in
             sorted(tally.items(), key=lambda item: list(DeviceState).index(item[0]))]
    return md("Your devices: {}", ", ".join(parts))


def me_blocks(view: MyView, now: datetime, *, card: str) -> list[Block]:
    """The card: who they are, how fresh the data is, each device and its state, the steps, the button."""
    who = view.identity
    name = shown(who.name) or shown(who.email, 320)
    blocks: list[Block] = [
        header("Your work apps and devices"),
        section(md("As far as I can tell from your Slack email, you are *{}* ({}) in your organisation's directory.",
                   name, shown(who.email, 320))),
        freshness(view, now),
    ]
    if not view.enforced:
        blocks.append(section(NOT_ENFORCED))
    if view.gap:
        blocks.append(section(md(":no_entry_sign: Your account has {}, so Microsoft Defender can't protect your "
                                 "devices: ask IT.", view.gap)))
    blocks.append(divider())
    if not view.devices:
        blocks.append(section(Mrkdwn(":information_source: I know of no managed work apps for you: Intune hasn't "
                                     "reported any app your organisation protects on Android for your account. The "
                                     "list is refreshed hourly, so an app you set up in the last hour may not be "
                                     "here yet.")))
    for device in view.devices[:DEVICE_LIMIT]:
        blocks.append(device_block(device, view))
    if len(view.devices) > DEVICE_LIMIT:
        hidden = Counter(SUMMARY_WORDS[d.state] for d in view.devices[DEVICE_LIMIT:])
        more = len(view.devices) - DEVICE_LIMIT
        blocks.append(context(md("…and {:,} more {}: {}.", more, "device" if more == 1 else "devices",
                                 ", ".join(f"{n:,} {word}" for word, n in hidden.most_common()))))
    app = example_app(view.packages)
    if view.onboarding:
        waiting = len(view.having(DeviceState.WAITING))
        if waiting:
            intro = md("*Set up Microsoft Defender* on {} waiting for it. It takes about five minutes:",
                       "the device" if waiting == 1 else "each device")
        else:
            intro = Mrkdwn("Your organisation protects work apps such as Outlook and Teams on Android with Microsoft "
                           "Defender. When you start using them on an Android phone or tablet, set Defender up like "
                           "this:")
        blocks += [section(intro), section(steps_text(app))]
    elif not view.gap:
        blocks.append(context(Mrkdwn("Setting up a new Android phone or tablet for work? I can send you the steps to "
                                     "set up Microsoft Defender.")))
    if not view.gap:
        blocks.append(actions(button("Send me the steps again", MeAction.SEND_STEPS,
                                     StepsRef(card=card, app=app).encode())))
    blocks.append(context(FOOTER))
    return blocks


def not_identified_text(problem: NotIdentified) -> Mrkdwn:
    return md(NOT_IDENTIFIED[problem.why], shown(problem.email, 320))


def steps_dm(package: str) -> tuple[Mrkdwn, list[Block]]:
    """The DM the button sends: the same steps as the onboarding nudge, without its Done / Stop buttons."""
    return Mrkdwn("How to set up Microsoft Defender for your work apps on Android"), [
        section(Mrkdwn("Here are the steps to set up Microsoft Defender, so your work apps open on your Android phone "
                       "or tablet. It takes about five minutes:")),
        section(steps_text(package)),
        context(Mrkdwn("Defender usually tells your organisation about your device within a few hours. `/mam me` "
                       "shows what I know about your devices.")),
    ]


def steps_key(clicker: str, card: str) -> str:
    """One DM per card and person: a double click (or two) on the same card sends one."""
    return f"me:steps:{clicker}:{card}"


# ---- Slack -------------------------------------------------------------------------------------------------


def slack_email(client: WebClient, user_id: str) -> str:
    """The email Slack shows for the person ("" when it shows none: a guest, or no users:read.email)."""
    try:
        user = client.users_info(user=user_id).get("user") or {}
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else None
        if error == "missing_scope":
            return ""
        log.warning("/mam me: users.info failed: %s", error)
        raise UserError("I can't read your Slack profile right now. Try `/mam me` again in a few minutes.") from None
    return str((user.get("profile") or {}).get("email") or "").strip()


ME_RECHECK = timedelta(minutes=10)  # how long `/mam me` trusts a mail → Entra user answer

listeners = Listeners()


@listeners.command("me", "/mam me",
                   "Your own devices and work apps: whether Defender's rating blocks them now, why, and what to do.",
                   Access.ANYONE, group="General")
def me_command(req: CommandRequest) -> None:
    if req.args:  # nobody can ask about anyone else: there is no way to name them
        raise UsageError("`/mam me` takes no arguments: it shows only your own devices and apps.")
    req.ack(response_type="ephemeral", text=Mrkdwn(":hourglass_flowing_sand: Looking up your devices…"))
    req.later(lambda: _answer(req), "show your devices")


def _answer(req: CommandRequest) -> None:
    deps = req.deps
    email = slack_email(req.client, req.user_id)
    # minutes, not the index's days: the answer decides whose devices are shown, and a mail can change hands
    who = identify(email, EntraUsers(deps.store, deps.microsoft.graph, deps.now(), recheck=ME_RECHECK))
    if isinstance(who, NotIdentified):
        req.answer(not_identified_text(who), replace=True)
        return
    view = my_view(deps.store, who)
    req.answer(me_summary(view), me_blocks(view, deps.now(), card=new_correlation_id()), replace=True)


@listeners.action(MeAction.SEND_STEPS, Access.ANYONE, what="get the steps to set up Microsoft Defender")
def send_steps(ctx: Interaction) -> None:
    ctx.ack()
    ref, clicker, deps = ctx.data(StepsRef), ctx.user_id, ctx.deps

    def work() -> None:
        key = steps_key(clicker, ref.card)
        if deps.outbox.get(key) is not None:
            ctx.tell(Mrkdwn("I've sent you the steps already: they're in your direct messages with me."))
            return
        text, blocks = steps_dm(ref.app)
        deps.outbox.post(key, channel=clicker, text=text, blocks=blocks)  # only ever to whoever pressed it
        deps.audit.record(actor=clicker, action="sent the Defender setup steps (/mam me)", outcome="ok",
                          target=f"slack user {clicker}")
        ctx.tell(Mrkdwn(":envelope: I've sent you the steps in a direct message."))

    ctx.later(work, "send the steps to set up Defender")


__all__ = ["MeAction", "StepsRef", "example_app", "listeners", "me_blocks", "me_summary", "not_identified_text",
           "slack_email", "steps_dm", "steps_key", "steps_text"]
