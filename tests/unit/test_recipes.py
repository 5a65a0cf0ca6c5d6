"""The recipes in docs/architecture.md, followed with a throwaway command and a throwaway job: registered
through the public API, routed, role-checked, listed in help and by `mam-bot jobs list`."""

from __future__ import annotations

import json

import bot.jobs
from bot.app import dispatch_socket_mode
from bot.cli import main
from bot.local import DEMO_ADMIN, DEMO_END_USER, LocalWorkspace
from bot.registry import Verb
from bot.roles import Access
from bot.scheduler import Job, interval
from bot.settings import load_settings
from commands.listen import Listeners
from commands.payloads import Payload


class Echo(Payload):
    """A throwaway button's typed value."""

    words: list[str]


def test_a_throwaway_command_is_registered_routed_checked_and_listed(tmp_path):
    ran: list[list[str]] = []
    listeners = Listeners()  # what a module under commands/ declares at module level

    def secret(req) -> None:
        ran.append(["secret", *req.args])
        req.ack(text="done")

    @listeners.command("echo", "/mam echo [words]", "Says the words back.", Access.READ, group="General",
                       verbs=(Verb("secret", "/mam echo secret", "Admins only.", Access.ADMIN, secret,
                                   what="tell secrets"),))
    def echo(req) -> None:
        ran.append(list(req.args))
        req.ack(response_type="ephemeral", text="echoed")

    @listeners.action("echo_again", Access.ADMIN, what="echo again")
    def again(ctx) -> None:
        ctx.ack()
        ran.append(["again", *ctx.data(Echo).words])

    settings = load_settings(database_url=f"sqlite:///{tmp_path}/bot.db", mam_admins=[DEMO_ADMIN],
                             mam_cloud="sandbox", mam_graph_url=None, mam_defender_url=None)
    ws = LocalWorkspace.start(settings)
    try:
        listeners.install(ws.app, ws.deps)  # what commands.register_all does for every module

        def send(text: str, user: str) -> str:
            body = {"command": "/mam", "text": text, "user_id": user, "team_id": "T0CONSOLE",
                    "channel_id": "C0CONSOLE", "trigger_id": f"t-{len(ran)}-{text}-{user}"}
            return str(dispatch_socket_mode(ws.app, body).body)

        assert "echoed" in send('Echo "a b" c', DEMO_ADMIN)
        assert ran == [["a b", "c"]]
        assert "Only mam-bot admins and approvers can run `/mam echo`" in send("echo hi", DEMO_END_USER)
        assert "Only mam-bot admins can tell secrets" in send("echo SECRET", DEMO_END_USER)
        assert "done" in send("echo secret x", DEMO_ADMIN) and ran[-1] == ["secret", "x"]
        help_text = json.dumps(json.loads(send("help", DEMO_ADMIN)))
        assert "/mam echo [words]" in help_text and "Says the words back." in help_text

        def click(user: str, value: str) -> None:
            dispatch_socket_mode(ws.app, {
                "type": "block_actions", "user": {"id": user}, "team": {"id": "T0CONSOLE"},
                "channel": {"id": "C0CONSOLE"}, "trigger_id": f"t-click-{len(ran)}-{user}",
                "actions": [{"action_id": "echo_again", "value": value, "action_ts": f"{len(ran)}.{user}"}]})

        click(DEMO_END_USER, Echo(words=["no"]).encode())  # not an admin: refused before the handler runs
        click(DEMO_ADMIN, Echo(words=["x", "y"]).encode())
        assert ran[-1] == ["again", "x", "y"] and ["again", "no"] not in ran
    finally:
        ws.close()


def test_a_throwaway_job_is_listed_and_run_by_mam_bot_jobs(tmp_path, monkeypatch, capsys):
    """The recipe: one function and one `Job` line in `bot.jobs.default_jobs`; `mam-bot jobs list` lists it
    and `mam-bot jobs run` runs it."""
    calls: list[str] = []
    recipe = bot.jobs.default_jobs

    def with_throwaway(deps):
        return [*recipe(deps), Job("throwaway", "counts its runs", interval(minutes=5),
                                   lambda: calls.append("ran") or "1 run")]

    monkeypatch.setattr(bot.jobs, "default_jobs", with_throwaway)
    for name, value in {"DATABASE_URL": f"sqlite:///{tmp_path}/bot.db", "MAM_CLOUD": "sandbox"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    assert main(["jobs", "list"]) == 0
    listed = capsys.readouterr().out
    assert "throwaway" in listed and "threat-sweep" in listed
    assert main(["jobs", "run", "throwaway"]) == 0
    assert calls == ["ran"] and "throwaway: ok" in capsys.readouterr().out
