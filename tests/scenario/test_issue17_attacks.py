"""Issue 17 under attack: label cardinality, the operator's port, the logs (secrets, injection), the audit rows of
Microsoft writes and the log context. Each test guards a weakness found in review (now fixed) or
something that held."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from slack_sdk import WebClient
from sqlalchemy.exc import OperationalError

from bot import logs as logs_module
from bot.health import Health, OperatorServer
from bot.logs import bind, configure_logging, current, secrets_of
from bot.metrics import Metrics, StateCollector
from bot.microsoft import build_clients
from bot.microsoft.testing import Recorder, harness
from bot.microsoft.transport import Answer, endpoint_of
from bot.runner import BackgroundRunner
from bot.sandbox import SandboxTenant
from bot.sandbox.schema import MDE_CONNECTOR_ID
from bot.settings import load_settings
from bot.slack import SlackCallMeter
from bot.store import AuditEntry, AuditLog, Store, create_store
from commands.listen import interaction
from tests.databases import database_url  # noqa: F401  (fixture)
from tests.scenario.conftest import Bot
from workflows.connector_change import ANDROID_MAM

REGISTRATIONS = "/beta/deviceAppManagement/managedAppRegistrations"


def label_values(metrics: Metrics) -> set[str]:
    return {value for family in text_string_to_metric_families(metrics.render().decode())
            for sample in family.samples for value in sample.labels.values()}


def samples(metrics: Metrics, name: str) -> list[dict[str, str]]:
    return [dict(s.labels) for family in text_string_to_metric_families(metrics.render().decode())
            for s in family.samples if s.name == name]


# ==== 1. metrics label cardinality ===================================================================

_LABEL_SEGMENT = re.compile(r"^(|\{id\}|v1\.0|beta|\$?[A-Za-z]{1,64}(\(\))?|[A-Za-z]{1,64}\(\{id\}\))$")


@pytest.mark.parametrize("url", [
    "https://graph.microsoft.com/beta/deviceAppManagement/androidManagedAppProtections/T_9a1b-22/assign",
    "https://graph.microsoft.com/beta/deviceAppManagement/mobileApps/com.microsoft.office.outlook",
    "https://graph.microsoft.com/v1.0/users/alex.wilber@contoso.com/managedAppRegistrations",
    "https://graph.microsoft.com/v1.0/users('alex@contoso.com')",
    "https://graph.microsoft.com/v1.0/users('a%2Fb%27%27c')/memberOf",
    "https://graph.microsoft.com/v1.0/groups/0b5e7a6c-1d2e-4f00-9a8b-123456789abc/members/$count",
    "https://graph.microsoft.com/v1.0/groups/a%2Fb/members",
    "https://graph.microsoft.com/beta/deviceManagement/reports/exportJobs('Devices_0f3a1c')",
    "https://graph.microsoft.com/beta/deviceManagement/reports/getCachedReport(id='x',top=5)",
    "https://graph.microsoft.com/v1.0/groups/%3C!channel%3E",
    "https://graph.microsoft.com/v1.0/groups/%E2%80%AEevil",
    "https://graph.microsoft.com/v1.0/groups/" + "9" * 3000,
    "https://graph.microsoft.com/beta/deviceAppManagement/managedAppRegistrations?$skiptoken=" + "Z" * 3000,
    "https://graph.microsoft.com/beta/deviceAppManagement/managedAppRegistrations#frag" + "x" * 100,
    "https://api.securitycenter.microsoft.com/api/machines/9f0c1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f/vulnerabilities",
    "https://api.securitycenter.microsoft.com/api/machines?$skip=10000&$top=10000",
])
def test_ids_of_every_shape_leave_the_endpoint_label(url: str):
    label = endpoint_of(url)
    assert len(label) <= 200, label[:120]
    assert all(_LABEL_SEGMENT.match(segment) for segment in label.split("/")), label[:200]


@pytest.mark.parametrize("url", [
    "https://graph.microsoft.com/v1.0/groups/" + "a" * 3000,  # an id of letters alone, however long
    "https://graph.microsoft.com/v1.0/groups/" + "a" * 3000 + "('x')",
    "https://graph.microsoft.com/v1.0/groups/" + "ab/" * 400,  # a next link of many segments
])
def test_the_endpoint_label_is_bounded_even_for_paths_of_letters(url: str):
    """Fixed: `_WORD` keeps any run of letters, of any length and in any number of segments, as it is."""
    label = endpoint_of(url)
    assert len(label) <= 200 and all(len(segment) <= 64 for segment in label.split("/")), \
        f"a {len(label)}-character label: {label[:80]}…"


def test_ids_made_of_letters_do_not_each_become_a_label():
    """Fixed (hardening): 500 distinct ids of letters are 500 series of every Microsoft metric."""
    words = {"".join(chr(ord("a") + (n * 7 + k * 3) % 26) for k in range(20)) + chr(ord("a") + n % 26) * (n % 9)
             for n in range(500)}
    labels = {endpoint_of(f"https://graph.microsoft.com/v1.0/users/{w}/managedAppRegistrations") for w in words}
    assert len(labels) == 1, f"{len(labels)} labels, e.g. {sorted(labels)[:2]}"


def test_next_links_and_a_hostile_retry_after_add_no_label():
    pages = 6
    recorder = Recorder()

    def page(request: httpx.Request) -> httpx.Response:
        n = sum(1 for r in recorder.requests if r.url.path == REGISTRATIONS)
        body: dict[str, Any] = {"value": []}
        if n < pages:
            body["@odata.nextLink"] = (f"https://graph.microsoft.com{REGISTRATIONS}?$skiptoken=<!channel>{n}"
                                       f"{'Q' * 500}&%2F=x")
        return httpx.Response(200, json=body, headers={"request-id": f"<script>{n}" * 50})

    recorder.on("GET", REGISTRATIONS, httpx.Response(429, headers={"Retry-After": "<!channel> 99999999999"}), page)
    metrics = Metrics()
    h = harness(recorder, listeners=[metrics.microsoft_answer])
    assert list(h.clients.graph.iter_managed_app_registrations()) == []
    endpoints = {s["endpoint"] for s in samples(metrics, "mam_microsoft_requests_total")}
    statuses = {s["status"] for s in samples(metrics, "mam_microsoft_requests_total")}
    assert endpoints == {REGISTRATIONS} and statuses <= {"200", "429"}
    assert not [v for v in label_values(metrics) if "<" in v or "Q" * 10 in v]


class _AnySlackMethod(BaseHTTPRequestHandler):
    def _ok(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _ok

    def log_message(self, *_: Any) -> None:
        """Quiet: the fake Slack's requests are the test's business, not stderr's."""


