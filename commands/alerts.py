"""Alert cards for blocked managed apps, their digest, their buttons, and `/mam blocked [user]`.

The sweep (workflows.threat_sweep) decides; this module renders and queues through the outbox
under the keys the workflow gives each episode, so a card is posted once and each edit once.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.clock import as_utc
from bot.command_text import Word
from bot.deps import Deps
from bot.errors import UsageError, UserError
from bot.mrkdwn import Mrkdwn, cut_plain, link, md, md_join, mention
from bot.outbox import Outbox
from bot.roles import Access
from bot.store.index import OFF, Enforcement
from bot.store.watch import (
    OPEN,
    Episode,
    SweepRun,
    active_blocks,
    is_warning,
    last_sweep,
    pending_onboardings,
    unlicensed_count,
    unlicensed_users,
)
from bot.text import count, csv_cell
from commands.blocks import Block, actions, button, context, fields_section, header, section
from commands.context import CommandRequest, Interaction
from commands.listen import Listeners
from commands.payloads import AlertRef
from workflows.connectors import PORTALS, Portals, format_age
from workflows.enforcement import current_enforcement, notice_key, notice_post_key
from workflows.episodes import (
    acknowledge,
    back_within_limit,
    opened_for,
    snooze,
    version_key,
)
from workflows.licences import gap_text, licence_gaps
from workflows.onboarding import WatchSettings
from workflows.policies import ACTION_LABELS, THREAT_LEVEL_LABELS, app_label

log = logging.getLogger(__name__)

LEVEL_ICONS = {"high": ":red_circle:", "medium": ":large_orange_circle:", "low": ":large_yellow_circle:"}
INFERRED = Mrkdwn("Inferred by mam-bot from Defender's device risk and the policy's maximum threat level and "
                  "action; Intune applies it when the app next checks in. Defender's report can lag by a few hours.")
LIST_LIMIT = 20  # entries in `/mam blocked`; the digest CSVs have the rest


class AlertAction(StrEnum):
    ACK = "alert_ack"
    SNOOZE_4H = "alert_snooze_4h"
    SNOOZE_24H = "alert_snooze_24h"
    OPEN_DEFENDER = "alert_open_defender"  # a link button: Slack still sends the click


SNOOZE_HOURS = {AlertAction.SNOOZE_4H: 4, AlertAction.SNOOZE_24H: 24}


# ---- small pure builders -------------------------------------------------------------------------


def portals_for(cloud: str) -> Portals:
    return PORTALS.get(cloud, PORTALS["global"])


def defender_link(portals: Portals, machine_id: str) -> str | None:
    return f"{portals.defender}/machines/{machine_id}/overview" if portals.defender and machine_id else None


def intune_user_link(portals: Portals, user_id: str) -> str | None:
    if not portals.intune or not user_id:
        return None
    return f"{portals.intune}/#view/Microsoft_AAD_UsersAndTenants/UserProfileMenuBlade/~/overview/userId/{user_id}"


def apps_text(episode: Episode) -> str:
    return ", ".join(app_label(p) for p in episode.app_list) or "its managed apps"


def level_text(level: str) -> str:
    return THREAT_LEVEL_LABELS.get(level, level or "unknown")


def slack_date(moment: datetime | None) -> Mrkdwn:
    """A timestamp every reader sees in their own time zone (with a UTC fallback)."""
    when = as_utc(moment)
    if when is None:
        return Mrkdwn("unknown")
    return md("<!date^{}^{{date_short_pretty}} {{time}}|{:%Y-%m-%d %H:%M} UTC>", int(when.timestamp()), when)


def duration_text(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{max(minutes, 1)} min"


def person_name(person: dict[str, str]) -> str:
    return person.get("name") or person.get("mail") or person.get("id", "unknown user")


def person_text(person: dict[str, str], portals: Portals) -> Mrkdwn:
    mail = person.get("mail", "")
    text = md("*{}*", person_name(person))
    if mail and mail != person.get("name"):
        text = md("{} ({})", text, mail)
    url = intune_user_link(portals, person.get("id", ""))
    return md("{} · {}", text, link(url, "Intune")) if url else text


def device_text(episode: Episode) -> Mrkdwn:
    name = md("*{}*", episode.device_name or "a device")
    return md("{} ({})", name, episode.device_model) if episode.device_model else name


class Words(NamedTuple):
    """What an episode means for the person, by the policy's action (block, wipe or warn)."""

    line: str  # the notification line's first word
    header: str
    verb: str  # "<people> <verb> <apps> on <device>."
    verb_past: str


