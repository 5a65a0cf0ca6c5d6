"""The one HTTP path to Graph and Defender: tokens, budget, retries, ids, logging, typed errors.

Both API clients share one `httpx.Client` (one connection pool). Each call carries a fresh
`client-request-id`, logged with the `request-id` Microsoft answers with, so a failed Slack command
can be found in Microsoft's logs.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import httpx

from bot.microsoft.auth import TokenSource
from bot.microsoft.budget import RequestBudget
from bot.microsoft.errors import (
    API_LABELS,
    GRANT_LOCATIONS,
    ApiUnavailable,
    ConnectionFailed,
    DownloadFailed,
    MicrosoftError,
    NotFound,
    PermissionDenied,
    RequestRejected,
    ServiceUnavailable,
    Throttled,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503, 504})
USER_AGENT = "mam-bot/0.1"
DOWNLOAD_ATTEMPTS = 3  # a signed link's 5xx or dropped connection is tried this many times in all
DOWNLOAD_CHUNK = 1 << 20


@dataclass(frozen=True)
class CallProfile:
    """How long a caller can wait: a person in Slack, or the background sweep."""

    name: str
    timeout: httpx.Timeout
    max_attempts: int
    max_retry_after: float  # a longer Retry-After than this is surfaced, not slept through
    max_total_wait: float  # all sleeping (Retry-After, backoff, budget) for one call
    backoff_base: float = 0.5
    backoff_max: float = 8.0


INTERACTIVE = CallProfile("interactive", httpx.Timeout(15.0, connect=5.0), max_attempts=4,
                          max_retry_after=15.0, max_total_wait=30.0)
# Answering a Slack options request: the whole round trip must fit inside Slack's 3 seconds.
WITHIN_ACK = CallProfile("within-ack", httpx.Timeout(2.0, connect=1.0), max_attempts=1,
                         max_retry_after=0.0, max_total_wait=0.0)
BACKGROUND = CallProfile("background", httpx.Timeout(60.0, connect=10.0), max_attempts=8,
                         max_retry_after=300.0, max_total_wait=1_800.0, backoff_max=60.0)


@dataclass(frozen=True)
class Api:
    name: str  # errors.GRAPH or errors.DEFENDER
    base_url: str | None  # None: this cloud has no such API
    resource: str | None  # whose token: `https://graph.microsoft.com`, …

    @property
    def label(self) -> str:
        return API_LABELS.get(self.name, self.name)


@dataclass(frozen=True)
class Operation:
    """A call in an admin's words: what it does, the permission it needs, what a 404 means."""

    action: str  # "list the Mobile Threat Defense connectors"
    permission: str  # the least-privileged application permission that allows it
    subject: str | None = None  # "Android app protection policy 'T_…'"


@dataclass(frozen=True)
class _Call:
    """One `send`, the same on every try: what it asks, and the client-request-id it is logged under."""

    method: str
    url: str
    client_request_id: str
    idempotent: bool  # safe to repeat after it may have reached Microsoft


@dataclass(frozen=True)
class Answer:
    """One try of one call and what came of it: what the metrics count and the audit log records (a write).

    `status` is None when no answer came (a connection error); `request_id` is Microsoft's `request-id`.
    """

    api: str
    method: str
    url: str
    status: int | None
    seconds: float
    client_request_id: str
    request_id: str | None
    write: bool
    attempt: int

    @property
    def endpoint(self) -> str:
        """The path with its ids taken out (`/beta/…/androidManagedAppProtections/{id}/assign`): a label of
        bounded cardinality."""
        return endpoint_of(self.url)


AnswerListener = Callable[[Answer], None]


def endpoint_of(url: str) -> str:
    parts = []
    for segment in urlsplit(url).path.split("/")[:_MOST_SEGMENTS + 1]:
        if not segment or segment in _VERSIONS or (_WORD.match(segment) and not _ID_OF_LETTERS.match(segment)):
            parts.append(segment)
        elif (keyed := _KEYED.match(segment)) is not None:
            parts.append(keyed.group(1) + "({id})")
        else:
            parts.append("{id}")
    if urlsplit(url).path.count("/") > _MOST_SEGMENTS:
        parts.append("…")
    return "/".join(parts) or "/"


