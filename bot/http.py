"""HTTP mode: Bolt at /slack/events plus /healthz (bot.health.Health's readiness), as an ASGI app for uvicorn.

Every request to /slack/events goes through, in this order, before Bolt sees it:

1. the body limit while reading: a Content-Length over `MAX_BODY_BYTES` is refused with 413 before
   any of the body is read; a body without one (chunked) is read until it passes the limit, then
   refused with 413, so no request ever holds more than the limit in memory;
2. the signature on the raw bytes: `v0=` HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing
   secret, compared in constant time; a missing, non-numeric or stale timestamp (more than 5 minutes
   from now either way, as Bolt and Slack's SDKs check) or a missing or wrong signature is 401;
3. the body's shape: a signed body that is not UTF-8, not JSON where JSON is announced, a `payload=`
   that is not a JSON object, or neither a command, an interaction nor an event is 400;
4. replays and duplicates (when a `SeenRequests` is given): the signature and the request's
   idempotency key (`bot.dedupe`) are claimed in one INSERT; a signature seen before is a replay
   (Slack never retries commands or interactivity, and an Events API retry is signed afresh), a key
   seen before is a double click or submit or an event retry; both are answered 200 with an empty
   body and nothing else happens. When the database cannot be reached the answer is 503: a request
   that cannot be checked is not run.

Each refusal is one log line, never a traceback. Bolt then checks the signature again (one HMAC) and
dispatches: its sync `dispatch` runs on Starlette's thread pool, never on the event loop, so one slow
request cannot hold up the others; with `process_before_response=True` it returns as soon as the
listener has acked.

uvicorn runs on a thread of its own (`HttpServer`), so that a stop is the bot's to run: /healthz says
503 while the replica drains, then the server stops, then bot/cli.py lets acknowledged work finish
and hands back what the process held (docs/deployment.md, "Shutdown").
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from slack_bolt import App
from slack_bolt.request import BoltRequest
from slack_bolt.request.internals import parse_body
from slack_bolt.response import BoltResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.dedupe import CLAIMED, describe, idempotency_key
from bot.health import Health
from bot.store import Store
from bot.store.seen import SeenRequests, seen_key

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000  # Slack payloads are far smaller; refuse anything that is not Slack
MAX_CLOCK_SKEW_S = 5 * 60  # Slack's and Bolt's window for X-Slack-Request-Timestamp, either way


class Refused(Exception):
    """A request answered without reaching Bolt: its status and the one line the log gets."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ServeFailed(Exception):
    """uvicorn could not start serving (the port is taken, the address is not this host's); it logged why."""


