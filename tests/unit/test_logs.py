"""The log context and the two log formats: fields from `bind` on every line, one JSON object per line whatever
the message, secrets out of both formats, and the context carried into background work and scheduled jobs."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from bot.errors import correlation_id
from bot.logs import bind, configure_logging, current, secrets_of
from bot.runner import BackgroundRunner
from bot.scheduler import LEASE_SECONDS, Job, Scheduler, interval
from bot.settings import load_settings
from bot.store import create_store

log = logging.getLogger("mam.test_logs")


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[str]]]:
    """What the configured handler wrote to stderr, line by line; the root logger put back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    slack_level = logging.getLogger("slack_sdk.web.base_client").level
    capsys.readouterr()
    yield lambda: capsys.readouterr().err.splitlines()
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    logging.getLogger("slack_sdk.web.base_client").setLevel(slack_level)


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


@contextmanager
def only_ours(name: str, level: int = logging.NOTSET) -> Iterator[logging.Logger]:
    """A logger whose records reach configure_logging's handler alone: pytest's own handlers format every
    record (and raise on one that cannot be formatted)."""
    [ours] = [h for h in logging.getLogger().handlers if type(h).__module__ == "bot.logs"]
    logger = logging.getLogger(name)
    logger.setLevel(level)
    logger.propagate = False
    logger.addHandler(ours)
    try:
        yield logger
    finally:
        logger.removeHandler(ours)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


# ---- JSON lines and the bound fields ------------------------------------------------------------


