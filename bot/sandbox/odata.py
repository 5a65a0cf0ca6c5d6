"""The slice of OData query syntax the bot's calls use: $filter, $search, $select, paging tokens."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Entity = dict[str, Any]
Predicate = Callable[[Entity], bool]


class QueryError(ValueError):
    """The query cannot be parsed or uses something the resource does not support."""

    def __init__(self, message: str, *, property_name: str | None = None) -> None:
        super().__init__(message)
        self.property_name = property_name


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![0-9A-Za-z_]))
      | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T[0-9:.]+)?Z?)
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<punct>[(),/:])
      | (?P<name>[A-Za-z_$@][A-Za-z0-9_.$@]*)
    )""",
    re.VERBOSE,
)
_COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}
_ADVANCED = {"ne", "not", "endswith"}


@dataclass
class Filter:
    """A compiled $filter: the predicate, the properties it reads and whether it is an advanced query."""

    predicate: Predicate
    properties: set[str] = field(default_factory=set)
    advanced: bool = False
    equals: tuple[str, str] | None = None   # set when the whole filter is `prop eq 'literal'`
    # set when the whole filter is `prop eq 'literal' or prop eq 'literal' ...` (props may differ)
    lookups: list[tuple[str, str]] | None = None
    lambdas: bool = False                   # uses any()/all() on a collection


@dataclass
class _Literal:
    value: Any
    kind: str   # string, number, datetime, bool, null


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise QueryError(f"Syntax error at position {pos} in '{text}'.")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _as_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) == 10:
        text += "T00:00:00Z"
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _compare(op: str, left: Any, right: Any, datetime_literal: bool) -> bool:
    if datetime_literal:
        left, right = _as_datetime(left), _as_datetime(right)
    else:
        left, right = _fold(left), _fold(right)
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if left is None or right is None:
        return False
    try:
        if op == "gt":
            return bool(left > right)
        if op == "ge":
            return bool(left >= right)
        if op == "lt":
            return bool(left < right)
        return bool(left <= right)
    except TypeError:
        return False