@pytest.fixture
def slack_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AnySlackMethod)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/"
    server.shutdown()
    server.server_close()


def test_the_slack_method_label_is_the_method_whatever_the_arguments(slack_api: str):
    heard: list[tuple[str, int | None]] = []
    client = WebClient(token="xoxb-1", base_url=slack_api, retry_handlers=[
        SlackCallMeter(lambda method, status: heard.append((method, status)))])
    hostile = "<!channel>/../../x?y=z#w/" + "é" * 3000 + "/"
    client.chat_postMessage(channel=hostile, text=hostile)
    client.users_info(user=hostile)
    client.api_call("users.lookupByEmail", http_verb="GET", params={"email": f"{hostile}@x/"})
    client.conversations_history(channel="C1", cursor="dXNlcjpVMEc5V0ZYTlo=/a?b/")
    assert heard == [("chat.postMessage", 200), ("users.info", 200), ("users.lookupByEmail", 200),
                     ("conversations.history", 200)]


@pytest.mark.parametrize("text", [
    'policy show "' + "<!channel>" * 300 + '"',
    'policy show "' + "a" * 3000 + '"',
    'assign "<!channel>" "' + "g" * 3000 + '"',
    "<!channel> <@U0ADMIN> " + "x" * 3000,
    'policy edit "<script>alert(1)</script>"',
])
def test_a_hostile_mam_command_adds_no_label_value(make_bot: Callable[..., Bot], text: str):
    bot = make_bot()
    bot.command(text)
    values = label_values(bot.deps.metrics)
    assert values, "the scrape says nothing"
    assert all(len(v) <= 120 for v in values), max(values, key=len)[:80]
    assert not [v for v in values if any(bad in v for bad in ("<", "aaaaa", "ggggg", "xxxxx", "script"))]


