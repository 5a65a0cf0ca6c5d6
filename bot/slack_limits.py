"""Slack's documented Block Kit limits, written down once and checked on every payload the fake Slack sees.

Sources: the Block Kit reference (https://docs.slack.dev/reference/block-kit/blocks and the pages of
each block, element and composition object), the views reference (modals and Home tabs), and
`chat.postMessage` (top-level `text`). The numbers agree with the validators of `slack_sdk.models`;
this module checks the raw dicts the bot really sends, which `slack_sdk.models` never sees.

Each check returns problems in Slack's own shape, `<what is wrong> [json-pointer:/path]`, so a
test failure and Slack's `invalid_blocks` / `invalid_arguments` answer read the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# ---- the numbers ------------------------------------------------------------------------------------

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100  # modals and App Home
MESSAGE_TEXT = 40_000  # Slack truncates a longer top-level `text`; here it is an error

TEXT_OBJECT = 3000
SECTION_TEXT = 3000
SECTION_FIELDS = 10
SECTION_FIELD_TEXT = 2000
HEADER_TEXT = 150
MARKDOWN_BLOCK_TEXT = 12_000
CONTEXT_ELEMENTS = 10
ACTIONS_ELEMENTS = 25
INPUT_LABEL = 2000
INPUT_HINT = 2000
IMAGE_URL = 3000
IMAGE_ALT_TEXT = 2000
IMAGE_TITLE = 2000

BLOCK_ID = 255
ACTION_ID = 255
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
BUTTON_URL = 3000
BUTTON_ACCESSIBILITY_LABEL = 75
PLACEHOLDER = 150

SELECT_OPTIONS = 100
SELECT_OPTION_GROUPS = 100
OPTION_TEXT = 75
OPTION_VALUE = 150
OPTION_DESCRIPTION = 75
OPTION_URL = 3000
OPTION_GROUP_LABEL = 75
OVERFLOW_OPTIONS = (1, 5)
RADIO_OPTIONS = 10
CHECKBOX_OPTIONS = 10
TEXT_INPUT_LENGTH = 3000  # plain_text_input min_length / max_length / initial_value

CONFIRM_TITLE = 100
CONFIRM_TEXT = 300
CONFIRM_BUTTON = 30

VIEW_TITLE = 24  # modal title, submit and close
CALLBACK_ID = 255
EXTERNAL_ID = 255
PRIVATE_METADATA = 3000

BLOCK_TYPES = frozenset({"section", "divider", "header", "context", "actions", "image", "input", "rich_text",
                         "markdown", "file", "video"})
STATIC_SELECTS = frozenset({"static_select", "multi_static_select"})
SELECTS = STATIC_SELECTS | frozenset({
    "external_select", "multi_external_select", "users_select", "multi_users_select",
    "conversations_select", "multi_conversations_select", "channels_select", "multi_channels_select"})
TEXT_INPUTS = frozenset({"plain_text_input", "email_text_input", "url_text_input", "number_input",
                         "rich_text_input"})
WITH_PLACEHOLDER = SELECTS | TEXT_INPUTS | frozenset({"datepicker", "timepicker"})
INTERACTIVE = SELECTS | TEXT_INPUTS | frozenset({
    "button", "overflow", "radio_buttons", "checkboxes", "datepicker", "timepicker", "datetimepicker",
    "file_input", "workflow_button"})
ACTIONS_ELEMENT_TYPES = INTERACTIVE - TEXT_INPUTS - {"file_input"}
ACCESSORY_TYPES = (INTERACTIVE - TEXT_INPUTS - {"file_input", "datetimepicker"}) | {"image"}
INPUT_ELEMENT_TYPES = INTERACTIVE - {"button", "overflow", "workflow_button"}


# ---- what callers use ----------------------------------------------------------------------------------


def message_problems(payload: Mapping[str, Any]) -> list[str]:
    """A chat.postMessage / postEphemeral / update, response_url or ack body: its `text` and `blocks`."""
    problems: list[str] = []
    text = payload.get("text")
    if text is not None and not isinstance(text, str):
        problems.append(_p("must be a string", "/text"))
    elif text is not None and len(text) > MESSAGE_TEXT:
        problems.append(_p(f"must be less than {MESSAGE_TEXT + 1} characters", "/text"))
    blocks = payload.get("blocks")
    if blocks is not None:
        if not isinstance(blocks, list):
            problems.append(_p("must be an array", "/blocks"))
        else:
            problems += block_problems(blocks, limit=MESSAGE_BLOCKS)
    return problems


def block_problems(blocks: Sequence[Any], *, limit: int = MESSAGE_BLOCKS, at: str = "/blocks") -> list[str]:
    """What Slack answers `invalid_blocks` for, one string per problem."""
    problems: list[str] = []
    if len(blocks) > limit:
        problems.append(_p(f"must provide no more than {limit} items", at))
    seen: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"{at}/{i}"
        if not isinstance(block, Mapping) or block.get("type") not in BLOCK_TYPES:
            problems.append(_p("unsupported type", where))
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            problems += _string(block_id, BLOCK_ID, f"{where}/block_id")
            if str(block_id) in seen:
                problems.append(_p(f"duplicate block_id {block_id!r}", f"{where}/block_id"))
            seen.add(str(block_id))
        problems += _block(block, where)
    return problems


def view_problems(view: Mapping[str, Any], *, expected_type: str | None = None, at: str = "/view") -> list[str]:
    """A modal or Home tab as views.open/push/update/publish or a `response_action` receives it."""
    kind = view.get("type")
    if kind not in ("modal", "home") or (expected_type is not None and kind != expected_type):
        return [_p(f"must be a {expected_type or 'modal or home'} view", f"{at}/type")]
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        return [_p("missing required field: blocks", f"{at}/blocks")]
    problems = block_problems(blocks, limit=VIEW_BLOCKS, at=f"{at}/blocks")
    if kind == "modal":
        if view.get("title") is None:
            problems.append(_p("missing required field: title", f"{at}/title"))
        for key in ("title", "submit", "close"):
            if view.get(key) is not None:
                problems += _text(view[key], VIEW_TITLE, f"{at}/{key}", plain=True)
        if any(isinstance(b, Mapping) and b.get("type") == "input" for b in blocks) and not view.get("submit"):
            problems.append(_p("submit is required when an input block is present", f"{at}/submit"))
    for key, limit in (("callback_id", CALLBACK_ID), ("external_id", EXTERNAL_ID),
                       ("private_metadata", PRIVATE_METADATA)):
        if view.get(key) is not None:
            problems += _string(view[key], limit, f"{at}/{key}")
    return problems


def options_problems(payload: Mapping[str, Any]) -> list[str]:
    """An answer to a `block_suggestion` (external select): `options` or `option_groups`."""
    return _options_of(payload, "", select=True)


# ---- fitting a list into them ---------------------------------------------------------------------------


def pack_lines(lines: Sequence[str], *, max_chars: int = SECTION_TEXT, max_texts: int = 1,
               reserve: int = 0) -> tuple[list[str], int]:
    """Lines joined by newlines into at most `max_texts` texts of at most `max_chars` characters each,
    whole lines only and in order; and how many lines did not fit (say so, and how to see them).

    `reserve` characters are kept free in the last text, for a "…and N more" line added after. A single
    line longer than a text is left for the caller's cut (it still counts as shown).
    """
    texts: list[str] = []
    current: list[str] = []
    size = 0
    for shown, line in enumerate(lines):
        room = max_chars - (reserve if len(texts) == max_texts - 1 else 0)
        extra = len(line) + (1 if current else 0)
        if current and size + extra > room:
            texts.append("\n".join(current))
            current, size = [], 0
            if len(texts) == max_texts:
                return texts, len(lines) - shown
            room = max_chars - (reserve if len(texts) == max_texts - 1 else 0)
            extra = len(line)
        current.append(line)
        size += extra
    if current:
        texts.append("\n".join(current))
    return texts, 0


# ---- blocks ---------------------------------------------------------------------------------------------


def _block(block: Mapping[str, Any], at: str) -> list[str]:
    kind = block["type"]
    problems: list[str] = []
    if kind == "section":
        text, fields = block.get("text"), block.get("fields")
        if text is None and not fields:
            problems.append(_p("must provide text or fields", at))
        if text is not None:
            problems += _text(text, SECTION_TEXT, f"{at}/text")
        if fields is not None:
            problems += _items(fields, f"{at}/fields", most=SECTION_FIELDS)
            for j, field in enumerate(fields if isinstance(fields, list) else []):
                problems += _text(field, SECTION_FIELD_TEXT, f"{at}/fields/{j}")
        if block.get("accessory") is not None:
            problems += _element(block["accessory"], f"{at}/accessory", allowed=ACCESSORY_TYPES)
    elif kind == "header":
        problems += _text(block.get("text"), HEADER_TEXT, f"{at}/text", plain=True)
    elif kind == "context":
        elements = block.get("elements")
        problems += _items(elements, f"{at}/elements", least=1, most=CONTEXT_ELEMENTS)
        for j, element in enumerate(elements if isinstance(elements, list) else []):
            where = f"{at}/elements/{j}"
            if isinstance(element, Mapping) and element.get("type") == "image":
                problems += _image(element, where)
            else:
                problems += _text(element, TEXT_OBJECT, where)
    elif kind == "actions":
        elements = block.get("elements")
        problems += _items(elements, f"{at}/elements", least=1, most=ACTIONS_ELEMENTS)
        problems += _elements(elements if isinstance(elements, list) else [], f"{at}/elements",
                              allowed=ACTIONS_ELEMENT_TYPES)
    elif kind == "input":
        problems += _text(block.get("label"), INPUT_LABEL, f"{at}/label", plain=True)
        if block.get("hint") is not None:
            problems += _text(block["hint"], INPUT_HINT, f"{at}/hint", plain=True)
        if block.get("element") is None:
            problems.append(_p("missing required field: element", f"{at}/element"))
        else:
            problems += _element(block["element"], f"{at}/element", allowed=INPUT_ELEMENT_TYPES)
    elif kind == "image":
        problems += _image(block, at)
        if block.get("title") is not None:
            problems += _text(block["title"], IMAGE_TITLE, f"{at}/title", plain=True)
    elif kind == "markdown":
        problems += _string(block.get("text"), MARKDOWN_BLOCK_TEXT, f"{at}/text", least=1)
    return problems


def _elements(elements: Sequence[Any], at: str, *, allowed: frozenset[str]) -> list[str]:
    problems: list[str] = []
    action_ids: set[str] = set()
    for j, element in enumerate(elements):
        problems += _element(element, f"{at}/{j}", allowed=allowed)
        action_id = element.get("action_id") if isinstance(element, Mapping) else None
        if action_id is not None:
            if str(action_id) in action_ids:
                problems.append(_p(f"duplicate action_id {action_id!r}", f"{at}/{j}/action_id"))
            action_ids.add(str(action_id))
    return problems


def _element(element: Any, at: str, *, allowed: frozenset[str]) -> list[str]:
    if not isinstance(element, Mapping) or element.get("type") not in allowed:
        kind = element.get("type") if isinstance(element, Mapping) else None
        return [_p(f"unsupported type {kind!r} here", at)]
    kind = element["type"]
    if kind == "image":
        return _image(element, at)
    problems: list[str] = []
    if element.get("action_id") is not None:
        problems += _string(element["action_id"], ACTION_ID, f"{at}/action_id")
    if element.get("confirm") is not None:
        problems += _confirm(element["confirm"], f"{at}/confirm")
    if kind in WITH_PLACEHOLDER and element.get("placeholder") is not None:
        problems += _text(element["placeholder"], PLACEHOLDER, f"{at}/placeholder", plain=True)
    if kind == "button":
        problems += _text(element.get("text"), BUTTON_TEXT, f"{at}/text", plain=True)
        for key, limit in (("value", BUTTON_VALUE), ("url", BUTTON_URL),
                           ("accessibility_label", BUTTON_ACCESSIBILITY_LABEL)):
            if element.get(key) is not None:
                problems += _string(element[key], limit, f"{at}/{key}")
        if element.get("style") not in (None, "primary", "danger"):
            problems.append(_p("must be primary or danger", f"{at}/style"))
    elif kind in STATIC_SELECTS:
        problems += _options_of(element, at, select=True, required=True)
    elif kind == "overflow":
        least, most = OVERFLOW_OPTIONS
        problems += _items(element.get("options"), f"{at}/options", least=least, most=most)
        problems += _options(element.get("options"), f"{at}/options", select=True, url=True)
    elif kind in ("radio_buttons", "checkboxes"):
        most = RADIO_OPTIONS if kind == "radio_buttons" else CHECKBOX_OPTIONS
        problems += _items(element.get("options"), f"{at}/options", least=1, most=most)
        problems += _options(element.get("options"), f"{at}/options", select=False)
    elif kind == "plain_text_input":
        for key in ("min_length", "max_length"):
            value = element.get(key)
            if value is not None and not (isinstance(value, int) and 0 <= value <= TEXT_INPUT_LENGTH):
                problems.append(_p(f"must be between 0 and {TEXT_INPUT_LENGTH}", f"{at}/{key}"))
        if element.get("initial_value") is not None:
            problems += _string(element["initial_value"], TEXT_INPUT_LENGTH, f"{at}/initial_value")
    if kind in SELECTS:
        for key in ("initial_option", "initial_options"):
            value = element.get(key)
            if value is not None:
                problems += _options([value] if key == "initial_option" else value, f"{at}/{key}", select=True)
    return problems


def _options_of(holder: Mapping[str, Any], at: str, *, select: bool, required: bool = False) -> list[str]:
    """`options` or `option_groups` (one of them) of a static select or an options response."""
    options, groups = holder.get("options"), holder.get("option_groups")
    if options is not None and groups is not None:
        return [_p("must provide either options or option_groups, not both", at or "/")]
    if options is None and groups is None:
        return [_p("must provide options or option_groups", at or "/")] if required else []
    if options is not None:
        return _items(options, f"{at}/options", most=SELECT_OPTIONS) + _options(options, f"{at}/options",
                                                                                select=select)
    problems = _items(groups, f"{at}/option_groups", most=SELECT_OPTION_GROUPS)
    for j, group in enumerate(groups if isinstance(groups, list) else []):
        where = f"{at}/option_groups/{j}"
        if not isinstance(group, Mapping):
            problems.append(_p("must be an option group", where))
            continue
        problems += _text(group.get("label"), OPTION_GROUP_LABEL, f"{where}/label", plain=True)
        problems += _items(group.get("options"), f"{where}/options", least=1, most=SELECT_OPTIONS)
        problems += _options(group.get("options"), f"{where}/options", select=select)
    return problems


def _options(options: Any, at: str, *, select: bool, url: bool = False) -> list[str]:
    problems: list[str] = []
    for j, option in enumerate(options if isinstance(options, list) else []):
        where = f"{at}/{j}"
        if not isinstance(option, Mapping):
            problems.append(_p("must be an option object", where))
            continue
        # options of selects and overflow menus are plain_text; radio buttons and checkboxes take mrkdwn too
        problems += _text(option.get("text"), OPTION_TEXT, f"{where}/text", plain=select)
        problems += _string(option.get("value"), OPTION_VALUE, f"{where}/value", least=1)
        if option.get("description") is not None:
            problems += _text(option["description"], OPTION_DESCRIPTION, f"{where}/description", plain=select)
        if option.get("url") is not None:
            if url:
                problems += _string(option["url"], OPTION_URL, f"{where}/url")
            else:
                problems.append(_p("url is only allowed in overflow menus", f"{where}/url"))
    return problems


def _confirm(confirm: Any, at: str) -> list[str]:
    if not isinstance(confirm, Mapping):
        return [_p("must be a confirmation dialog object", at)]
    problems = _text(confirm.get("title"), CONFIRM_TITLE, f"{at}/title", plain=True)
    problems += _text(confirm.get("text"), CONFIRM_TEXT, f"{at}/text")
    problems += _text(confirm.get("confirm"), CONFIRM_BUTTON, f"{at}/confirm", plain=True)
    problems += _text(confirm.get("deny"), CONFIRM_BUTTON, f"{at}/deny", plain=True)
    return problems


def _image(image: Mapping[str, Any], at: str) -> list[str]:
    problems: list[str] = []
    if image.get("image_url") is None and image.get("slack_file") is None:
        problems.append(_p("must provide image_url or slack_file", at))
    if image.get("image_url") is not None:
        problems += _string(image["image_url"], IMAGE_URL, f"{at}/image_url", least=1)
    problems += _string(image.get("alt_text"), IMAGE_ALT_TEXT, f"{at}/alt_text", least=1)
    return problems


# ---- atoms ----------------------------------------------------------------------------------------------


def _text(obj: Any, limit: int, at: str, *, plain: bool = False) -> list[str]:
    """A text object: `plain_text` (where `plain`) or `mrkdwn`, with 1..limit characters."""
    if not isinstance(obj, Mapping):
        return [_p("must be a text object", at)]
    kind = obj.get("type")
    allowed: tuple[str, ...] = ("plain_text",) if plain else ("plain_text", "mrkdwn")
    if kind not in allowed:
        return [_p("must be a plain_text text object" if plain else "must be plain_text or mrkdwn",
                   f"{at}/type")]
    problems = _string(obj.get("text"), limit, f"{at}/text", least=1)
    if kind == "mrkdwn" and "emoji" in obj:
        problems.append(_p("emoji is only allowed on plain_text", f"{at}/emoji"))
    if kind == "plain_text" and "verbatim" in obj:
        problems.append(_p("verbatim is only allowed on mrkdwn", f"{at}/verbatim"))
    return problems


def _string(value: Any, limit: int, at: str, *, least: int = 0) -> list[str]:
    if not isinstance(value, str):
        return [_p("must be a string", at)]
    if len(value) > limit:
        return [_p(f"must be less than {limit + 1} characters", at)]
    if len(value) < least:
        return [_p(f"must be at least {least} character{'s' if least > 1 else ''}", at)]
    return []


def _items(items: Any, at: str, *, least: int = 0, most: int) -> list[str]:
    if not isinstance(items, list):
        return [_p("must be an array", at)]
    if not least <= len(items) <= most:
        return [_p(f"must provide between {least} and {most} items" if least else
                   f"must provide no more than {most} items", at)]
    return []


def _p(message: str, at: str) -> str:
    return f"{message} [json-pointer:{at}]"
