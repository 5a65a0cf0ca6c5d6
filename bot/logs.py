"""What the bot is doing right now, for its logs and its audit rows: the log context.

A Slack request binds its correlation id, the Slack user and team (bot/app.py's first middleware); a change
request's execution binds its id (workflows/changes.py); a scheduled job binds its name and run. The context
lives in a `contextvars.ContextVar`, so it follows the code across function calls, and `BackgroundRunner`
copies it into the work it runs after the ack. Every log record then carries it (`ContextFilter`), in both
formats, and the audit row of a Microsoft write takes the ids from it.

The logging itself: `configure_logging` gives the root logger one stderr handler that adds the context, takes
secrets out (`Redactor`) and writes text or one JSON object per line (MAM_LOG_FORMAT).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from bot.settings import Settings

# The fields, in the order the JSON format writes them after the record's own.
FIELDS = ("correlation_id", "slack_user", "slack_team", "change_request", "job")

_EMPTY: MappingProxyType[str, Any] = MappingProxyType({})
_context: contextvars.ContextVar[MappingProxyType[str, Any]] = contextvars.ContextVar("mam_log_context",
                                                                                       default=_EMPTY)


def current() -> MappingProxyType[str, Any]:
    """The fields bound here (read-only): {} outside any request, change or job."""
    return _context.get()


@contextmanager
def bind(**fields: Any) -> Iterator[MappingProxyType[str, Any]]:
    """Add `fields` to the context for the block (None or '' leaves a field out); nested binds add to outer ones."""
    merged = dict(_context.get())
    merged.update({k: v for k, v in fields.items() if v not in (None, "")})
    token = _context.set(MappingProxyType(merged))
    try:
        yield _context.get()
    finally:
        _context.reset(token)


# ---- what every record carries, in either format -----------------------------------------------


class ContextFilter(logging.Filter):
    """Puts the bound fields on each record ('' when unbound); on the handler, so records of every logger
    (slack_sdk, apscheduler, uvicorn) get them, not only the bot's. A field passed in `extra` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _context.get()
        for name in FIELDS:
            if getattr(record, name, None) in (None, ""):
                setattr(record, name, bound.get(name, ""))
        return True


# Secrets by their shape, whoever logs them (Bolt, slack_sdk, httpx, our own code). A group keeps what names the
# secret (`Bearer `, `client_secret=`, `?`); the rest of the match becomes ***.
_SHAPES = (
    r"xox[abeposr]-[0-9A-Za-z-]+",  # Slack bot, user, refresh and legacy tokens
    r"xapp-[0-9A-Za-z-]+",  # Slack app-level token (Socket Mode)
    r"(\b[Bb]earer\s+)[0-9A-Za-z._~+/=-]+",
    r"(\b(?:client_secret|client_assertion|access_token|refresh_token|id_token)[\"']?\s*[=:]\s*[\"']?)"
    r"[^&\s\"',}]+",  # a token request's form field or its answer, as a form, a dict or JSON
    r"\beyJ[\w-]{10,}\.[\w-]+\.[\w-]*",  # a JWT (an access token or a signed assertion), however it is labelled
    r"([?&]ticket=)[^&\s\"'#<>]+",  # a Socket Mode URL: the ticket opens the app's connection
    r"(\?)(?:[^\s\"'#<>&]*&)*?(?:sig|sv)=[^\s\"'#<>]*",  # a signed download link: the whole query
)
# A known value this short would turn ordinary words into *** (and show what the secret is); none of the bot's
# real secrets is this short.
_SHORTEST_SECRET = 4


def _replace(match: re.Match[str]) -> str:
    return "".join(kept for kept in match.groups() if kept) + "***"


