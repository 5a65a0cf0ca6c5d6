"""`mam-bot check`: what each mode still needs, and whether Slack, the store and Microsoft answer.

Every line is about one thing and says it once: Slack is asked who the bot token belongs to
(`auth.test`), the approval quorum is compared with the approvers who can really approve, and a
failed Microsoft sign-in (host and reason) is told apart from a permission that was not granted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.settings import Cloud, Mode, Settings, SettingsError, mask_url, missing_for
from bot.text import count

if TYPE_CHECKING:
    from slack_sdk import WebClient


@dataclass
class Line:
    ok: bool | None  # None: for information
    topic: str
    text: str


@dataclass
class CheckReport:
    lines: list[Line] = field(default_factory=list)

    def add(self, ok: bool | None, topic: str, text: str) -> None:
        self.lines.append(Line(ok, topic, text))

    @property
    def ok(self) -> bool:
        return all(line.ok is not False for line in self.lines)

    def render(self) -> str:
        marks = {True: "ok  ", False: "FAIL", None: "info"}
        width = max((len(line.topic) for line in self.lines), default=0)
        out = [f"{marks[line.ok]}  {line.topic.ljust(width)}  {line.text}" for line in self.lines]
        out.append("")
        out.append("All checks passed." if self.ok else "Some checks failed: see the FAIL lines above.")
        return "\n".join(out)


@dataclass
class SlackAnswer:
    """What `auth.test` said about SLACK_BOT_TOKEN: None for `ok` when no token is set."""

    ok: bool | None
    text: str
    client: WebClient | None = None


def run_checks(settings: Settings, *, sign_in_http_client: Any = None) -> CheckReport:
    """Every check, in order; `sign_in_http_client` replaces msal's HTTP session (tests)."""
    report = CheckReport()
    slack = _slack(settings)
    _modes(settings, slack, report)
    report.add(slack.ok, "SLACK_BOT_TOKEN", slack.text)
    _roles_and_channels(settings, slack, report)
    _database(settings, report)
    _microsoft(settings, report, sign_in_http_client)
    return report


# ---- Slack ----------------------------------------------------------------------------------------


def _slack(settings: Settings) -> SlackAnswer:
    """Ask Slack who the token is (`auth.test`): a revoked or made-up token fails here, not at start."""
    if settings.slack_bot_token is None:
        return SlackAnswer(None, "not set: Slack is not checked")
    from slack_sdk.errors import SlackApiError

    from bot.slack import slack_client

    client = slack_client(settings)
    try:
        resp = client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error", "error")
        return SlackAnswer(False, f"Slack refused it ({error}): copy the Bot User OAuth Token (xoxb-…) from the "
                                  "app's OAuth & Permissions page")
    except OSError as exc:
        return SlackAnswer(False, f"could not reach Slack at {settings.slack_api_url} ({exc}); check SLACK_API_URL")
    team = resp.get("team") or resp.get("team_id") or "?"
    return SlackAnswer(True, f"valid: the bot is @{resp.get('user') or '?'} ({resp.get('user_id') or '?'}) "
                             f"in {team} ({resp.get('team_id') or '?'})", client)


def _modes(settings: Settings, slack: SlackAnswer, report: CheckReport) -> None:
    for mode in (Mode.RUN, Mode.SERVE, Mode.CONSOLE):
        missing = missing_for(settings, mode)
        if missing:
            # a mode you don't use is not a failure: say what it would need
            report.add(None, f"mode {mode.value}", f"needs {', '.join(missing)}")
        elif mode is not Mode.CONSOLE and slack.ok is False:
            report.add(False, f"mode {mode.value}", "not ready: Slack refused SLACK_BOT_TOKEN (see below)")
        else:
            report.add(True, f"mode {mode.value}", "ready")


def _roles_and_channels(settings: Settings, slack: SlackAnswer, report: CheckReport) -> None:
    if settings.mam_admins:
        report.add(True, "MAM_ADMINS", ", ".join(settings.mam_admins))
    else:
        report.add(None, "MAM_ADMINS", "not set: nobody can request changes")
    if settings.mam_approvers:
        report.add(True, "MAM_APPROVERS", ", ".join(settings.mam_approvers))
    else:
        report.add(None, "MAM_APPROVERS", "not set: nobody can approve changes")
    _quorum(settings, slack, report)
    report.add(None, "MAM_APPROVAL_CHANNEL",
               settings.mam_approval_channel or "not set: approval cards go to each approver by DM")
    report.add(None, "MAM_ALERT_CHANNEL", settings.mam_alert_channel or "not set: no alert channel")


def _group_members(principals: list[str], slack: SlackAnswer) -> tuple[set[str], list[str]]:
    """Users named directly plus the members of user groups; the groups that could not be read."""
    from slack_sdk.errors import SlackApiError

    users = {p for p in principals if not p.startswith("S")}
    unknown: list[str] = []
    for group in (p for p in principals if p.startswith("S")):
        if slack.client is None:
            unknown.append(f"{group} (no working SLACK_BOT_TOKEN to read its members)")
            continue
        try:
            resp = slack.client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            unknown.append(f"{group} (usergroups.users.list: {exc.response.get('error', 'error')})")
            continue
        except OSError as exc:
            unknown.append(f"{group} (could not reach Slack: {exc})")
            continue
        users |= {str(u) for u in resp.get("users") or []}
    return users, unknown


