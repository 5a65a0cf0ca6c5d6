"""`/mam policy list | show <name or id>`: Android app protection policies, read-only.

Each verb is one entry in `VERBS`; the command acks at once and fills the answer in with one
`response_url` update after Graph has answered.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.blocks import Block, button, context, escape, fields_section, header, section
from bot.deps import Deps
from bot.errors import UsageError, new_correlation_id, run_guarded
from bot.microsoft.models import AndroidPolicy
from bot.registry import Subcommand, Verb
from bot.roles import Access
from commands import policy_new
from commands.context import CommandRequest
from commands.ids import Action
from workflows.policies import (
    PARTNER_PRIORITY_LABELS,
    PolicyDetail,
    PolicyLookup,
    PolicyPage,
    action_label,
    apps_label,
    assignment_counts,
    ignores_defender,
    label,
    list_policies,
    management_level_labels,
    show_policy,
    show_policy_by_id,
    threat_level_label,
)
from workflows.resolve import Ambiguous, NotFound

USAGE = "/mam policy list | show <name or id>"
NEW_USAGE = "/mam policy new"
MAX_MESSAGE_BLOCKS = 50
LIST_LIMIT = MAX_MESSAGE_BLOCKS - 3  # header, summary and the "more" note take the other three
PICK_LIMIT = 10
APPS_SHOWN = 15
TARGETS_SHOWN = 30
DESCRIPTION_MAX = 500
LIST_TITLE = "Android app protection policies"
SHOW_TITLE = "Android app protection policy"
WHERE_TO_SET_IT = ("Intune admin center: Apps > App protection policies > (the policy) > Properties > "
                   "Conditional launch > Device conditions > Max allowed device threat level")


def register(app: App, deps: Deps) -> None:
    deps.registry.add_command(Subcommand(
        name="policy", usage=USAGE,
        summary="Android app protection policies: Defender threat level, action, apps and groups.",
        access=Access.READ, handler=policy_command, group="Policies",
        verbs=(Verb("new", NEW_USAGE, "A form for a new Android app protection policy with a max device threat "
                                      "level (an approver approves).", Access.ADMIN),),
    ))
    for action, replace in ((Action.POLICY_SHOW, False), (Action.POLICY_PICK, True)):
        deps.registry.add_interaction("action", action, Access.READ)
        app.action(action)(_show_button(deps, replace=replace))


def policy_command(req: CommandRequest) -> None:
    verb, *rest = req.args or ["list"]
    handler = VERBS.get(verb.lower())
    if handler is None:
        known = ", ".join(f"`{v}`" for v in VERBS)
        raise UsageError(f"I don't know `/mam policy {escape(verb)}`; try {known}.")
    handler(req, rest)


def list_command(req: CommandRequest, args: list[str]) -> None:
    if args:
        raise UsageError("`/mam policy list` takes no arguments; `/mam policy show &lt;name&gt;` shows one policy.")
    req.ack(response_type="ephemeral", text=":hourglass_flowing_sand: Reading Android app protection policies…")

    def work() -> None:
        page = list_policies(req.deps.microsoft.graph, limit=LIST_LIMIT)
        req.respond(replace_original=True, response_type="ephemeral", text=list_summary(page),
                    blocks=list_blocks(page))

    req.later(work, "policy list")


def show_command(req: CommandRequest, args: list[str]) -> None:
    # Unquoted words are one name too: `show Android BYOD App Protection`.
    query = " ".join(args).strip()
    if not query:
        raise UsageError("Which policy? Give its name (in quotes if it has spaces) or its id.")
    req.ack(response_type="ephemeral", text=f":hourglass_flowing_sand: Reading the policy *{escape(query)}*…")

    def work() -> None:
        text, blocks = lookup_message(show_policy(req.deps.microsoft.graph, query))
        req.respond(replace_original=True, response_type="ephemeral", text=text, blocks=blocks)

    req.later(work, "policy show")


VERBS: dict[str, Callable[[CommandRequest, list[str]], None]] = {
    "list": list_command,
    "show": show_command,
    "new": policy_new.new_command,
}


def _show_button(deps: Deps, *, replace: bool) -> Callable[..., None]:
    """A Details / pick-list button: its value is the policy id."""

    def show(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        policy_id = str((body.get("actions") or [{}])[0].get("value", ""))
        deps.runner.submit(_show_by_id, deps, respond, policy_id, replace, new_correlation_id())

    return show


def _show_by_id(deps: Deps, respond: Respond, policy_id: str, replace: bool, correlation_id: str) -> None:
    def work() -> None:
        text, blocks = lookup_message(show_policy_by_id(deps.microsoft.graph, policy_id))
        respond(replace_original=replace, response_type="ephemeral", text=text, blocks=blocks)

    def tell(text: str) -> None:
        respond(replace_original=False, response_type="ephemeral", text=text)

    run_guarded(work, tell=tell, correlation_id=correlation_id, what="policy show")


# ---- Block Kit: the list ------------------------------------------------------------------------------


def list_summary(page: PolicyPage) -> str:
    if not page.total:
        return f"{LIST_TITLE}: none yet."
    return f"{LIST_TITLE}: {_count(page.total, 'policy', 'policies')}, {page.ignoring_defender} ignoring Defender."


def list_blocks(page: PolicyPage) -> list[Block]:
    blocks: list[Block] = [header(LIST_TITLE)]
    if not page.total:
        blocks.append(section("There are no Android app protection policies in this tenant yet."))
        return blocks
    summary = _count(page.total, "policy", "policies")
    if page.ignoring_defender:
        ignore = "ignores" if page.ignoring_defender == 1 else "ignore"
        summary += (f"; :warning: {page.ignoring_defender} {ignore} Defender's signal "
                    "(max allowed device threat level not configured)")
    blocks.append(context(summary + "."))
    blocks += [policy_row(p) for p in page.policies]
    if page.more:
        blocks.append(context(f"…and {page.more} more not shown (Slack shows {MAX_MESSAGE_BLOCKS} blocks "
                              "at most). `/mam policy show &lt;name or id&gt;` shows one policy in full."))
    return blocks[:MAX_MESSAGE_BLOCKS]


def policy_row(policy: AndroidPolicy) -> Block:
    lines = [f"*{escape(policy.displayName)}*", _threat_line(policy),
             f"Devices: {escape(', '.join(management_level_labels(policy)))}",
             f"Apps: {escape(apps_label(policy))} · Assigned: {_assignment_summary(policy)}"]
    return section("\n".join(lines), accessory=button("Details", Action.POLICY_SHOW, policy.id))


def _threat_line(policy: AndroidPolicy) -> str:
    if ignores_defender(policy):
        return ":warning: Max device threat level *not configured*: ignores Defender's signal"
    return (f":shield: Max device threat level *{escape(threat_level_label(policy))}*, "
            f"above it: {escape(action_label(policy))}")


def _assignment_summary(policy: AndroidPolicy) -> str:
    included, excluded = assignment_counts(policy)
    if not included and not excluded:
        return "not assigned"
    return f"{included} included, {excluded} excluded"


# ---- Block Kit: one policy, a pick list, not found -----------------------------------------------------


def lookup_message(result: PolicyLookup | NotFound) -> tuple[str, list[Block]]:
    """(notification text, blocks) for whatever a lookup found."""
    if isinstance(result, PolicyDetail):
        return f"{SHOW_TITLE}: {escape(result.policy.displayName)}", detail_blocks(result)
    if isinstance(result, Ambiguous):
        return f"Several policies match {escape(result.query)}.", pick_list_blocks(result)
    text = not_found_text(result)
    return text, [section(text)]


def detail_blocks(detail: PolicyDetail) -> list[Block]:
    policy = detail.policy
    title = f"*{escape(policy.displayName)}*"
    if policy.description and policy.description.strip():
        title += "\n" + escape(_shorten(policy.description.strip(), DESCRIPTION_MAX))
    blocks: list[Block] = [header(SHOW_TITLE), section(title)]
    if detail.partly_matched:
        blocks.append(context(f":mag: The only policy whose name matches *{escape(detail.partly_matched)}*."))
    if ignores_defender(policy):
        blocks.append(section(
            ":warning: *Max allowed device threat level is not configured*: this policy ignores Defender's "
            f"signal, so a device at high risk keeps its managed apps.\n*Set it in:* {escape(WHERE_TO_SET_IT)}"
        ))
    blocks.append(fields_section(settings_fields(policy)))
    blocks.append(section(apps_text(detail)))
    blocks.append(section(targets_text(detail)))
    blocks.append(context(f"Id `{escape(policy.id)}` · Read-only: nothing was changed."))
    return blocks


def settings_fields(policy: AndroidPolicy) -> list[str]:
    threat = threat_level_label(policy)
    fields = [
        f"*Max allowed device threat level*\n{escape(threat)}",
        f"*Action above it*\n{escape(action_label(policy))}",
        f"*Device types*\n{escape(', '.join(management_level_labels(policy)))}",
        f"*Apps*\n{escape(apps_label(policy))}",
        f"*Assigned*\n{_yes_no(policy.isAssigned)}",
        f"*Last modified*\n{_when(policy.lastModifiedDateTime)}",
    ]
    if policy.mobileThreatDefensePartnerPriority:
        priority = label(PARTNER_PRIORITY_LABELS, policy.mobileThreatDefensePartnerPriority)
        fields.append(f"*Primary MTD service*\n{escape(priority)}")
    return fields


def apps_text(detail: PolicyDetail) -> str:
    names = detail.apps
    if not names:
        return "*Apps*: none. The policy protects no app until apps are added."
    shown = ", ".join(escape(n) for n in names[:APPS_SHOWN])
    rest = len(names) - APPS_SHOWN
    return f"*Apps* ({len(names)}): {shown}" + (f" and {rest} more" if rest > 0 else "")


def targets_text(detail: PolicyDetail) -> str:
    if not detail.targets:
        return "*Groups*: not assigned to any group, so it applies to nobody yet."
    lines = ["*Groups*"]
    for target in detail.targets[:TARGETS_SHOWN]:
        verb = ":no_entry_sign: Excluded" if target.excluded else ":busts_in_silhouette: Included"
        if not target.found:
            lines.append(f"{verb}: group `{escape(target.group_id)}`, not found (deleted?)")
            continue
        members = "" if target.members is None else f" · {_count(target.members, 'member', 'members')}"
        lines.append(f"{verb}: *{escape(target.name)}*{members}")
    rest = len(detail.targets) - TARGETS_SHOWN
    if rest > 0:
        lines.append(f"…and {rest} more")
    return "\n".join(lines)


def pick_list_blocks(result: Ambiguous[AndroidPolicy]) -> list[Block]:
    blocks: list[Block] = [section(
        f":mag: {len(result.items)} Android app protection policies match *{escape(result.query)}*: pick one."
    )]
    for policy in result.items[:PICK_LIMIT]:
        text = f"*{escape(policy.displayName)}*\n{_threat_line(policy)}"
        blocks.append(section(text, accessory=button("Show", Action.POLICY_PICK, policy.id)))
    rest = len(result.items) - PICK_LIMIT
    if rest > 0:
        blocks.append(context(f"…and {rest} more: type more of the name, or give the policy id."))
    return blocks


def not_found_text(result: NotFound) -> str:
    text = f":grey_question: No Android app protection policy called *{escape(result.query)}*."
    if result.closest:
        return text + " Closest: " + ", ".join(f"*{escape(name)}*" for name in result.closest) + "."
    return text + " `/mam policy list` shows them all."


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else "yes" if value else "no"


def _when(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if moment else "unknown"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
