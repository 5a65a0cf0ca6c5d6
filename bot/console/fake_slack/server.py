"""FakeSlack: the recorded workspace, its Web API and its response_urls, served over HTTP on 127.0.0.1.

The server routes `/api/<method>` to the Web API (after checking the token and applying the rate
limits and failures a test asked for), `/hooks/...` to the response_urls and `/upload/v1/<id>` to
the file upload, and records every call; `socket_mode()` adds Slack's Socket Mode beside it.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from bot.console.fake_slack.model import ApiError, FakeUser, FakeUsergroup, LimitError, RecordedCall
from bot.console.fake_slack.recording import TRIGGER_TTL_SECONDS
from bot.console.fake_slack.response_urls import ResponseUrls
from bot.console.fake_slack.web_api import WebApi

if TYPE_CHECKING:
    from bot.console.socket_mode import SocketModeServer

log = logging.getLogger(__name__)

_LIVE: weakref.WeakSet[FakeSlack] = weakref.WeakSet()
_TRACKERS: list[list[FakeSlack]] = []


def live_fakes() -> list[FakeSlack]:
    """Every FakeSlack not yet garbage-collected (the test suite checks their limit violations)."""
    return list(_LIVE)


@contextmanager
def tracking_fakes() -> Iterator[list[FakeSlack]]:
    """A list that every FakeSlack made inside the block joins (held there, so none is collected unseen)."""
    made: list[FakeSlack] = []
    _TRACKERS.append(made)
    try:
        yield made
    finally:
        _TRACKERS.remove(made)


class _Bucket:
    """Token bucket: `burst` calls at once, then `per_second` on average."""

    def __init__(self, per_second: float, burst: int, per_channel: bool) -> None:
        self.per_second = per_second
        self.burst = burst
        self.per_channel = per_channel
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float) -> float:
        """0 when the call may go ahead, else seconds until it may."""
        tokens, last = self._state.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.per_second)
        if tokens >= 1.0:
            self._state[key] = (tokens - 1.0, now)
            return 0.0
        self._state[key] = (tokens, now)
        return (1.0 - tokens) / self.per_second


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeSlack


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.server.fake._serve(self)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:  # the console owns the terminal
        pass


_JSON_ARGS = ("blocks", "attachments", "view", "files", "metadata")


class FakeSlack(WebApi, ResponseUrls):
    """Slack's Web API and response_urls for one workspace, on `127.0.0.1:<free port>`."""

    def __init__(
        self,
        users: Iterable[FakeUser] | None = None,
        usergroups: Mapping[str, Sequence[str]] | Iterable[FakeUsergroup] | None = None,
        channels: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        trigger_ttl: float = TRIGGER_TTL_SECONDS,
    ) -> None:
        super().__init__(users, usergroups, channels, clock=clock, trigger_ttl=trigger_ttl)
        self._limits: dict[str, _Bucket] = {}
        self._failures: dict[str, list[ApiError]] = {}
        _LIVE.add(self)
        for made in _TRACKERS:
            made.append(self)

        self._inflight = 0
        self._idle = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._socket_mode = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-slack", daemon=True
        )
        self._thread.start()
        return self

    def socket_mode(self, **options: Any) -> SocketModeServer:
        """Turn on Socket Mode: a local WebSocket server whose URLs `apps.connections.open` hands out.

        `options` go to SocketModeServer (ack_timeout, disconnect_grace, max_retries); a second call
        returns the running server.
        """
        from bot.console.socket_mode import SocketModeServer

        if self._socket_mode is None:
            self._socket_mode = SocketModeServer(self, **options).start()
        return self._socket_mode

    def stop(self) -> None:
        if self._socket_mode is not None:
            self._socket_mode.stop()
            self._socket_mode = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self._port = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/"

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no HTTP request is being answered (calls already sent have fully landed)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout=timeout)

    # --- fault injection --------------------------------------------------------------------------

    def rate_limit(
        self,
        method: str,
        per_second: float | None = 1.0,
        *,
        burst: int | None = None,
        per_channel: bool = False,
    ) -> None:
        """Answer 429 + Retry-After beyond `per_second` (after `burst` at once); None turns it off.

        `per_channel=True` keeps one bucket per channel, like chat.postMessage's 1/s per channel.
        """
        with self._lock:
            if per_second is None:
                self._limits.pop(method, None)
            else:
                self._limits[method] = _Bucket(
                    per_second, burst or max(1, math.floor(per_second)), per_channel
                )

    def fail_next(
        self, method: str, error: str = "internal_error", *, times: int = 1, status: int = 200
    ) -> None:
        """Make the next `times` calls to `method` fail with `error` (HTTP `status`)."""
        with self._lock:
            self._failures.setdefault(method, []).extend(ApiError(error, status=status) for _ in range(times))

    # --- HTTP ----------------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        with self._idle:
            self._inflight += 1
        try:
            url = urlsplit(handler.path)
            raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
            content_type = handler.headers.get("Content-Type", "")
            try:
                if url.path.startswith("/api/"):
                    auth = handler.headers.get("Authorization", "")
                    status, headers, body = self._web_api(url.path[5:], url.query, raw, content_type, auth)
                elif url.path.startswith("/hooks/"):
                    status, headers, body = self._response_url_post(url.path, raw, content_type)
                elif url.path.startswith("/upload/v1/"):
                    status, headers, body = self._upload(url.path.rsplit("/", 1)[-1], raw)
                else:
                    status, headers, body = 404, {}, b"not_found"
            except Exception:
                log.exception("fake Slack failed on %s", url.path)
                status, headers, body = 500, {}, b'{"ok": false, "error": "internal_error"}'
            handler.send_response(status)
            for name, value in {"Content-Type": "application/json; charset=utf-8", **headers}.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    def _web_api(
        self, method: str, query: str, raw: bytes, content_type: str, auth: str
    ) -> tuple[int, dict[str, str], bytes]:
        headers: dict[str, str] = {}
        with self._lock:
            try:
                args = _parse_args(query, raw, content_type)
            except ApiError as error:
                args, status, response = {}, 200, {"ok": False, "error": error.error}
            else:
                token = auth.removeprefix("Bearer ").strip() or str(args.get("token") or "")
                args.pop("token", None)
                status, response, retry_after = self._call(method, args, token)
                if retry_after:
                    headers["Retry-After"] = str(retry_after)
            self._calls.append(RecordedCall(method, args, self._clock(), status, response))
        return status, headers, json.dumps(response).encode()

    def _call(self, method: str, args: dict[str, Any], token: str) -> tuple[int, dict[str, Any], int]:
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, 0
        if not token.startswith(("xox", "xapp-")):
            return 200, {"ok": False, "error": "invalid_auth"}, 0
        if method == "apps.connections.open" and not token.startswith("xapp-"):
            return 200, {"ok": False, "error": "not_allowed_token_type"}, 0
        bucket = self._limits.get(method)
        if bucket is not None:
            key = str(args.get("channel", "")) if bucket.per_channel else ""
            wait = bucket.take(key, self._clock())
            if wait:
                return 429, {"ok": False, "error": "ratelimited"}, max(1, math.ceil(wait))
        failures = self._failures.get(method)
        if failures:
            failure = failures.pop(0)
            return failure.status, {"ok": False, "error": failure.error}, 0
        handler = self._methods().get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, 0
        try:
            return 200, {"ok": True, **handler(args)}, 0
        except ApiError as error:
            if isinstance(error, LimitError):
                self._record(method, error)
            return error.status, {"ok": False, "error": error.error, **error.extra}, 0


# --- parsing ------------------------------------------------------------------------------------


def _parse_args(query: str, raw: bytes, content_type: str) -> dict[str, Any]:
    """Web API arguments from the query, a JSON body or a form body; JSON-in-form fields decoded."""
    args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "application/json":
        try:
            body = json.loads(raw or b"{}")
        except ValueError as error:
            raise ApiError("invalid_json") from error
        if not isinstance(body, dict):
            raise ApiError("invalid_json")
        args.update(body)
    elif raw and not media_type.startswith("multipart/"):
        args.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    for key in _JSON_ARGS:
        value = args.get(key)
        if isinstance(value, str) and value.strip():
            try:
                args[key] = json.loads(value)
            except ValueError as error:
                raise ApiError("invalid_blocks_format" if key == "blocks" else "invalid_arguments") from error
    return args
