"""The `mam-bot` command line: run, serve, console, demo, sandbox serve, check, manifest, db, jobs, audit."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from bot.logs import configure_logging, secrets_of
from bot.settings import Mode, Settings, SettingsError, load_settings, missing_for, missing_line
from bot.text import count

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.deps import Deps
    from bot.health import OperatorServer

log = logging.getLogger("mam")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # text, at --log-level or warning, until the settings (the format, the level, the secrets' values) are read
    configure_logging(args.log_level or "warning")
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mam-bot", description=__doc__)
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"],
                        help="before the command; default MAM_LOG_LEVEL, else warning")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run in Slack over Socket Mode (no public URL needed)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="serve Slack over HTTP at /slack/events, plus /healthz")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=3000, help="port (default 3000)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("console", help="drive the bot from this terminal, no Slack needed")
    p.add_argument("--as", dest="user", default=None,
                   help="who to act as: a user id, @name or email of the console's people (default: the admin)")
    p.add_argument("--channel", default="C0CONSOLE", help="channel id the commands are typed in")
    p.set_defaults(func=cmd_console)

    p = sub.add_parser("demo", help="a scripted walk-through against the sandbox tenant")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("sandbox", help="the simulated Microsoft tenant")
    sandbox_sub = p.add_subparsers(dest="sandbox_command", required=True, metavar="ACTION")
    ps = sandbox_sub.add_parser("serve", help="serve the sandbox tenant on a local port")
    ps.add_argument("--host", default="127.0.0.1")
    ps.add_argument("--port", type=int, default=8765)
    ps.add_argument("--devices", type=int, default=None, help="Android devices (default: the small demo tenant)")
    ps.add_argument("--registrations", type=int, default=None, help="managed app registrations")
    ps.set_defaults(func=cmd_sandbox_serve)

    p = sub.add_parser("check", help="say what is missing or misconfigured for each mode")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("manifest", help="print the Slack app manifest")
    p.add_argument("--http-url", default=None, help="public https base URL: print the HTTP-mode variant")
    p.set_defaults(func=cmd_manifest)

    p = sub.add_parser("db", help="the bot's database")
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    pd = db_sub.add_parser("upgrade", help="apply schema migrations (also done on start, under a lock)")
    pd.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("jobs", help="the scheduled jobs")
    jobs_sub = p.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    pj = jobs_sub.add_parser("list", help="the jobs, their schedules, last and next runs, and the leader")
    pj.set_defaults(func=cmd_jobs_list)
    pj = jobs_sub.add_parser("run", help="run one job now: the leader runs it while a bot leads, else this process")
    pj.add_argument("name", help="a job's name, e.g. threat-sweep, registrations-index, licences or onboarding-nudges "
                                       "(`mam-bot jobs list` shows them all)")
    pj.set_defaults(func=cmd_jobs_run)

    p = sub.add_parser("audit", help="the audit log")
    audit_sub = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    pa = audit_sub.add_parser("export", help="write the whole audit log to stdout")
    pa.add_argument("--format", choices=["csv", "jsonl"], default="csv", help="csv (default) or jsonl")
    pa.set_defaults(func=cmd_audit_export)
    return parser


def _load(args: argparse.Namespace) -> Settings:
    """The settings, and the logs in their format with their secrets masked (bot.logs) from here on."""
    settings = load_settings()
    configure_logging(args.log_level or settings.mam_log_level, settings.mam_log_format, secrets_of(settings))
    return settings


def _fail(line: str, code: int = 2) -> NoReturn:
    print(line, file=sys.stderr)
    raise SystemExit(code)


def _require(settings: Settings, mode: Mode) -> None:
    missing = missing_for(settings, mode)
    if missing:
        _fail(missing_line(mode, missing))


# ---- Slack modes --------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    settings = _load(args)
    _require(settings, Mode.RUN)
    from bot.socket_mode import SocketLink, SocketModeRefused, run_socket_mode

    stop = _Stop.install()  # before anything starts: from here on a signal means a clean stop
    link = SocketLink()
    app, deps, operator = _start_slack_app(settings, stop, slack=link.is_up)
    assert settings.slack_app_token is not None
    token = settings.slack_app_token.get_secret_value()
    log.warning("mam-bot is connecting to Slack over Socket Mode")
    try:
        return _until_stopped(settings, deps, stop, lambda: run_socket_mode(
            app, token, ping_seconds=settings.mam_socket_ping_seconds, stop=stop.requested, link=link),
            operator=operator)
    except SocketModeRefused as exc:
        _fail(str(exc))


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _load(args)
    _require(settings, Mode.SERVE)
    from bot.http import ServeFailed, serve

    stop = _Stop.install()  # before anything starts: uvicorn must never see a signal (see bot.http.HttpServer)
    app, deps, operator = _start_slack_app(settings, stop)
    log.warning("mam-bot serving Slack at http://%s:%s/slack/events (health: /healthz)", args.host, args.port)
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""

    def transport() -> int:
        try:
            serve(app, deps.store, host=args.host, port=args.port, signing_secret=secret, seen=deps.seen,
                  stop=stop.requested, hurry=stop.hurry, drain_seconds=settings.mam_shutdown_drain_seconds,
                  grace_seconds=settings.mam_shutdown_grace_seconds)
        except ServeFailed:
            return 1
        return 0 if stop.requested.is_set() else 1  # uvicorn ended by itself: not a stop anyone asked for

    return _until_stopped(settings, deps, stop, transport, drain_seconds=settings.mam_shutdown_drain_seconds,
                          operator=operator)


class _Stop:
    """SIGTERM and SIGINT for `run` and `serve`: the first asks for a clean stop, a second cuts its waits short.

    The bot takes the signals itself, before anything starts. uvicorn (0.29 and later) would otherwise catch
    them and raise SIGTERM again after its own shutdown, ending the process before any clean-up after it.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.hurry = threading.Event()
        self.at: float | None = None  # time.monotonic() of the first signal
        self.name = ""

    @classmethod
    def install(cls) -> _Stop:
        stop = cls()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop._on_signal)
        return stop

    def _on_signal(self, signum: int, _frame: object) -> None:  # on the main thread, between two bytecodes
        if self.requested.is_set():
            self.hurry.set()
            return
        self.at, self.name = time.monotonic(), signal.Signals(signum).name
        self.requested.set()


