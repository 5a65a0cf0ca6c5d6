"""Action, block and callback ids: one place, so the registry, handlers and tests agree."""

from enum import StrEnum


class Action(StrEnum):
    CONNECTORS_RECHECK = "connectors_recheck"
    CONNECTORS_ENABLE_ANDROID = "connectors_enable_android"
    APPROVE = "cr_approve"
    REJECT = "cr_reject"
    RETRY = "cr_retry"
    OPEN_HELP = "open_help"
    POLICY_SHOW = "policy_show"  # a policy list's Details button: the picture in a new message
    POLICY_PICK = "policy_pick"  # a pick list's button: the picture replaces the pick list


class View(StrEnum):
    JUSTIFY = "cr_justify"
    REJECT = "cr_reject_reason"
