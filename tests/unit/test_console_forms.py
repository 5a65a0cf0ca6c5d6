"""Field answers come back in the exact shape Slack puts in view.state.values."""

from __future__ import annotations

from typing import Any

import pytest

from bot.console.forms import Cancelled, FieldAsker
from bot.console.session import ScriptedInput

LOW = {"text": {"type": "plain_text", "text": "Low"}, "value": "low"}
HIGH = {"text": {"type": "plain_text", "text": "High"}, "value": "high"}


def asker(*answers: str) -> tuple[FieldAsker, list[str]]:
    said: list[str] = []
    users = {"@sam": "UAPPROV01", "UAPPROV01": "UAPPROV01", "sam": "UAPPROV01"}
    fields = FieldAsker(
        ScriptedInput(answers),
        said.append,
        find_user=users.get,
        find_channel=lambda ref: ref if ref.startswith("C") else None,
    )
    return fields, said


def value(element: dict[str, Any], *answers: str, optional: bool = False) -> dict[str, Any]:
    fields, _ = asker(*answers)
    return fields.value(element, label="Field", optional=optional)


def test_text_input_required_optional_and_initial() -> None:
    text = {"type": "plain_text_input", "action_id": "v"}

    assert value(text, "", "hello") == {"type": "plain_text_input", "value": "hello"}
    assert value(text, "", optional=True) == {"type": "plain_text_input", "value": None}
    assert value({**text, "initial_value": "kept"}, "") == {"type": "plain_text_input", "value": "kept"}
    assert value({**text, "multiline": True}, "a\\nb")["value"] == "a\nb"


def test_client_side_validation_re_asks() -> None:
    fields, said = asker("abc", "120", "7")
    element = {"type": "number_input", "is_decimal_allowed": False, "min_value": "1", "max_value": "100"}

    assert fields.value(element, label="Days") == {"type": "number_input", "value": "7"}
    assert said == ["  ✗ type a whole number", "  ✗ at most 100"]
    assert value({"type": "plain_text_input", "max_length": 3}, "toolong", "ok")["value"] == "ok"
    assert value({"type": "email_text_input"}, "nope", "a@b.example")["value"] == "a@b.example"


def test_single_and_multi_choices() -> None:
    radio = {"type": "radio_buttons", "options": [LOW, HIGH]}
    boxes = {"type": "checkboxes", "options": [LOW, HIGH]}

    assert value(radio, "3", "2") == {"type": "radio_buttons", "selected_option": HIGH}
    assert value(boxes, "2,1") == {"type": "checkboxes", "selected_options": [HIGH, LOW]}
    assert value(boxes, "", optional=True) == {"type": "checkboxes", "selected_options": []}
    assert value({**radio, "initial_option": LOW}, "") == {"type": "radio_buttons", "selected_option": LOW}


def test_option_groups_are_numbered_across_groups() -> None:
    fields, said = asker("2")
    element = {
        "type": "static_select",
        "option_groups": [
            {"label": {"type": "plain_text", "text": "Calm"}, "options": [LOW]},
            {"label": {"type": "plain_text", "text": "Loud"}, "options": [HIGH]},
        ],
    }

    assert fields.value(element, label="Level") == {"type": "static_select", "selected_option": HIGH}
    assert said == ["  Calm:", "    1) Low", "  Loud:", "    2) High"]


def test_people_channels_and_dates() -> None:
    assert value({"type": "users_select"}, "@nobody", "@sam") == {
        "type": "users_select",
        "selected_user": "UAPPROV01",
    }
    assert value({"type": "multi_users_select"}, "sam, UAPPROV01") == {
        "type": "multi_users_select",
        "selected_users": ["UAPPROV01", "UAPPROV01"],
    }
    assert value({"type": "conversations_select"}, "C0CONSOLE") == {
        "type": "conversations_select",
        "selected_conversation": "C0CONSOLE",
    }
    assert value({"type": "channels_select"}, "C1") == {"type": "channels_select", "selected_channel": "C1"}
    assert value({"type": "datepicker"}, "31/12/2025", "2025-12-31") == {
        "type": "datepicker",
        "selected_date": "2025-12-31",
    }
    assert value({"type": "timepicker"}, "9", "09:30") == {"type": "timepicker", "selected_time": "09:30"}


def test_external_select_asks_the_app_for_options() -> None:
    fields, said = asker("ab", "sal", "1")
    queries: list[str] = []

    def suggest(query: str) -> dict[str, Any]:
        queries.append(query)
        return {"options": [{"text": {"type": "plain_text", "text": "Sales"}, "value": "g-1"}]}

    answer = fields.value({"type": "external_select"}, label="Group", suggest=suggest)

    assert answer == {
        "type": "external_select",
        "selected_option": {"text": {"type": "plain_text", "text": "Sales"}, "value": "g-1"},
    }
    assert queries == ["sal"]
    assert said[0] == "  ✗ type at least 3 characters to search"


def test_cancel_and_end_of_input_cancel() -> None:
    with pytest.raises(Cancelled):
        value({"type": "plain_text_input"}, ":cancel")
    with pytest.raises(Cancelled):
        value({"type": "plain_text_input"})


def test_confirm_dialog() -> None:
    confirm = {
        "title": {"type": "plain_text", "text": "Sure?"},
        "text": {"type": "plain_text", "text": "Wipe"},
    }

    assert asker("y")[0].confirm(confirm) is True
    assert asker("")[0].confirm(confirm) is False
