"""`/mam policy edit | delete "<name or id>"`, the Edit and Set-threat-level buttons: forms that file change requests.

Edit opens the new-policy form (`commands.policy_new`'s parts) filled with the policy as it is; on submit
only what differs is filed, as an EDIT request (`workflows.policy_edit`). "Set threat level" (beside a
policy that ignores Defender in `/mam policy list`) opens the same form with the level preset to Low and
the action to Block access. Delete asks for the policy's name, typed, before it files a DELETE request.

Every entry acks at once, opens a "Reading the policy…" modal with the trigger (valid for 3 seconds),
reads Graph after the ack and then fills the modal in. What the form showed (the policy's settings and
apps, its id and name) is kept in a draft (`bot.store.drafts`) for the person who opened it; the form
carries the draft's id.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from bot.errors import UsageError, UserError
from bot.microsoft.errors import MicrosoftError
from bot.microsoft.errors import NotFound as GraphNotFound
from bot.microsoft.models import AndroidPolicy, split_flags
from bot.mrkdwn import Mrkdwn, clean, cut_plain, escape, md
from bot.roles import Access
from bot.slack_limits import TEXT_INPUT_LENGTH
from commands.blocks import context, section
from commands.context import Form, Interaction
from commands.listen import Listeners
from commands.payloads import DraftRef, PolicyRef
from commands.policy_new import (
    DEVICE_TYPES,
    NAME_MAX,
    SELECTED,
    SET_PREFIX,
    Current,
    app_blocks,
    check_settings,
    chosen_apps,
    justification_block,
    name_blocks,
    name_taken,
    read_values,
    settings_blocks,
    text_input,
    wipe_block,
)
from workflows.policies import (
    APP_SETS,
    PICKER_APPS,
    RETIRED_APPS,
    action_label,
    apps_label,
    assignment_counts,
    find_policy,
    threat_level_label,
)
from workflows.policy_edit import DELETE, EDIT, SETTINGS, current_settings
from workflows.resolve import Ambiguous, Found

if TYPE_CHECKING:
    from commands.context import CommandRequest

EDIT_USAGE = '/mam policy edit "<name or id>"'
DELETE_USAGE = '/mam policy delete "<name or id>"'
EDIT_DRAFT = "policy_edit"
DELETE_DRAFT = "policy_delete"
HEADING_NAME = 200  # a name in a form's heading; the whole name is in the name field
PICK_NAMES = 10


class EditAction(StrEnum):
    """The buttons that open these forms (on `/mam policy show` and `/mam policy list`)."""

    EDIT = "policy_edit_open"
    SET_THREAT = "policy_set_threat"


class EditView(StrEnum):
    EDIT = "policy_edit"
    DELETE = "policy_delete"


def _plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def message_view(callback_id: str, title: str, text: Mrkdwn) -> dict[str, Any]:
    return {"type": "modal", "callback_id": f"{callback_id}_done", "title": _plain(title[:24]),
            "close": _plain("Close"), "blocks": [section(text)]}


def _folded(text: str) -> str:
    return " ".join(clean(text or "").split())


# ---- what an edit form starts from -----------------------------------------------------------------


def base_of(policy: AndroidPolicy, *, preset: bool = False, partly: str = "") -> dict[str, Any]:
    """What the form showed, kept in a draft: the submission files the difference against it."""
    return {"policy_id": policy.id, "name": policy.displayName, "settings": current_settings(policy),
            "apps": list(dict.fromkeys(policy.package_ids)), "preset": preset, "partly": partly}


def _fits(text: str | None) -> bool:
    return len(text or "") <= TEXT_INPUT_LENGTH


def _levels(base: dict[str, Any]) -> list[str]:
    return sorted(split_flags(base["settings"].get("targetedAppManagementLevels"))) or ["unspecified"]


def current_of(base: dict[str, Any]) -> Current:
    """The policy's values a new policy is not offered, so the edit form can show them as they are."""
    settings = base["settings"]
    group = settings.get("appGroupType") or SELECTED
    return Current(
        threat=settings.get("maximumAllowedDeviceThreatLevel") or "notConfigured",
        action=settings.get("mobileThreatDefenseRemediationAction"),
        app_group=None if group == SELECTED or group in APP_SETS else group,
        device_types=tuple(d for d in _levels(base) if d not in DEVICE_TYPES),
        apps=tuple(p for p in base["apps"] if p in RETIRED_APPS),
    )


