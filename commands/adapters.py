"""The Slack side of the workflows' ports: what the root (bot.compose, bot.jobs) wires into the workflows.

The approval notifier (workflows.changes), the alert sender (workflows.threat_sweep), the nudge sender
and the email directory (workflows.onboarding). Each renders with its surface's module (approvals,
alerts, nudges) and queues through the outbox under the keys the workflow gives it. Only the
composition root imports this module; the surfaces never do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.clock import as_utc
from bot.mrkdwn import Mrkdwn, md
from bot.roles import Role
from bot.settings import Settings
from bot.text import count
from commands.alerts import (
    alert_card,
    alert_text,
    blocked_dm,
    digest_card,
    digest_text,
    edit_card,
    episodes_csv,
    queue_enforcement_notice,
    resolved_reply,
    snooze_over_reply,
    unblocked_dm,
)
from commands.approvals import FINAL_FOR_REQUESTER, STATE_LABELS, request_card
from commands.nudges import nudge_blocks, nudge_text, thanks_text
from commands.roles import RoleDirectory
from workflows.changes import State
from workflows.episodes import resolved_key, snooze_over_key
from workflows.onboarding import DirectoryThrottled

if TYPE_CHECKING:
    from bot.deps import Deps
    from bot.outbox import Outbox
    from bot.store import Approval, ChangeRequest
    from bot.store.index import Enforcement
    from bot.store.watch import Episode, OnboardingCase, SweepRun
    from workflows.connectors import Portals


# ---- approvals (workflows.changes) ----------------------------------------------------------------


class SlackNotifier:
    """Posts and edits approval cards and DMs the requester, through the outbox."""

    def __init__(self, outbox: Outbox, approvals_of: Callable[[int], list[Approval]]) -> None:
        self.outbox = outbox
        self.approvals_of = approvals_of

    def filed(self, request: ChangeRequest) -> None:
        blocks = request_card(request, [])
        destinations = json.loads(request.card_destinations)
        for dest in destinations:
            self.outbox.post(f"cr:{request.id}:card:{dest}", channel=dest, text=self._text(request), blocks=blocks)
        where = ("the approval channel" if any(d.startswith(("C", "G")) for d in destinations)
                 else f"{count(len(destinations), 'approver')} by DM")
        note = md("Your change request #{} ({}) is waiting for approval; its card went to {}.",
                  request.id, request.title, where) if destinations else md(
                  ":warning: Your change request #{} was filed, but no approver is configured "
                  "(MAM_APPROVERS / MAM_APPROVAL_CHANNEL), so nobody can approve it.", request.id)
        self.outbox.post(f"cr:{request.id}:dm:filed", channel=request.requester, text=note)

    def changed(self, request: ChangeRequest) -> None:
        assert request.id is not None
        state = State(request.state)
        if state is State.APPROVED:
            return  # "executing" follows at once (or after a restart); one edit fewer per card
        approvals = self.approvals_of(request.id)
        blocks = request_card(request, approvals)
        for dest in json.loads(request.card_destinations):
            self.outbox.update(f"cr:{request.id}:v{request.version}:{dest}", of=f"cr:{request.id}:card:{dest}",
                               text=self._text(request), blocks=blocks)
        if state in FINAL_FOR_REQUESTER:
            # keyed by state and attempt: a retry that fails again is news, a repeat of the same is not
            self.outbox.post(f"cr:{request.id}:dm:{state.value}:{request.attempts}", channel=request.requester,
                             text=md("Change request #{}: {}.", request.id, STATE_LABELS[state]), blocks=blocks)

    def reminded(self, request: ChangeRequest) -> None:
        for dest in json.loads(request.card_destinations):
            self.outbox.post(f"cr:{request.id}:reminder:{dest}", channel=dest, thread_of=f"cr:{request.id}:card:{dest}",
                             text=md(":bell: Reminder: change request #{} still waits for an approver; it "
                                     "expires {:%Y-%m-%d %H:%M} UTC.", request.id, as_utc(request.expires_at)))

    @staticmethod
    def _text(request: ChangeRequest) -> Mrkdwn:
        return md("Change request #{}: {} ({})", request.id, request.title, STATE_LABELS[State(request.state)])


def approval_destinations(settings: Settings, roles: RoleDirectory) -> list[str]:
    """The approval channel, or else every approver by DM."""
    if settings.mam_approval_channel:
        return [settings.mam_approval_channel]
    return roles.members(Role.APPROVER)


# ---- alerts (workflows.threat_sweep) ---------------------------------------------------------------------


class SlackAlerts:
    """Queues the sweep's cards, edits, thread replies, digests and DMs in the outbox."""

    def __init__(self, outbox: Outbox, portals: Portals, digest_top: int = 10) -> None:
        self.outbox = outbox
        self.portals = portals
        self.digest_top = digest_top

    def opened(self, episode: Episode, channel: str) -> None:
        assert episode.card_key
        self.outbox.post(episode.card_key, channel=channel, text=alert_text(episode),
                         blocks=alert_card(episode, self.portals))

    def changed(self, episode: Episode) -> None:
        edit_card(self.outbox, episode, self.portals)

    def resolved(self, episode: Episode) -> None:
        """Edit the card, and say how long it lasted in its thread (or the digest's that announced it)."""
        self.changed(episode)
        parent = episode.card_key or episode.digest_key
        message = self.outbox.get(parent) if parent else None
        if parent and message is not None:
            self.outbox.post(resolved_key(episode), channel=message.channel, text=resolved_reply(episode),
                             thread_of=parent)

    def snooze_over(self, episode: Episode) -> None:
        self.changed(episode)
        if episode.card_key and (card := self.outbox.get(episode.card_key)) is not None:
            self.outbox.post(snooze_over_key(episode), channel=card.channel, text=snooze_over_reply(episode),
                             thread_of=episode.card_key)

    def digest(self, key: str, channel: str, kind: str, episodes: list[Episode], run: SweepRun) -> None:
        self.outbox.post(key, channel=channel, text=digest_text(kind, episodes),
                         blocks=digest_card(kind, episodes, run, self.portals, self.digest_top))
        stamp = f"{as_utc(run.started_at):%Y%m%d-%H%M}"
        self.outbox.upload(f"{key}:csv", channel=channel, filename=f"mam-{kind}-blocks-{stamp}.csv",
                           content=episodes_csv(episodes, self.portals),
                           title=f"{digest_text(kind, episodes)} (sweep #{run.id})", thread_of=key)

    def user_blocked(self, key: str, slack_user: str, episode: Episode) -> None:
        self.outbox.post(key, channel=slack_user, text=blocked_dm(episode))

    def user_unblocked(self, key: str, slack_user: str, episode: Episode) -> None:
        self.outbox.post(key, channel=slack_user, text=unblocked_dm(episode))

    def enforcement(self, row: Enforcement, channel: str) -> None:
        queue_enforcement_notice(self.outbox, row, channel)