WORDS = {
    "block": Words("Blocked", "App blocked", "can't open", "could not open"),
    "wipe": Words("Wiped", "App data wiped", "had the work data removed from", "had the work data removed from"),
    "warn": Words("Warned", "App warning", "sees a warning (and can go on) when opening",
                  "saw a warning when opening"),
}


def words_for(episode: Episode) -> Words:
    """blockWhenSettingIsSupported blocks like block; an action this code doesn't know reads as a block."""
    return WORDS.get(episode.action, WORDS["block"])


STALE_AFTER = timedelta(days=1)


def stale_note(episode: Episode, now: datetime | None = None) -> Mrkdwn | None:
    """When Defender last saw the device over a day ago, its level may be out of date: say so."""
    seen = as_utc(episode.defender_last_seen)
    age = (now or datetime.now(UTC)) - seen if seen else None
    if age is None or age <= STALE_AFTER:
        return None
    return md(":hourglass: Defender last saw this device {} ago: its threat level may be out of date until the "
              "device checks in with Defender again.", format_age(age))


def alert_text(episode: Episode) -> Mrkdwn:
    """The notification line (and fallback) of a card: Slack parses it, so it is escaped like the card."""
    who = ", ".join(person_name(p) for p in episode.user_list) or "A user"
    device = episode.device_name or "a device"
    if episode.state != OPEN:
        return md("Resolved: {} on {} ({})", who, device, episode.policy_name)
    return md("{}: {} on {}: device level {}, allowed {} ({})", words_for(episode).line, who, device, episode.level,
              episode.maximum, episode.policy_name)


def alert_card(episode: Episode, portals: Portals) -> list[Block]:
    is_open = episode.state == OPEN
    words = words_for(episode)
    people = md_join("\n", (person_text(p, portals) for p in episode.user_list)) or Mrkdwn("_unknown user_")
    icon = LEVEL_ICONS.get(episode.level, ":no_entry:") if is_open else ":white_check_mark:"
    verb = words.verb if is_open else words.verb_past
    level = md("*Device level (Defender)*\n{}", level_text(episode.level))
    blocks: list[Block] = [
        header((words.header + ": " if is_open else "Resolved: ") + (episode.device_name or "device")),
        section(md("{} {}\n{} {} on {}.", Mrkdwn(icon), people, verb, apps_text(episode), device_text(episode))),
        fields_section([
            md("{} ({})", level, episode.risk_score) if episode.risk_score else level,
            md("*Allowed up to*\n{}", level_text(episode.maximum)),
            md("*Policy*\n{}", episode.policy_name),
            md("*Action*\n{}", ACTION_LABELS.get(episode.action, episode.action)),
            md("*Since*\n{}", slack_date(episode.opened_at)),
            md("*Defender last saw it*\n{}", slack_date(episode.defender_last_seen)),
        ]),
    ]
    status = status_lines(episode)
    if is_open and (stale := stale_note(episode)) is not None:
        status.append(stale)
    if status:
        blocks.append(section(md_join("\n", status)))
    blocks.append(context(INFERRED))
    url = defender_link(portals, episode.machine_id)
    if is_open:
        value = AlertRef(id=episode.id or 0).encode()
        buttons = [button("Acknowledge", AlertAction.ACK, value, style="primary"),
                   button("Snooze 4 h", AlertAction.SNOOZE_4H, value),
                   button("Snooze 24 h", AlertAction.SNOOZE_24H, value)]
        if url:
            buttons.append(button("Open in Defender", AlertAction.OPEN_DEFENDER, value, url=url))
        blocks.append(actions(*buttons))
    elif url:
        blocks.append(context(link(url, "Open the device in Defender")))
    return blocks