def _quorum(settings: Settings, slack: SlackAnswer, report: CheckReport) -> None:
    """Can MAM_APPROVAL_QUORUM be met? A requester never approves their own change."""
    quorum = settings.mam_approval_quorum
    topic = "MAM_APPROVAL_QUORUM"
    if not settings.mam_approvers:
        report.add(None, topic, f"{quorum}: no approvers are configured (MAM_APPROVERS)")
        return
    approvers, unknown = _group_members(settings.mam_approvers, slack)
    if unknown:
        if len(approvers) >= quorum:
            report.add(True, topic, f"{quorum}: met by {count(len(approvers), 'approver')} already "
                                    f"(members not read: {'; '.join(unknown)})")
        else:
            report.add(None, topic, f"{quorum}: only {count(len(approvers), 'approver')} known; "
                                    f"members not read: {'; '.join(unknown)}")
        return
    if len(approvers) < quorum:
        report.add(False, topic, f"{quorum}, but MAM_APPROVERS gives only {count(len(approvers), 'approver')}: "
                                 f"every change request would expire; lower MAM_APPROVAL_QUORUM or add approvers")
        return
    admins, _ = _group_members(settings.mam_admins, slack)
    short = sorted(a for a in admins if len(approvers - {a}) < quorum)
    if short:
        who = f"{', '.join(short)} {'is an admin and an approver' if len(short) == 1 else 'are admins and approvers'}"
        report.add(False, topic, f"{quorum}, but {who}: a requester never approves their own change, so their "
                                 f"requests can get only {count(len(approvers) - 1, 'approval')} and would expire; "
                                 "add an approver or lower MAM_APPROVAL_QUORUM")
        return
    report.add(True, topic, f"{quorum}: {count(len(approvers), 'approver')} can approve "
                            f"(a requester never approves their own change)")


# ---- the database ---------------------------------------------------------------------------------


def _database(settings: Settings, report: CheckReport) -> None:
    from sqlalchemy.exc import DBAPIError

    from bot.store.engine import database_error_line, open_engine

    try:
        engine = open_engine(settings.database_url)
    except SettingsError as exc:
        report.add(False, "DATABASE_URL", str(exc).removeprefix("DATABASE_URL: "))
        return
    except DBAPIError as exc:
        report.add(False, "DATABASE_URL", database_error_line(settings.database_url, exc).removeprefix(
            "DATABASE_URL: "))
        return
    engine.dispose()
    report.add(True, "DATABASE_URL", f"{mask_url(settings.database_url)}: reachable")


# ---- Microsoft ------------------------------------------------------------------------------------


def _microsoft(settings: Settings, report: CheckReport, sign_in_http_client: Any = None) -> None:
    from bot.microsoft import build_clients
    from bot.microsoft.auth import sign_in_reason
    from bot.microsoft.errors import API_LABELS, SignInError
    from bot.microsoft.permissions import FEATURES, permission_rows, read_roles

    endpoints = settings.endpoints()
    where = "in-process sandbox tenant" if settings.uses_in_process_sandbox else endpoints.graph_url
    report.add(None, "MAM_CLOUD", f"{settings.mam_cloud.value}: Graph {endpoints.graph_url}, Defender "
               f"{endpoints.defender_url or 'none'}, sign-in {endpoints.authority_url or 'none'} ({where})")
    missing = missing_for(settings, Mode.CONSOLE)
    if missing:
        report.add(False, "Microsoft", f"cannot sign in: {', '.join(missing)} not set")
        return
    transport = None
    if settings.uses_in_process_sandbox:
        from bot.sandbox import SandboxTenant

        transport = SandboxTenant().transport()
    try:
        clients = build_clients(settings, transport=transport, sign_in_http_client=sign_in_http_client)
    except SettingsError as exc:
        report.add(False, "Microsoft", str(exc))
        return
    try:
        roles, problems = read_roles(clients)
    finally:
        clients.close()

    # A failed sign-in is one line (host and reason), whatever number of APIs and features it stops.
    host = "the managed identity endpoint" if settings.azure_use_managed_identity else (
        endpoints.authority_url or "the sign-in host")
    said: dict[tuple[bool, str], list[str]] = {}
    for api, problem in problems.items():
        sign_in = isinstance(problem, SignInError)
        reason = sign_in_reason(problem) if isinstance(problem, SignInError) else str(problem)
        said.setdefault((sign_in, reason), []).append(API_LABELS.get(api, api))
    for (sign_in, reason), apis in said.items():
        text = reason if host in reason or not sign_in else f"{host}: {reason}"
        report.add(False, "Microsoft sign-in" if sign_in else "Microsoft", f"{text} (for {' and '.join(apis)})")

    rows = permission_rows(roles)
    unchecked: list[str] = []
    for feature, row in zip(FEATURES, rows, strict=True):
        if any(r.api in problems for r in feature.requirements):
            unchecked.append(row.key)
        elif row.missing:
            report.add(False, f"feature {row.key}", f"{row.feature}: missing {', '.join(row.missing)}")
        else:
            report.add(True, f"feature {row.key}", f"{row.feature}: has {', '.join(row.needed)}")
    if unchecked:
        report.add(None, "permissions", f"not checked until sign-in works: {', '.join(unchecked)}")
    if settings.mam_cloud is Cloud.SANDBOX:
        report.add(None, "note", "MAM_CLOUD=sandbox: simulated data, every message says so; "
                                 "set MAM_CLOUD=global and AZURE_* to reach a real tenant")