# A path word as Graph and Defender spell them (deviceAppManagement, $batch, assign); anything else, or a word
# that is a long hex id, is an id. Bounded both ways, so whatever a next link holds the label stays one of few.
_WORD = re.compile(r"^\$?[a-z][A-Za-z]{0,63}(\(\))?$")
# ids made of letters only: a long hex id, or a long word without a capital (Graph's path words are camelCase:
# managedAppRegistrations; its short lowercase ones are users, groups, machines, assign)
_ID_OF_LETTERS = re.compile(r"^(?:[0-9a-fA-F]{16,}|[a-z]{17,})$")
_KEYED = re.compile(r"^([a-z][A-Za-z]{0,63})\(.*\)$")  # users('…'), reports/getCachedReport(…)
_MOST_SEGMENTS = 8
_VERSIONS = frozenset({"v1.0", "beta"})


def _request_headers(token: str, call: _Call, extra: Mapping[str, str] | None) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "client-request-id": call.client_request_id,
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
        **(extra or {}),
    }


class ApiSession:
    """Calls one API through the shared client; copies with another profile share everything else."""

    def __init__(
        self,
        api: Api,
        http: httpx.Client,
        tokens: TokenSource,
        budget: RequestBudget,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        profile: CallProfile = INTERACTIVE,
        downloads: httpx.BaseTransport | None = None,
        listeners: Sequence[AnswerListener] = (),
    ) -> None:
        """`downloads`: the transport under `http`, used directly for signed links that are not API
        calls (build_clients passes it): no event hooks (`counting_requests`), and no httpx client
        logging the link, signature and all. `listeners` hear every try of every call (`Answer`): the
        metrics and the audit log of writes; a listener that fails is logged and never fails the call."""
        self.api = api
        self._http = http
        self._downloads = downloads
        self._tokens = tokens
        self._budget = budget
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.profile = profile
        self._listeners = tuple(listeners)

    def with_profile(self, profile: CallProfile) -> ApiSession:
        clone = ApiSession.__new__(ApiSession)
        clone.__dict__.update(self.__dict__)
        clone.profile = profile
        return clone

    @property
    def tokens(self) -> TokenSource:
        return self._tokens

    def url(self, path: str) -> str:
        if self.api.base_url is None or self.api.resource is None:
            raise ApiUnavailable(
                f"{self.api.label} has no documented host in this cloud; set MAM_DEFENDER_URL to use it",
                api=self.api.name,
            )
        if path.startswith(("https://", "http://")):
            return path
        return self.api.base_url.rstrip("/") + "/" + path.lstrip("/")

    # ---- one call ---------------------------------------------------------------------------

    def send(
        self,
        method: str,
        path: str,
        *,
        op: Operation,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        write: bool | None = None,
        cost: int = 1,
    ) -> httpx.Response:
        """Send with budget, token and retries; a response ≥ 400 becomes a MicrosoftError.

        `cost` is how many requests this counts as against the budget (a `$batch` counts each
        inner request); `write` defaults to "not a GET".
        """
        method = method.upper()
        call = _Call(method, self.url(path), str(uuid.uuid4()),
                     idempotent=method != "POST" if idempotent is None else idempotent)
        if write is None:
            write = method not in ("GET", "HEAD")
        waited = 0.0
        token_renewed = False
        attempt = 0
        while True:
            attempt += 1
            waited += self._take_budget(write=write, cost=cost, waited=waited)
            token = self._tokens.token(self.api.resource or "")
            started = self._clock()
            try:
                response = self._http.request(call.method, call.url, params=params, json=json_body,
                                              headers=_request_headers(token.value, call, headers),
                                              timeout=self.profile.timeout)
            except httpx.TransportError as exc:
                self._tell(call, None, None, attempt, self._clock() - started, write)
                delay = self._delay_after_transport_error(call, exc, attempt, waited)
                if delay is None:
                    raise self._connection_failed(call, exc, op) from exc
                self._sleep(delay)
                waited += delay
                continue
            elapsed = self._clock() - started
            self._log_answer(call, response, attempt, elapsed=elapsed)
            self._tell(call, response.status_code, _request_id(response), attempt, elapsed, write)
            if response.status_code < 400:
                return response
            if response.status_code == 401 and not token_renewed and math.isfinite(token.expires_at):
                # An expired or revoked token: sign in again once before blaming permissions
                # (the sandbox's static token can't be renewed).
                token_renewed = True
                self._tokens.invalidate(self.api.resource or "")
                continue
            delay = self._delay_after_error_status(call, response, attempt, waited)
            if delay is None:
                raise error_for(response, self.api, op, call.client_request_id)
            self._sleep(delay)
            waited += delay

    def _delay_after_transport_error(
        self, call: _Call, exc: httpx.TransportError, attempt: int, waited: float
    ) -> float | None:
        """Seconds to wait before trying again after a transport error; None: don't."""
        # A connect failure never reached Microsoft; a read failure may have, so only an
        # idempotent call is safe to repeat (a second create would make a second policy).
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        safe = call.idempotent or never_sent
        delay = self._backoff(attempt)
        if not (safe and attempt < self.profile.max_attempts and waited + delay <= self.profile.max_total_wait):
            return None
        log.warning("%s %s %s failed (%s); retry %d in %.1f s (client-request-id %s)",
                    self.api.name, call.method, _path(call.url), type(exc).__name__, attempt, delay,
                    call.client_request_id)
        return delay

    def _delay_after_error_status(
        self, call: _Call, response: httpx.Response, attempt: int, waited: float
    ) -> float | None:
        """Seconds to wait before trying again after an error status (429, 503, 504); None: don't."""
        status = response.status_code
        profile = self.profile
        if status not in RETRY_STATUSES or not (call.idempotent or status != 504) or attempt >= profile.max_attempts:
            return None
        retry_after = _retry_after(response)
        delay = retry_after if retry_after is not None else self._backoff(attempt)
        if delay > profile.max_retry_after or waited + delay > profile.max_total_wait:
            return None
        log.warning("%s %s %s -> %d; retry %d in %.1f s (client-request-id %s)",
                    self.api.name, call.method, _path(call.url), status, attempt, delay, call.client_request_id)
        return delay

    def _connection_failed(self, call: _Call, exc: httpx.TransportError, op: Operation) -> ConnectionFailed:
        return ConnectionFailed(
            f"Couldn't reach {self.api.label} to {op.action} ({type(exc).__name__}: {exc})",
            api=self.api.name, code=type(exc).__name__, client_request_id=call.client_request_id,
        )

    def _tell(self, call: _Call, status: int | None, request_id: str | None, attempt: int, seconds: float,
              write: bool) -> None:
        if not self._listeners:
            return
        answer = Answer(self.api.name, call.method, call.url, status, seconds, call.client_request_id, request_id,
                        write, attempt)
        for listener in self._listeners:
            try:
                listener(answer)
            except Exception:
                log.exception("a listener failed on %s %s %s", self.api.name, call.method, answer.endpoint)

    def _log_answer(self, call: _Call, response: httpx.Response, attempt: int, *, elapsed: float) -> None:
        status = response.status_code
        request_id = _request_id(response)
        log.log(
            logging.DEBUG if status < 400 else logging.WARNING,
            "%s %s %s -> %d in %.0f ms (client-request-id %s, request-id %s, attempt %d)",
            self.api.name, call.method, _path(call.url), status, elapsed * 1000, call.client_request_id,
            request_id, attempt,
        )

    def json(self, method: str, path: str, *, op: Operation, **kwargs: Any) -> Any:
        """`send`, then the body as JSON (None for an empty body); BOMs and all."""
        response = self.send(method, path, op=op, **kwargs)
        return parse_json(response.content)

    def iter_values(
        self,
        path: str,
        *,
        op: Operation,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Items of a collection, one page at a time, following `@odata.nextLink`."""
        url: str | None = self.url(path)
        page_params = params
        while url:
            page = self.json("GET", url, op=op, params=page_params, headers=headers) or {}
            for item in page.get("value") or []:
                if isinstance(item, dict):
                    yield item
            url = self.check_next_link(page.get("@odata.nextLink"))
            page_params = None  # the next link carries the query

    def check_next_link(self, link: object) -> str | None:
        """The next page's URL, if it stays on this API's host (our bearer token goes with it)."""
        if not isinstance(link, str) or not link:
            return None
        here = urlsplit(self.url("/"))
        there = urlsplit(link)
        if (there.scheme, there.netloc.lower()) != (here.scheme, here.netloc.lower()):
            raise MicrosoftError(
                f"{self.api.label} sent a next-page link to another host ({there.netloc}); not following it",
                api=self.api.name,
            )
        return link

    # ---- signed download links -------------------------------------------------------------

    def download(self, url: str, into: BinaryIO, *, max_bytes: int, what: str = "the file") -> int:
        """Stream a signed link's bytes into `into`; returns how many were written.

        The link is not an API call: no bearer token goes with it, and neither the request budget
        nor `counting_requests` sees it (it goes straight to the transport the API client uses, so
        the connection pool and the in-process sandbox serve it too, but no client hook or client
        log sees it). Only https, unless this API's own base is http (the sandbox). Redirects are
        not followed.
        A 5xx or a dropped connection is tried again, up to DOWNLOAD_ATTEMPTS in all, after
        rewinding `into` to where it was. Logs and errors name the link's host and path, never its
        query string (the signature).
        """
        where = self._download_target(url, what)
        transport = self._downloads
        if transport is None:
            raise DownloadFailed(f"The bot can't download {what}: this session has no download transport "
                                 "(build the clients with build_clients)", api=self.api.name)
        start = into.tell() if into.seekable() else None
        attempt = 0
        while True:
            attempt += 1
            sink = _Sink(into, max_bytes, what, where, self.api.name)
            try:
                reason = self._download_once(transport, url.strip(), sink, what, where)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {_scrub(str(exc), url)}"
            if reason is None:
                into.flush()
                return sink.written
            if attempt >= DOWNLOAD_ATTEMPTS or (sink.written and start is None):
                raise DownloadFailed(
                    f"Couldn't download {what} from {where} after {attempt} "
                    f"{'try' if attempt == 1 else 'tries'} ({reason}); try again in a few minutes",
                    api=self.api.name)
            if start is not None:
                into.seek(start)
                into.truncate()
            delay = self._backoff(attempt)
            log.warning("download of %s from %s failed (%s); retry %d in %.1f s", what, where, reason, attempt, delay)
            self._sleep(delay)

    def _download_target(self, url: str, what: str) -> str:
        """`scheme://host/path` of an acceptable download link, for logs and messages."""
        parts = urlsplit(url.strip())
        allowed = {"https"}
        if urlsplit(self.api.base_url or "").scheme.lower() == "http":
            allowed.add("http")  # the sandbox serves its downloads over plain http, like its API
        scheme = parts.scheme.lower()
        if scheme not in allowed or not parts.hostname:
            shown = f"{scheme}://{parts.hostname}" if scheme and parts.hostname else "a link without a host"
            raise DownloadFailed(f"The bot only downloads {what} over https; Microsoft sent {shown}",
                                 api=self.api.name)
        return f"{scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"

    def _download_once(
        self, transport: httpx.BaseTransport, url: str, sink: _Sink, what: str, where: str
    ) -> str | None:
        """Stream one answer into `sink`; None when done, else why trying again may help (a 5xx)."""
        request = httpx.Request("GET", url, headers={"User-Agent": USER_AGENT, "Accept": "*/*"},
                                extensions={"timeout": self.profile.timeout.as_dict()})
        started = self._clock()
        response = transport.handle_request(request)
        response.request = request
        try:
            status = response.status_code
            log.log(logging.DEBUG if status < 400 else logging.WARNING, "download %s -> %d in %.0f ms",
                    where, status, (self._clock() - started) * 1000)
            if status >= 500:
                return f"HTTP {status}"
            if not 200 <= status < 300:
                hint = " (the link may have expired: start a new export)" if status in (401, 403, 404) else ""
                raise DownloadFailed(f"The server refused the download of {what} from {where} ({status}){hint}",
                                     api=self.api.name, status=status)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit():
                sink.expect(int(declared))
            for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                sink.write(chunk)
        finally:
            response.close()
        return None

    # ---- waiting ---------------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Sleep on the injected clock (tests don't really sleep)."""
        self._sleep(seconds)

    def _take_budget(self, *, write: bool, cost: int, waited: float) -> float:
        slept = 0.0
        while (wait := self._budget.reserve(self.api.name, count=cost, write=write)) > 0:
            if waited + slept + wait > self.profile.max_total_wait:
                raise Throttled(
                    f"The bot is pacing its calls to stay under {self.api.label}'s rate limits; "
                    f"try again in {math.ceil(wait)} s",
                    api=self.api.name, code="clientBudget", retry_after=wait,
                )
            self._sleep(wait)
            slept += wait
        return slept

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.profile.backoff_max, self.profile.backoff_base * 2 ** (attempt - 1))
        # Half fixed, half random: spread out replicas that failed together, yet always wait.
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)