def status_lines(episode: Episode) -> list[Mrkdwn]:
    lines = []
    if episode.state != OPEN:
        lasted = duration_text(opened_for(episode, datetime.now(UTC)))
        lines.append(md(":white_check_mark: Resolved {}: {}. The block lasted {}.",
                        slack_date(episode.resolved_at), episode.resolution, lasted))
    if episode.acknowledged_by:
        lines.append(md(":eyes: Acknowledged by {} {}", mention(episode.acknowledged_by),
                        slack_date(episode.acknowledged_at)))
    if episode.state == OPEN and episode.snoozed_until:
        lines.append(md(":zzz: Snoozed by {} until {}", mention(episode.snoozed_by or ""),
                        slack_date(episode.snoozed_until)))
    return lines


def resolved_reply(episode: Episode) -> Mrkdwn:
    lasted = duration_text(opened_for(episode, datetime.now(UTC)))
    return md(":white_check_mark: Resolved after {}: {} ({}, {}).", lasted, episode.resolution,
              device_text(episode), episode.policy_name)


def snooze_over_reply(episode: Episode) -> Mrkdwn:
    return md(":alarm_clock: Snooze over: {} is still blocked (device level {}, allowed {}).",
              device_text(episode), level_text(episode.level), level_text(episode.maximum))


DIGEST_WORDS = {  # kind → (what the episodes are, the card's header)
    "new": ("new managed app blocks", "new app blocks"),
    "resumed": ("managed app blocks now that threat-level enforcement is back on", "app blocks, enforcement back on"),
    "resolved": ("app blocks resolved", "blocks resolved"),
}


def digest_text(kind: str, episodes: list[Episode]) -> Mrkdwn:
    what = DIGEST_WORDS.get(kind, DIGEST_WORDS["new"])[0]
    return md("{} {} in one sweep", len(episodes), what)


def digest_card(kind: str, episodes: list[Episode], run: SweepRun, portals: Portals, top: int = 10) -> list[Block]:
    by_policy = Counter(e.policy_name for e in episodes)
    by_level = Counter(e.level for e in episodes)
    counts = [
        md("*By policy*\n{}", md_join("\n", (md("{}: {}", name, n) for name, n in by_policy.most_common(8)))),
        md("*By device level*\n{}",
           md_join("\n", (md("{}: {}", level_text(lv), n) for lv, n in by_level.most_common()))),
    ]
    order = {"high": 0, "medium": 1, "low": 2}
    ranked = sorted(episodes, key=lambda e: (order.get(e.level, 3), e.id or 0))[:top]
    lines = md_join("\n", (entry_line(e, portals) for e in ranked))
    more = len(episodes) - len(ranked)
    resolved = kind == "resolved"
    icon = Mrkdwn(":white_check_mark:" if resolved else ":rotating_light:")
    why = (Mrkdwn("Intune ignored Defender's threat level until now, so these were not enforced before; they are "
                  "from now on, when each app next checks in. ") if kind == "resumed" else Mrkdwn(""))
    blocks: list[Block] = [
        header(f"{len(episodes)} " + DIGEST_WORDS.get(kind, DIGEST_WORDS["new"])[1]),
        section(md("{} {} (sweep #{}), so here is one message instead of one per device. {}The full list is the CSV "
                   "in the thread.", icon, digest_text(kind, episodes), run.id, why)),
        fields_section(counts),
        section(md("*Top entries*\n{}{}", lines, md("\n…and {} more in the CSV", more) if more > 0 else "")),
        context(Mrkdwn("`/mam blocked` shows who is still blocked.") if resolved else INFERRED),
    ]
    return blocks


