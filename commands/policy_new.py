"""`/mam policy new`: a modal for an Android app protection policy with a max device threat level.

The modal opens within the trigger's 3 seconds. Its submission is checked with what the bot
already knows (a short-lived cache of policy names), never a slow call; the change request's plan
checks everything again against the tenant, and so does the executor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.errors import UserError
from bot.microsoft.errors import MicrosoftError
from bot.mrkdwn import Mrkdwn, escape, md
from bot.roles import Access
from commands.blocks import section
from commands.context import CommandRequest, Form, Interaction
from commands.ids import Action, View
from commands.listen import Listeners
from commands.pickers import option
from workflows.policies import (
    ACTION_LABELS,
    FRIENDLY_APP_NAMES,
    MANAGEMENT_LEVEL_LABELS,
    THREAT_LEVEL_LABELS,
)
from workflows.policy_changes import CREATE

if TYPE_CHECKING:
    pass

APP_SETS = {"set:allMicrosoftApps": "All Microsoft apps", "set:allCoreMicrosoftApps": "Core Microsoft apps"}
DEFAULT_APPS = ("com.microsoft.office.outlook", "com.microsoft.teams", "com.microsoft.emmx")
DEVICE_TYPES = ("unmanaged", "androidEnterprise", "mdm", "unspecified")
THREAT_LEVELS = ("secured", "low", "medium", "high")
# For the max allowed device threat level on Android, Intune offers Block access and Wipe data only (warn and
# blockWhenSettingIsSupported belong to the shared enum of other settings); an existing policy shows what it has.
ACTIONS = ("block", "wipe")
WIPE_CONFIRMED = "wipe-understood"
DEVICE_TYPE_HINT = {"unmanaged": "unmanaged (MAM without enrollment)", "mdm": "Android device administrator"}


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def _select(block_id: str, label: str, options: list[dict[str, Any]], initial: str | None,
            hint: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "static_select", "action_id": "value", "options": options}
    chosen = [o for o in options if o["value"] == initial]
    if chosen:
        element["initial_option"] = chosen[0]
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "element": element,
                             "label": {"type": "plain_text", "text": label}}
    if hint:
        block["hint"] = {"type": "plain_text", "text": hint}
    return block


def _text_input(block_id: str, label: str, *, initial: str = "", multiline: bool = False, optional: bool = False,
                max_length: int = 3000, placeholder: str = "") -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value", "multiline": multiline,
                               "max_length": max_length}
    if initial:
        element["initial_value"] = initial
    if placeholder:
        element["placeholder"] = {"type": "plain_text", "text": placeholder}
    return {"type": "input", "block_id": block_id, "optional": optional, "element": element,
            "label": {"type": "plain_text", "text": label}}


def _group_picker(block_id: str, label: str, initial: list[dict[str, Any]]) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "multi_external_select", "action_id": Action.PICK_GROUP,
                               "min_query_length": 2, "max_selected_items": 25,
                               "placeholder": {"type": "plain_text", "text": "Type part of a group name"}}
    if initial:
        element["initial_options"] = initial
    return {"type": "input", "block_id": block_id, "optional": True, "element": element,
            "label": {"type": "plain_text", "text": label}}


def new_policy_modal(values: dict[str, Any] | None = None, error: Mrkdwn | None = None) -> dict[str, Any]:
    """The form; `values` refills it after a failed filing, so nothing typed is lost."""
    v = values or {}
    app_options = [option(name, package) for package, name in FRIENDLY_APP_NAMES.items()]
    set_options = [option(name, value) for value, name in APP_SETS.items()]
    chosen_apps = v.get("apps") or list(DEFAULT_APPS)
    initial_apps = [o for o in set_options + app_options if o["value"] in chosen_apps]
    device_options = [option(_first_upper(DEVICE_TYPE_HINT.get(d, MANAGEMENT_LEVEL_LABELS[d])), d)
                      for d in DEVICE_TYPES]
    chosen_types = v.get("device_types") or ["unmanaged"]
    blocks: list[dict[str, Any]] = []
    if error:
        blocks.append(section(md(":x: {}", error)))
    blocks += [
        _text_input("name", "Policy name", initial=v.get("name", ""), max_length=256,
                    placeholder="e.g. Android MAM - block above low threat"),
        _text_input("description", "Description", initial=v.get("description", ""), multiline=True,
                    optional=True, max_length=1000),
        {"type": "input", "block_id": "apps", "label": {"type": "plain_text", "text": "Apps to protect"},
         "element": {"type": "multi_static_select", "action_id": "value", "initial_options": initial_apps,
                     "option_groups": [
                         {"label": {"type": "plain_text", "text": "App sets"}, "options": set_options},
                         {"label": {"type": "plain_text", "text": "Microsoft apps"}, "options": app_options}]},
         "hint": {"type": "plain_text", "text": "Pick apps, or one app set (an app set can't be mixed with apps)."}},
        {"type": "input", "block_id": "device_types", "label": {"type": "plain_text", "text": "Device types"},
         "element": {"type": "multi_static_select", "action_id": "value", "options": device_options,
                     "initial_options": [o for o in device_options if o["value"] in chosen_types]}},
        _select("threat", "Max allowed device threat level",
                [option(_first_upper(THREAT_LEVEL_LABELS[t]), t) for t in THREAT_LEVELS], v.get("threat", "low"),
                hint="Above this level (as Defender reports it) the action below applies."),
        _select("action", "Action above that level", [option(ACTION_LABELS[a], a) for a in ACTIONS],
                v.get("action", "block")),
        _group_picker("include", "Assign to groups", v.get("include_options", [])),
        _group_picker("exclude", "Exclude groups", v.get("exclude_options", [])),
        _text_input("justification", "Why? (for the approver)", initial=v.get("justification", ""),
                    multiline=True, placeholder="e.g. protect pilot users' mail on risky phones (CHG0042)"),
        {"type": "input", "block_id": "confirm_wipe", "optional": True,
         "label": {"type": "plain_text", "text": "Only with Wipe data"},
         "element": {"type": "checkboxes", "action_id": "value", "options": [WIPE_OPTION],
                     **({"initial_options": [WIPE_OPTION]} if v.get("wipe_confirmed") else {})}},
    ]
    return {
        "type": "modal", "callback_id": View.POLICY_NEW,
        "title": {"type": "plain_text", "text": "New app protection"},
        "submit": {"type": "plain_text", "text": "Send for approval"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


WIPE_OPTION = option("I understand: Wipe data removes the work data (mail, files, accounts) from these apps on "
                     "every device above the level", WIPE_CONFIRMED)


def read_values(form: Form) -> dict[str, Any]:
    include, exclude = form.options("include"), form.options("exclude")
    return {
        "name": " ".join(form.text("name").split()),
        "description": form.text("description"),
        "apps": form.choices("apps"),
        "device_types": form.choices("device_types"),
        "threat": form.choice("threat"),
        "action": form.choice("action"),
        "include": [str(o["value"]) for o in include if o["value"] != "error"],
        "exclude": [str(o["value"]) for o in exclude if o["value"] != "error"],
        "include_options": include,
        "exclude_options": exclude,
        "justification": form.text("justification"),
        "wipe_confirmed": WIPE_CONFIRMED in form.choices("confirm_wipe"),
    }


def validate(values: dict[str, Any], taken: set[str] | None) -> dict[str, str]:
    """What can be said within the ack: with what the bot knows, never a Graph call."""
    errors: dict[str, str] = {}
    if not values["name"]:
        errors["name"] = "Give the policy a name."
    elif taken is not None and values["name"].casefold() in taken:
        errors["name"] = "An Android app protection policy already has this name; choose another."
    sets = [a for a in values["apps"] if a in APP_SETS]
    if not values["apps"]:
        errors["apps"] = "Pick at least one app, or an app set."
    elif sets and len(values["apps"]) > 1:
        errors["apps"] = "Pick one app set on its own, or individual apps, not both."
    if "unspecified" in values["device_types"] and len(values["device_types"]) > 1:
        errors["device_types"] = "'All device types' already covers the others: pick it alone."
    elif not values["device_types"]:
        errors["device_types"] = "Pick at least one device type."
    if not values["threat"]:
        errors["threat"] = "Pick the highest threat level to allow."
    if not values["action"]:
        errors["action"] = "Pick what happens above that level."
    if values["action"] == "wipe" and not values.get("wipe_confirmed"):
        errors["confirm_wipe"] = ("Wipe data removes the work data from these apps on every device above the level: "
                                  "tick the box to confirm, or choose Block access.")
    both = set(values["include"]) & set(values["exclude"])
    if both:
        errors["exclude"] = "A group can't be both assigned and excluded."
    elif values["exclude"] and not values["include"]:
        errors["include"] = ("Excluded groups only take people out of the groups a policy is assigned to: with no "
                             "group to assign it to, it protects nobody. Add one, or leave both empty.")
    if len(values["justification"]) < 5:
        errors["justification"] = "Say why this policy is needed (5+ characters)."
    return errors


def change_from(values: dict[str, Any]) -> dict[str, Any]:
    apps = values["apps"]
    app_set = next((a.split(":", 1)[1] for a in apps if a in APP_SETS), None)
    draft = {
        "displayName": values["name"],
        "description": values["description"],
        "maximumAllowedDeviceThreatLevel": values["threat"],
        "mobileThreatDefenseRemediationAction": values["action"],
        "targetedAppManagementLevels": values["device_types"],
        "appGroupType": app_set or "selectedPublicApps",
        "packageIds": [] if app_set else apps,
    }
    return {"draft": draft, "include": values["include"], "exclude": values["exclude"]}


def _message_view(title: str, text: Mrkdwn) -> dict[str, Any]:
    return {"type": "modal", "callback_id": f"{View.POLICY_NEW}_done",
            "title": {"type": "plain_text", "text": title[:24]}, "close": {"type": "plain_text", "text": "Close"},
            "blocks": [section(text)]}


def new_command(req: CommandRequest, args: list[str]) -> None:
    if args:
        raise UserError("`/mam policy new` takes no arguments: it opens a form.")
    req.ack()
    req.deps.runner.submit(req.deps.policy_names.refresh)  # warm, so the submission can check names at once
    req.open_form(new_policy_modal(), "open the new-policy form")


listeners = Listeners()


@listeners.view(View.POLICY_NEW, Access.ADMIN, what="ask for a new app protection policy")
def submitted(ctx: Interaction) -> None:
    deps, values = ctx.deps, read_values(ctx.form())
    cached = deps.policy_names.get()
    errors = validate(values, {name.casefold() for _, name in cached} if cached is not None else None)
    if errors:
        ctx.ack(response_action="errors", errors=errors)
        return
    ctx.ack(response_action="update", view=_message_view("Filing…", Mrkdwn(":hourglass_flowing_sand: Checking the "
                                                             "tenant and filing your change request…")))
    view_id = ctx.view["id"]

    def show(view: dict[str, Any]) -> None:
        ctx.client.views_update(view_id=view_id, view=view)

    def work() -> None:
        try:
            request = deps.changes.file(CREATE, change_from(values), requester=ctx.user_id,
                                        justification=values["justification"])
        except (UserError, MicrosoftError) as exc:
            # back to the form with everything as typed, and the reason on top
            show(new_policy_modal(values, error=exc.mrkdwn if isinstance(exc, UserError) else escape(str(exc))))
            return
        deps.policy_names.invalidate()
        show(_message_view(f"Request #{request.id}", md(":inbox_tray: Filed change request #{}: {}.\nAn approver "
                                                        "(not you) has to approve it; you'll get a DM with the "
                                                        "outcome.", request.id, request.title)))

    ctx.later(work, "file a new policy", tell=lambda text: show(_message_view("Something went wrong", text)))

