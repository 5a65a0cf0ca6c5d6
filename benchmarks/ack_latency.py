"""How fast `mam-bot serve` acks Slack, next to an empty Bolt app served the same way.

    .venv/bin/python -m benchmarks.ack_latency [--duration 10] [--connections 50]

Starts `mam-bot serve` (SQLite in a temporary folder, the in-process sandbox tenant, a FakeSlack for
the Web API and response_urls) and `benchmarks.empty_app` (the same Bolt setup and server, one
listener that only acks), then loads each with `wrk -t1 -c50 -d10s --latency`: once with signed
`/mam help` commands, once with signed clicks on the connector card's "Check again" by an admin. Each
scenario gets fresh processes, so work one run queued doesn't slow the next.

Every request is a new one, as in Slack: its own trigger_id (and, for a click, its own action_ts), so
its own signature. The bot remembers each signature and each idempotency key (bot/http.py,
bot/dedupe.py) and answers a repeat with an empty 200 without doing anything; one signed request
repeated would measure that shortcut, not the bot. The requests are signed here beforehand (wrk's Lua
has no HMAC) and wrk's script sends them in turn; a run that sends more than were signed says so.
The empty app has no replay table, so the difference includes what that insert costs the ack
(figures in docs/deployment.md, "Retries, replays and double clicks").

Prints requests/s, p50, p99, max and errors (non-2xx answers, socket errors) per setup, then
whether the bot's p99 is within 1.5x the empty app's and every answer came inside Slack's 3 s.
Needs Debian's `wrk` (`apt-get install wrk`): a Python load generator measures itself more than
the server (on 2 cores its p99 came out 30 times worse than wrk's for the same server).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

from bot.console.fake_slack import FakeSlack

ROOT = Path(__file__).resolve().parents[1]
SIGNING_SECRET = "benchmark-signing-secret-0123456789"
ADMIN = "UADMIN001"
P99_RATIO_TARGET = 1.5
SLACK_DEADLINE_S = 3.0
EMPTY = "empty Bolt app"
BOT = "mam-bot serve"


@dataclass(frozen=True)
class Scenario:
    name: str
    body: str
    expect: str  # a piece of the bot's answer that shows the request really was handled


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    timeouts: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


UNIQUE = "ZZUNIQUEZZ"  # where each request's own token goes in a body template (no character urlencode changes)
WARM_UP = 20


def command_body(text: str, response_url: str) -> str:
    """A template: UNIQUE marks the trigger_id's last part."""
    return urlencode({
        "token": "unused", "team_id": "T0CONSOLE", "team_domain": "console", "channel_id": "C0CONSOLE",
        "channel_name": "console", "user_id": ADMIN, "user_name": "alex", "command": "/mam", "text": text,
        "api_app_id": "A0MAMBOT1", "is_enterprise_install": "false", "response_url": response_url,
        "trigger_id": f"13345224609.738474920.{UNIQUE}",
    })


def click_body(action_id: str, response_url: str) -> str:
    """A template: UNIQUE marks the trigger_id's last part and the action_ts."""
    payload: dict[str, Any] = {
        "type": "block_actions", "team": {"id": "T0CONSOLE", "domain": "console"},
        "user": {"id": ADMIN, "username": "alex", "team_id": "T0CONSOLE"}, "api_app_id": "A0MAMBOT1",
        "token": "unused", "trigger_id": f"13345224609.738474920.{UNIQUE}",
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0CONSOLE",
                      "is_ephemeral": True},
        "channel": {"id": "C0CONSOLE", "name": "console"}, "response_url": response_url,
        "actions": [{"action_id": action_id, "block_id": "b1", "type": "button", "value": "",
                     "text": {"type": "plain_text", "text": "Check again"}, "action_ts": UNIQUE}],
    }
    return urlencode({"payload": json.dumps(payload)})


def unique_token(n: int) -> str:
    """Request n's token: a valid action_ts (seconds.micros), different for every n."""
    return f"{1_700_000_000 + n // 1_000_000}.{n % 1_000_000:06d}"


@dataclass(frozen=True)
class Signed:
    """Requests made from one template, all signed with one timestamp (Slack's window is 5 minutes)."""

    template: str
    timestamp: str
    tokens: list[str]
    signatures: list[str]

    def body(self, i: int) -> str:
        return self.template.replace(UNIQUE, self.tokens[i])

    def headers(self, i: int) -> dict[str, str]:
        return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": self.timestamp,
                "X-Slack-Signature": self.signatures[i]}