def entry_line(episode: Episode, portals: Portals) -> Mrkdwn:
    who = md_join(", ", (person_name(p) for p in episode.user_list)) or Mrkdwn("unknown")
    url = defender_link(portals, episode.machine_id)
    device = device_text(episode) if not url else link(url, episode.device_name or "device")
    state = md(": {}", episode.resolution) if episode.state != OPEN else ""
    return md("{} {} · {} · {} · device {}, allowed up to {} · {}{}", Mrkdwn(LEVEL_ICONS.get(episode.level, "•")),
              who, device, apps_text(episode), level_text(episode.level), level_text(episode.maximum),
              episode.policy_name, state)


CSV_COLUMNS = ("user", "mail", "user_id", "device", "model", "device_id", "defender_machine_id", "device_level",
               "allowed_up_to", "policy", "action", "apps", "since_utc", "resolved_utc", "resolution", "defender_link")


def episodes_csv(episodes: Iterable[Episode], portals: Portals) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in episodes:
        people = e.user_list or [{"id": "", "name": "", "mail": ""}]
        for p in people:
            writer.writerow([csv_cell(v) for v in (
                p.get("name", ""), p.get("mail", ""), p.get("id", ""), e.device_name, e.device_model, e.device_id,
                e.machine_id, e.level, e.maximum, e.policy_name, e.action, " ".join(e.app_list),
                _iso(e.opened_at), _iso(e.resolved_at), e.resolution, defender_link(portals, e.machine_id) or "")])
    return out.getvalue().encode("utf-8")


def _iso(moment: datetime | None) -> str:
    when = as_utc(moment)
    return f"{when:%Y-%m-%dT%H:%M:%SZ}" if when else ""


FIX_STEPS = ("Open *Microsoft Defender* on the device and follow its steps to remove the threat. I'll tell you when "
             "the device is back within your organisation's limit: Defender reports changes usually within a few hours")


def blocked_dm(episode: Episode) -> Mrkdwn:
    """The DM to a user, worded by the action: block, wipe (the work data in the app is removed) or warn."""
    many = len(episode.app_list) > 1
    app = md("Your work app{} {} on {}", "s" if many else "", apps_text(episode), device_text(episode))
    if episode.action == "wipe":
        return md(":warning: {}: your organisation's policy removes the work data (mail, files, accounts) from {} "
                  "when the app next checks in, because Microsoft Defender reports a threat on the device. Your "
                  "personal data is not touched.\n{}; then sign in to the app again to get your work data back.",
                  app, "them" if many else "it", Mrkdwn(FIX_STEPS))
    if episode.action == "warn":
        return md(":warning: {} show{} a warning when opened, because Microsoft Defender reports a threat on the "
                  "device; you can still use {}.\n{}.", app, "" if many else "s", "them" if many else "it",
                  Mrkdwn(FIX_STEPS))
    return md(":warning: {} {} blocked because Microsoft Defender reports a threat on the device.\n{}, and the app "
              "lets you in at its next check.", app, "are" if many else "is", Mrkdwn(FIX_STEPS))


def unblocked_dm(episode: Episode) -> Mrkdwn:
    if episode.action == "wipe":
        return md(":white_check_mark: {} on {}: the threat is gone as far as Defender reports ({}); sign in to the "
                  "app again to get your work data back.", apps_text(episode), device_text(episode),
                  episode.resolution)
    if episode.action == "warn":
        return md(":white_check_mark: {} on {} no longer warns you.", apps_text(episode), device_text(episode))
    if back_within_limit(episode):
        return md(":white_check_mark: Good news: Defender reports {} back within your organisation's limit, so {} "
                  "will let you in again (the app checks when you next open it).",
                  device_text(episode), apps_text(episode))
    return md(":white_check_mark: {} on {} is no longer blocked.", apps_text(episode), device_text(episode))


# ---- enforcement: is Intune evaluating Defender's signal at all? (workflows.enforcement) ---------------------