class HttpServer:
    """uvicorn serving the app on a thread of its own, stopped by its owner.

    The thread matters: uvicorn (0.29 and later) catches SIGTERM and SIGINT while it serves on the main
    thread and raises the signal again once it has shut down, so a process that runs it there dies
    with 143 before any clean-up written after it runs. On another thread uvicorn leaves the signals
    alone, and the main thread (bot/cli.py) decides what a signal means: `drain` (/healthz answers 503
    while requests are still served, so a load balancer stops sending any), then `stop` (no new
    connections; requests in flight finish, for at most `grace_seconds`).
    """

    def __init__(self, bolt_app: App, store: Store, *, host: str, port: int, signing_secret: str,
                 seen: SeenRequests | None = None, grace_seconds: float = 20.0) -> None:
        import uvicorn

        self.draining = threading.Event()
        app = build_asgi(bolt_app, store, signing_secret=signing_secret, seen=seen, stopping=self.draining)
        # log_config None: uvicorn's lines go to the bot's handler (bot.logs: its format, secrets masked)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, log_config=None,
                                timeout_graceful_shutdown=max(1, round(grace_seconds)))
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="mam-http")

    def start(self, timeout: float = 30.0) -> None:
        """Returns once uvicorn listens; raises ServeFailed when it could not start."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServeFailed("the HTTP server did not start; its log says why")
            time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def drain(self) -> None:
        """Say not-ready on /healthz (503) while still serving every request."""
        self.draining.set()

    def stop(self, *, force: bool = False) -> None:
        """Stop taking connections, let requests in flight finish (all at once with `force`), and wait."""
        self.draining.set()
        self._server.should_exit = True
        self._server.force_exit = force
        self._thread.join()


def serve(bolt_app: App, store: Store, *, host: str, port: int, signing_secret: str,
          seen: SeenRequests | None = None, stop: threading.Event | None = None, drain_seconds: float = 0.0,
          grace_seconds: float = 20.0, hurry: threading.Event | None = None) -> None:
    """Serve the app until `stop` is set (`mam-bot serve`, and the benchmark's empty app).

    Once `stop` is set, /healthz answers 503 for `drain_seconds` while requests are still served, then
    the server stops (`HttpServer.stop`). `hurry` set cuts the drain and the requests' grace short.
    Without `stop` it serves until the process ends. Raises ServeFailed when it could not start.
    """
    server = HttpServer(bolt_app, store, host=host, port=port, signing_secret=signing_secret, seen=seen,
                        grace_seconds=grace_seconds)
    server.start()
    stop = stop or threading.Event()
    hurry = hurry or threading.Event()
    try:
        while not stop.wait(0.2):  # in slices: the main thread takes signals between them
            if not server.running:
                return
        server.drain()
        log.warning("stopping: /healthz answers 503 for %g s while requests are still served", drain_seconds)
        hurry.wait(drain_seconds)
    finally:
        server.stop(force=hurry.is_set())


def build_asgi(bolt_app: App, store: Store, *, signing_secret: str, seen: SeenRequests | None = None,
               clock: Callable[[], float] = time.time, stopping: threading.Event | None = None) -> Starlette:
    """`seen`: where replays and duplicates are caught before Bolt runs (None: Bolt's middleware alone).
    `stopping`: once set, /healthz answers 503 (the replica is on its way out) and requests are still served."""
    if not signing_secret.strip():
        raise ValueError("HTTP mode needs the signing secret (SLACK_SIGNING_SECRET)")
    secret = signing_secret.encode()

    async def slack_events(request: Request) -> Response:
        try:
            raw = await read_body(request)
            signature = verify_signature(request, raw, secret, clock())
            text, body = parse_signed(raw, request.headers.get("content-type"))
            bolt_response = await run_in_threadpool(dispatch, bolt_app, seen, request, text, body, signature)
        except Refused as refused:
            log.warning("refused %s from %s: %s", refused.status, _client(request), refused.reason)
            # 413: the rest of the body is still coming; closing the connection stops it at the source
            # (otherwise the server would read, and drop, all of it to keep the connection alive)
            return Response(status_code=refused.status,
                            headers={"connection": "close"} if refused.status == 413 else None)
        if bolt_response is None:
            return Response(status_code=200)
        return Response(
            content=bolt_response.body,
            status_code=bolt_response.status,
            headers={k: v[0] for k, v in bolt_response.headers.items() if v and k.lower() != "content-length"},
        )

    health = Health(store, stopping=stopping)

    async def healthz(_: Request) -> Response:
        status, body = await run_in_threadpool(health.ready)
        return JSONResponse(body, status_code=status)

    return Starlette(
        routes=[
            Route("/slack/events", slack_events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def dispatch(bolt_app: App, seen: SeenRequests | None, request: Request, text: str, body: dict[str, Any],
             signature: str) -> BoltResponse | None:
    """On the thread pool: claim the keys (one INSERT), then Bolt; None for a replay or a duplicate."""
    headers: dict[str, str | Sequence[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name, [])
        headers[name] = [*headers[name], value]
    try:
        bolt_request = BoltRequest(body=text, query=request.url.query, headers=headers)
    except Exception as exc:  # a JSON object Bolt cannot read (a field of the wrong type): signed, still not Slack
        raise Refused(400, f"signed body Bolt cannot read ({type(exc).__name__})") from None
    if seen is not None:
        signature_key = seen_key("signature", signature)
        key = idempotency_key(body)
        try:
            fresh = seen.claim(signature_key, *([key] if key else []))
        except SQLAlchemyError as exc:  # fail closed: without the table a replay cannot be told apart
            raise Refused(503, f"database unreachable, cannot check for replays: {type(exc).__name__}") from None
        if signature_key not in fresh:
            log.warning("replayed request ignored (%s, signature seen before)", describe(body))
            return None
        if key is not None:
            if key not in fresh:
                log.info("duplicate %s ignored", describe(body))
                return None
            bolt_request.context[CLAIMED] = key  # bot.dedupe's middleware: already claimed
    try:
        return bolt_app.dispatch(bolt_request)
    except Exception as exc:  # listeners' errors are Bolt's error handler's; this is before any ran
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise Refused(400, f"Bolt could not handle the signed body: {type(exc).__name__} "
                           f"at {where.filename}:{where.lineno}") from None


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, never more than `limit` bytes of it in memory: 413 as soon as it is known to be larger."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            raise Refused(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise Refused(413, f"body of {int(declared):,} bytes declared, over the {limit:,}-byte limit")
    body = bytearray()
    try:
        async for chunk in request.stream():
            if len(body) + len(chunk) > limit:
                raise Refused(413, f"body over the {limit:,}-byte limit (stopped reading)")
            body += chunk
    except ClientDisconnect:
        raise Refused(400, "the client went away before the body was complete") from None
    return bytes(body)


def verify_signature(request: Request, raw: bytes, secret: bytes, now: float) -> str:
    """Slack's v0 signature over the raw bytes; returns it (the replay key) or raises 401."""
    timestamp = request.headers.get("x-slack-request-timestamp")
    if not timestamp:
        raise Refused(401, "no X-Slack-Request-Timestamp")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise Refused(401, "X-Slack-Request-Timestamp is not a number")
    if abs(now - int(timestamp)) > MAX_CLOCK_SKEW_S:
        raise Refused(401, "X-Slack-Request-Timestamp is more than 5 minutes from now")
    signature = request.headers.get("x-slack-signature")
    if not signature:
        raise Refused(401, "no X-Slack-Signature")
    expected = "v0=" + hmac.new(secret, b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    # Header values arrive as latin-1 text; compare bytes so any value compares in constant time.
    if not hmac.compare_digest(expected.encode(), signature.encode("latin-1", errors="replace")):
        raise Refused(401, "bad X-Slack-Signature")
    return signature


def parse_signed(raw: bytes, content_type: str | None) -> tuple[str, dict[str, Any]]:
    """The body as Bolt will read it (Bolt's own parser), or 400 when it is not something Slack sends."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "signed body is not UTF-8") from None
    kind = content_type.split(";")[0] if content_type else None
    try:
        body = parse_body(text, kind)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise Refused(400, f"signed body does not parse ({type(exc).__name__}, content type {kind})") from None
    if not isinstance(body, dict):
        raise Refused(400, f"signed body is a JSON {type(body).__name__}, not an object")
    if not (body.get("command") or body.get("type") or body.get("ssl_check")):
        raise Refused(400, "signed body is neither a command, an interaction nor an event")
    problem = shape_problem(body)
    if problem:
        raise Refused(400, f"signed body is not shaped like Slack's: {problem}")
    return text, body


# The fields Bolt and the bot read before a listener runs, and the type Slack always sends them as: a
# signed body with anything else is not from Slack (it could only come from someone with the secret),
# and would fail deep inside Bolt with a traceback instead of one line.
_COMMAND_TEXT_FIELDS = ("command", "text", "user_id", "channel_id", "team_id", "trigger_id", "response_url")
_OBJECT_FIELDS = ("user", "team", "channel", "container", "view", "message", "enterprise")


def shape_problem(body: dict[str, Any]) -> str:
    """What is wrong with the shape of a signed body, or '' when it is shaped as Slack sends it."""
    if body.get("command") is not None:
        for name in _COMMAND_TEXT_FIELDS:
            if name in body and not isinstance(body[name], str):
                return f"`{name}` is not text"
        return ""
    for name in _OBJECT_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], dict):
            return f"`{name}` is not an object"
    for name, value in ((n, (body.get(o) or {}).get(n)) for o, n in (("user", "id"), ("team", "id"))):
        if value is not None and not isinstance(value, str):
            return f"`{name}` is not text"
    view = body.get("view")
    if view is not None and not isinstance(view.get("type"), str):
        return "`view.type` is not text"
    actions = body.get("actions")
    if actions is not None and not (isinstance(actions, list) and all(isinstance(a, dict) for a in actions)):
        return "`actions` is not a list of objects"
    if body.get("type") == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "`event` is not an object with a type"
    return ""


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"
