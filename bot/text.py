"""Wording shared by every surface."""

from __future__ import annotations


def whole_number(text: str, *, most: int = 2**31 - 1) -> int | None:
    """`12` or `#12` typed by a person or carried by a button: ASCII digits only (`²` and `١٢` are digits
    to `str.isdigit` but not numbers people mean), and no larger than `most` (a database integer)."""
    digits = text[1:] if text.startswith("#") else text
    if not (0 < len(digits) <= 10 and digits.isascii() and digits.isdigit()):
        return None
    value = int(digits)
    return value if value <= most else None


def count(n: int, word: str, plural: str | None = None) -> str:
    """`1 device`, `2 devices`, `1,204 users`: no "(s)" in what people read."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


# Spreadsheet apps run a cell that starts with one of these as a formula (`=HYPERLINK(…)`), and a
# leading tab or carriage return hides such a start from a naive check. Names come from outside.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: a leading `'` when it could start a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text