def enforcement_text(row: Enforcement) -> Mrkdwn:
    if row.state == OFF:
        return md("Threat-level enforcement is OFF in Intune since {}: no managed app is blocked or wiped for a "
                  "device's threat level now.", slack_date(row.off_since))
    return md("Threat-level enforcement is back on in Intune since {} (it was off from {}).",
              slack_date(row.resumed_at), slack_date(row.off_since))


def enforcement_off_blocks(row: Enforcement, *, admin_hint: bool = True) -> list[Block]:
    """Why nobody is blocked, and the fix: for `/mam blocked`, App Home, `/mam status` and the notice."""
    fix = md("*Fix:* {}", row.fix) if row.fix else Mrkdwn("")
    if row.fix and row.link:
        fix = md("{} ({})", fix, link(row.link, "open it"))
    hint = Mrkdwn("\nAdmins: `/mam connectors` checks the connector and offers the Enable request.") if admin_hint \
        else Mrkdwn("")
    would = md("\n{} would block a managed app if it were on (not enforced, so nobody was told).",
               count(row.suppressed, "device")) if row.suppressed else Mrkdwn("")
    return [section(md(":no_entry_sign: *{}*\n*Why:* {}\n{}{}{}", enforcement_text(row), row.reason or "unknown",
                       fix, would, hint))]


def queue_enforcement_notice(outbox: Outbox, row: Enforcement, channel: str) -> None:
    """The notice's first version is posted; each later one edits that message in place (keys by version)."""
    text, blocks = enforcement_notice(row)
    key = notice_key(row)
    if key == notice_post_key(row):
        outbox.post(key, channel=channel, text=text, blocks=blocks)
    else:
        outbox.update(key, of=notice_post_key(row), text=text, blocks=blocks)


def enforcement_notice(row: Enforcement) -> tuple[Mrkdwn, list[Block]]:
    """The alert channel's notice: posted once per stretch off, edited in place, and when it comes back."""
    text = enforcement_text(row)
    if row.state == OFF:
        blocks = [header("Threat-level enforcement is off"), *enforcement_off_blocks(row),
                  context(Mrkdwn("Block cards above this message are not being enforced while this lasts. This "
                                 "message is updated in place; the watch resumes by itself when enforcement is back."))]
    else:
        blocks = [header("Threat-level enforcement is back on"),
                  section(md(":white_check_mark: {}\nWhat the watch finds now is announced as one digest, not one "
                             "card per device.", text))]
    return text, blocks


# ---- the card's edits, shared by the buttons and the sweep's sender (commands.adapters.SlackAlerts) ----------


def watch_settings(deps: Deps) -> WatchSettings:
    return WatchSettings.from_settings(deps.settings)


def edit_card(outbox: Outbox, episode: Episode, portals: Portals) -> None:
    """Queue the card's edit to the episode's current state (nothing when it was only in a digest)."""
    if episode.card_key:
        outbox.update(version_key(episode), of=episode.card_key, text=alert_text(episode),
                      blocks=alert_card(episode, portals))


# ---- Slack listeners ------------------------------------------------------------------------------------

listeners = Listeners()


def _clicked(ctx: Interaction, work: Callable[[Deps, str, int], Mrkdwn | None], what: str) -> None:
    ctx.ack()
    episode_id = ctx.data(AlertRef).id

    def run() -> None:
        note = work(ctx.deps, ctx.user_id, episode_id)
        if note:
            ctx.tell(note)

    ctx.later(run, what)


def _acknowledged(deps: Deps, user: str, episode_id: int) -> Mrkdwn | None:
    episode = acknowledge(deps.store, episode_id, user, deps.now())
    if episode is None:
        raise UserError("I have no record of that alert any more.")
    edit_card(deps.outbox, episode, portals_for(watch_settings(deps).cloud))  # a card left by a digest heals too
    if episode.state != OPEN:
        return md("That block is already resolved: {}.", episode.resolution)
    if episode.acknowledged_by != user:
        return md("{} acknowledged it already.", mention(episode.acknowledged_by or ""))
    deps.audit.record(actor=user, action="acknowledged alert", outcome="ok", target=f"episode {episode_id}")
    return None


