"""Who may do what: the roles and what each command or button requires (no Slack here).

The Slack side, MAM_ADMINS / MAM_APPROVERS expanded from Slack user groups off the ack path, is
commands.roles.RoleDirectory.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    APPROVER = "approver"


class Access(StrEnum):
    """What a command or button requires of the person using it."""

    ANYONE = "anyone"  # help: everyone may ask what they can do
    READ = "read"  # read-only commands: admins and approvers
    ADMIN = "admin"  # requesting changes
    APPROVER = "approver"  # approving or rejecting
    DM_RECIPIENT = "dm_recipient"  # buttons in a DM to an end user: only that user


def allowed(access: Access, roles: frozenset[Role]) -> bool:
    if access is Access.ANYONE or access is Access.DM_RECIPIENT:
        return True  # DM recipients are checked against the DM itself, not a role
    if access is Access.READ:
        return bool(roles)
    return Role(access.value) in roles
