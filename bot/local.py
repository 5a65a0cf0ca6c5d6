"""A whole bot with no Slack and, by default, no Microsoft tenant: the console, the demo and tests.

The real Bolt app and listeners run against the in-process FakeSlack (a local HTTP server) and,
with MAM_CLOUD=sandbox, the sandbox tenant.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from slack_bolt import App

from bot.app import BotIdentity, build_app
from bot.compose import build_deps
from bot.console.fake_slack import BOT_ID, BOT_TOKEN, BOT_USER_ID, TEAM_ID, FakeSlack, FakeUser, default_users
from bot.console.session import ConsoleSession
from bot.deps import Deps
from bot.settings import Settings
from bot.slack import slack_client

if TYPE_CHECKING:
    from bot.sandbox import SandboxTenant

DEMO_ADMIN = "UADMIN001"
DEMO_APPROVER = "UAPPROV01"
DEMO_END_USER = "UENDUSR01"
CONSOLE_IDENTITY = BotIdentity(team_id=TEAM_ID, bot_user_id=BOT_USER_ID, bot_id=BOT_ID)


CONSOLE_CHANNELS = {"C0CONSOLE": "console", "C0ALERTS": "mam-alerts", "C0APPROVE": "mam-approvals"}


def tenant_people(sandbox: SandboxTenant) -> list[FakeUser]:
    """A Slack account for each person in the sandbox tenant, with the same email address."""
    people = []
    for user in sandbox.users:
        mail = user.get("mail") or ""
        local = mail.split("@")[0] if mail else ""
        if not local:
            continue
        slack_id = "U" + "".join(ch for ch in user["id"].upper() if ch.isalnum())[:8]
        people.append(FakeUser(slack_id, local.replace(".", ""), user.get("displayName") or local, mail))
    return people


def with_demo_roles(settings: Settings) -> Settings:
    """In the console workspace, with no roles configured, Alex is the admin and Sam the approver."""
    if settings.mam_admins or settings.mam_approvers:
        return settings
    return settings.model_copy(update={"mam_admins": [DEMO_ADMIN], "mam_approvers": [DEMO_APPROVER, "UAPPROV02"]})


@dataclass
class LocalWorkspace:
    slack: FakeSlack
    deps: Deps
    app: App

    @classmethod
    def start(
        cls, settings: Settings, *, sandbox: SandboxTenant | None = None, signing_secret: str = "",
        slack: FakeSlack | None = None,
    ) -> LocalWorkspace:
        client_slack = slack
        if client_slack is None:
            people = default_users()
            if sandbox is None and settings.uses_in_process_sandbox:
                from bot.sandbox import SandboxConfig, SandboxTenant

                sandbox = SandboxTenant(SandboxConfig().with_latency(settings.mam_sandbox_latency_ms))
            if sandbox is not None:
                people += tenant_people(sandbox)  # so nudges and alert DMs find them by email
            client_slack = FakeSlack(users=people, channels=CONSOLE_CHANNELS).start()
        slack = client_slack
        client = slack_client(settings, base_url=slack.api_url, token=BOT_TOKEN)
        deps = build_deps(settings, slack_client=client, sandbox=sandbox)
        deps.roles.refresh()
        app = build_app(deps, client=client, identity=CONSOLE_IDENTITY, signing_secret=signing_secret)
        deps.start_background()
        return cls(slack=slack, deps=deps, app=app)

    def session(self, user: str = DEMO_ADMIN, channel: str = "C0CONSOLE", **kwargs: Any) -> ConsoleSession:
        # the session waits on `deps` (background work and the outbox), not only on the runner
        kwargs.setdefault("sandbox", self.deps.sandbox)  # `:portal` edits it outside the bot
        return ConsoleSession(self.app, self.slack, self.deps, user=user, channel=channel, **kwargs)

    def close(self) -> None:
        self.deps.wait_idle(timeout=10)
        self.deps.close()
        self.slack.stop()


def run_console(settings: Settings, *, user: str | None, channel: str, out: TextIO = sys.stdout) -> int:
    known = {u.id for u in default_users()}
    configured = [*settings.mam_admins, *settings.mam_approvers]
    if configured and not known & set(configured):
        # MAM_ADMINS/MAM_APPROVERS name people of a real workspace; the console's people are simulated
        out.write("(MAM_ADMINS and MAM_APPROVERS name people of your real workspace; in this simulated one "
                  "@alex is the admin and @sam and @kim approve)\n")
        settings = settings.model_copy(update={"mam_admins": [], "mam_approvers": []})
    settings = with_demo_roles(settings)
    workspace = LocalWorkspace.start(settings)
    try:
        admins = [p for p in settings.mam_admins if workspace.slack.user(p) is not None]
        found = workspace.slack.find_user(user) if user else workspace.slack.user(admins[0] if admins else DEMO_ADMIN)
        if found is None:
            people = ", ".join(f"{u.id} (@{u.name})" for u in workspace.slack.users[:8])
            print(f"mam-bot console: --as {user}: no such person in the console's workspace; try one of {people}",
                  file=sys.stderr)
            return 2
        tenant = "the sandbox tenant" if settings.uses_in_process_sandbox else settings.endpoints().graph_url
        out.write(f"mam-bot console: Slack is simulated here; Microsoft is {tenant}.\n")
        workspace.session(user=found.id, channel=channel, out=out, tty=out.isatty()).repl()
    finally:
        workspace.close()
    return 0