def test_each_json_line_parses_and_carries_the_bound_fields(logs):
    configure_logging("info", "json")
    log.info("outside")
    with bind(correlation_id="c0ffee000001", slack_user="U012AB3CD", slack_team="T0TEAM", change_request=42):
        log.info("inside %s", "a request")
    outside, inside = json_lines(logs())
    assert list(outside) == ["ts", "level", "logger", "message", "thread"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", inside["ts"])
    assert inside == {"ts": inside["ts"], "level": "INFO", "logger": "mam.test_logs", "message": "inside a request",
                      "correlation_id": "c0ffee000001", "slack_user": "U012AB3CD", "slack_team": "T0TEAM",
                      "change_request": 42, "thread": "MainThread"}
    assert list(inside)[4:8] == ["correlation_id", "slack_user", "slack_team", "change_request"]


def test_nested_binds_add_to_the_outer_ones_and_end_with_their_block(logs):
    configure_logging("info", "json")
    with bind(correlation_id="cid-outer", slack_user="U1"):
        with bind(change_request=7, slack_user=None):  # None leaves the outer value
            log.info("executing")
            assert dict(current()) == {"correlation_id": "cid-outer", "slack_user": "U1", "change_request": 7}
        log.info("after")
    log.info("outside")
    executing, after, outside = json_lines(logs())
    assert (executing["correlation_id"], executing["slack_user"], executing["change_request"]) == ("cid-outer",
                                                                                                    "U1", 7)
    assert after["correlation_id"] == "cid-outer" and "change_request" not in after
    assert not {"correlation_id", "slack_user", "change_request"} & set(outside)


def test_work_submitted_inside_a_bind_logs_with_its_fields(logs):
    configure_logging("info", "json")
    runner = BackgroundRunner(max_workers=1)

    def fail() -> None:
        raise RuntimeError("Graph said no")

    try:
        with bind(correlation_id="cid-ack", slack_user="U1", slack_team="T1"):
            runner.submit(lambda: log.info("after the ack"))
            runner.submit(fail)
        runner.submit(lambda: log.info("another request's work"))  # the same pool thread, nothing bound
        assert runner.wait_idle(5)
    finally:
        runner.shutdown()
    after, failed, other = json_lines(logs())
    for line in (after, failed):
        assert (line["correlation_id"], line["slack_user"], line["slack_team"]) == ("cid-ack", "U1", "T1")
        assert line["thread"].startswith("mam-work")
    assert "Graph said no" in failed["exc"]
    assert "correlation_id" not in other and other["thread"] == after["thread"]


HOSTILE = [
    "two\nlines\r\nand a third",
    'quotes " and \\" and \'',
    "<!channel> <@U1> <https://evil.example|click>",
    "long " + "x" * 3500,
    "surrogates \udcff\ud800 from bytes that were not UTF-8",
    "separators \u2028\u2029\x1c\x1d\x1e\x85 and controls \x00\x1b[31m",
    "{\"level\": \"ERROR\"}\n{\"forged\": true}",
]


@pytest.mark.parametrize("message", HOSTILE)
def test_a_hostile_message_stays_one_json_line(logs, message: str):
    configure_logging("info", "json")
    with bind(slack_user=message[:40]):
        log.info(message)
        log.info("in the args: %s", message)
        log.warning("as an extra", extra={"title": message})
    lines = logs()
    assert len(lines) == 3
    first, second, third = json_lines(lines)
    assert first["message"] == message and second["message"] == f"in the args: {message}"
    assert third["title"] == message and first["slack_user"] == message[:40]


def test_an_exception_goes_in_exc_not_in_the_message(logs):
    configure_logging("info", "json")
    try:
        raise ValueError("the policy is gone")
    except ValueError:
        log.exception("could not read the policy")
    [line] = json_lines(logs())
    assert line["message"] == "could not read the policy" and line["level"] == "ERROR"
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert line["exc"].rstrip().endswith("ValueError: the policy is gone")


def test_odd_input_never_breaks_a_json_line(logs):
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        __repr__ = __str__

    cycle: list[Any] = []
    cycle.append(cycle)
    configure_logging("info", "json")
    with only_ours("mam.test_logs.odd") as odd:
        odd.info("%s and %s", "only one argument")
        odd.info(Unprintable())
        odd.info("extras", extra={"tuple_keys": {(1, 2): "x"}, "cycle": cycle, "odd": Unprintable(),
                                  "when": datetime(2026, 1, 2, tzinfo=UTC), "count": 3})
    mismatched, unprintable, extras = json_lines(logs())
    assert mismatched["message"].startswith("%s and %s") and "only one argument" in mismatched["message"]
    assert "Unprintable object" in unprintable["message"]
    assert extras["count"] == 3 and extras["when"] == "2026-01-02 00:00:00+00:00"
    assert {"tuple_keys", "cycle", "odd"} <= set(extras)


# ---- the text format ------------------------------------------------------------------------------------


def test_the_text_format_keeps_its_layout_and_adds_the_fields_that_are_set(logs):
    configure_logging("info", "text")
    log.info("nothing bound")
    with bind(correlation_id="c0ffee000001", slack_user="U1", slack_team="T1", change_request=42, job="sweep"):
        log.warning("everything bound")
    with bind(slack_user="U2"):
        log.info("only the user")
    plain, full, user = logs()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(rf"{stamp} INFO mam\.test_logs nothing bound", plain)
    assert re.fullmatch(rf"{stamp} WARNING mam\.test_logs everything bound "
                        r"\[cid=c0ffee000001 user=U1 team=T1 change=#42 job=sweep\]", full)
    assert user.endswith("only the user [user=U2]")


# ---- secrets -----------------------------------------------------------------------------------------------

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CLIENT_SECRET = "Zq8~Qv.AbC_dEf-GhIjK1234567890lmnOPq"
DB_PASSWORD = "p@ss:w0rd/Hunter2"
DB_URL = "postgresql+psycopg://mam_bot:p%40ss%3Aw0rd%2FHunter2@db.example.com:5432/mam_bot"

# (what leaks, the text it is in, what must remain of the text)
SECRETS = {
    "bot token": ("xoxb-1234567890-0987654321-AbCdEfGhIjKl", "token xoxb-1234567890-0987654321-AbCdEfGhIjKl",
                  "token ***"),
    "user token": ("xoxp-2-3-4-ffffeeee", "sent with xoxp-2-3-4-ffffeeee", "sent with ***"),
    "app token": ("xapp-1-A0MAMBOT1-5555-c0ffee", "app xapp-1-A0MAMBOT1-5555-c0ffee", "app ***"),
    "signing secret": (SIGNING_SECRET, f"secret={SIGNING_SECRET!r}", "secret='***'"),
    "client secret value": (CLIENT_SECRET, f"the secret {CLIENT_SECRET} was refused", "the secret *** was refused"),
    "database password": (DB_PASSWORD, f"login as mam_bot with {DB_PASSWORD}", "login as mam_bot with ***"),
    "database password in the url": ("p%40ss%3Aw0rd%2FHunter2", f"cannot reach {DB_URL}",
                                     "cannot reach postgresql+psycopg://mam_bot:***@db.example.com"),
    "bearer": ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
               "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", "Authorization: Bearer ***"),
    "client_secret form field": ("~unknown.Secret-Value_42", "POST /token client_id=abc&client_secret=~unknown."
                                 "Secret-Value_42&grant_type=client_credentials",
                                 "client_secret=***&grant_type=client_credentials"),
    "client_secret in a dict": ("another~Secret.99", "form {'client_secret': 'another~Secret.99', 'scope': 'x'}",
                                "{'client_secret': '***', 'scope': 'x'}"),
    "socket mode ticket": ("1a2b3c4d-5e6f-ticket-secret", "connecting to wss://wss-primary.slack.com/link/?ticket="
                           "1a2b3c4d-5e6f-ticket-secret&app_id=A0MAMBOT1",
                           "wss://wss-primary.slack.com/link/?ticket=***&app_id=A0MAMBOT1"),
    "signed download link": ("AbC%2Bsignature%3D", "downloading https://amsua.blob.core.windows.net/r/report.zip?"
                             "sv=2021-08-06&se=2026-01-01&sr=b&sp=r&sig=AbC%2Bsignature%3D done",
                             "https://amsua.blob.core.windows.net/r/report.zip?*** done"),
    "sandbox download link": ("d1e2a3d4b5e6e7f8", "GET http://graph.sandbox.invalid/sandbox-downloads/7.zip?"
                              "sig=d1e2a3d4b5e6e7f8", "/sandbox-downloads/7.zip?***"),
}


