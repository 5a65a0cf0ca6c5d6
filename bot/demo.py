"""`mam-bot demo`: a scripted walk-through of everything the bot can do, printed as a conversation.

It runs the real Bolt app, the console's FakeSlack and the in-process sandbox tenant, on a
throw-away SQLite file. Each step says what a person would do and why; the transcript below it is
exactly what the console shows.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bot.console.session import ConsoleSession, ScriptedInput
from bot.local import DEMO_ADMIN, DEMO_APPROVER, DEMO_END_USER, LocalWorkspace
from bot.sandbox import SEED_POLICY_NAME, SandboxTenant
from bot.sandbox.audit import PORTAL_ADMIN
from bot.settings import load_settings
from bot.store.watch import active_blocks
from workflows.enforcement import current_enforcement


@dataclass(frozen=True)
class Step:
    """One thing a person does: type a line, or click the newest button with this label."""

    narration: str
    user: str
    line: str = ""
    click: str = ""
    answers: Sequence[str] = ()
    check: Callable[[LocalWorkspace], str | None] | None = None  # returns a problem, or None
    job: str = ""  # run a scheduled job now, as its timer would
    before: Callable[[LocalWorkspace], None] | None = None  # change the sandbox tenant first


NEW_POLICY = "Android MAM - block above low"


def _policy_exists(groups: tuple[str, ...]) -> Callable[[LocalWorkspace], str | None]:
    def check(ws: LocalWorkspace) -> str | None:
        sandbox = ws.deps.sandbox
        assert sandbox is not None
        policy = next((p for p in sandbox.policies if p["displayName"] == NEW_POLICY), None)
        if policy is None:
            return f"the sandbox has no policy called {NEW_POLICY!r}"
        names = {sandbox.group(a["target"]["groupId"])["displayName"] for a in policy["assignments"]}  # type: ignore[index]
        return None if names == set(groups) else f"the policy is assigned to {sorted(names)}, not {list(groups)}"

    return check


ISAIAH = "UAC6AD2AD"  # isaiah.langer@contoso.example in the sandbox, by the console's Slack
MEGAN = "U438FE62D"  # megan.bowen@contoso.example, whose Galaxy S24 the new policy blocks


def _sandbox(ws: LocalWorkspace) -> SandboxTenant:
    assert ws.deps.sandbox is not None
    return ws.deps.sandbox


def _machine(ws: LocalWorkspace, name: str) -> str:
    return next(str(m["id"]) for m in _sandbox(ws).machines if str(m["computerDnsName"]).startswith(name))


def _set_risk(device: str, level: str) -> Callable[[LocalWorkspace], None]:
    def change(ws: LocalWorkspace) -> None:
        _sandbox(ws).set_risk(_machine(ws, device), level)
    return change


def _set_toggle(on: bool) -> Callable[[LocalWorkspace], None]:
    """Someone flips the connector's Android app protection toggle in the Intune admin center."""
    def flip(ws: LocalWorkspace) -> None:
        _sandbox(ws).set_connector(androidMobileApplicationManagementEnabled=on)
    return flip


def _enforcement_is(state: str) -> Callable[[LocalWorkspace], str | None]:
    def check(ws: LocalWorkspace) -> str | None:
        found = current_enforcement(ws.deps.store).state
        return None if found == state else f"the watch says enforcement is {found}, expected {state}"
    return check


def _threat_level_is(name: str, level: str) -> Callable[[LocalWorkspace], str | None]:
    def check(ws: LocalWorkspace) -> str | None:
        policy = next((p for p in _sandbox(ws).policies if p["displayName"] == name), None)
        found = policy["maximumAllowedDeviceThreatLevel"] if policy else None
        return None if found == level else f"{name!r} allows at most {found}, expected {level}"
    return check


def _portal_edit(name: str, **settings: Any) -> Callable[[LocalWorkspace], None]:
    """An admin changes a policy in the Intune admin center (the sandbox's audit log names them)."""
    def edit(ws: LocalWorkspace) -> None:
        _sandbox(ws).edit_policy_as(PORTAL_ADMIN, name, **settings)
    return edit


def _active_blocks(expected: int) -> Callable[[LocalWorkspace], str | None]:
    def check(ws: LocalWorkspace) -> str | None:
        found = len(active_blocks(ws.deps.store))
        return None if found == expected else f"{found} active blocks, expected {expected}"

    return check


def _connector_toggle_is(expected: bool) -> Callable[[LocalWorkspace], str | None]:
    def check(ws: LocalWorkspace) -> str | None:
        connector = ws.deps.microsoft.graph.get_mde_connector()
        actual = bool(connector and connector.androidMobileApplicationManagementEnabled)
        return None if actual is expected else f"the sandbox's Android app-protection toggle is {actual}"

    return check


