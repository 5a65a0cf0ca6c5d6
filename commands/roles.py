"""Who holds a role: MAM_ADMINS / MAM_APPROVERS expanded from Slack user groups, off the ack path.

The roles themselves and what each command requires are in bot.roles (below the workflows).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.roles import Role

log = logging.getLogger(__name__)


class RoleDirectory:
    """Resolves a Slack user id to roles from memory; user-group members are refreshed in the background."""

    def __init__(self, admins: Iterable[str], approvers: Iterable[str], client: WebClient | None = None) -> None:
        self._configured = {Role.ADMIN: list(admins), Role.APPROVER: list(approvers)}
        self._client = client
        self._members: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.last_error: str | None = None

    @property
    def usergroups(self) -> set[str]:
        return {p for ps in self._configured.values() for p in ps if p.startswith("S")}

    @property
    def has_admins(self) -> bool:
        return bool(self._configured[Role.ADMIN])

    def roles_of(self, user_id: str) -> frozenset[Role]:
        with self._lock:
            members = self._members
        found = set()
        for role, principals in self._configured.items():
            for principal in principals:
                if principal == user_id or user_id in members.get(principal, frozenset()):
                    found.add(role)
                    break
        return frozenset(found)

    def members(self, role: Role) -> list[str]:
        """The user ids holding a role: configured users plus the loaded members of configured groups."""
        with self._lock:
            loaded = self._members
        users: list[str] = []
        for principal in self._configured[role]:
            for user in ([principal] if not principal.startswith("S") else sorted(loaded.get(principal, ()))):
                if user not in users:
                    users.append(user)
        return users

    def refresh(self) -> None:
        """Load user-group members from Slack. Runs at start and on a timer, never during a request."""
        if not self.usergroups or self._client is None:
            return
        loaded: dict[str, frozenset[str]] = {}
        for group in sorted(self.usergroups):
            try:
                resp = self._client.usergroups_users_list(usergroup=group)
                loaded[group] = frozenset(resp.get("users") or [])
            except SlackApiError as exc:
                self.last_error = f"usergroups.users.list {group}: {exc.response.get('error')}"
                log.warning("could not load members of user group %s: %s", group, exc.response.get("error"))
                with self._lock:
                    loaded[group] = self._members.get(group, frozenset())  # keep what we had
        with self._lock:
            self._members = loaded

    def start_background_refresh(self, every_seconds: float = 300.0) -> threading.Thread | None:
        if not self.usergroups or self._client is None:
            return None

        def loop() -> None:
            while not self._stop.wait(every_seconds):
                try:
                    self.refresh()
                except Exception:
                    log.exception("role refresh failed")

        thread = threading.Thread(target=loop, name="mam-roles", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
