"""The one reading of `/mam`'s text: Slack's escaping and entities undone, words split like a shell."""

from __future__ import annotations

import pytest

from bot.command_text import Word, command_name, read_command
from bot.console.slack_text import command_text


def words(text: str) -> list[str]:
    return [str(w) for w in read_command(text).words]


@pytest.mark.parametrize(("typed", "name"), [
    ('"assign" x', "assign"),
    ("\\assign x", "assign"),
    ('as""sign x', "assign"),
    ("\u201cpolicy\u201d new", "policy"),
    ("\u2018audit\u2019 50", "audit"),
    ("ASSIGN x", "assign"),
    ("\uff21\uff33\uff33\uff29\uff27\uff2e x", "assign"),  # full-width letters
    ("as\u200bsign x", "assign"),  # a zero-width space inside the word
    ("\u00a0assign\u3000x", "assign"),  # no-break and ideographic spaces separate words
    ("", "help"),
    ("   ", "help"),
])
def test_every_spelling_of_a_name_reads_as_the_name(typed, name):
    assert read_command(typed).name == name


def test_quotes_group_words_and_apostrophes_inside_words_are_letters():
    assert words('assign "Android BYOD App Protection" "Sales EMEA" --why "pilot"') == [
        "assign", "Android BYOD App Protection", "Sales EMEA", "--why", "pilot"]
    assert words("blocked O'Brien") == ["blocked", "O'Brien"]
    assert words("blocked Bo\u2019s phone") == ["blocked", "Bo\u2019s", "phone"]  # the name keeps its apostrophe
    assert words("x 'Sales EMEA'") == ["x", "Sales EMEA"]
    assert words('x ""') == ["x", ""]
    assert words('x "a \\"quoted\\" word"') == ["x", 'a "quoted" word']


def test_an_unclosed_quote_is_an_error_not_words():
    command = read_command('assign "Android BYOD')
    assert command.error and '"' in command.error
    assert command.words == ()


def test_slack_escaping_is_undone():
    assert words('assign "Accept &amp; &lt;Test&gt; BYOD" g') == ["assign", "Accept & <Test> BYOD", "g"]


def test_entities_become_what_was_typed_and_mentions_keep_the_user_id():
    command = read_command("blocked <@U0123ABC|ana>")
    (who,) = command.args
    assert isinstance(who, Word) and who.user == "U0123ABC" and who == "@ana"
    assert read_command("blocked <@U0123ABC>").args[0].user == "U0123ABC"
    assert words("blocked <mailto:ana@contoso.com|ana@contoso.com>") == ["blocked", "ana@contoso.com"]
    # Slack links a domain it sees; the name typed is what counts
    assert words('assign "Policy for <http://contoso.com|contoso.com>" g') == ["assign", "Policy for contoso.com", "g"]
    assert words("x <https://example.com/a>") == ["x", "https://example.com/a"]
    assert words("x <#C0123|ops>") == ["x", "#ops"]
    assert words("x <!subteam^S0123|@admins>") == ["x", "@admins"]


def test_text_that_only_looks_like_a_mention_is_not_one():
    (word,) = read_command("blocked &lt;@U0123ABC&gt;").args
    assert word == "<@U0123ABC>" and word.user == ""
    # a mention inside a longer word is text
    (word,) = read_command('blocked "hi <@U0123ABC|ana>"').args
    assert word == "hi @ana" and word.user == ""


def test_private_use_marks_typed_by_someone_cannot_forge_an_entity():
    (word,) = read_command("x \ue0000\ue001").args
    assert word == "0" and word.user == ""


def test_command_name_folds_case_width_and_invisible_characters():
    assert command_name("En\u00adable-Android") == "enable-android"  # a soft hyphen is invisible
    assert command_name("\uff4e\uff45\uff57") == "new"


def test_the_console_types_text_the_way_slack_escapes_it():
    known = {"ana": "U0ANA"}
    typed = command_text('blocked @ana & "<b>" ana@contoso.com https://x.example/a @nobody',
                         find_user=known.get)
    assert typed == ('blocked <@U0ANA|ana> &amp; "&lt;b&gt;" <mailto:ana@contoso.com|ana@contoso.com> '
                     "<https://x.example/a> @nobody")
    command = read_command(typed)
    assert [str(w) for w in command.args] == ["@ana", "&", "<b>", "ana@contoso.com", "https://x.example/a", "@nobody"]
    assert command.args[0].user == "U0ANA"


def test_only_a_slack_user_id_makes_a_mention():
    (word,) = read_command("blocked <@!channel|x>").args
    assert word.user == ""
    (word,) = read_command("blocked <@U0ANA|ana>").args
    assert word.user == "U0ANA"