# ==== 2. the operator's port ===========================================================================


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = create_store(f"sqlite:///{tmp_path}/operator.db")
    yield store
    store.close()


@pytest.fixture
def operator(store: Store) -> Iterator[tuple[OperatorServer, Metrics]]:
    metrics = Metrics()
    metrics.watch(StateCollector(store, leading=lambda: True, intervals=lambda: {"threat-sweep": 300.0}))
    server = OperatorServer(Health(store), metrics.render, host="127.0.0.1", port=0).start()
    yield server, metrics
    server.stop()


def _complete(data: bytes, head_only: bool = False) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    if head_only:
        return True
    found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return found is not None and len(body) >= int(found.group(1))


def raw(server: OperatorServer, data: bytes, *, timeout: float = 5.0, head_only: bool = False) -> bytes:
    """Send `data` as it is; what came back until the answer was complete, the server closed, or `timeout`."""
    chunks: list[bytes] = []
    with socket.create_connection(server.address, timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        try:
            while not _complete(b"".join(chunks), head_only):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):  # the server closed or went quiet: what came is the answer
            return b"".join(chunks)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def get(server: OperatorServer, path: str, method: str = "GET") -> tuple[int, bytes, float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection(*server.address, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read(), time.monotonic() - started
    finally:
        conn.close()


@pytest.mark.parametrize(("path", "status"), [
    ("/metrics?x=<script>alert(1)</script>", 200),
    ("/livez?<script>", 200),
    ("//metrics", 200),  # http.server folds a leading `//` (CPython gh-87389): the same page, not a bypass
    ("/METRICS", 404),
    ("/healthz/../metrics", 404),
    ("/metrics/", 404),
    ("/%6detrics", 404),
    ("/slack/events", 404),
    ("http://evil.example/metrics", 404),
    ("*", 404),
])
def test_only_the_three_exact_paths_answer(operator, path: str, status: int):
    server, _ = operator
    answer = raw(server, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status_of(answer) == status, answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"<script" not in body and b"text/html" not in head
    if status == 404:
        assert b"mam_" not in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "CONNECT", "FOO"])
def test_other_methods_are_refused_and_the_port_keeps_answering(operator, method: str):
    server, _ = operator
    answer = raw(server, f"{method} /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close"
                         "\r\n\r\n".encode())
    assert status_of(answer) in (404, 405, 501) and b"mam_database_up" not in answer
    assert get(server, "/livez")[0] == 200


def test_head_on_the_probe_paths_answers_like_get(operator):
    """Fixed (low): HEAD is 501 (RFC 9110 §9.1: a server MUST support HEAD wherever it supports GET); some load
    balancers and uptime checkers probe with HEAD."""
    server, _ = operator
    for path in ("/livez", "/healthz", "/metrics"):
        status, body, _ = get(server, path, method="HEAD")
        assert (status, body) == (200, b""), (path, status)


def test_an_oversized_request_line_or_headers_are_refused_and_harmless(operator):
    server, _ = operator
    assert status_of(raw(server, b"GET /" + b"a" * (65537 - 5))) == 414
    many = b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(101))
    assert status_of(raw(server, many)) == 431
    assert status_of(raw(server, b"GET /metrics HTTP/1.1\r\nX-Long: " + b"a" * 65537)) == 431
    started = time.monotonic()
    raw(server, b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\n\r\n", timeout=5)  # a 1 MB request line
    assert time.monotonic() - started < 5
    assert get(server, "/livez")[0] == 200


def test_clients_that_send_nothing_do_not_hold_up_the_probes(operator):
    server, _ = operator
    idle = [socket.create_connection(server.address) for _ in range(30)]
    half = socket.create_connection(server.address)
    half.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")  # a slowloris, its headers never finished
    try:
        for path in ("/livez", "/healthz", "/metrics"):
            status, _, _seconds = get(server, path)
            assert status == 200, (path, status)  # answered at all (get's own timeout); tests never assert times
    finally:
        for sock in [*idle, half]:
            sock.close()


def test_an_idle_connection_is_closed_by_the_server_in_bounded_time(operator):
    """Fixed: the handler has no timeout, so a connection that sends nothing (or a slowloris, or a keep-alive
    scraper that walks away) holds a thread for ever. MAM_METRICS_HOST is 0.0.0.0 in the image and the Kubernetes
    ConfigMap: anything that can reach the pod can open thousands and exhaust the process's threads (then the
    runner, the outbox and the probes cannot start one, and liveness restarts the pod)."""
    server, _ = operator
    before = threading.active_count()
    idle = [socket.create_connection(server.address) for _ in range(40)]
    try:
        time.sleep(0.3)
        grown = threading.active_count() - before
        timeout = getattr(server._server.RequestHandlerClass, "timeout", None)
        assert timeout is not None and 0 < timeout <= 60, \
            f"no read timeout on the operator's port: {grown} idle connections hold {grown} threads"
        idle[0].settimeout(timeout + 5)
        assert idle[0].recv(1) == b""  # closed by the server
    finally:
        for sock in idle:
            sock.close()


def test_the_kubernetes_manifests_keep_the_operators_port_to_the_monitoring_network():
    """Fixed (low): MAM_METRICS_HOST is 0.0.0.0 in the ConfigMap and no NetworkPolicy ships, so every pod of the
    cluster reads /metrics (endpoints, jobs, volumes: "an outsider has no business reading", bot/health.py) and can
    hold its connections open (see the idle-connection finding); docs/operations.md only says "publish it only to
    your monitoring network"."""
    import yaml

    root = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
    kinds = [doc.get("kind") for path in root.glob("*.yaml") for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert "NetworkPolicy" in kinds, kinds


class _SlowCollector(Collector):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.entered = threading.Event()

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.entered.set()
        time.sleep(self.seconds)
        yield GaugeMetricFamily("mam_slow_test", "a slow database", value=1)


def test_a_slow_scrape_never_slows_liveness(operator):
    server, metrics = operator
    slow = _SlowCollector(3.0)
    metrics.registry.register(slow)
    scrape = threading.Thread(target=get, args=(server, "/metrics"), daemon=True)
    scrape.start()
    assert slow.entered.wait(5)
    status, _, _ = get(server, "/livez")
    assert status == 200 and scrape.is_alive()  # answered while the scrape still waits on its database
    status, _, _ = get(server, "/healthz")
    assert status == 200 and scrape.is_alive()
    scrape.join(10)


class _UnreachableStore:
    dialect = "postgresql"

    def ping(self) -> None:
        raise OperationalError("SELECT 1", {}, Exception(
            'connection to server at "db.internal.corp" (10.9.8.7), port 5432 failed: password=Hunter2Secret'))


def test_healthz_says_nothing_of_where_the_database_is_or_its_password(caplog: pytest.LogCaptureFixture):
    server = OperatorServer(Health(_UnreachableStore()), lambda: b"", host="127.0.0.1", port=0).start()  # type: ignore[arg-type]
    try:
        with caplog.at_level(logging.DEBUG):
            status, body, _ = get(server, "/healthz")
    finally:
        server.stop()
    assert status == 503 and json.loads(body) == {"status": "unhealthy", "database": "unreachable"}
    for leak in ("Hunter2Secret", "db.internal", "10.9.8.7"):
        assert leak not in body.decode() and leak not in caplog.text


# ==== 3. logs ================================================================================================

log = logging.getLogger("mam.test_issue17_attacks")


@pytest.fixture
def ours(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., logging.Logger]]:
    """configure_logging's handler alone on a logger of its own (pytest's handlers format records too)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    slack_level = logging.getLogger("slack_sdk.web.base_client").level
    attached: list[tuple[logging.Logger, logging.Handler]] = []

    def configure(fmt: str, secrets: list[str] | tuple[str, ...] = ()) -> logging.Logger:
        configure_logging("info", fmt, secrets)
        [handler] = [h for h in root.handlers if type(h).__module__ == "bot.logs"]
        log.propagate = False
        log.setLevel(logging.INFO)
        log.addHandler(handler)
        attached.append((log, handler))
        capsys.readouterr()
        return log

    yield configure
    for logger, handler in attached:
        logger.removeHandler(handler)
    log.propagate = True
    log.setLevel(logging.NOTSET)
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    logging.getLogger("slack_sdk.web.base_client").setLevel(slack_level)


FORGED = "2026-12-06 12:00:00,000 ERROR mam.security admin U0EVIL granted [cid=000000000000 user=U0ADMIN]"


@pytest.mark.parametrize("hostile", [
    f"policy show x\n{FORGED}",
    f"policy show x\r\n{FORGED}",
    f"policy show x\r{FORGED}",
    "policy show \x1b[2J\x1b[1;1H\x1b[32mall good\x1b[0m",
])
def test_the_text_format_keeps_one_line_per_record(ours, capsys, hostile: str):
    """Fixed: the text format (the default, and what docs/operations.md says keeps one line per record) writes a
    Slack user's newline, carriage return or terminal escape as it is: one record becomes two lines, the second
    forged to look like the bot's own (journald, Fluent Bit, `kubectl logs | grep` all split on newlines), or
    rewrites the operator's terminal."""
    ours("text").warning("not understood: /mam %s", hostile)
    written = capsys.readouterr().err
    assert written.count("\n") == 1 and written.endswith("\n"), written
    assert "\r" not in written and "\x1b" not in written, repr(written)


@pytest.mark.parametrize("hostile", [
    "a\nb", "a\r\nb", "\u2028\u2029\x85", "\x1b[31mred", "\x00nul", "\ud800 lone surrogate", "\udfff",
    '"}\n{"level": "CRITICAL", "logger": "mam.security", "message": "forged"}',
    "%s %d %(x)s", "😀" * 100,
])
def test_a_json_record_is_one_parseable_line_wherever_the_hostile_text_is(ours, capsys, hostile: str):
    logger = ours("json")
    with bind(slack_user=hostile, correlation_id=hostile):
        logger.warning(hostile)
        logger.warning("args %s %r", hostile, hostile)
        logger.warning("extra", extra={"detail": {"said": hostile, hostile: [hostile]}, "said": hostile})
        try:
            raise ValueError(hostile)
        except ValueError:
            logger.exception("exc %s", hostile)
        logger.warning("stack", stack_info=True)
    written = capsys.readouterr().err
    lines = written.split("\n")
    assert lines[-1] == "" and len(lines) == 6, written[:500]
    for line in lines[:-1]:
        entry = json.loads(line)
        assert entry["level"] == "WARNING" if "exc" not in line else entry["level"] == "ERROR"
        assert entry["logger"] == log.name


def test_a_json_line_is_strict_json(ours, capsys):
    """Fixed (low): json.dumps allows NaN and Infinity, which no strict JSON parser (jq, Go, Loki, Elastic) takes."""
    ours("json").warning("ratio", extra={"ratio": math.nan, "wait": math.inf})

    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    json.loads(capsys.readouterr().err, parse_constant=refuse)


SECRET = "Xy'9\"zQ!w~Hunter2-long"  # a generated password: both quotes


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_secret_in_the_repr_of_an_exception_is_masked(ours, capsys, fmt: str):
    """Fixed: repr() of a string holding both quotes escapes the ' (\\'), a form the Redactor doesn't know; and
    bot/app.py's _error_handler logs `%r` of the error, as does str() of any dict or list holding the secret."""
    logger = ours(fmt, [SECRET])
    logger.error("unhandled error [abc] for command: %r", RuntimeError(f"sign-in failed with {SECRET}"))
    logger.warning("the settings: %s", {"password": SECRET})
    written = capsys.readouterr().err
    assert "Hunter2" not in written, written


def test_a_database_password_given_as_a_query_parameter_is_a_secret(monkeypatch, tmp_path):
    """Fixed: `postgresql+psycopg://mam@db/mam?password=…` (libpq's and SQLAlchemy's form) connects, but secrets_of
    (and bot.settings.mask_url, which `mam-bot db upgrade` prints) only know `user:password@`."""
    for name in ("DATABASE_URL", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    from bot.settings import mask_url

    url = "postgresql+psycopg://mam@db.internal:5432/mam?password=Hunter2QueryPw&sslmode=require"
    assert "Hunter2QueryPw" in secrets_of(load_settings(database_url=url))
    assert "Hunter2QueryPw" not in mask_url(url)


@pytest.mark.parametrize("text", [
    "token eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoLm1pY3Jvc29mdC5jb20ifQ.c2lnbmF0dXJlX2hlcmU",
    '{"token_type": "Bearer", "access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln"}',
    "client_assertion=eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJl&grant_type=client_credentials",
    "refreshed: xoxe-1-My0xLTEyMzQ1Njc4OTAtMTIzNDU2Nzg5MDEyMy1hYmNkZWY",
])
def test_tokens_the_bot_cannot_know_in_advance_are_masked_by_shape(ours, capsys, text: str):
    """Fixed (low): a bare JWT (a Microsoft access token or a client assertion without `Bearer `) and a Slack
    refresh token (`xoxe-`) are not among the Redactor's shapes, though the docs promise "anything shaped like …
    a bearer token"."""
    ours("text").warning("%s", text)
    written = capsys.readouterr().err
    assert "c2ln" not in written and "My0xLTEy" not in written, written


PASSWORD = "p@ss:w0rd/Hunter2&x=%"


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("where", ["chained", "extra-nested", "url", "json-body", "bytes", "stack", "args-error"])
def test_a_known_secret_is_out_wherever_it_hides(ours, capsys, fmt: str, where: str):
    logger = ours(fmt, ["xoxb-1-known-bot-token", PASSWORD, quote(PASSWORD, safe="")])
    if where == "chained":
        try:
            try:
                raise KeyError(PASSWORD)
            except KeyError as inner:
                raise RuntimeError("could not connect") from inner
        except RuntimeError:
            logger.exception("db failed")
    elif where == "extra-nested":
        logger.warning("x", extra={"call": {"headers": [("Authorization", "Bearer xoxb-1-known-bot-token")],
                                            "body": {"password": PASSWORD}}})
    elif where == "url":
        logger.warning("GET https://x/y?password=%s&u=1", quote(PASSWORD, safe=""))
    elif where == "json-body":
        logger.warning("body %s", json.dumps({"password": PASSWORD, "token": "xoxb-1-known-bot-token"}))
    elif where == "bytes":
        logger.warning("sent %s", f"token=xoxb-1-known-bot-token&pw={PASSWORD}".encode())
    elif where == "stack":
        with bind(slack_user="U1"):
            logger.warning("here %s", PASSWORD, stack_info=True)
    else:
        logger.warning("%s %s", PASSWORD)  # one argument short: the message can't be merged
    written = capsys.readouterr().err
    assert "Hunter2" not in written and "known-bot-token" not in written and "Hunter2" not in json.dumps(written)


# ==== 4. audit rows of writes ===============================================================================


@pytest.fixture
def audit_store(database_url: str) -> Iterator[Store]:  # noqa: F811  (the imported fixture)
    store = create_store(database_url)
    yield store
    store.close()


@pytest.fixture
def audit(audit_store: Store) -> Iterator[AuditLog]:
    audit = AuditLog(audit_store)
    yield audit
    audit.close()


def all_rows(audit: AuditLog) -> list[AuditEntry]:
    audit.flush()
    return list(reversed(audit.recent(100)))


def hostile_tenant(request_id: bytes) -> httpx.MockTransport:
    sandbox = SandboxTenant()

    def handle(request: httpx.Request) -> httpx.Response:
        response = sandbox.handle(request)
        headers = [(k.encode(), v.encode()) for k, v in response.headers.items()
                   if k.lower() not in ("request-id", "content-length", "content-encoding")]
        return httpx.Response(response.status_code, headers=[*headers, (b"request-id", request_id)],
                              content=response.content)

    return httpx.MockTransport(handle)


@pytest.mark.parametrize("request_id", [
    ("é" * 1000).encode(), ("😀" * 1000).encode(), b"\xff\xfe" * 500, b"x" * 1000, b"<!channel> '; DROP TABLE x;--",
])
def test_a_hostile_request_id_is_cut_to_the_column_and_the_call_and_batch_survive(audit: AuditLog,
                                                                                  request_id: bytes):
    metrics = Metrics()
    settings = load_settings(mam_cloud="sandbox", mam_graph_url=None, mam_defender_url=None)
    clients = build_clients(settings, transport=hostile_tenant(request_id), sleep=lambda _s: None,
                            listeners=[audit.record_write, metrics.microsoft_answer])
    audit.record_soon(actor="U0ADMIN", action="/mam enforce on", outcome="accepted")
    clients.graph.update_connector(MDE_CONNECTOR_ID, **{ANDROID_MAM: True})
    rows = all_rows(audit)
    assert rows[0].action == "/mam enforce on"
    [write] = [r for r in rows if r.action.startswith("graph ")]
    assert 0 < len(write.graph_request_id) <= 64 and write.outcome == "200"
    assert not [v for v in label_values(metrics) if "DROP" in v or "é" in v]


def test_one_row_the_database_refuses_does_not_lose_the_others_in_its_batch(
        audit: AuditLog, database_url: str) -> None:  # noqa: F811  (the imported fixture)
    """Fixed (PostgreSQL): the writer inserts a batch as one statement; a row PostgreSQL refuses (a NUL in a
    person's command text, a correlation id over 64) loses every row queued with it: Microsoft writes with their
    request-ids, approvals, commands. The audit log is meant to be complete."""
    ok = Answer("graph", "PATCH", f"https://graph.microsoft.com/beta/x/{MDE_CONNECTOR_ID}", 200, 0.1, "cid-ok",
                "rid-ok", True, 1)
    with audit._cond:  # one batch: the writer takes the queue only once both are in it
        audit.record_write(ok)
        audit.record_soon(actor="U0ADMIN", action="/mam policy show a\x00b", outcome="not understood")
    rows = all_rows(audit)
    assert [r.graph_request_id for r in rows if r.action.startswith("graph ")] == ["rid-ok"], \
        f"{len(rows)} rows written of 2"


def test_a_write_heard_after_the_audit_log_closed_is_not_silently_lost(audit_store: Store):
    """Fixed: Deps.close closes the audit log while a job that overran the grace still runs (it keeps the
    clients); its writes' rows are queued for a writer that has exited, with no log line, and a change's
    `audit.flush()` then waits its full 10 s."""
    audit = AuditLog(audit_store)  # not the fixture's: its close would wait 10 s for the lost row
    audit.record_soon(actor="U0ADMIN", action="/mam status", outcome="accepted")
    audit.close()
    assert audit._writer is not None
    audit._writer.join(2)  # the job's write comes later than the writer's last look at the queue
    audit.record_write(Answer("graph", "PATCH", "https://graph.microsoft.com/beta/x/1", 200, 0.1, "cid-late",
                              "rid-late", True, 1))
    started = time.monotonic()
    flushed = audit.flush(timeout=2)
    assert flushed and time.monotonic() - started < 1.5
    assert [r.graph_request_id for r in audit.recent(10) if r.action.startswith("graph ")] == ["rid-late"]


def test_a_failing_listener_fails_neither_the_call_nor_the_other_listeners(audit: AuditLog):
    metrics = Metrics()

    def broken(_answer: Any) -> None:
        raise RecursionError("listener bug")

    settings = load_settings(mam_cloud="sandbox", mam_graph_url=None, mam_defender_url=None)
    sandbox = SandboxTenant()
    clients = build_clients(settings, transport=httpx.MockTransport(sandbox.handle), sleep=lambda _s: None,
                            listeners=[broken, audit.record_write, broken, metrics.microsoft_answer])
    clients.graph.update_connector(MDE_CONNECTOR_ID, **{ANDROID_MAM: True})
    assert sandbox.connector()[ANDROID_MAM] is True
    assert [r for r in all_rows(audit) if r.action.startswith("graph PATCH")]
    assert samples(metrics, "mam_microsoft_requests_total")


# ==== 5. the log context ==================================================================================


def test_runner_work_keeps_its_submitters_context_not_the_previous_tasks():
    runner = BackgroundRunner(max_workers=1)
    seen: list[dict[str, Any]] = []
    gate = threading.Event()

    def leaky() -> None:
        gate.wait(5)
        logs_module._context.set(logs_module._context.get().__class__({"correlation_id": "leaked"}))
        seen.append(dict(current()))

    def record() -> None:
        seen.append(dict(current()))

    try:
        with bind(correlation_id="aaaaaaaaaaaa", slack_user="U0FIRST"):
            runner.submit(leaky)
        with bind(correlation_id="bbbbbbbbbbbb", slack_user="U0SECOND"):
            runner.submit(record)
        runner.submit(record)  # submitted outside any request
        gate.set()
        assert runner.wait_idle(10)
    finally:
        runner.shutdown()
    assert seen == [{"correlation_id": "leaked"}, {"correlation_id": "bbbbbbbbbbbb", "slack_user": "U0SECOND"}, {}]


def test_threads_the_bot_starts_inside_a_request_do_not_inherit_it():
    seen: list[dict[str, Any]] = []
    with bind(correlation_id="cccccccccccc", slack_user="U0X"):
        thread = threading.Thread(target=lambda: seen.append(dict(current())))
        thread.start()
        thread.join()
    assert seen == [{}] and dict(current()) == {}


def test_each_slack_request_gets_its_own_context_and_leaves_none_behind(make_bot):
    bot = make_bot()
    seen: list[dict[str, Any]] = []

    def capture(next: Callable[[], Any]) -> Any:  # Bolt passes it by this name
        seen.append(dict(current()))
        return next()

    bot.ws.app.middleware(capture)
    bot.command("help", user="U0ALEX")
    bot.command("help", user="U0SAM")
    bot.event({"type": "channel_rename", "channel": {"id": "C1", "name": "x", "created": 1}})
    assert len(seen) == 3 and dict(current()) == {}
    ids = [s.get("correlation_id") for s in seen]
    assert all(ids) and len(set(ids)) == 3
    assert [s.get("slack_user") for s in seen] == ["U0ALEX", "U0SAM", None]


def test_the_interactions_correlation_id_is_the_one_its_log_lines_carry():
    """Fixed: commands/listen.py `interaction` makes a second correlation id (new_correlation_id) instead of
    taking the one BotApp.dispatch bound. The apology's reference (run_guarded), the command's audit row
    (commands/router.py) and `[…]` in "… failed [id]" use it, while every log line's `correlation_id` and the
    Microsoft write rows use the other: an admin given the reference finds only the one line that quotes it."""
    with bind(correlation_id="feedfacecafe", slack_user="U0ALEX"):
        ctx = interaction(None, {"user_id": "U0ALEX", "channel_id": "C1", "command": "/mam"},  # type: ignore[arg-type]
                          ack=lambda *a, **k: None, respond=None, client=None)  # type: ignore[arg-type]
    assert ctx.correlation_id == "feedfacecafe"


def test_a_commands_audit_row_carries_the_correlation_id_of_its_log_lines(make_bot):
    """FINDING, end to end: the same split, in the in-process bot."""
    bot = make_bot()
    pairs: list[tuple[str, str]] = []
    record_soon = bot.deps.audit.record_soon

    def spy(**row: Any) -> None:
        if str(row.get("action", "")).startswith("/mam"):
            pairs.append((row.get("correlation_id", ""), str(current().get("correlation_id", ""))))
        record_soon(**row)

    bot.deps.audit.record_soon = spy  # type: ignore[method-assign]
    bot.command("policy list")
    assert pairs and all(row == bound for row, bound in pairs), pairs