def settings_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "AZURE_CLIENT_SECRET",
                 "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return secrets_of(load_settings(slack_signing_secret=SIGNING_SECRET, azure_client_secret=CLIENT_SECRET,
                                    slack_bot_token="xoxb-known-bot-token", slack_app_token="xapp-known",
                                    database_url=DB_URL))


def test_secrets_of_lists_every_secret_setting_and_the_database_password(monkeypatch, tmp_path):
    found = settings_secrets(monkeypatch, tmp_path)
    assert set(found) == {SIGNING_SECRET, CLIENT_SECRET, "xoxb-known-bot-token", "xapp-known", DB_PASSWORD,
                          "p%40ss%3Aw0rd%2FHunter2"}
    assert secrets_of(load_settings(database_url=f"sqlite:///{tmp_path}/my:db@x.db")) == []


def log_it(where: str, text: str) -> None:
    if where == "message":
        log.warning(text)
    elif where == "args":
        log.warning("the call: %s (%d)", text, 3)
    elif where == "traceback":
        try:
            raise RuntimeError(f"the call failed: {text}")
        except RuntimeError as exc:
            log.error("the call failed", exc_info=exc)
    else:
        log.warning("with an extra", extra={"detail": {"said": text}})


# the text format writes no extras
PLACES = [("text", "message"), ("text", "args"), ("text", "traceback"), ("json", "message"), ("json", "args"),
          ("json", "traceback"), ("json", "extra")]


@pytest.mark.parametrize(("fmt", "where"), PLACES)
@pytest.mark.parametrize("kind", list(SECRETS))
def test_the_redactor_takes_out_each_secret_in_both_formats(logs, monkeypatch, tmp_path, kind, where, fmt):
    secret, text, kept = SECRETS[kind]
    configure_logging("info", fmt, settings_secrets(monkeypatch, tmp_path))
    log_it(where, text)
    written = "\n".join(logs())
    assert written and secret not in written
    if fmt == "json":
        [line] = json_lines(written.splitlines())
        written = {"message": line["message"], "args": line["message"], "traceback": line.get("exc", ""),
                   "extra": line.get("detail", "")}[where]
    assert kept in written


def test_a_known_secret_is_out_even_when_nothing_about_it_looks_secret(logs):
    configure_logging("info", "json", ["plain-looking-value", "a", ""])  # too short to redact safely: kept
    log.info("value plain-looking-value, a letter")
    [line] = json_lines(logs())
    assert line["message"] == "value ***, a letter"