def sign_all(template: str, count: int, first: int = 0) -> Signed:
    ts = str(int(time.time()))
    verifier = SignatureVerifier(SIGNING_SECRET)
    tokens = [unique_token(first + n) for n in range(count)]
    signatures = [verifier.generate_signature(timestamp=ts, body=template.replace(UNIQUE, t)) or ""
                  for t in tokens]
    return Signed(template, ts, tokens, signatures)


LUA_DONE = """
done = function(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d, "p50": %d, "p99": %d, "max": %d}\\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


LUA_REQUESTS = """
local n, sent = 0, 0
local tokens, signatures = {}, {}
local threads = {}

setup = function(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

init = function(args)
  for line in io.lines(signed_file) do
    local token, signature = line:match("^(%S+)\t(%S+)$")
    table.insert(tokens, token)
    table.insert(signatures, signature)
  end
  n = #tokens
end

request = function()
  -- thread t (set by setup) sends requests t, t + nthreads, t + 2 nthreads, ...: never the same as another
  local i = (sent * nthreads + (tid or 1) - 1) % n + 1
  sent = sent + 1
  local token = tokens[i]
  headers["X-Slack-Signature"] = signatures[i]
  return wrk.format("POST", nil, headers, table.concat(parts, token))
end
"""


def lua_script(signed: Signed, signed_file: Path, threads: int) -> str:
    parts = signed.template.split(UNIQUE)
    lines = [f"signed_file = [==[{signed_file}]==]", f"nthreads = {threads}",
             "parts = {" + ", ".join(f"[==[{p}]==]" for p in parts) + "}",
             "headers = {}"]
    lines += [f'headers["{k}"] = "{v}"' for k, v in signed.headers(0).items()]
    return "\n".join(lines) + "\n" + LUA_REQUESTS + LUA_DONE


def run_wrk(url: str, script: Path, *, threads: int, connections: int, duration: int) -> Result:
    # --timeout 10s: a slow answer is measured as slow instead of being dropped as a 2 s timeout.
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s",
         "-s", str(script), url],
        capture_output=True, text=True, check=True, timeout=duration + 60,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    return Result(
        requests=r["requests"], seconds=r["duration_us"] / 1e6, p50_ms=r["p50"] / 1000, p99_ms=r["p99"] / 1000,
        max_ms=r["max"] / 1000, non_2xx=r["status"],
        socket_errors=r["connect"] + r["read"] + r["write"] + r["timeout"], timeouts=r["timeout"],
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AZURE_", "MAM_", "DATABASE_"))}
    # no load balancer to drain for: the stop between runs need not wait out MAM_SHUTDOWN_DRAIN_SECONDS
    env.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "MAM_SHUTDOWN_DRAIN_SECONDS": "0", "MAM_METRICS_PORT": "0"})
    env.update(extra)
    return env


@contextmanager
def served(args: list[str], env: dict[str, str], cwd: Path) -> Iterator[str]:
    """Run a server process until its /healthz answers; yields its /slack/events URL."""
    port = free_port()
    log = (cwd / f"server-{port}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", *args, "--port", str(port)], env=env, cwd=cwd,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(args)} exited: {(cwd / log.name).read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(args)} did not become healthy in 60 s")
            time.sleep(0.1)
        yield f"{base}/slack/events"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def check_answer(url: str, body: str, headers: dict[str, str], expect: str) -> None:
    """One request before the load: the signature is accepted and the answer is the real one."""
    response = httpx.post(url, content=body, headers=headers, timeout=10)
    if response.status_code != 200 or expect not in response.text:
        raise RuntimeError(f"{url} answered {response.status_code} {response.text[:300]!r}; expected {expect!r}")


def measure(name: str, args: list[str], env: dict[str, str], workdir: Path, scenario: Scenario,
            opts: argparse.Namespace) -> Result:
    # Enough for 10,000 requests/s for the whole run; the warm-up's requests come after the load's.
    count = 10_000 * opts.duration
    load = sign_all(scenario.body, count)
    warm = sign_all(scenario.body, WARM_UP, first=count)
    slug = "".join(c if c.isalnum() else "-" for c in f"{scenario.name}-{name}")
    signed_file = workdir / f"{slug}.signed"
    signed_file.write_text("".join(f"{t}\t{sig}\n" for t, sig in zip(load.tokens, load.signatures, strict=True)))
    script = workdir / f"{slug}.lua"
    script.write_text(lua_script(load, signed_file, opts.threads))
    with served(args, env, workdir) as url:
        expect = scenario.expect if name == BOT else ""
        for i in range(WARM_UP):  # warm up: imports, first connections, caches
            check_answer(url, warm.body(i), warm.headers(i), expect)
        if name == BOT:  # the same request again is a replay: answered, but with nothing
            replay = httpx.post(url, content=warm.body(0), headers=warm.headers(0), timeout=10)
            if replay.status_code != 200 or replay.content:
                raise RuntimeError(f"a replay was answered {replay.status_code} {replay.text[:200]!r}")
        time.sleep(1.0)  # let the warm-up's background work finish
        print(f"  {scenario.name}: {name} ...", flush=True)
        result = run_wrk(url, script, threads=opts.threads, connections=opts.connections, duration=opts.duration)
    if result.requests > count:
        print(f"  warning: {result.requests:,} requests sent, only {count:,} signed: the rest were replays",
              file=sys.stderr)
    return result


def row(setup: str, r: Result) -> str:
    return (f"| {setup:<22} | {r.rps:>8,.0f} | {r.p50_ms:>7.1f} | {r.p99_ms:>7.1f} | {r.max_ms:>7.1f} "
            f"| {r.non_2xx:>7} | {r.socket_errors:>6} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per run (default 10)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    opts = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: `apt-get install wrk` (Debian/Ubuntu) or `brew install wrk` (macOS), "
              "then run this again.", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="mam-ack-bench-") as tmp, FakeSlack() as slack:
        workdir = Path(tmp)
        with (workdir / "fake-slack.log").open("w") as quiet, redirect_stderr(quiet):
            # The bot is stopped with response_url posts in flight; FakeSlack would print each broken pipe.
            results = run_all(slack, workdir, opts)

    report(results, opts)
    return 0 if all(_meets_target(r) for r in results.values()) else 1


def run_all(slack: FakeSlack, workdir: Path, opts: argparse.Namespace) -> dict[str, dict[str, Result]]:
    scenarios = [
        Scenario("/mam help", command_body("help", slack.new_response_url(user=ADMIN)), "/mam connectors"),
        Scenario("click Check again",
                 click_body("connectors_recheck", slack.new_response_url(user=ADMIN, kind="actions")), ""),
    ]
    results: dict[str, dict[str, Result]] = {}
    for i, scenario in enumerate(scenarios):
        bot_env = clean_env(DATABASE_URL=f"sqlite:///{workdir}/bot-{i}.db", MAM_ADMINS=ADMIN,
                            MAM_CLOUD="sandbox", SLACK_BOT_TOKEN="xoxb-bench", SLACK_API_URL=slack.api_url)
        results[scenario.name] = {
            EMPTY: measure(EMPTY, ["benchmarks.empty_app"], clean_env(), workdir, scenario, opts),
            BOT: measure(BOT, ["bot.cli", "serve"], bot_env, workdir, scenario, opts),
        }
    return results


def verdicts(by_setup: dict[str, Result]) -> tuple[float, bool, bool, bool]:
    """(p99 ratio, within 1.5x, every answer inside 3 s, no errors)."""
    bot, empty = by_setup[BOT], by_setup[EMPTY]
    ratio = bot.p99_ms / empty.p99_ms if empty.p99_ms else float("inf")
    in_time = bot.max_ms < SLACK_DEADLINE_S * 1000 and bot.timeouts == 0
    return ratio, ratio <= P99_RATIO_TARGET, in_time, bot.errors == 0


def _meets_target(by_setup: dict[str, Result]) -> bool:
    _, within, in_time, clean = verdicts(by_setup)
    return within and in_time and clean


def report(results: dict[str, dict[str, Result]], opts: argparse.Namespace) -> None:
    print(f"\nwrk -t{opts.threads} -c{opts.connections} -d{opts.duration}s --latency, every request signed "
          f"and new; {os.cpu_count()} CPUs, load generator on the same machine\n")
    for name, by_setup in results.items():
        print(name)
        print("| setup                  |    req/s | p50 ms  | p99 ms  | max ms  | non-2xx | socket |")
        print("|------------------------|----------|---------|---------|---------|---------|--------|")
        for setup, r in by_setup.items():
            print(row(setup, r))
        ratio, within, in_time, clean = verdicts(by_setup)
        print(f"  bot p99 / empty p99 = {ratio:.2f} (target <= {P99_RATIO_TARGET}): {_yes(within)}; "
              f"every answer inside {SLACK_DEADLINE_S:g} s: {_yes(in_time)}; no errors: {_yes(clean)}\n")


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


if __name__ == "__main__":
    raise SystemExit(main())
