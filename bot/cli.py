"""The `mam-bot` command line: run, serve, console, demo, sandbox serve, check, manifest, db, jobs, audit."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from bot.settings import Mode, Settings, SettingsError, load_settings, missing_for, missing_line
from bot.text import count

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.deps import Deps

log = logging.getLogger("mam")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # slack_sdk logs every failed Web API call at ERROR before raising it; the bot handles what it
    # raises and says so once, in words (e.g. `mam-bot check` with Slack unreachable)
    logging.getLogger("slack_sdk.web.base_client").setLevel(logging.CRITICAL)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mam-bot", description=__doc__)
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
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
    pj = jobs_sub.add_parser("run", help="run one job now (takes the scheduler lease, or says who holds it)")
    pj.add_argument("name", help="threat-sweep, onboarding-nudges, approval-expiry or approval-reminders")
    pj.set_defaults(func=cmd_jobs_run)

    p = sub.add_parser("audit", help="the audit log")
    audit_sub = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    pa = audit_sub.add_parser("export", help="write the whole audit log to stdout")
    pa.add_argument("--format", choices=["csv", "jsonl"], default="csv", help="csv (default) or jsonl")
    pa.set_defaults(func=cmd_audit_export)
    return parser


def _fail(line: str, code: int = 2) -> NoReturn:
    print(line, file=sys.stderr)
    raise SystemExit(code)


def _require(settings: Settings, mode: Mode) -> None:
    missing = missing_for(settings, mode)
    if missing:
        _fail(missing_line(mode, missing))


# ---- Slack modes --------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings()
    _require(settings, Mode.RUN)
    from bot.socket_mode import SocketModeRefused, run_socket_mode

    app, deps = _start_slack_app(settings)
    assert settings.slack_app_token is not None
    log.warning("mam-bot is connecting to Slack over Socket Mode")
    try:
        return run_socket_mode(app, settings.slack_app_token.get_secret_value(),
                               ping_seconds=settings.mam_socket_ping_seconds)
    except SocketModeRefused as exc:
        _fail(str(exc))
    finally:
        deps.close()


def cmd_serve(args: argparse.Namespace) -> int:
    settings = load_settings()
    _require(settings, Mode.SERVE)
    from bot.http import serve

    app, deps = _start_slack_app(settings)
    print(f"mam-bot serving Slack at http://{args.host}:{args.port}/slack/events (health: /healthz)",
          file=sys.stderr, flush=True)
    try:
        secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
        serve(app, deps.store, host=args.host, port=args.port, signing_secret=secret, seen=deps.seen)
    finally:
        deps.close()
    return 0


def _start_slack_app(settings: Settings) -> tuple[App, Deps]:
    from bot.app import build_app, freeze_startup_heap
    from bot.compose import build_deps
    from bot.slack import fetch_identity, slack_client

    client = slack_client(settings)
    identity = fetch_identity(client)
    deps = build_deps(settings, slack_client=client)
    deps.roles.refresh()
    deps.roles.start_background_refresh()
    if not deps.roles.has_admins:
        log.warning("no admins are configured (MAM_ADMINS): nobody can request changes")
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    app = build_app(deps, client=client, identity=identity, signing_secret=secret)
    freeze_startup_heap()  # before the background threads start: what they make is theirs to free
    deps.start_background()
    return app, deps


# ---- console and demo ---------------------------------------------------------------------------


def cmd_console(args: argparse.Namespace) -> int:
    from bot.local import run_console

    return run_console(load_settings(), user=args.user, channel=args.channel)


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return run_demo(sys.stdout)


# ---- the sandbox --------------------------------------------------------------------------------


def cmd_sandbox_serve(args: argparse.Namespace) -> int:
    from bot.sandbox import SandboxConfig, SandboxTenant, serve_sandbox

    config = SandboxConfig()
    if args.devices or args.registrations:
        config = SandboxConfig.large(devices=args.devices or 100_000, registrations=args.registrations or 250_000)
    server = serve_sandbox(SandboxTenant(config), host=args.host, port=args.port)
    print(f"sandbox tenant at {server.url}: set MAM_CLOUD=sandbox MAM_GRAPH_URL={server.url} "
          f"MAM_DEFENDER_URL={server.url}", file=sys.stderr, flush=True)
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

    url = load_settings().database_url
    result = upgrade(url)  # an unreachable database: DatabaseUnavailable, one line (main prints it)
    print(f"{mask_url(url)}: {result.summary()}")
    return 0


def _offline_deps() -> Deps:
    """Deps for a one-off command: no Slack connection; whatever it posts waits in the outbox."""
    from bot.compose import build_deps
    from bot.slack import slack_client

    settings = load_settings()
    return build_deps(settings, slack_client=slack_client(settings) if settings.slack_bot_token else None)


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from bot.scheduler import last_runs

    deps = _offline_deps()
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
    from bot.scheduler import JobHeldElsewhere

    deps = _offline_deps()
    try:
        scheduler = deps.scheduler()
        if args.name not in scheduler.jobs:
            _fail(f"mam-bot jobs run: no job called {args.name!r}; jobs: {', '.join(scheduler.jobs)}")
        try:
            run = scheduler.run_now(args.name)
        except JobHeldElsewhere as exc:
            print(f"mam-bot jobs run {args.name}: not run: {exc}", file=sys.stderr)
            return 3
        took = ((run.finished_at or run.started_at) - run.started_at).total_seconds()
        print(f"{args.name}: {run.outcome} in {took:.1f} s: {run.summary}")
        pending = deps.outbox.pending_count()
        if pending:
            print(f"{count(pending, 'Slack message')} queued in the outbox; the running bot delivers them.")
        return 0 if run.outcome == "ok" else 1
    finally:
        deps.close()


def cmd_audit_export(args: argparse.Namespace) -> int:
    from bot.store import AuditLog, create_store
    from bot.store.audit import export_rows

    store = create_store(load_settings().database_url)
    try:
        for chunk in export_rows(AuditLog(store).iter_all(), args.format):
            sys.stdout.write(chunk)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