def test_a_known_secret_is_out_as_json_and_a_url_write_it_too(logs):
    secret = 'pa"ss\\wörd/&?'
    configure_logging("info", "text", [secret])
    log.info("body %s", json.dumps({"password": secret}))
    log.info("form user=x&password=%s&scope=y", quote(secret, safe=""))
    as_json, as_form = logs()
    assert as_json.endswith('body {"password": "***"}') and as_form.endswith("form user=x&password=***&scope=y")


def test_records_below_the_handlers_level_are_not_even_formatted(logs):
    formatted = []

    class Costly:
        def __str__(self) -> str:
            formatted.append(1)
            return "xoxb-1-2-3"

    configure_logging("warning", "json")
    with only_ours("mam.test_logs.chatty", logging.DEBUG) as chatty:  # a logger set lower than the handler
        chatty.debug("costly %s", Costly())
        chatty.warning("kept %s", Costly())
    [line] = json_lines(logs())
    assert line["message"] == "kept ***" and formatted == [1]


# ---- set-up -----------------------------------------------------------------------------------------------


def test_configuring_again_replaces_the_handler_and_keeps_others(logs):
    root = logging.getLogger()
    other = logging.NullHandler()
    root.addHandler(other)
    try:
        configure_logging("info")
        log.info("first as text")
        configure_logging("debug", "json", ["s3cret-value"])
        log.debug("then json: s3cret-value")
        ours = [h for h in root.handlers if type(h).__module__ == "bot.logs"]
        assert len(ours) == 1 and other in root.handlers
        assert root.level == logging.DEBUG
        assert logging.getLogger("slack_sdk.web.base_client").level == logging.CRITICAL
    finally:
        root.removeHandler(other)
    text, as_json = logs()
    assert text.endswith("INFO mam.test_logs first as text")
    assert json.loads(as_json)["message"] == "then json: ***"


def test_correlation_id_is_the_bound_one_or_a_new_one():
    with bind(correlation_id="c0ffee000042"):
        assert correlation_id() == "c0ffee000042"
    first, second = correlation_id(), correlation_id()
    assert re.fullmatch(r"[0-9a-f]{12}", first) and first != second


# ---- scheduled jobs ------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.value = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.value


def test_a_job_run_binds_the_job_and_a_correlation_id_of_its_own(logs, tmp_path):
    seen: list[dict[str, Any]] = []

    def sweep() -> str:
        seen.append(dict(current()))
        log.info("sweeping")
        return "swept"

    def boom() -> None:
        raise RuntimeError("Defender is down")

    configure_logging("info", "json")
    scheduler = Scheduler(create_store(f"sqlite:///{tmp_path}/jobs.db"),
                          [Job("threat-sweep", "sweeps", interval(minutes=5), sweep),
                           Job("boom", "fails", interval(minutes=5), boom)], now=Clock(), holder="here")
    with bind(correlation_id="cid-of-the-slack-request", slack_user="U1"):
        run = scheduler.run_now("threat-sweep")
    failed = scheduler.run_now("boom")
    assert seen == [{"correlation_id": f"job-threat-sweep-{run.id}", "slack_user": "U1", "job": "threat-sweep"}]
    assert current() == {}
    lines = json_lines(logs())
    [swept] = [line for line in lines if line["message"] == "sweeping"]
    assert (swept["job"], swept["correlation_id"]) == ("threat-sweep", f"job-threat-sweep-{run.id}")
    [failure] = [line for line in lines if line["message"] == "job boom failed"]
    assert (failure["job"], failure["correlation_id"]) == ("boom", f"job-boom-{failed.id}")
    assert "Defender is down" in failure["exc"]


def test_leading_follows_the_lease_as_last_renewed(tmp_path):
    clock = Clock()
    url = f"sqlite:///{tmp_path}/jobs.db"
    job = Job("j", "j", interval(minutes=1), lambda: "done")
    first = Scheduler(create_store(url), [job], now=clock, holder="first")
    second = Scheduler(create_store(url), [job], now=clock, holder="second")
    assert not first.leading and not second.leading
    first._keep_lease()
    second._keep_lease()
    assert first.leading and not second.leading
    clock.value += timedelta(seconds=LEASE_SECONDS + 1)  # first stopped renewing
    second._keep_lease()
    assert second.leading and first.leading  # first has not looked since
    first._keep_lease()
    assert not first.leading and second.leading
