"""Block Kit as the console shows it: plain-text snapshots of representative surfaces."""

from __future__ import annotations

from typing import Any

from bot.console.render import Style, display_mrkdwn, render_message, render_view

NAMES = {"UADMIN001": "alex", "S0APPROVE": "mam-approvers", "C0CONSOLE": "console"}.get

APPROVAL_CARD: list[dict[str, Any]] = [
    {"type": "header", "text": {"type": "plain_text", "text": "Approval needed"}},
    {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "<@UADMIN001> asks to assign *Android MAM* to *Sales*."},
        "fields": [
            {"type": "mrkdwn", "text": "*Policy:*\nAndroid MAM"},
            {"type": "mrkdwn", "text": "*Group*\nSales"},
            {"type": "mrkdwn", "text": "*Devices:*\n42"},
        ],
    },
    {"type": "divider"},
    {
        "type": "context",
        "elements": [
            {"type": "image", "image_url": "https://x.example/i.png", "alt_text": "intune"},
            {"type": "mrkdwn", "text": "Change CR-12 · expires in 24 h"},
        ],
    },
    {
        "type": "actions",
        "block_id": "decide",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": "cr-12",
            },
            {
                "type": "button",
                "action_id": "reject",
                "text": {"type": "plain_text", "text": "Reject"},
                "style": "danger",
                "value": "cr-12",
            },
            {"type": "button", "action_id": "details", "text": {"type": "plain_text", "text": "Details"}},
        ],
    },
]


def test_approval_card_reads_like_slack() -> None:
    rendered = render_message("fallback", APPROVAL_CARD, label="DM to @sam", names=NAMES, number_from=3)

    assert rendered.text == (
        "┌ DM to @sam\n"
        "│ Approval needed\n"
        "│ ═══════════════\n"
        "│ @alex asks to assign *Android MAM* to *Sales*.\n"
        "│ *Policy:* Android MAM                   *Group*: Sales\n"
        "│ *Devices:* 42\n"
        "│ ────────────────────────────────────────\n"
        "│ [intune]  Change CR-12 · expires in 24 h\n"
        "│ [3] Approve (primary)  [4] Reject (danger)  [5] Details"
    )
    assert [(b.number, b.block_id, b.action_id, b.label) for b in rendered.buttons] == [
        (3, "decide", "approve", "Approve"),
        (4, "decide", "reject", "Reject"),
        (5, "decide", "details", "Details"),
    ]


def test_text_only_message_uses_the_text() -> None:
    rendered = render_message(
        "Done: <https://intune.example/p/1|policy 1> is live", None, label="#console post"
    )

    assert rendered.text == "┌ #console post\n│ Done: policy 1 (https://intune.example/p/1) is live"
    assert rendered.buttons == []


def test_mrkdwn_links_mentions_and_escapes_are_shown_readably() -> None:
    shown = display_mrkdwn(
        "Hi <@UADMIN001>, <@U999|pat> and <!subteam^S0APPROVE>: see <https://a.example|the doc>, "
        "<https://b.example>, <mailto:x@y.example|x@y.example> in <#C0CONSOLE>. "
        "Device &lt;!channel&gt; &amp; co, <!here>.",
        names=NAMES,
    )

    assert shown == (
        "Hi @alex, @pat and @mam-approvers: see the doc (https://a.example), "
        "https://b.example, x@y.example in #console. "
        "Device <!channel> & co, @here."
    )


def test_escaped_markup_stays_literal_and_is_not_a_mention() -> None:
    assert display_mrkdwn("&lt;@UADMIN001&gt; &amp;lt;") == "<@UADMIN001> &lt;"


def test_tty_bolds_and_plain_keeps_asterisks() -> None:
    assert display_mrkdwn("a *b* c") == "a *b* c"
    assert display_mrkdwn("a *b* c", style=Style(tty=True)) == "a \x1b[1mb\x1b[0m c"