def initial_values(base: dict[str, Any]) -> dict[str, Any]:
    settings = base["settings"]
    group = settings.get("appGroupType") or SELECTED
    offered = set(PICKER_APPS) | RETIRED_APPS
    if group != SELECTED:
        apps, custom = [f"{SET_PREFIX}{group}"], []
    else:
        apps = [p for p in base["apps"] if p in offered]
        custom = [p for p in base["apps"] if p not in offered]
    preset = bool(base.get("preset"))
    return {
        "name": base["name"],
        "description": settings.get("description") or "",
        "apps": apps,
        "custom_apps": "\n".join(custom),
        "device_types": _levels(base),
        "threat": "low" if preset else settings.get("maximumAllowedDeviceThreatLevel") or "notConfigured",
        "action": "block" if preset else settings.get("mobileThreatDefenseRemediationAction") or "block",
        "justification": "",
        "wipe_confirmed": False,
    }


def edit_modal(base: dict[str, Any], draft_id: str, values: dict[str, Any] | None = None,
               error: Mrkdwn | None = None) -> dict[str, Any]:
    v = values or initial_values(base)
    if not _fits(v.get("custom_apps")):
        raise UserError("This policy lists more apps by package id than a form field holds; change its apps in the "
                        "Intune admin center.")
    name_fits, description_fits = _fits(base["name"]), _fits(base["settings"].get("description"))
    blocks: list[dict[str, Any]] = []
    if error:
        blocks.append(section(md(":x: {}", error)))
    blocks.append(section(md("*Edit* {} (`{}`)", cut_plain(base["name"], HEADING_NAME), base["policy_id"])))
    notes: list[Mrkdwn] = []
    if base.get("partly"):
        notes.append(md(":mag: The only policy whose name matches *{}*.", cut_plain(base["partly"], HEADING_NAME)))
    if base.get("preset"):
        notes.append(Mrkdwn(":shield: This policy ignores Defender's signal. The max allowed device threat level is "
                            "preset to *Low* and the action above it to *Block access*: check them, say why, and "
                            "send it for approval."))
    if not name_fits or not description_fits:
        notes.append(Mrkdwn("The policy's name or description is longer than a form field holds, so this form "
                            "leaves it as it is."))
    if notes:
        blocks.append(context(*notes))
    blocks += name_blocks(v, name_fits=name_fits, description_fits=description_fits)
    current = current_of(base)
    blocks += app_blocks(v, current)
    blocks += settings_blocks(v, current, focus_threat=bool(base.get("preset")))
    blocks.append(context(Mrkdwn("Groups are not edited here: `/mam assign` and `/mam unassign` change them (each "
                                 "with its own approval).")))
    blocks += [justification_block(v), wipe_block(v)]
    return {
        "type": "modal", "callback_id": EditView.EDIT, "private_metadata": DraftRef(draft=draft_id).encode(),
        "title": _plain("Edit app protection"), "submit": _plain("Send for approval"), "close": _plain("Cancel"),
        "blocks": blocks,
    }


# ---- what an edit files ------------------------------------------------------------------------------


def read_edit_values(form: Form, base: dict[str, Any]) -> dict[str, Any]:
    """The form's values; a name or description the form left out (too long for it) is None: unchanged."""
    values = read_values(form)
    if not _fits(base["name"]):
        values["name"] = None
    if not _fits(base["settings"].get("description")):
        values["description"] = None
    return values


def _changed(name: str, before: Any, after: Any) -> bool:
    return not SETTINGS[name].same(before, after)


