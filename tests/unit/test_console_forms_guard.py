"""A console command typed into a form closes the form; it never becomes the form's answer."""

import pytest

from bot.console.forms import Cancelled, FieldAsker


@pytest.mark.parametrize("typed", [":quit", ":as sam", ":help", ":cancel"])
def test_console_commands_close_the_form(typed):
    said: list[str] = []
    asker = FieldAsker(lambda _prompt: typed, said.append, find_user=lambda _r: None, find_channel=lambda _r: None)
    with pytest.raises(Cancelled):
        asker.prompt("Why? ")
    if typed != ":cancel":
        assert "form is closed without sending" in said[-1]


def test_ordinary_text_is_an_answer():
    asker = FieldAsker(lambda _prompt: "pilot rollout (CHG1)", lambda _t: None, find_user=lambda _r: None,
                       find_channel=lambda _r: None)
    assert asker.prompt("Why? ") == "pilot rollout (CHG1)"