def parse_json(content: bytes) -> Any:
    """JSON from Microsoft, tolerating a UTF-8 BOM (exports and some Intune responses carry one)."""
    text = content.decode("utf-8-sig").strip()
    return json.loads(text) if text else None


def _request_id(response: httpx.Response) -> str | None:
    """Microsoft's id of the request (Graph: `request-id`; Defender: `x-ms-request-id` as well)."""
    return response.headers.get("request-id") or response.headers.get("x-ms-request-id")


def _path(url: str) -> str:
    return urlsplit(url).path


def _scrub(text: str, url: str) -> str:
    """`text` without the link's query string (a signed link's credential)."""
    query = urlsplit(url).query
    return text.replace(query, "…") if query else text


class _Sink:
    """Where a download's bytes go, refusing more than `limit` of them."""

    def __init__(self, into: BinaryIO, limit: int, what: str, where: str, api: str) -> None:
        self.into = into
        self.limit = limit
        self.written = 0
        self._what, self._where, self._api = what, where, api

    def expect(self, size: int) -> None:
        if size > self.limit:
            raise self._too_big(f"{size:,} bytes")

    def write(self, chunk: bytes) -> None:
        if self.written + len(chunk) > self.limit:
            raise self._too_big(f"at least {self.written + len(chunk):,} bytes")
        self.into.write(chunk)
        self.written += len(chunk)

    def _too_big(self, size: str) -> DownloadFailed:
        return DownloadFailed(f"{_capitalize(self._what)} at {self._where} is {size}, more than the "
                              f"{self.limit:,} the bot accepts", api=self._api)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        log.debug("Retry-After %r is not a number of seconds; reading it as an HTTP date", value)
    try:
        # HTTP-date form: measure against the response's own Date header, not our clock.
        when = parsedate_to_datetime(value)
        date = response.headers.get("Date")
        now = parsedate_to_datetime(date).timestamp() if date else time.time()
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError):
        return None


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    """(code, message, request-id) from a Graph or Defender error body."""
    try:
        body = parse_json(response.content)
    except (ValueError, UnicodeDecodeError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        text = response.text.strip()[:300] if response.content else None
        return None, text or None, None
    inner = error.get("innerError") or error.get("innererror") or {}
    request_id = inner.get("request-id") if isinstance(inner, dict) else None
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    return code, message, request_id


def error_for(response: httpx.Response, api: Api, op: Operation, client_request_id: str) -> MicrosoftError:
    status = response.status_code
    code, detail, body_request_id = _error_fields(response)
    ids: dict[str, Any] = {
        "api": api.name,
        "status": status,
        "code": code,
        "detail": detail,
        "request_id": _request_id(response) or body_request_id,
        "client_request_id": client_request_id,
    }
    short = _shorten(detail)
    if status in (401, 403):
        where = GRANT_LOCATIONS.get(api.name, "the app registration's API permissions")
        refused = "rejected the bot's token" if status == 401 else "refused"
        return PermissionDenied(
            f"{api.label} {refused} when the bot tried to {op.action}: the app registration needs the "
            f"application permission {op.permission}. Grant it in {where}.",
            permission=op.permission, where=where, **ids,
        )
    if status == 404:
        return NotFound(f"{_capitalize(op.subject or 'what the bot asked for')} was not found "
                        f"(while trying to {op.action})", **ids)
    if status == 429:
        retry_after = _retry_after(response)
        when = f"try again in {math.ceil(retry_after)} s" if retry_after else "try again shortly"
        return Throttled(f"{api.label} is throttling the bot and it couldn't {op.action}; {when}",
                         retry_after=retry_after, **ids)
    if status >= 500:
        return ServiceUnavailable(
            f"{api.label} had a problem ({status}) and the bot couldn't {op.action}; "
            "try again in a few minutes", **ids)
    return RequestRejected(
        f"{api.label} rejected the request to {op.action} ({status}){': ' + short if short else ''}", **ids
    )


def _shorten(text: str | None, limit: int = 300) -> str | None:
    if not text:
        return None
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]