def edit_change(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The EDIT payload (`workflows.policy_edit`): only what the form changed, each with what it showed."""
    before = base["settings"]
    settings: dict[str, dict[str, Any]] = {}

    def put(name: str, after: Any) -> None:
        if _changed(name, before.get(name), after):
            settings[name] = {"before": before.get(name), "after": after}

    if values["name"] is not None and values["name"] != " ".join((base["name"] or "").split()):
        put("displayName", values["name"])
    if values["description"] is not None:
        put("description", values["description"])
    put("maximumAllowedDeviceThreatLevel", values["threat"])
    put("mobileThreatDefenseRemediationAction", values["action"])
    put("targetedAppManagementLevels", ",".join(values["device_types"]))
    group, packages = chosen_apps(values)
    put("appGroupType", group)
    change: dict[str, Any] = {"policy_id": base["policy_id"], "settings": settings}
    if group == SELECTED and set(packages) != set(base["apps"]):
        change["apps"] = {"before": list(base["apps"]), "after": packages}
    return change


def validate_edit(base: dict[str, Any], values: dict[str, Any],
                  names: list[tuple[str, str]] | None) -> dict[str, str]:
    """Within the ack, with what the bot knows (its cache of policy names), never a Graph call."""
    errors: dict[str, str] = {}
    name = values["name"]
    if name is not None:
        if not name:
            errors["name"] = "Give the policy a name."
        elif name != " ".join((base["name"] or "").split()):
            if len(name) > NAME_MAX:
                errors["name"] = f"A policy's name holds at most {NAME_MAX} characters."
            elif name_taken(name, names, except_id=base["policy_id"]):
                errors["name"] = "Another Android app protection policy has this name; choose another."
    settings = base["settings"]
    wipe_changes = values["action"] == "wipe" and (
        settings.get("mobileThreatDefenseRemediationAction") != "wipe"
        or _changed("maximumAllowedDeviceThreatLevel", settings.get("maximumAllowedDeviceThreatLevel"),
                    values["threat"]))
    check_settings(values, errors, wipe_needs_confirming=wipe_changes)
    return errors


# ---- deleting ----------------------------------------------------------------------------------------


def delete_base(policy: AndroidPolicy, partly: str = "") -> dict[str, Any]:
    included, excluded = assignment_counts(policy)
    return {"policy_id": policy.id, "name": policy.displayName, "partly": partly,
            "summary": (f"Max allowed device threat level: {threat_level_label(policy)}, "
                        f"{action_label(policy)} above it · Apps: {apps_label(policy)} · "
                        f"Groups: {included} included, {excluded} excluded")}


def expected_name(base: dict[str, Any]) -> tuple[str, str]:
    """What the requester types to confirm, and what it is called: the name, or the id when the name is longer
    than a text field holds."""
    if _fits(base["name"]):
        return base["name"], "name"
    return base["policy_id"], "id"


def delete_modal(base: dict[str, Any], draft_id: str, values: dict[str, Any] | None = None,
                 error: Mrkdwn | None = None) -> dict[str, Any]:
    v = values or {}
    expected, what = expected_name(base)
    hint = f"Exactly as it is, capitals too: {cut_plain(clean(expected), 80)}"
    blocks: list[dict[str, Any]] = []
    if error:
        blocks.append(section(md(":x: {}", error)))
    blocks.append(section(md(":warning: You are about to ask to *delete* the Android app protection policy *{}* "
                             "(`{}`).\n{}", base["name"], base["policy_id"], base["summary"])))
    if base.get("partly"):
        blocks.append(context(md(":mag: The only policy whose name matches *{}*.",
                                 cut_plain(base["partly"], HEADING_NAME))))
    blocks += [
        context(Mrkdwn("Deleted, it protects nobody: the people it covers lose its protection in its apps, unless "
                       "another policy covers them. The approval card says who it covers now (its groups and their "
                       "members).")),
        text_input("confirm_name", f"Type the policy's {what} to confirm", initial=v.get("confirm_name", ""),
                   max_length=TEXT_INPUT_LENGTH, hint=hint),
        text_input("justification", "Why? (for the approver)", initial=v.get("justification", ""), multiline=True,
                   placeholder="e.g. replaced by Android MAM - block above low (CHG0042)"),
    ]
    return {
        "type": "modal", "callback_id": EditView.DELETE, "private_metadata": DraftRef(draft=draft_id).encode(),
        "title": _plain("Delete app protection"), "submit": _plain("Send for approval"), "close": _plain("Cancel"),
        "blocks": blocks,
    }


# ---- finding the policy, after the ack -----------------------------------------------------------------


def _by_query(ctx: Interaction, query: str) -> tuple[AndroidPolicy, str]:
    """(the policy, what was typed when only part of its name matched); UserError in words otherwise."""
    found = find_policy(ctx.deps.microsoft.graph, query)
    if isinstance(found, Found):
        return found.item, "" if found.exact else query
    if isinstance(found, Ambiguous):
        names = [cut_plain(p.displayName, 80) for p in found.items[:PICK_NAMES]]
        more = len(found.items) - len(names)
        raise UserError(f"{len(found.items)} policies match “{cut_plain(query, 80)}”: {'; '.join(names)}"
                        f"{f' and {more} more' if more > 0 else ''}. Give more of the name, or the policy's id "
                        "(`/mam policy list` shows them).")
    closest = f" Closest: {'; '.join(cut_plain(n, 80) for n in found.closest)}." if found.closest else ""
    raise UserError(f"No Android app protection policy called “{cut_plain(query, 80)}”.{closest}")


def _by_id(ctx: Interaction, policy_id: str) -> AndroidPolicy:
    try:
        return ctx.deps.microsoft.graph.get_android_policy(policy_id)
    except GraphNotFound:
        raise UserError("That policy no longer exists (deleted since the button was shown).") from None


def _open_then_fill(ctx: Interaction, callback_id: str, title: str, what: str,
                    build: Callable[[], dict[str, Any]]) -> None:
    """After the ack: open a modal at once (the trigger lasts 3 seconds), read Graph, then fill it in."""
    opened: dict[str, str] = {}

    def show(view: dict[str, Any]) -> None:
        ctx.client.views_update(view_id=opened["id"], view=view)

    def tell(text: Mrkdwn) -> None:
        if opened:
            show(message_view(callback_id, "Something went wrong", text))
        else:
            ctx.tell(text)

    def work() -> None:
        waiting = message_view(callback_id, title, Mrkdwn(":hourglass_flowing_sand: Reading the policy…"))
        answer = ctx.client.views_open(trigger_id=ctx.trigger_id, view=waiting)
        opened["id"] = str(answer["view"]["id"])
        try:
            view = build()
        except UserError as exc:
            view = message_view(callback_id, title, md(":x: {}", exc.mrkdwn))
        except MicrosoftError as exc:
            view = message_view(callback_id, title, md(":x: {}", str(exc)))
        show(view)

    ctx.later(work, what, tell=tell)


def _edit_form(ctx: Interaction, find: Callable[[], tuple[AndroidPolicy, str]], *, preset: bool) -> None:
    ctx.deps.runner.submit(ctx.deps.policy_names.refresh)  # warm, so the submission can check a new name at once

    def build() -> dict[str, Any]:
        policy, partly = find()
        base = base_of(policy, preset=preset, partly=partly)
        return edit_modal(base, ctx.deps.drafts.save(EDIT_DRAFT, base, ctx.user_id))

    _open_then_fill(ctx, EditView.EDIT, "Edit app protection", "open the policy edit form", build)


def _delete_form(ctx: Interaction, find: Callable[[], tuple[AndroidPolicy, str]]) -> None:
    def build() -> dict[str, Any]:
        policy, partly = find()
        base = delete_base(policy, partly)
        return delete_modal(base, ctx.deps.drafts.save(DELETE_DRAFT, base, ctx.user_id))

    _open_then_fill(ctx, EditView.DELETE, "Delete app protection", "open the policy delete form", build)


def _query(args: list[str], usage: str) -> str:
    query = " ".join(args).strip()
    if not query:
        raise UsageError(f"Which policy? Give its name (in quotes if it has spaces) or its id: `{usage}`.")
    return query


def edit_command(req: CommandRequest, args: list[str]) -> None:
    query = _query(args, EDIT_USAGE)
    req.ack()
    _edit_form(req, lambda: _by_query(req, query), preset=False)


def delete_command(req: CommandRequest, args: list[str]) -> None:
    query = _query(args, DELETE_USAGE)
    req.ack()
    _delete_form(req, lambda: _by_query(req, query))


# ---- Slack listeners ---------------------------------------------------------------------------------

listeners = Listeners()


@listeners.action(EditAction.EDIT, Access.ADMIN, what="edit app protection policies")
def edit_clicked(ctx: Interaction) -> None:
    ctx.ack()
    policy_id = ctx.data(PolicyRef).id
    _edit_form(ctx, lambda: (_by_id(ctx, policy_id), ""), preset=False)


@listeners.action(EditAction.SET_THREAT, Access.ADMIN, what="set a policy's max device threat level")
def set_threat_clicked(ctx: Interaction) -> None:
    ctx.ack()
    policy_id = ctx.data(PolicyRef).id
    _edit_form(ctx, lambda: (_by_id(ctx, policy_id), ""), preset=True)


def _file_in_modal(ctx: Interaction, callback_id: str, kind: str, change: dict[str, Any], justification: str,
                   what: str, *, refused: Callable[[Mrkdwn], dict[str, Any]]) -> None:
    """Ack with "Filing…" in the modal, file the change after the ack, then show the filed request there, or
    `refused(reason)` (the form again) when the tenant says no."""
    ctx.ack(response_action="update", view=message_view(callback_id, "Filing…", Mrkdwn(
        ":hourglass_flowing_sand: Checking the tenant and filing your change request…")))
    deps, view_id = ctx.deps, ctx.view["id"]

    def show(view: dict[str, Any]) -> None:
        ctx.client.views_update(view_id=view_id, view=view)

    def work() -> None:
        try:
            request = deps.changes.file(kind, change, requester=ctx.user_id, justification=justification)
        except (UserError, MicrosoftError) as exc:
            show(refused(_reason(exc)))
            return
        deps.policy_names.invalidate()
        show(_filed(callback_id, request.id, request.title))

    ctx.later(work, what, tell=lambda text: show(message_view(callback_id, "Something went wrong", text)))


def _filed(callback_id: str, request_id: int | None, title: str) -> dict[str, Any]:
    return message_view(callback_id, f"Request #{request_id}", md(
        ":inbox_tray: Filed change request #{}: {}.\nAn approver (not you) has to approve it; you'll get a DM with the "
        "outcome. `/mam cancel {}` withdraws it.", request_id, title, request_id))


def _reason(exc: UserError | MicrosoftError) -> Mrkdwn:
    return exc.mrkdwn if isinstance(exc, UserError) else escape(str(exc))


@listeners.view(EditView.EDIT, Access.ADMIN, what="ask to edit app protection policies")
def edit_submitted(ctx: Interaction) -> None:
    deps = ctx.deps
    draft_id = ctx.data(DraftRef).draft
    base = deps.drafts.load(draft_id, kind=EDIT_DRAFT, user=ctx.user_id)
    values = read_edit_values(ctx.form(), base)
    errors = validate_edit(base, values, deps.policy_names.get())
    change = edit_change(base, values)
    if not errors and not change["settings"] and "apps" not in change:
        errors["threat"] = "Nothing here differs from the policy now: change a setting or the apps, or Cancel."
    if errors:
        ctx.ack(response_action="errors", errors=errors)
        return
    # refused: everything as typed, the reason on top
    _file_in_modal(ctx, EditView.EDIT, EDIT, change, values["justification"], "file a policy edit",
                   refused=lambda reason: edit_modal(base, draft_id, values, error=reason))


@listeners.view(EditView.DELETE, Access.ADMIN, what="ask to delete app protection policies")
def delete_submitted(ctx: Interaction) -> None:
    deps = ctx.deps
    draft_id = ctx.data(DraftRef).draft
    base = deps.drafts.load(draft_id, kind=DELETE_DRAFT, user=ctx.user_id)
    form = ctx.form()
    values = {"confirm_name": form.text("confirm_name"), "justification": form.text("justification")}
    expected, what = expected_name(base)
    errors: dict[str, str] = {}
    if _folded(values["confirm_name"]) != _folded(expected):
        errors["confirm_name"] = (f"That is not the policy's {what}: type it exactly as shown above (capitals and "
                                  "spaces too), or Cancel.")
    if len(values["justification"]) < 5:
        errors["justification"] = "Say why this policy should go (5+ characters)."
    if errors:
        ctx.ack(response_action="errors", errors=errors)
        return
    _file_in_modal(ctx, EditView.DELETE, DELETE, {"policy_id": base["policy_id"]}, values["justification"],
                   "file a policy deletion", refused=lambda reason: delete_modal(base, draft_id, values, error=reason))