SCRIPT: list[Step] = [
    Step("Alex is a mam-bot admin (MAM_ADMINS). First, what can the bot do for Alex?", DEMO_ADMIN, "/mam help"),
    Step("Alex checks the Defender for Endpoint connector in the (sandbox) tenant. The reply arrives at once "
         "in its checking state; the checks fill it in with one update.", DEMO_ADMIN, "/mam connectors",
         check=_connector_toggle_is(False)),
    Step("Turning the toggle on is a tenant write, so it is a change request: Alex asks, with a reason. "
         "The card, with the exact Graph calls, goes to the approvers; Alex cannot approve it.",
         DEMO_ADMIN, "/mam connectors enable-android Turn on MAM threat signals for the Android pilot (CHG0042)",
         check=_connector_toggle_is(False)),
    Step("Sam, an approver, opens the card in his DM and approves. The bot re-reads the connector, "
         "applies exactly the approved change, edits the card in place and DMs Alex the outcome.",
         DEMO_APPROVER, click="Approve", check=_connector_toggle_is(True)),
    Step("Alex checks again: the connector is ready for threat-level app protection policies.",
         DEMO_ADMIN, "/mam connectors"),
    Step("Which Android app protection policies exist, and which ignore Defender's signal?", DEMO_ADMIN,
         "/mam policy list"),
    Step("Alex creates a policy: Outlook, Teams and Edge on unmanaged devices (MAM without enrollment) are "
         "blocked above a low threat level, for the MAM Pilot group. The form is filled field by field here; "
         "in Slack it is a modal.", DEMO_ADMIN, "/mam policy new",
         answers=(NEW_POLICY, "Blocks Outlook, Teams and Edge when Defender reports more than a low threat",
                  "", "", "", "2", "1", "MAM Pilot", "1", "", "Pilot of MAM threat signals for Android (CHG0042)",
                  "")),
    Step("The form's last screen says the request is filed; Alex closes it.", DEMO_ADMIN, ":close"),
    Step("Sam approves: the bot creates the policy (beta), attaches its apps (targetApps) and assigns it "
         "(assign), exactly as the card showed.", DEMO_APPROVER, click="Approve", check=_policy_exists(("MAM Pilot",))),
    Step("Alex widens the pilot to Sales EMEA. `assign` replaces all of a policy's groups, so the bot reads them, "
         "adds one and writes the whole set back.", DEMO_ADMIN,
         '/mam assign "Android MAM - block above low" "Sales EMEA" --why "Sales EMEA joins the pilot (CHG0043)"'),
    Step("Kim, the other approver, approves this one.", "UAPPROV02", click="Approve",
         check=_policy_exists(("MAM Pilot", "Sales EMEA"))),
    Step("The policy as Intune has it now.", DEMO_ADMIN, '/mam policy show "Android MAM - block above low"'),
    Step("The threat sweep (every 5 minutes) reads Defender's Android devices and the managed app "
         "registrations, and finds whose apps the new policy blocks: one card per device in #mam-alerts, "
         "and (MAM_ALERT_DM_USERS) a DM to the person.", DEMO_ADMIN, job="threat-sweep",
         check=_active_blocks(2)),
    Step("Who is blocked right now, and why?", DEMO_ADMIN, "/mam blocked"),
    Step("Alex Wilber's phone is cleaned up and Defender rates it clean again. The next sweep marks the "
         "card resolved and says in its thread how long the block lasted.", DEMO_ADMIN, job="threat-sweep",
         before=_set_risk("alex-s23", "None"), check=_active_blocks(1)),
    Step("Megan, whose phone is still blocked, asks the bot why: `/mam me` works for anyone and shows only "
         "her own devices and apps, from the bot's database (no Defender call).", MEGAN, "/mam me"),
    Step("Someone switches the connector's Android app protection toggle off in the Intune admin center. "
         "Intune now ignores Defender's threat level, so the next sweep tells nobody they are blocked: "
         "one notice in #mam-alerts says why and how to fix it.", DEMO_ADMIN, job="threat-sweep",
         before=_set_toggle(False), check=_enforcement_is("off")),
    Step("`/mam blocked` says the same: enforcement is off, nobody is blocked for it.", DEMO_ADMIN, "/mam blocked"),
    Step("The toggle is back on; the next sweep edits the notice in place and carries on where it was.",
         DEMO_ADMIN, job="threat-sweep", before=_set_toggle(True), check=_enforcement_is("on")),
    Step("Isaiah's work apps wait for Defender on his phone (it isn't onboarded). The nudge job DMs him "
         "Microsoft's steps, in working hours only.", DEMO_ADMIN, job="onboarding-nudges"),
    Step("Isaiah follows the steps and clicks Done; only he can press his buttons.", ISAIAH, click="Done"),
    Step("The bot's own view of all this.", DEMO_ADMIN, "/mam status"),
    Step("Jordan is an end user with no mam-bot role. The role check runs on the server, for every "
         "command and button.", DEMO_END_USER, "/mam connectors"),
    Step("A typo gets the closest command and the usage line, not silence.", DEMO_ADMIN, "/mam conectors"),
    Step("Sam is an approver (MAM_APPROVERS): read-only commands only.", DEMO_APPROVER, "/mam help"),
    Step("App Home shows each person what they can do.", DEMO_APPROVER, ":home"),
    Step("Everything is on record: the request, the approval, the Graph write.", DEMO_ADMIN, "/mam audit 8"),
    Step("The drift check (every 10 minutes) takes its first snapshot of the policies and the connector, silently.",
         DEMO_ADMIN, job="policy-drift"),
    Step("The policy list flags the seeded policy: it ignores Defender's signal. Its Set threat level button opens "
         "the edit form, filled in, with the threat level set to low.", DEMO_ADMIN, "/mam policy list"),
    Step("Alex keeps the form as it is and gives a reason: the request carries only what changed, one PATCH of one "
         "property; the apps and groups are not touched.", DEMO_ADMIN, click="Set threat level",
         answers=("", "", "", "", "", "", "", "Make the BYOD policy act on Defender's signal (CHG0044)", "")),
    Step("The form's last screen says the request is filed; Alex closes it.", DEMO_ADMIN, ":close"),
    Step("Sam approves: the bot re-reads the policy, finds it as the card said, and sends the one PATCH.",
         DEMO_APPROVER, click="Approve", check=_threat_level_is(SEED_POLICY_NAME, "low")),
    Step("The next drift check moves its snapshot with the bot's own change: no card.", DEMO_ADMIN,
         job="policy-drift"),
    Step("Someone raises the policy's threat level back to high in the Intune admin center. The drift check reads "
         "Intune's audit log and posts one card: who, when, old → new, with Revert and Accept.", DEMO_ADMIN,
         job="policy-drift", before=_portal_edit(SEED_POLICY_NAME, maximumAllowedDeviceThreatLevel="high")),
    Step("Alex reverts it: a change request that puts the snapshot back, approved like any other.", DEMO_ADMIN,
         click="Revert"),
    Step("Sam approves the revert: the policy allows at most low again.", DEMO_APPROVER, click="Approve",
         check=_threat_level_is(SEED_POLICY_NAME, "low")),
]


