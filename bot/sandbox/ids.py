"""Deterministic identifiers: stable ones for the hand-written seed, reversible ones for generated rows.

Generated rows are never stored, so an id must lead back to its row index: the last 12 hex digits
hold the index scrambled by a seed-keyed bijection, and the rest is a hash that a lookup re-derives
to reject ids the sandbox never issued.
"""

from __future__ import annotations

import hashlib

_BITS = 48
_MASK = (1 << _BITS) - 1


def _digest(text: str, size: int = 16) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=size).digest()


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _as_guid(h: str) -> str:
    # Shape it like a v4 GUID, as Entra and Intune ids are.
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def stable_guid(name: str) -> str:
    """A GUID that depends only on `name` (not on the seed): hand-written seed ids never move."""
    return _as_guid(_digest("mam-sandbox:" + name).hex())


def stable_hex(name: str, length: int = 40) -> str:
    return hashlib.blake2b(("mam-sandbox:" + name).encode(), digest_size=length // 2).hexdigest()


class ReversibleIds:
    """Ids for generated row `index` of a kind, and the way back from an id to the index."""

    def __init__(self, seed: int, kind: str) -> None:
        key = int.from_bytes(_digest(f"{seed}:{kind}:key", 12), "big")
        self._mul = (key & _MASK) | 1
        self._inv = pow(self._mul, -1, 1 << _BITS)
        self._xor = (key >> _BITS) & _MASK
        self._prefix = f"{seed}:{kind}:"

    def _tail(self, index: int) -> str:
        return f"{((index * self._mul) & _MASK) ^ self._xor:012x}"

    def _index(self, tail: str) -> int | None:
        try:
            value = int(tail, 16)
        except ValueError:
            return None
        return ((value ^ self._xor) * self._inv) & _MASK

    def guid(self, index: int) -> str:
        head = _digest(self._prefix + str(index), 10).hex()
        return _as_guid(head[:20] + self._tail(index))

    def hex40(self, index: int) -> str:
        return _digest(self._prefix + str(index), 14).hex() + self._tail(index)

    def index_of_guid(self, value: str) -> int | None:
        value = value.lower()
        index = self._index(value[-12:])
        return index if index is not None and self.guid(index) == value else None

    def index_of_hex40(self, value: str) -> int | None:
        value = value.lower()
        index = self._index(value[-12:])
        return index if index is not None and len(value) == 40 and self.hex40(index) == value else None