class Redactor(logging.Filter):
    """Takes secrets out of what a record says: its message with the arguments merged, its traceback and its
    extras. On the handler, after the handler's level: a record the handler drops costs nothing."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # each value also as it reads inside JSON (a logged request body) and inside a URL or a form
        variants = {form for s in secrets if len(s) >= _SHORTEST_SECRET
                    for form in (s, json.dumps(s)[1:-1], quote(s, safe=""), repr(s)[1:-1],
                                 repr(s.encode())[2:-1])}
        known = sorted(variants, key=len, reverse=True)
        self._pattern = re.compile("|".join([*(re.escape(s) for s in known), *_SHAPES]))

    def redact(self, text: str) -> str:
        return self._pattern.sub(_replace, text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(_message(record)), None
        if record.exc_info:  # formatted here: a traceback quotes arguments and exception messages
            record.exc_text = record.exc_text or _TRACEBACKS.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in _extras(record):
            if not isinstance(value, int | float | bool | None):
                text = _text(value, str)
                if (redacted := self.redact(text)) != text:
                    setattr(record, key, redacted)
        return True


# ---- the two formats ------------------------------------------------------------------------------

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_LABELS = {"correlation_id": "cid", "slack_user": "user", "slack_team": "team", "change_request": "change",
           "job": "job"}


class TextFormatter(logging.Formatter):
    """Today's layout, then ` [cid=… user=… team=… change=#… job=…]` with the fields that are set.

    One line per record: a newline, carriage return or terminal escape in the message (a Slack user's text)
    is written escaped (`\\n`, `\\x1b`), so it can neither split the record into a forged second line nor
    rewrite the operator's terminal. A traceback keeps its lines, each indented, so none can pass for a record.
    """

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = [f"{_LABELS[name]}={'#' if name == 'change_request' else ''}{value}"
                  for name in FIELDS if (value := getattr(record, name, "")) not in (None, "")]
        message = record.message
        record.message = escape_controls(message)
        try:
            line = super().formatMessage(record)
        finally:
            record.message = message
        return escape_controls(f"{line} [{' '.join(fields)}]" if fields else line)

    def format(self, record: logging.LogRecord) -> str:
        first, newline, rest = super().format(record).partition("\n")  # the first line is escaped whole
        if not newline:
            return first
        return first + "".join(f"\n    {escape_controls(line)}" for line in rest.splitlines())


# C0 controls but tab, DEL, C1 controls, and Unicode's line and paragraph separators
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if c != 0x09}
_CONTROLS.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape_controls(text: str) -> str:
    """`text` on one line, its control characters written as escapes."""
    return text.translate(_CONTROLS)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (json.dumps escapes newlines, and everything outside ASCII, so a hostile
    name can neither split a line nor fail to encode); never raises on odd input."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
        }
        entry.update((name, value) for name in FIELDS if (value := getattr(record, name, "")) not in (None, ""))
        entry["thread"] = record.threadName
        exc = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else "")
        if exc:
            entry["exc"] = exc
        if record.stack_info:
            entry["stack"] = record.stack_info
        for key, value in _extras(record):
            entry.setdefault(key, value)
        try:
            return json.dumps(entry, default=str, allow_nan=False)
        except Exception:  # an extra JSON cannot hold (a dict with tuple keys, a cycle, a str() that raises, NaN)
            return json.dumps({key: _jsonable(value) for key, value in entry.items()}, default=str, allow_nan=False)


# ---- set-up ----------------------------------------------------------------------------------------


class _Handler(logging.StreamHandler):
    """The one handler configure_logging owns, so a second call finds and replaces it."""


def configure_logging(level: str, fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Send every logger's records to stderr through one handler: context fields, secrets redacted, `fmt`
    ("text" or "json"). Called again (settings loaded: the real format, the secret values) it replaces that
    handler; handlers others added (pytest's) stay."""
    number = logging.getLevelName(level.upper())
    handler = _Handler(sys.stderr)
    handler.setLevel(number)
    handler.addFilter(ContextFilter())
    handler.addFilter(Redactor(secrets))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(number)
    # slack_sdk logs every failed Web API call at ERROR before raising it; the bot handles what it
    # raises and says so once, in words (e.g. `mam-bot check` with Slack unreachable)
    logging.getLogger("slack_sdk.web.base_client").setLevel(logging.CRITICAL)
    # at info, APScheduler says twice a second that its request poll ran, and Alembic lists every migration
    # at each start: theirs only from warning up, unless debugging
    for chatty in ("apscheduler", "alembic"):
        logging.getLogger(chatty).setLevel(logging.NOTSET if number <= logging.DEBUG else logging.WARNING)


def secrets_of(settings: Settings) -> list[str]:
    """The secret values in `settings`, for the Redactor: every SecretStr, and DATABASE_URL's password (as
    written and decoded), whether it is in the URL's user part or a `password=` parameter."""
    from sqlalchemy.engine import make_url

    values = [value.get_secret_value() for name in type(settings).model_fields
              if hasattr(value := getattr(settings, name), "get_secret_value")]
    try:
        url = make_url(settings.database_url)
    except Exception:  # settings validated it; a URL SQLAlchemy cannot read has no password to find
        url = None
    if url is not None:
        given = url.query.get("password")
        for password in (url.password, *(given if isinstance(given, tuple) else (given,))):
            if password:
                values += [str(password), quote(str(password), safe="")]
    return [value for value in dict.fromkeys(values) if value]


# ---- helpers -----------------------------------------------------------------------------------------

_TRACEBACKS = logging.Formatter()
# what every LogRecord has; anything else on a record came from the caller's `extra`. uvicorn's coloured copy of
# its message is left out: the message is already there.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message", *FIELDS}


def _extras(record: logging.LogRecord) -> list[tuple[str, Any]]:
    return [(key, value) for key, value in vars(record).items() if key not in _STANDARD]


def _message(record: logging.LogRecord) -> str:
    """The message with its arguments merged; one that cannot be merged (a wrong count, a str() that raises)
    still says both."""
    try:
        return record.getMessage()
    except Exception:
        return f"{_text(record.msg, str)} (not formatted; arguments: {_text(record.args, repr)})"


def _text(value: Any, convert: Callable[[Any], str]) -> str:
    try:
        return convert(value)
    except Exception:
        return object.__repr__(value)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value, default=str, allow_nan=False)  # strict JSON: NaN and Infinity are not JSON
    except Exception:
        return _text(value, repr)
    return value