def _until_stopped(settings: Settings, deps: Deps, stop: _Stop, transport: Callable[[], int], *,
                   drain_seconds: float = 0.0, operator: OperatorServer | None = None) -> int:
    """Run the Slack transport until it returns (after a signal, or when Slack ends the link), then stop
    cleanly: work acknowledged before the stop (executions included) gets MAM_SHUTDOWN_GRACE_SECONDS to
    finish while the outbox still sends, counted from the end of the drain; then `Deps.close` hands the
    scheduler lease back and gives back the outbox rows claimed but not sent. The operator's port (/livez,
    /metrics) answers until the end. Returns the exit code."""
    cut = False
    try:
        code = 0 if stop.requested.is_set() else transport()
    finally:
        stop.requested.set()  # not ready from here on, whatever ended the transport
        start = stop.at if stop.at is not None else time.monotonic()
        deadline = start + drain_seconds + settings.mam_shutdown_grace_seconds
        cut = not _finish_work(deps, stop, deadline)
        # a scheduled job (an execution taken over) shares the same grace, not a second one
        jobs_done = deps.close(job_seconds=0.0 if stop.hurry.is_set() else max(0.0, deadline - time.monotonic()))
        cut = cut or not jobs_done
        if operator is not None:
            operator.stop()
    if stop.at is not None:
        log.warning("mam-bot stopped %.1f s after %s: %s; scheduler lease and unsent outbox claims handed back",
                    time.monotonic() - start, stop.name,
                    "acknowledged work cut short (MAM_SHUTDOWN_GRACE_SECONDS)" if cut else "acknowledged work done")
    if cut:
        # Python waits for every worker thread before it exits; the work past its grace must not hold the process
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _finish_work(deps: Deps, stop: _Stop, deadline: float) -> bool:
    """Wait until the work handed to the runner is done, tasks it starts included, or until `deadline` (or a
    second signal); True when all of it finished. What is left is stopped being waited for."""
    while not deps.runner.wait_idle(max(0.0, min(0.2, deadline - time.monotonic()))):  # a second signal is seen
        if stop.hurry.is_set() or time.monotonic() >= deadline:
            break
    return deps.runner.shutdown(timeout=0)