def _lookup(entity: Entity, path: list[str]) -> Any:
    value: Any = entity
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class _Parser:
    def __init__(self, text: str, allowed: Iterable[str] | None) -> None:
        self.toks = _tokens(text)
        self.pos = 0
        self.allowed = None if allowed is None else {a.lower(): a for a in allowed}
        self.properties: set[str] = set()
        self.advanced = False
        self.lambdas = False
        self.scopes: list[str] = []        # range variables of the lambdas being parsed
        self.text = text

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise QueryError(f"Unexpected end of filter clause '{self.text}'.")
        self.pos += 1
        return tok

    def expect(self, value: str) -> None:
        _kind, text = self.take()
        if text != value:
            raise QueryError(f"Expected '{value}' but found '{text}' in '{self.text}'.")

    def word(self, value: str) -> bool:
        tok = self.peek()
        if tok and tok[0] == "name" and tok[1].lower() == value:
            self.pos += 1
            return True
        return False

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.peek() is not None:
            raise QueryError(f"Unexpected '{self.peek()[1]}' in filter clause '{self.text}'.")  # type: ignore[index]
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.word("or"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda e: any(p(e) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.unary()]
        while self.word("and"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda e: all(p(e) for p in parts))

    def unary(self) -> Predicate:
        if self.word("not"):
            self.advanced = True
            inner = self.unary()
            return lambda e: not inner(e)
        tok = self.peek()
        if tok and tok[1] == "(":
            self.take()
            inner = self.or_expr()
            self.expect(")")
            return inner
        if tok and tok[0] == "name" and tok[1].lower() in ("startswith", "endswith", "contains"):
            return self.function()
        return self.comparison()

    def function(self) -> Predicate:
        name = self.take()[1].lower()
        if name != "startswith":
            self.advanced = True
        self.expect("(")
        path = self.property_path()
        self.expect(",")
        literal = self.literal()
        self.expect(")")
        needle = str(literal.value).casefold()

        def check(entity: Entity) -> bool:
            value = _lookup(entity, path)
            if not isinstance(value, str):
                return False
            hay = value.casefold()
            if name == "startswith":
                return hay.startswith(needle)
            if name == "endswith":
                return hay.endswith(needle)
            return needle in hay

        return check

    def property_path(self) -> list[str]:
        """A property path; inside a lambda, one rooted at its range variable comes back without it
        (relative to the collection item, [] for the item itself)."""
        kind, text = self.take()
        if kind != "name":
            raise QueryError(f"Expected a property name but found '{text}' in '{self.text}'.")
        path = [text]
        while self.peek() == ("punct", "/"):
            self.take()
            path.append(self.take()[1])
        head = path[0]
        if self.scopes:
            if head != self.scopes[-1]:
                raise QueryError(f"Inside a lambda the sandbox reads only paths of its range variable "
                                 f"'{self.scopes[-1]}', not '{head}', in '{self.text}'.")
            return path[1:]
        if self.allowed is not None:
            canonical = self.allowed.get(head.lower())
            if canonical is None:
                raise QueryError(f"Could not find a property named '{head}'.", property_name=head)
            path[0] = canonical
        self.properties.add(path[0])
        return path

    def literal(self) -> _Literal:
        kind, text = self.take()
        if kind == "string":
            return _Literal(text[1:-1].replace("''", "'"), "string")
        if kind == "guid":
            return _Literal(text.lower(), "guid")
        if kind == "datetime":
            return _Literal(text, "datetime")
        if kind == "number":
            return _Literal(float(text) if "." in text else int(text), "number")
        if kind == "name" and text.lower() in ("true", "false"):
            return _Literal(text.lower() == "true", "bool")
        if kind == "name" and text.lower() == "null":
            return _Literal(None, "null")
        raise QueryError(f"Expected a literal but found '{text}' in '{self.text}'.")

    def lambda_expr(self, collection: list[str], operator: str) -> Predicate:
        """`collection/any(v:v/prop eq 'x' and ...)`, `.../all(...)` or `.../any()` (not empty)."""
        self.advanced = True
        self.lambdas = True
        self.expect("(")
        if self.peek() == ("punct", ")"):
            self.take()
            if operator != "any":
                raise QueryError(f"all() needs a lambda expression in '{self.text}'.")
            return lambda e: bool(_items(e, collection))
        kind, variable = self.take()
        if kind != "name":
            raise QueryError(f"Expected a range variable but found '{variable}' in '{self.text}'.")
        self.expect(":")
        self.scopes.append(variable)
        inner = self.or_expr()
        self.scopes.pop()
        self.expect(")")
        if operator == "any":
            return lambda e: any(inner(item) for item in _items(e, collection))
        return lambda e: all(inner(item) for item in _items(e, collection))

    def comparison(self) -> Predicate:
        path = self.property_path()
        if len(path) > 1 and path[-1].lower() in ("any", "all") and self.peek() == ("punct", "("):
            return self.lambda_expr(path[:-1], path[-1].lower())
        _op_kind, op = self.take()
        op = op.lower()
        if op == "in":
            self.expect("(")
            values = [self.literal().value]
            while self.peek() == ("punct", ","):
                self.take()
                values.append(self.literal().value)
            self.expect(")")
            folded = {_fold(v) for v in values}
            return lambda e: _fold(_lookup(e, path)) in folded
        if op not in _COMPARE:
            raise QueryError(f"Unsupported operator '{op}' in '{self.text}'.")
        if op in _ADVANCED:
            self.advanced = True
        literal = self.literal()
        is_datetime = literal.kind == "datetime"
        value = literal.value
        return lambda e: _compare(op, _lookup(e, path), value, is_datetime)


def _items(entity: Entity, path: list[str]) -> list[Any]:
    value = _lookup(entity, path)
    return value if isinstance(value, list) else []


def _lookups(toks: list[tuple[str, str]], allowed: dict[str, str] | None) -> list[tuple[str, str]] | None:
    """[(prop, literal), ...] when the tokens are `prop eq 'literal' (or prop eq 'literal')*`."""
    if len(toks) % 4 != 3:
        return None
    out: list[tuple[str, str]] = []
    for at in range(0, len(toks), 4):
        (kind, name), (_k, op), (literal_kind, literal) = toks[at:at + 3]
        joined = at + 3 == len(toks) or (toks[at + 3][0] == "name" and toks[at + 3][1].lower() == "or")
        if kind != "name" or "/" in name or op.lower() != "eq" or literal_kind != "string" or not joined:
            return None
        canonical = name if allowed is None else allowed.get(name.lower(), name)
        out.append((canonical, literal[1:-1].replace("''", "'")))
    return out


def compile_filter(text: str, allowed: Iterable[str] | None = None) -> Filter:
    parser = _Parser(text, allowed)
    predicate = parser.parse()
    equals = None
    toks = parser.toks
    if len(toks) == 3 and toks[0][0] == "name" and toks[1][1].lower() == "eq" and toks[2][0] == "string":
        equals = (next(iter(parser.properties)), toks[2][1][1:-1].replace("''", "'"))
    return Filter(predicate, parser.properties, parser.advanced, equals, _lookups(toks, parser.allowed),
                  parser.lambdas)


_SEARCH_CLAUSE = re.compile(r'"([A-Za-z]+):([^"]*)"')
_WORD = re.compile(r"[A-Za-z0-9]+")


def compile_search(text: str, allowed: Iterable[str]) -> Predicate:
    """Graph directory $search: "prop:term" clauses joined by AND/OR; a term matches word prefixes."""
    allowed_map = {a.lower(): a for a in allowed}
    text = text.strip()
    clauses: list[Predicate] = []
    joins: list[str] = []
    pos = 0
    while True:
        match = _SEARCH_CLAUSE.match(text, pos)
        if not match:
            raise QueryError(f"Syntax error: the $search clause '{text}' is not valid.")
        prop = allowed_map.get(match.group(1).lower())
        if prop is None:
            raise QueryError(f"Unsupported $search property '{match.group(1)}'.",
                             property_name=match.group(1))
        terms = [t.casefold() for t in _WORD.findall(match.group(2))]
        clauses.append(_search_clause(prop, terms))
        pos = match.end()
        rest = text[pos:].lstrip()
        if not rest:
            break
        join = rest.split(None, 1)[0]
        if join not in ("AND", "OR"):
            raise QueryError(f"Syntax error: expected AND or OR in $search '{text}'.")
        joins.append(join)
        pos = len(text) - len(rest) + len(join)
        while pos < len(text) and text[pos].isspace():
            pos += 1

    def check(entity: Entity) -> bool:
        result = clauses[0](entity)
        for join, clause in zip(joins, clauses[1:], strict=True):
            result = (result and clause(entity)) if join == "AND" else (result or clause(entity))
        return result

    return check


def _search_clause(prop: str, terms: list[str]) -> Predicate:
    def check(entity: Entity) -> bool:
        value = entity.get(prop)
        if not isinstance(value, str):
            return False
        words = [w.casefold() for w in _WORD.findall(value)]
        return all(any(w.startswith(t) for w in words) for t in terms)

    return check


def parse_select(text: str | None, allowed: Iterable[str], type_name: str) -> list[str] | None:
    if not text:
        return None
    allowed_map = {a.lower(): a for a in allowed}
    out: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        canonical = allowed_map.get(name.lower())
        if canonical is None:
            raise QueryError(f"Could not find a property named '{name}' on type '{type_name}'.",
                             property_name=name)
        out.append(canonical)
    return out


def apply_select(entity: Entity, select: list[str] | None) -> Entity:
    if select is None:
        return entity
    out = {k: v for k, v in entity.items() if k.startswith("@odata.")}
    for name in select:
        out[name] = entity.get(name)
    return out


def parse_expand(text: str | None, allowed: Iterable[str], type_name: str) -> set[str]:
    if not text:
        return set()
    allowed_map = {a.lower(): a for a in allowed}
    out: set[str] = set()
    for raw in text.split(","):
        name = raw.strip().split("(", 1)[0]
        if not name:
            continue
        if name == "*":
            out.update(allowed_map.values())
            continue
        canonical = allowed_map.get(name.lower())
        if canonical is None:
            raise QueryError(f"Could not find a property named '{name}' on type '{type_name}'.",
                             property_name=name)
        out.add(canonical)
    return out


def encode_skiptoken(position: int) -> str:
    raw = f"sbx1:{position}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_skiptoken(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        prefix, value = text.split(":", 1)
        position = int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise QueryError("The $skiptoken is invalid or expired.") from exc
    if prefix != "sbx1" or position < 0:
        raise QueryError("The $skiptoken is invalid or expired.")
    return position
