"""The drift card (a change made outside the bot to a policy or the connector) and its two buttons.

workflows.drift (the poll), workflows.drift_compare and workflows.drift_buttons decide: what differs from the
snapshot, who did it, what Revert files. This module renders the card, queues it through the outbox under the
keys the workflow gives each report (`SlackDrift`), binds the poll to the bot's settings (`check_drift`, which
the `policy-drift` job runs) and answers the buttons: "Revert" files change requests that put the snapshot back,
through approval as usual; "Accept as the new baseline" makes what the card shows the snapshot. Both are for
admins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from bot.errors import UserError
from bot.mrkdwn import Mrkdwn, cut_mrkdwn, md, md_join, mention
from bot.roles import Access
from bot.settings import Cloud, Settings
from bot.slack_limits import pack_lines
from bot.store.drift import ACCEPTED, CREATED, DELETED, OPEN, DriftReport
from bot.text import count
from commands.alerts import portals_for, queue_enforcement_notice, slack_date
from commands.blocks import Block, actions, button, context, header, section
from commands.context import Interaction
from commands.listen import Listeners
from commands.payloads import ROW_ID_MAX, Payload
from workflows.connector_change import FLAG_LABELS
from workflows.drift import NO_EVENT, DriftResult, card_key, get_report, run_drift_check, version_key
from workflows.drift_buttons import accept_drift, revert_drift, revert_plan
from workflows.drift_compare import CONNECTOR, SELECTED, difference
from workflows.onboarding import WatchSettings
from workflows.policies import APP_GROUP_LABELS, app_label, apps_list_label, label
from workflows.policy_edit import SETTINGS

if TYPE_CHECKING:
    from bot.deps import Deps
    from bot.outbox import Outbox
    from bot.store.index import Enforcement

DRIFT_JOB = "policy-drift"  # `mam-bot jobs run policy-drift`
NAME_SHOWN = 200  # a policy's name in a card line
LINES_TEXT = 2800  # the "what changed" section, under Slack's 3,000 characters
LINE_MAX = 700  # one line of it
LISTED = 15  # apps or groups named on a line; the rest are counted
APPS_TEXT = 450  # the apps named on a line, in characters


class DriftAction(StrEnum):
    REVERT = "drift_revert"
    ACCEPT = "drift_accept"


class DriftRef(Payload):
    """Revert and Accept on a drift card: the report, and the version of it the card showed."""

    unreadable: ClassVar[str] = "This button does not name a change made outside the bot."
    id: int = Field(ge=1, le=ROW_ID_MAX)
    seen: int = Field(ge=0, le=ROW_ID_MAX)  # the report's version on the card


# ---- binding the poll to the bot (the `policy-drift` job) ------------------------------------------------


def own_app_ids(settings: Settings) -> frozenset[str]:
    """The apps whose writes are the bot's own: its app registration, and in the sandbox the app its static token is."""
    ids = {settings.azure_client_id.lower()} if settings.azure_client_id else set()
    if settings.mam_cloud is Cloud.SANDBOX:
        from bot.sandbox.audit import SANDBOX_APP_ID

        ids.add(SANDBOX_APP_ID)
    return frozenset(ids)


def check_drift(deps: Deps) -> DriftResult:
    """One drift poll with the background call profile, its cards through the outbox to MAM_ALERT_CHANNEL."""
    microsoft = deps.microsoft.background()
    with microsoft.counting_requests() as requests:
        return run_drift_check(graph=microsoft.graph, store=deps.store, notifier=SlackDrift(deps.outbox),
                               channel=deps.settings.mam_alert_channel, own_apps=own_app_ids(deps.settings),
                               portals=portals_for(WatchSettings.from_settings(deps.settings).cloud), now=deps.now,
                               requests=requests)


