"""What a sandbox handler receives and returns, the error it raises, and Graph-style paging."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from bot.sandbox.odata import Entity, Predicate, QueryError, decode_skiptoken, encode_skiptoken

_SAFE = "$'(),:=@/"


class ApiError(Exception):
    """An error answer; the router renders it in Graph's or Defender's shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def bad_request(message: str, code: str = "BadRequest") -> ApiError:
    return ApiError(400, code, message)


@dataclass
class Reply:
    status: int
    body: Any = None                      # JSON-able; str is sent as text/plain; None sends no body
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """One request as a handler sees it."""

    method: str
    service: str                          # "graph" | "defender"
    version: str                          # "beta" | "v1.0" | "api"
    path: str                             # after the version segment, key syntax normalised
    query: list[tuple[str, str]]
    headers: httpx.Headers
    body: Any
    base: str                             # scheme://host the client used
    args: dict[str, str] = field(default_factory=dict)
    route: str = ""

    def param(self, name: str) -> str | None:
        """A query option; Graph also accepts system options without the `$` on v1.0 and beta."""
        wanted = name.lower()
        bare = wanted.lstrip("$")
        for key, value in reversed(self.query):
            lowered = key.lower()
            if lowered == wanted or (wanted.startswith("$") and lowered == bare):
                return value
        return None

    @property
    def eventual(self) -> bool:
        return self.headers.get("consistencylevel", "").strip().lower() == "eventual"

    @property
    def beta(self) -> bool:
        return self.version == "beta"

    def root(self) -> str:
        return f"{self.base}/{self.version}"

    def link(self, replace: dict[str, str]) -> str:
        """This request's URL with some query options replaced (how nextLinks are made)."""
        lowered = {k.lower().lstrip("$") for k in replace}
        kept = [(k, v) for k, v in self.query if k.lower().lstrip("$") not in lowered]
        kept.extend(replace.items())
        query = "&".join(f"{quote(k, safe='$')}={quote(v, safe=_SAFE)}" for k, v in kept)
        return f"{self.base}/{self.version}/{self.path}" + (f"?{query}" if query else "")


def parse_top(call: Call, maximum: int, strict: bool) -> int | None:
    text = call.param("$top")
    if text is None:
        return None
    try:
        top = int(text)
    except ValueError:
        raise bad_request(f"Invalid page size specified: '{text}'.", "Request_UnsupportedQuery") from None
    if top < 1 or (strict and top > maximum):
        raise bad_request(f"Invalid page size specified: '{top}'. Must be between 1 and {maximum} inclusive.",
                          "Request_UnsupportedQuery")
    return min(top, maximum)


def graph_page(
    call: Call,
    *,
    size: int,
    at: Callable[[int], Entity | None],
    context: str,
    page_size: int,
    max_top: int,
    strict_top: bool,
    predicate: Predicate | None = None,
    render: Callable[[Entity], Entity] | None = None,
    count: bool = False,
    total: Callable[[], int] | None = None,
) -> Reply:
    """One page of a collection, scanning rows lazily from the $skiptoken position. With `count`,
    `@odata.count` is `total()` when given (a cached count), else a scan of every row."""
    top = parse_top(call, max_top, strict_top) or page_size
    token = call.param("$skiptoken")
    try:
        start = decode_skiptoken(token) if token else 0
    except QueryError as exc:
        raise bad_request(str(exc)) from None

    def matches(entity: Entity | None) -> bool:
        return entity is not None and (predicate is None or predicate(entity))

    items: list[Entity] = []
    raw = start
    while raw < size and len(items) < top:
        entity = at(raw)
        raw += 1
        if entity is not None and matches(entity):
            items.append(render(entity) if render else entity)
    next_raw: int | None = None
    while raw < size:
        if matches(at(raw)):
            next_raw = raw
            break
        raw += 1
    body: dict[str, Any] = {"@odata.context": context}
    if count:
        body["@odata.count"] = total() if total is not None else sum(1 for r in range(size) if matches(at(r)))
    if next_raw is not None:
        body["@odata.nextLink"] = call.link({"$skiptoken": encode_skiptoken(next_raw)})
    body["value"] = items
    return Reply(200, body)


def order_ids(call: Call, ids: list[str], props: Callable[[str], Entity]) -> list[str]:
    """`ids` in the $orderby order of the request (displayName, createdDateTime, lastModifiedDateTime)."""
    order = call.param("$orderby")
    if not order:
        return ids
    parts = order.split()
    name = parts[0]
    descending = len(parts) > 1 and parts[1].lower() == "desc"
    if name not in ("displayName", "createdDateTime", "lastModifiedDateTime"):
        raise bad_request(f"The sandbox orders this collection only by displayName, createdDateTime or "
                          f"lastModifiedDateTime, not '{name}'.")
    return sorted(ids, key=lambda i: str(props(i).get(name) or "").casefold(), reverse=descending)
