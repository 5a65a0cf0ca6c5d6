"""Wording shared by every surface."""

from __future__ import annotations


def count(n: int, word: str, plural: str | None = None) -> str:
    """`1 device`, `2 devices`, `1,204 users`: no "(s)" in what people read."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"