class SlackDrift:
    """Queues the drift cards and their edits (and the enforcement notice) in the outbox."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def opened(self, report: DriftReport) -> None:
        if report.card_key and report.channel:
            self.outbox.post(card_key(report), channel=report.channel, text=drift_text(report),
                             blocks=drift_card(report))

    def changed(self, report: DriftReport) -> None:
        if report.card_key and self.outbox.get(report.card_key) is not None:
            self.outbox.update(version_key(report), of=report.card_key, text=drift_text(report),
                               blocks=drift_card(report))

    def enforcement(self, row: Enforcement, channel: str) -> None:
        queue_enforcement_notice(self.outbox, row, channel)


# ---- the card (pure) -------------------------------------------------------------------------------------


def _name(report: DriftReport) -> str:
    return report.name[:NAME_SHOWN] + ("…" if len(report.name) > NAME_SHOWN else "")


def _what(report: DriftReport) -> Mrkdwn:
    if report.kind == CONNECTOR:
        return md("the *Defender for Endpoint connector*")
    return md("the Android app protection policy *{}*", _name(report))


def who_text(report: DriftReport) -> Mrkdwn:
    actors = report.loaded("actors")
    if not actors:
        return md("_{}_", NO_EVENT)
    shown = [md("*{}*", a["upn"][:NAME_SHOWN]) if a.get("upn") else md(
        "the app *{}* ({})", (a.get("app") or "unknown")[:NAME_SHOWN], (a.get("app_id") or "no id")[:64])
             for a in actors[:5]]
    more = md(" and {} more", len(actors) - 5) if len(actors) > 5 else Mrkdwn("")
    return md("{}{}", md_join(", ", shown), more)


def when_text(report: DriftReport) -> Mrkdwn:
    if report.changed_at is not None:
        return slack_date(report.changed_at)
    return md("between {} and {}", slack_date(report.window_start), slack_date(report.detected_at))


def drift_text(report: DriftReport) -> Mrkdwn:
    """The notification line (and fallback)."""
    verb = {CREATED: "created", DELETED: "deleted"}.get(report.change, "changed")
    subject = "The Defender connector" if report.kind == CONNECTOR else md("Policy {}", _name(report))
    if report.state != OPEN:
        return md("{} {} outside mam-bot: {}", subject, verb, report.resolution or report.state)
    who = ", ".join(a.get("upn") or a.get("app") or "an app" for a in report.loaded("actors")) or NO_EVENT
    return md("{} {} outside mam-bot by {}", subject, verb, who[:NAME_SHOWN])


def _setting(report: DriftReport, name: str, value: Any) -> str:
    if report.kind == CONNECTOR:
        return ("on" if value else "off") if isinstance(value, bool) or value is None else str(value)
    setting = SETTINGS.get(name)
    if setting is None:
        return "not set" if value is None else str(value)
    return str(setting.show(value))


def _setting_label(report: DriftReport, name: str) -> str:
    if report.kind == CONNECTOR:
        return FLAG_LABELS.get(name, name)
    setting = SETTINGS.get(name)
    return setting.label if setting is not None else name


def _assignment(entry: Mapping[str, Any], names: Mapping[str, str]) -> Mrkdwn:
    group = entry.get("groupId")
    if group:
        text = md("{} *{}*", entry.get("target"), names.get(str(group), str(group))[:NAME_SHOWN])
    else:
        whom = {"allLicensedUsers": "all licensed users", "allDevices": "all devices"}
        text = md("include *{}*", whom.get(str(entry.get("target")), str(entry.get("target"))))
    if entry.get("filter"):
        text = md("{} (filter {})", text, entry["filter"])
    if entry.get("policySet"):
        text = md("{} (from policy set {})", text, entry["policySet"])
    return text


def _apps(packages: Iterable[str]) -> str:
    """Apps by name (package id) while the line has room; the rest counted."""
    listed, names = list(packages), list[str]()
    for package in listed[:LISTED]:
        name = f"{app_label(package)} ({package})" if app_label(package) != package else package[:120]
        if names and sum(len(n) + 2 for n in names) + len(name) > APPS_TEXT:
            break
        names.append(name)
    rest = len(listed) - len(names)
    return ", ".join(names) + (f" and {rest} more" if rest > 0 else "")


def _groups(entries: Iterable[Mapping[str, Any]], names: Mapping[str, str]) -> Mrkdwn:
    listed = list(entries)
    shown = md_join("; ", (_assignment(a, names) for a in listed[:LISTED]))
    return md("{} and {} more", shown, len(listed) - LISTED) if len(listed) > LISTED else shown


def change_lines(report: DriftReport) -> list[Mrkdwn]:
    """Each setting old → new, apps and groups added and removed; a creation or deletion: what the policy holds."""
    before, after, names = report.loaded("before"), report.loaded("after"), report.loaded("names")
    if report.change in (CREATED, DELETED):
        return _whole(report, after if report.change == CREATED else before, names)
    change = difference(report.kind, before, after)
    lines = [md("• *{}*: {} → {}", _setting_label(report, n), _setting(report, n, old), _setting(report, n, new))
             for n, (old, new) in change.settings.items()]
    if "appGroupType" in change.settings:  # the app list changed with the app group: each side's own list
        for side, state in (("before", before), ("now", after)):
            if ((state.get("settings") or {}).get("appGroupType") or SELECTED) == SELECTED:
                lines.append(md("• *Apps {}*: {}", side, _apps(state.get("apps") or []) or "none"))
    if change.apps_added:
        lines.append(md("• *Apps added*: {}", _apps(change.apps_added)))
    if change.apps_removed:
        lines.append(md("• *Apps removed*: {}", _apps(change.apps_removed)))
    if change.groups_added:
        lines.append(md("• *Groups added*: {}", _groups(change.groups_added, names)))
    if change.groups_removed:
        lines.append(md("• *Groups removed*: {}", _groups(change.groups_removed, names)))
    return [cut_mrkdwn(line, LINE_MAX) for line in lines] or [
        md("• nothing the bot compares (the change is in a setting it doesn't manage)")]


def _whole(report: DriftReport, state: Mapping[str, Any], names: Mapping[str, str]) -> list[Mrkdwn]:
    settings = dict(state.get("settings") or {})
    lines = [md("• *{}*: {}", _setting_label(report, n), _setting(report, n, v)) for n, v in settings.items()
             if n != "displayName"]
    group = settings.get("appGroupType") or SELECTED
    apps = list(state.get("apps") or [])
    if group == SELECTED:
        lines.append(md("• *Apps*: {}", apps_list_label(apps) if apps else "none"))
    else:
        lines.append(md("• *Apps*: {} ({})", label(APP_GROUP_LABELS, group), len(apps)))
    groups = list(state.get("assignments") or [])
    lines.append(md("• *Groups*: {}", _groups(groups, names) if groups else "none"))
    return [cut_mrkdwn(line, LINE_MAX) for line in lines]


def _packed(lines: list[Mrkdwn]) -> Mrkdwn:
    def more(n: int) -> Mrkdwn:
        return md("…and {} more", n)

    texts, left_out = pack_lines(lines, max_chars=LINES_TEXT, reserve=len(more(len(lines))) + 1)
    text = Mrkdwn(texts[0]) if texts else Mrkdwn("")
    return md("{}\n{}", text, more(left_out)) if left_out else text


def status_lines(report: DriftReport) -> list[Mrkdwn]:
    lines: list[Mrkdwn] = []
    filed = report.loaded("revert_requests")
    if report.reverted_by and filed:
        lines.append(md(":leftwards_arrow_with_hook: Revert asked for by {} {}: change request{} {} (approved as "
                        "usual).", mention(report.reverted_by), slack_date(report.reverted_at),
                        "s" if len(filed) > 1 else "", ", ".join(f"#{n}" for n in filed)))
    if report.state == ACCEPTED:
        lines.append(md(":white_check_mark: Accepted as the new baseline by {} {}.", mention(report.decided_by),
                        slack_date(report.decided_at)))
    elif report.state != OPEN:
        lines.append(md(":white_check_mark: Settled {}: {}.", slack_date(report.updated_at), report.resolution))
    return lines


def drift_card(report: DriftReport) -> list[Block]:
    verb = {CREATED: "created", DELETED: "deleted"}.get(report.change, "changed")
    subject = "Connector" if report.kind == CONNECTOR else "Policy"
    title = f"{subject} {verb} outside mam-bot" + ("" if report.kind == CONNECTOR else f": {report.name}")
    icon = Mrkdwn(":warning:" if report.state == OPEN else ":white_check_mark:")
    blocks: list[Block] = [
        header(title),
        section(md("{} {} {} {} {}.", icon, who_text(report), verb, _what(report), when_text(report))),
        section(md("*What {}*\n{}", "it holds" if report.change in (CREATED, DELETED) else "changed",
                   _packed(change_lines(report)))),
    ]
    status = status_lines(report)
    if status:
        blocks.append(section(md_join("\n", status)))
    plan = revert_plan(report)
    how = Mrkdwn(" · Revert puts back the snapshot the bot held; Intune's audit log only says who and when."
                 if report.state == OPEN else "")
    notes = [md("{} `{}` · seen by the drift check {}{}", "Connector" if report.kind == CONNECTOR else "Policy id",
                report.object_id[:120], slack_date(report.detected_at), how)]
    if report.state == OPEN and plan.cannot:
        notes.append(md("Revert can't put back: {}.", "; ".join(plan.cannot)[:1500]))
    blocks.append(context(*notes))
    if report.state == OPEN:
        ref = DriftRef(id=report.id or 0, seen=report.version).encode()
        buttons = []
        if plan.requests:
            revert = "Revert: delete it" if report.change == CREATED else "Revert"
            buttons.append(button(revert, DriftAction.REVERT, ref, style="danger"))
        buttons.append(button("Accept as the new baseline", DriftAction.ACCEPT, ref, style="primary"))
        blocks.append(actions(*buttons))
    return blocks


# ---- Slack listeners ------------------------------------------------------------------------------------

listeners = Listeners()


def _clicked(ctx: Interaction, work: Callable[[Deps, str, DriftReport], Mrkdwn | None], what: str) -> None:
    ctx.ack()
    ref = ctx.data(DriftRef)

    def run() -> None:
        report = get_report(ctx.deps.store, ref.id)
        if report is None:
            raise UserError("I have no record of that change any more.")
        if report.state == OPEN and report.version != ref.seen:
            SlackDrift(ctx.deps.outbox).changed(report)  # the card may be behind: show what is true now
            raise UserError("That card has changed since it was shown; look at it again, then click.")
        note = work(ctx.deps, ctx.user_id, report)
        if note:
            ctx.tell(note)

    ctx.later(run, what)


def _accepted(deps: Deps, user: str, report: DriftReport) -> Mrkdwn | None:
    done, note = accept_drift(deps.store, report.id or 0, user, deps.now())
    if done is None:
        raise UserError(note)
    SlackDrift(deps.outbox).changed(done)
    if note:
        if done.state == ACCEPTED and done.decided_by != user:
            return md("{} accepted it as the new baseline already.", mention(done.decided_by))
        return md("{}", note)
    deps.audit.record(actor=user, action="accepted drift as the new baseline", outcome="ok",
                      target=f"drift report {done.id}: {done.kind} {done.object_id}"[:512])
    return None


def _reverted(deps: Deps, user: str, report: DriftReport) -> Mrkdwn | None:
    done, filed, cannot = revert_drift(deps.store, deps.changes, report.id or 0, user, deps.now(),
                                       channel=report.channel)
    SlackDrift(deps.outbox).changed(done)
    deps.audit.record(actor=user, action="asked to revert drift", outcome="pending",
                      target=f"drift report {done.id}: {done.kind} {done.object_id}"[:512],
                      detail=", ".join(f"#{r.id}" for r in filed))
    left = md(" It can't put back: {}.", "; ".join(cannot)) if cannot else Mrkdwn("")
    return md(":inbox_tray: Filed {} to put the snapshot back: {}. An approver (not you) has to approve it.{}",
              count(len(filed), "change request"), ", ".join(f"#{r.id}" for r in filed), left)


@listeners.action(DriftAction.REVERT, Access.ADMIN, what="revert changes made outside the bot")
def revert_clicked(ctx: Interaction) -> None:
    _clicked(ctx, _reverted, "revert a change made outside the bot")


@listeners.action(DriftAction.ACCEPT, Access.ADMIN, what="accept changes made outside the bot")
def accept_clicked(ctx: Interaction) -> None:
    _clicked(ctx, _accepted, "accept a change made outside the bot")

