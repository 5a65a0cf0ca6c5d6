"""Outside text is inert where Slack parses it, shown as typed where it does not, cut only between entities."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from bot.errors import UserError, run_guarded
from bot.mrkdwn import ELLIPSIS, Mrkdwn, clean, cut_mrkdwn, cut_plain, escape, link, md, md_join, mention
from bot.store.audit import export_rows
from bot.store.models import AuditEntry
from bot.text import csv_cell
from commands.blocks import context, header, message, plain, section

HOSTILE = "<!channel> <@U123> <http://evil.example|click> & *bold*"


def test_escape_turns_every_control_sequence_into_text():
    assert escape(HOSTILE) == ("&lt;!channel&gt; &lt;@U123&gt; &lt;http://evil.example|click&gt; &amp; *bold*")
    assert isinstance(escape("x"), Mrkdwn)


def test_escape_leaves_mrkdwn_alone_so_composing_never_double_escapes():
    once = escape("a & b")
    assert escape(once) is once
    assert md("*{}* on {}", once, "<x>") == "*a &amp; b* on &lt;x&gt;"


def test_md_escapes_arguments_not_the_template_and_keeps_format_specs():
    at = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    text = md("<!date^1|x> {} · {:,} · {:%H:%M}", "<!here>", 1204, at)
    assert text == "<!date^1|x> &lt;!here&gt; · 1,204 · 09:30"
    assert md("{name}", name="&") == "&amp;"


def test_md_join_escapes_raw_parts_only():
    assert md_join(", ", ["<a>", Mrkdwn("<@U0ADMIN01>")]) == "&lt;a&gt;, <@U0ADMIN01>"


def test_mention_only_for_slack_ids_and_links_cannot_break_out():
    assert mention("U0ADMIN01") == "<@U0ADMIN01>"
    assert mention("<!channel>") == "&lt;!channel&gt;"
    made = link("https://portal.example/x?a=1&b=2|boom>", "<@U123> & co")
    assert made == "<https://portal.example/x?a=1&amp;b=2%7Cboom%3E|&lt;@U123&gt; &amp; co>"


@pytest.mark.parametrize("control", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
                                     "\u2066", "\u2067", "\u2068", "\u2069"])
def test_bidi_overrides_and_isolates_are_removed_everywhere(control):
    name = f"invoice{control}fdp.exe"
    assert clean(name) == "invoicefdp.exe"
    assert escape(name) == "invoicefdp.exe"
    assert plain(name)["text"] == "invoicefdp.exe"
    assert header(name)["text"]["text"] == "invoicefdp.exe"


def test_zero_width_disguises_go_but_real_scripts_keep_their_joiners():
    assert clean("Fin\u200bance\u2060\ufeff") == "Finance"
    assert clean("adm\u200din") == "admin"  # a joiner inside Latin only disguises
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # ZWNJ is spelling in Persian
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # an emoji ZWJ sequence
    devanagari = "\u0915\u094d\u200d\u0937"
    cjk, arabic = "\u6771\u4eac\u306e\u96fb\u8a71", "\u0647\u0627\u062a\u0641 \u0639\u0644\u064a"
    for text in (persian, family, devanagari, cjk, arabic):
        assert clean(text) == text


def test_plain_text_is_never_escaped():
    assert plain("Accept & <Test> BYOD")["text"] == "Accept & <Test> BYOD"
    assert header("Accept & <Test> BYOD")["text"]["text"] == "Accept & <Test> BYOD"


def test_control_characters_are_dropped_but_lines_stay():
    assert clean("a\x00b\x1b[31mc\nd\te") == "ab[31mc\nd\te"


@pytest.mark.parametrize("entity", ["&amp;", "&lt;", "&gt;"])
def test_mrkdwn_is_never_cut_inside_an_entity(entity):
    for pad in range(0, 8):
        text = Mrkdwn("x" * (96 + pad) + entity * 10)
        cut = cut_mrkdwn(text, 100)
        assert len(cut) <= 100 and cut.endswith(ELLIPSIS)
        body = cut[: -len(ELLIPSIS)]
        assert body.replace(entity, "").strip("x") == "", cut


def test_mrkdwn_is_never_cut_inside_a_link_or_mention():
    url_link = link("https://portal.example/very/long/path", "Open the portal")
    text = md("{} {} {}", "x" * 80, url_link, mention("U0ADMIN01"))
    for limit in range(60, len(text)):
        cut = cut_mrkdwn(text, limit)
        assert len(cut) <= limit and cut.endswith(ELLIPSIS)
        assert cut.count("<") == cut.count(">"), cut
    assert cut_mrkdwn(text, len(text)) == text


def test_section_and_message_cut_at_slack_limits_with_an_ellipsis():
    long = escape("<" * 5000)
    block = section(long)
    assert len(block["text"]["text"]) <= 3000 and block["text"]["text"].endswith("&lt;…")
    fields = section(Mrkdwn("t"), fields=[long])["fields"][0]["text"]
    assert len(fields) <= 2000 and fields.endswith("&lt;…")
    ctx = context(long)["elements"][0]["text"]
    assert len(ctx) <= 3000 and ctx.endswith(ELLIPSIS)
    assert message(long, [])["text"].endswith("&lt;…")
    assert cut_plain("y" * 200, 150) == "y" * 149 + ELLIPSIS
    assert header("h" * 200)["text"]["text"] == "h" * 149 + ELLIPSIS


def test_a_user_error_is_shown_escaped_unless_it_is_mrkdwn_already():
    told: list[str] = []

    def fail(error: UserError) -> None:
        def work() -> None:
            raise error
        run_guarded(work, tell=told.append, correlation_id="c0ffee", what="test")

    fail(UserError("No group called <!channel> & co"))
    fail(UserError(md("Only the requester ({}) can cancel.", mention("U0ADMIN01"))))
    assert told == [":x: No group called &lt;!channel&gt; &amp; co",
                    ":x: Only the requester (<@U0ADMIN01>) can cancel."]
    assert str(UserError("<!here>")) == "&lt;!here&gt;"  # an f-string that quotes the error stays inert


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"])
def test_csv_cells_that_could_start_a_formula_are_neutralised(value):
    assert csv_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["Alex", "", "1-2", "a=b", " =1"])
def test_csv_cells_that_cannot_start_a_formula_are_as_they_were(value):
    assert csv_cell(value) == value


def test_the_audit_export_neutralises_every_cell():
    entry = AuditEntry(id=1, at=datetime(2024, 5, 1, tzinfo=UTC), actor="=cmd|' /C calc'!A0",
                       action="\t=HYPERLINK(1)", outcome="ok", target="@SUM(1)", detail="-2+3")
    rows = list(csv.reader(io.StringIO("".join(export_rows(iter([entry]), "csv")))))
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["actor"] == "'=cmd|' /C calc'!A0"
    assert row["action"] == "'\t=HYPERLINK(1)"
    assert row["target"] == "'@SUM(1)" and row["detail"] == "'-2+3" and row["outcome"] == "ok"
