"""`mam-bot check`: what each mode still needs, and whether the store and Microsoft answer."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

from bot.settings import Cloud, Mode, Settings, SettingsError, missing_for


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


def run_checks(settings: Settings) -> CheckReport:
    report = CheckReport()
    _modes(settings, report)
    _roles_and_channels(settings, report)
    _database(settings, report)
    _microsoft(settings, report)
    return report


def _modes(settings: Settings, report: CheckReport) -> None:
    for mode in (Mode.RUN, Mode.SERVE, Mode.CONSOLE):
        missing = missing_for(settings, mode)
        # a mode you don't use is not a failure: say what it would need
        report.add(None if missing else True, f"mode {mode.value}",
                   f"needs {', '.join(missing)}" if missing else "ready")


def _roles_and_channels(settings: Settings, report: CheckReport) -> None:
    if settings.mam_admins:
        report.add(True, "MAM_ADMINS", ", ".join(settings.mam_admins))
    else:
        report.add(None, "MAM_ADMINS", "not set: nobody can request changes")
    if settings.mam_approvers:
        report.add(True, "MAM_APPROVERS", ", ".join(settings.mam_approvers))
    else:
        report.add(None, "MAM_APPROVERS", "not set: nobody can approve changes")
    report.add(None, "MAM_APPROVAL_CHANNEL",
               settings.mam_approval_channel or "not set: approval cards go to each approver by DM")
    report.add(None, "MAM_ALERT_CHANNEL", settings.mam_alert_channel or "not set: no alert channel")


def _database(settings: Settings, report: CheckReport) -> None:
    from bot.store.db import connect_store

    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    try:
        store = connect_store(settings.database_url)
        try:
            store.ping()
        finally:
            store.close()
    except Exception as exc:
        report.add(False, "DATABASE_URL", f"{shown}: cannot connect ({type(exc).__name__}: {exc})")
        return
    report.add(True, "DATABASE_URL", f"{shown}: reachable")


def _microsoft(settings: Settings, report: CheckReport) -> None:
    from bot.microsoft import build_clients
    from bot.microsoft.permissions import check_permissions

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
        clients = build_clients(settings, transport=transport)
    except SettingsError as exc:
        report.add(False, "Microsoft", str(exc))
        return
    try:
        rows = check_permissions(clients)
    except Exception as exc:
        report.add(False, "Microsoft", f"could not read the granted permissions: {exc}")
        return
    finally:
        clients.close()
    for row in rows:
        if row.missing:
            why = f" ({'; '.join(row.problems)})" if row.problems else ""
            report.add(False, f"feature {row.key}", f"{row.feature}: missing {', '.join(row.missing)}{why}")
        else:
            report.add(True, f"feature {row.key}", f"{row.feature}: has {', '.join(row.needed)}")
    if settings.mam_cloud is Cloud.SANDBOX:
        report.add(None, "note", "MAM_CLOUD=sandbox: set MAM_CLOUD=global and AZURE_* to reach a real tenant")