def _snoozer(hours: int) -> Callable[[Deps, str, int], Mrkdwn | None]:
    def snoozed(deps: Deps, user: str, episode_id: int) -> Mrkdwn | None:
        episode = snooze(deps.store, episode_id, user, hours, deps.now())
        if episode is None:
            raise UserError("I have no record of that alert any more.")
        edit_card(deps.outbox, episode, portals_for(watch_settings(deps).cloud))
        if episode.state != OPEN:
            return md("That block is already resolved: {}.", episode.resolution)
        deps.audit.record(actor=user, action=f"snoozed alert {hours} h", outcome="ok", target=f"episode {episode_id}")
        return md(":zzz: Snoozed for {} h. If the device is still blocked then, I'll say so in the card's thread.",
                  hours)

    return snoozed


# Admins and approvers both watch the alert channel; acknowledging changes nothing in the tenant.
@listeners.action(AlertAction.ACK, Access.READ, what="acknowledge or snooze alerts")
def ack_clicked(ctx: Interaction) -> None:
    _clicked(ctx, _acknowledged, "acknowledge an alert")


@listeners.action(AlertAction.SNOOZE_4H, Access.READ, what="acknowledge or snooze alerts")
def snooze_4h(ctx: Interaction) -> None:
    _clicked(ctx, _snoozer(SNOOZE_HOURS[AlertAction.SNOOZE_4H]), "snooze an alert")


@listeners.action(AlertAction.SNOOZE_24H, Access.READ, what="acknowledge or snooze alerts")
def snooze_24h(ctx: Interaction) -> None:
    _clicked(ctx, _snoozer(SNOOZE_HOURS[AlertAction.SNOOZE_24H]), "snooze an alert")


@listeners.action(AlertAction.OPEN_DEFENDER, Access.ANYONE, what="open Defender")
def open_defender(ctx: Interaction) -> None:
    ctx.ack()  # a link button: Slack opens the link itself


@listeners.command("blocked", "/mam blocked [user]",
                   "Who is blocked now by a device threat level, and why (a user's mail, name or @mention).",
                   Access.READ, group="Watch")
def blocked_command(req: CommandRequest) -> None:
    """`/mam blocked [person]`: a person by @mention (Slack sends its user id), mail address or name."""
    mentioned = [word.user for word in req.args if isinstance(word, Word) and word.user]
    if mentioned:
        if len(req.args) > 1:
            raise UsageError("Give one person: an @mention, a mail address or part of a name.")
        req.ack(response_type="ephemeral", text=md("Looking that person up…"))
        req.later(lambda: _answer_for_mention(req, mentioned[0]), "look up a Slack user")
        return
    who = " ".join(req.args).strip().lstrip("@")
    if len(who) > 200:
        raise UsageError("Give one person: a mail address, part of a name, or an @mention.")
    blocks = blocked_blocks(req.deps, who or None)
    req.ack(response_type="ephemeral", text=_blocked_summary(req.deps, who or None), blocks=blocks)


def _answer_for_mention(req: CommandRequest, slack_id: str) -> None:
    client: WebClient = req.client
    try:
        user = client.users_info(user=slack_id).get("user") or {}
    except SlackApiError as exc:
        if exc.response.get("error") not in ("user_not_found", "user_not_visible"):
            raise
        raise UserError("I can't find that person in this Slack workspace. Name them by mail address or part "
                        "of their name instead, e.g. `/mam blocked ana@contoso.com`.") from None
    email = str((user.get("profile") or {}).get("email") or "")
    if not email:
        raise UserError(md("{} has no email address I can see, so I can't match them to Intune. "
                           "Name them by part of their name instead.", mention(slack_id)))
    req.answer(_blocked_summary(req.deps, email), blocked_blocks(req.deps, email, shown=mention(slack_id)),
               replace=True)


