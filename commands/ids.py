"""Action, block and callback ids: one place, so the registry, handlers and tests agree."""

from enum import StrEnum


class Action(StrEnum):
    CONNECTORS_RECHECK = "connectors_recheck"
    OPEN_HELP = "open_help"


class View(StrEnum):
    pass
