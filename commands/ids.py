"""Action, block and callback ids: one place, so the registry, handlers and tests agree."""

from enum import StrEnum


class Action(StrEnum):
    CONNECTORS_RECHECK = "connectors_recheck"
    CONNECTORS_ENABLE_ANDROID = "connectors_enable_android"
    APPROVE = "cr_approve"
    REJECT = "cr_reject"
    RETRY = "cr_retry"
    POLICY_SHOW = "policy_show"  # a policy list's Details button: the picture in a new message
    POLICY_PICK = "policy_pick"  # a pick list's button: the picture replaces the pick list
    PICK_GROUP = "pick_group"
    PICK_POLICY = "pick_policy"
    ASSIGN_PICK = "assign_pick"
    ASSIGN_REQUEST = "assign_request"
    SWEEP_NOW = "sweep_now"  # on /mam status: the threat sweep now, as /mam sweep


class View(StrEnum):
    JUSTIFY = "cr_justify"
    REJECT = "cr_reject_reason"
    POLICY_NEW = "policy_new"
    ASSIGN = "policy_assign"