# ---- onboarding nudges (workflows.onboarding) ----------------------------------------------------


class SlackNudger:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def nudge(self, key: str, slack_user: str, case: OnboardingCase, number: int, of: int) -> None:
        self.outbox.post(key, channel=slack_user, text=nudge_text(case, number),
                         blocks=nudge_blocks(case, slack_user, number, of))

    def thank(self, key: str, slack_user: str, case: OnboardingCase) -> None:
        self.outbox.post(key, channel=slack_user, text=thanks_text(case))


class SlackEmailDirectory:
    """users.lookupByEmail; a 429 stops this run's lookups instead of sleeping inside the job."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def lookup_email(self, email: str) -> str | None:
        try:
            response = self.client.users_lookupByEmail(email=email)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            if error == "users_not_found":
                return None
            if error == "ratelimited" or (exc.response is not None and exc.response.status_code == 429):
                raise DirectoryThrottled(email) from exc
            raise
        user = response.get("user") or {}
        if user.get("deleted") or user.get("is_bot"):
            return None
        return str(user.get("id") or "") or None


def slack_client_of(deps: Deps) -> WebClient:
    """The outbox's client: no retry handlers, so a 429 comes back at once (the job defers, not sleeps)."""
    client = getattr(deps, "slack", None)
    return client if isinstance(client, WebClient) else deps.outbox.client