def test_selects_and_overflow_show_their_options_and_get_numbers() -> None:
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "block_id": "pick",
            "text": {"type": "mrkdwn", "text": "Threat level"},
            "accessory": {
                "type": "static_select",
                "action_id": "level",
                "placeholder": {"type": "plain_text", "text": "Max level"},
                "options": [_option("Low", "low"), _option("Medium", "medium"), _option("High", "high")],
                "initial_option": _option("Medium", "medium"),
            },
        },
        {
            "type": "actions",
            "block_id": "more",
            "elements": [{"type": "overflow", "action_id": "menu", "options": [_option("Edit", "e")]}],
        },
    ]

    rendered = render_message("", blocks, label="#console post")

    assert rendered.text.splitlines()[1:] == [
        "│ Threat level",
        "│ [1] ▾ Max level: Low / Medium (selected) / High",
        "│ [2] ⋯ Edit",
    ]
    assert [b.kind for b in rendered.buttons] == ["static_select", "overflow"]


def test_modal_shows_inputs_with_labels_and_footer() -> None:
    view = {
        "id": "V1",
        "type": "modal",
        "title": {"type": "plain_text", "text": "New policy"},
        "submit": {"type": "plain_text", "text": "Create"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": "name",
                "label": {"type": "plain_text", "text": "Name"},
                "hint": {"type": "plain_text", "text": "Shown to admins"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "v",
                    "placeholder": {"type": "plain_text", "text": "Android MAM"},
                },
            },
            {
                "type": "input",
                "block_id": "apps",
                "optional": True,
                "label": {"type": "plain_text", "text": "Apps"},
                "element": {
                    "type": "multi_static_select",
                    "action_id": "v",
                    "options": [_option("Outlook", "o"), _option("Teams", "t")],
                },
            },
            {
                "type": "input",
                "block_id": "group",
                "label": {"type": "plain_text", "text": "Group"},
                "element": {"type": "external_select", "action_id": "g"},
            },
        ],
    }

    assert str(render_view(view)) == (
        "┌ modal “New policy”\n"
        "│ Name\n"
        "│   ✎ text — Android MAM\n"
        "│   Shown to admins\n"
        "│ Apps (optional)\n"
        "│   ▾ choose (several): Outlook / Teams\n"
        "│ Group\n"
        "│   ▾ search (type to search)\n"
        "│\n"
        "│ ( Create )  ( Cancel )"
    )


def test_home_view_buttons_are_numbered() -> None:
    view = {
        "type": "home",
        "blocks": [
            {
                "type": "actions",
                "block_id": "b",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "new",
                        "text": {"type": "plain_text", "text": "New policy"},
                    }
                ],
            }
        ],
    }

    rendered = render_view(view, label="App Home of @alex", number_from=7)

    assert rendered.text == "┌ App Home of @alex\n│ [7] New policy"
    assert rendered.buttons[0].action_id == "new"


def test_rich_text_and_attachments() -> None:
    blocks = [
        {
            "type": "rich_text",
            "elements": [
                {
                    "type": "rich_text_list",
                    "style": "bullet",
                    "elements": [
                        {"type": "rich_text_section", "elements": [{"type": "text", "text": "Outlook"}]},
                        {"type": "rich_text_section", "elements": [{"type": "user", "user_id": "UADMIN001"}]},
                    ],
                }
            ],
        }
    ]
    attachments = [{"color": "#f00", "title": "Blocked", "fields": [{"title": "Device", "value": "Pixel"}]}]

    rendered = render_message("", blocks, label="x", attachments=attachments, names=NAMES)

    assert rendered.text.splitlines()[1:] == ["│ • Outlook", "│ • @alex", "│ ▌ Blocked", "│ ▌ Device: Pixel"]


def _option(text: str, value: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text}, "value": value}


def test_known_emoji_are_drawn_and_long_lines_wrap_inside_the_frame() -> None:
    text = ":white_check_mark: *Connection*: on, :x: toggle off, :custom_thing: kept, 10:30:00 untouched"

    rendered = render_message(text, None, label="x", width=40)

    assert rendered.text.splitlines() == [
        "┌ x",
        "│ ✅ *Connection*: on, ❌ toggle off,",
        "│   :custom_thing: kept, 10:30:00",
        "│   untouched",
    ]