def _blocked_summary(deps: Deps, who: str | None) -> Mrkdwn:
    if current_enforcement(deps.store).state == OFF:
        return md("Nobody is blocked for a device's threat level: enforcement is off in Intune")
    blocked = count(len({e.device_id for e in active_blocks(deps.store, who) if not is_warning(e)}),
                    "blocked device")
    return md("{} for {}", blocked, who) if who else md("{}", blocked)


def blocked_blocks(deps: Deps, who: str | None, *, shown: Mrkdwn | None = None) -> list[Block]:
    """`/mam blocked`: from the last sweep's episodes; no Microsoft call, so it answers at once."""
    enforcement = current_enforcement(deps.store)
    if enforcement.state == OFF:
        return [*enforcement_off_blocks(enforcement), *unlicensed_blocks(deps), context(INFERRED)]
    portals = portals_for(watch_settings(deps).cloud)
    everything = active_blocks(deps.store, who)
    episodes = [e for e in everything if not is_warning(e)]
    warnings = [e for e in everything if is_warning(e)]
    sweep = last_sweep(deps.store)
    subject = shown or (md("*{}*", who) if who else None)
    devices = count(len({e.device_id for e in episodes}), "device")
    blocks: list[Block] = [section(md("Blocked now for {}: {}", subject, devices) if subject
                                   else md("*Blocked now: {}*", devices))]
    if not episodes:
        blocks.append(section(md("{} as of the last sweep.",
                                 "Nobody is blocked" if not who else "No block matches that user")))
    blocks.extend(_listed(episodes, portals))
    if warnings:
        blocks.append(section(md("*Warned, not blocked: {}* (the app warns, then lets them in)",
                                 count(len({e.device_id for e in warnings}), "device"))))
        blocks.extend(_listed(warnings, portals, limit=LIST_LIMIT // 2))
    if not who:
        blocks.extend(unlicensed_blocks(deps))
    notes = [INFERRED]
    if sweep is not None:
        state = md(" (with errors: {})", cut_plain(sweep.error, 200)) if not sweep.ok else ""
        notes.insert(0, md("As of the sweep {}{}; {} waiting for Defender onboarding.", slack_date(sweep.finished_at),
                           state, count(pending_onboardings(deps.store), "user")))
    else:
        notes.insert(0, Mrkdwn("No threat sweep has run yet."))
    blocks.append(context(*notes))
    return blocks


def _listed(episodes: list[Episode], portals: Portals, limit: int = LIST_LIMIT) -> list[Block]:
    blocks = [section(md("{}\nsince {}, {}{}", entry_line(e, portals), slack_date(e.opened_at),
                         ACTION_LABELS.get(e.action, e.action), " · acknowledged" if e.acknowledged_by else ""))
              for e in episodes[:limit]]
    if len(episodes) > limit:
        blocks.append(context(md("…and {} more; name a user to narrow it down.", len(episodes) - limit)))
    return blocks


UNLICENSED_LISTED = 10


def unlicensed_blocks(deps: Deps) -> list[Block]:
    """Users whose app would wait for Defender but who lack a licence to get there: they can't be protected."""
    total = unlicensed_count(deps.store)  # on the ack path: count them, read only the ones listed
    if not total:
        return []
    cases = unlicensed_users(deps.store, limit=UNLICENSED_LISTED)
    gaps = licence_gaps(deps.store, (c.user_id for c in cases))
    lines = [md("• {}: {}", c.user_name or c.user_mail or c.user_id,
                gap_text(gaps[c.user_id]) if c.user_id in gaps else "can't be protected: no licence")
             for c in cases]
    more = md("\n…and {} more", total - len(cases)) if total > len(cases) else Mrkdwn("")
    return [section(md("*Can't be protected: {}* (not nudged: they can't onboard without a licence)\n{}{}",
                       count(total, "user"), md_join("\n", lines), more))]