def _start_slack_app(settings: Settings, stop: _Stop, *,
                     slack: Callable[[], bool] | None = None) -> tuple[App, Deps, OperatorServer]:
    """The app and its collaborators, running; and the operator's port (bot/health.py) from as early as the
    database is known, so a slow start is alive (/livez) before it is ready (/healthz)."""
    from bot.app import build_app, freeze_startup_heap
    from bot.compose import build_deps
    from bot.health import Health, OperatorServer
    from bot.metrics import Metrics
    from bot.slack import SlackCallMeter, fetch_identity, slack_client

    metrics = Metrics()
    client = slack_client(settings, meter=SlackCallMeter(metrics.slack_call))
    identity = fetch_identity(client)
    deps = build_deps(settings, slack_client=client, metrics=metrics)
    health = Health(deps.store, stopping=stop.requested, slack=slack,
                    alive=lambda: deps.outbox.alive and deps.scheduler().alive)
    if slack is not None:
        metrics.watch_slack(slack)
    try:
        operator = OperatorServer(health, metrics.render, host=settings.mam_metrics_host,
                                  port=settings.mam_metrics_port).start()
    except OSError as exc:
        deps.close()
        _fail(str(exc))
    # a log line, not a print: with MAM_LOG_FORMAT=json every line on stderr is JSON
    log.warning("mam-bot metrics at %s/metrics (readiness /healthz, liveness /livez)", operator.url)
    deps.roles.refresh()
    deps.roles.start_background_refresh()
    if not deps.roles.has_admins:
        log.warning("no admins are configured (MAM_ADMINS): nobody can request changes")
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    app = build_app(deps, client=client, identity=identity, signing_secret=secret)
    freeze_startup_heap()  # before the background threads start: what they make is theirs to free
    deps.start_background()
    return app, deps, operator


# ---- console and demo ---------------------------------------------------------------------------


def cmd_console(args: argparse.Namespace) -> int:
    from bot.local import run_console

    return run_console(_load(args), user=args.user, channel=args.channel)


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return run_demo(sys.stdout)


# ---- the sandbox --------------------------------------------------------------------------------


def cmd_sandbox_serve(args: argparse.Namespace) -> int:
    from bot.sandbox import SandboxConfig, SandboxTenant, serve_sandbox

    config = SandboxConfig()
    if args.devices or args.registrations:
        config = SandboxConfig.large(devices=args.devices or 100_000, registrations=args.registrations or 250_000)
    try:
        config = config.with_latency(os.environ.get("MAM_SANDBOX_LATENCY_MS"))
    except ValueError as exc:
        print(f"MAM_SANDBOX_LATENCY_MS: {exc}", file=sys.stderr)
        return 2
    server = serve_sandbox(SandboxTenant(config), host=args.host, port=args.port)
    print(f"sandbox tenant at {server.url}: set MAM_CLOUD=sandbox MAM_GRAPH_URL={server.url} "
          f"MAM_DEFENDER_URL={server.url}", file=sys.stderr, flush=True)
    print(f"edits outside the bot, as an admin in the Intune portal: POST {server.url}/sandbox-admin/portal/policy "
          '{"admin": "<upn>", "policy": "<name or id>", "settings": {"maximumAllowedDeviceThreatLevel": "high"}} '
          "(also .../portal/policy/create, .../portal/policy/delete, .../portal/connector, "
          "/sandbox-admin/audit/deliver)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.shutdown()
    return 0


# ---- check, manifest, audit ---------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from bot.checks import run_checks

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"settings: {exc}")
        return 1
    report = run_checks(settings)
    print(report.render())
    return 0 if report.ok else 1


def cmd_manifest(args: argparse.Namespace) -> int:
    from bot.manifest import dump, http_variant, load_manifest

    manifest = load_manifest()
    if args.http_url:
        if not args.http_url.startswith("https://"):
            _fail("mam-bot manifest: --http-url must be a public https URL, e.g. https://mam-bot.example.com")
        manifest = http_variant(manifest, args.http_url)
    sys.stdout.write(dump(manifest))
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from bot.settings import mask_url
    from bot.store.migrate import upgrade

    url = _load(args).database_url
    result = upgrade(url)  # an unreachable database: DatabaseUnavailable, one line (main prints it)
    print(f"{mask_url(url)}: {result.summary()}")
    return 0