def run_demo(out: TextIO, script: Sequence[Step] = SCRIPT) -> int:
    # the transcript is the product here: library chatter would only get in its way
    logging.getLogger("slack_bolt").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="mam-demo-") as tmp:
        settings = load_settings(
            database_url=f"sqlite:///{Path(tmp) / 'demo.db'}",
            mam_cloud="sandbox", mam_graph_url=None, mam_defender_url=None,
            mam_admins=[DEMO_ADMIN], mam_approvers=[DEMO_APPROVER, "UAPPROV02"],
            mam_alert_channel="C0ALERTS", mam_alert_dm_users=True,
            # the demo runs whenever you run it: nudges may go out at any hour here
            mam_work_hours="00:00-23:59", mam_work_days="mon-sun",
        )
        workspace = LocalWorkspace.start(settings)
        try:
            return _play(workspace, script, out)
        finally:
            workspace.close()


def _play(workspace: LocalWorkspace, script: Sequence[Step], out: TextIO) -> int:
    answers = ScriptedInput(echo=out)
    session: ConsoleSession = workspace.session(user=DEMO_ADMIN, out=out, ask=answers, echo=True)
    out.write("mam-bot demo: the real bot, a simulated Slack workspace and the sandbox tenant.\n")
    out.write("People: @alex (admin), @sam and @kim (approvers), @jordan (end user), and the sandbox tenant's "
              "users (Alex Wilber, Megan Bowen, Isaiah Langer, …) with Slack accounts of the same email.\n")
    problems: list[str] = []
    for number, step in enumerate(script, start=1):
        out.write(f"\n── {number}. {step.narration}\n")
        try:
            _perform(workspace, session, answers, step, number, problems, out)
        except Exception as exc:  # a broken step is reported, and the walk-through goes on
            problems.append(f"step {number}: {type(exc).__name__}: {exc}")
    audit = workspace.deps.audit.recent(1000)
    out.write(f"\n── The audit log now holds {len(audit)} rows "
              "(every command, refusal and decision; `mam-bot audit export`).\n")
    if problems:
        out.write("\nThe demo did not go as scripted:\n" + "\n".join(f"  - {p}" for p in problems) + "\n")
        return 1
    out.write("\nDemo finished. Try it yourself: `make console`.\n")
    return 0


def _perform(workspace: LocalWorkspace, session: ConsoleSession, answers: ScriptedInput, step: Step, number: int,
             problems: list[str], out: TextIO) -> None:
    if session.user != step.user:
        session.send(f":as {step.user}")
    answers.extend(step.answers)
    if step.before is not None:
        step.before(workspace)
    if step.job:
        out.write(f"(running the {step.job} job now, as its timer would)\n")
        run = workspace.deps.scheduler().run(step.job)
        workspace.deps.wait_idle()
        out.write(f"({step.job}: {run.outcome}: {run.summary})\n")
        session.flush()
    elif step.click:
        button = session.button_number(step.click)
        if button is None:
            problems.append(f"step {number}: no button labelled {step.click!r}")
            return
        session.send(str(button))
    else:
        session.send(step.line)
    if step.check is not None:
        problem = step.check(workspace)
        if problem:
            problems.append(f"step {number}: {problem}")