def _offline_deps(args: argparse.Namespace) -> Deps:
    """Deps for a one-off command: no Slack connection; whatever it posts waits in the outbox."""
    from bot.compose import build_deps
    from bot.slack import slack_client

    settings = _load(args)
    return build_deps(settings, slack_client=slack_client(settings) if settings.slack_bot_token else None)


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from bot.scheduler import last_runs

    deps = _offline_deps(args)
    try:
        scheduler = deps.scheduler()
        runs = last_runs(deps.store)
        lease, previous = scheduler.lease.live(), scheduler.lease.current()
        if lease is not None:
            leader = f"{lease.holder} (lease until {lease.expires_at:%Y-%m-%d %H:%M:%S} UTC)"
        elif previous is not None:
            leader = (f"none (the last one, {previous.holder}, "
                      f"let its lease run out at {previous.expires_at:%H:%M:%S} UTC)")
        else:
            leader = "none yet (no bot process has run)"
        print(f"leader: {leader}")
        for name, job in scheduler.jobs.items():
            run = runs.get(name)
            last = (f"{run.started_at:%Y-%m-%d %H:%M} {run.outcome}: {run.summary[:60]}" if run else "never")
            upcoming = scheduler.next_run(name)
            nxt = f"{upcoming:%Y-%m-%d %H:%M %Z}" if upcoming else "not scheduled"
            print(f"{name:<20} {job.description}\n{'':<20} last: {last}\n{'':<20} next: {nxt}")
    finally:
        deps.close()
    return 0


def cmd_jobs_run(args: argparse.Namespace) -> int:
    """Run a job now: through the leader while a bot process leads (it picks the request up within seconds),
    joining a run of the job already in progress; in this process while none does."""
    from bot.scheduler import NotPickedUp

    deps = _offline_deps(args)
    try:
        scheduler = deps.scheduler()
        if args.name not in scheduler.jobs:
            _fail(f"mam-bot jobs run: no job called {args.name!r}; jobs: {', '.join(scheduler.jobs)}")
        requested = scheduler.request(args.name, _cli_requester())
        lease = scheduler.lease.live()
        print(_jobs_run_plan(args.name, requested.request.id, requested.request.state,
                             requested.request.requested_by if requested.joined else None,
                             lease.holder if lease else None), file=sys.stderr, flush=True)
        ran_here: set[bool] = set()
        try:
            done = scheduler.wait(requested, on_progress=lambda seen: ran_here.add(seen.here))
        except NotPickedUp as exc:
            print(f"mam-bot jobs run {args.name}: not run yet: {exc}", file=sys.stderr)
            return 3
        except KeyboardInterrupt:
            if True not in ran_here:
                print(f"mam-bot jobs run {args.name}: stopped waiting; request #{requested.request.id} still "
                      "runs in the leader", file=sys.stderr)
            raise
        run = done.run
        assert run is not None
        took = ((run.finished_at or run.started_at) - run.started_at).total_seconds()
        print(f"{args.name}: {run.outcome} in {took:.1f} s: {run.summary}")
        where = "here (no bot process was leading)" if done.here else f"by {run.holder}"
        print(f"run{f' #{run.id}' if run.id else ''} {where}; request #{done.request.id}"
              + (f", joined (asked by {done.request.requested_by})" if done.joined else ""))
        pending = deps.outbox.pending_count()
        if pending:
            print(f"{count(pending, 'Slack message')} queued in the outbox; the running bot delivers them.")
        return 0 if run.outcome == "ok" else 1
    finally:
        deps.close()


def _cli_requester() -> str:
    import socket

    return f"cli:{socket.gethostname()}"


def _jobs_run_plan(name: str, request_id: int | None, state: str, joined_by: str | None, leader: str | None) -> str:
    """What `jobs run` is about to do, in one line on stderr."""
    if joined_by is not None:
        return f"{name} is already {state} (request #{request_id}, asked by {joined_by}); waiting for that run"
    if leader is not None:
        return f"asked the leader, {leader}, to run {name} (request #{request_id}); waiting for it"
    return f"no bot process leads the scheduler: running {name} here"


def cmd_audit_export(args: argparse.Namespace) -> int:
    from bot.store import AuditLog, create_store
    from bot.store.audit import export_rows

    store = create_store(_load(args).database_url)
    try:
        for chunk in export_rows(AuditLog(store).iter_all(), args.format):
            sys.stdout.write(chunk)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
