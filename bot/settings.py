"""Settings from the environment (and `.env`), with one-line errors that say what to set."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Cloud(StrEnum):
    GLOBAL = "global"
    GCC = "gcc"
    GCC_HIGH = "gcc-high"
    DOD = "dod"
    CHINA = "china"
    SANDBOX = "sandbox"


@dataclass(frozen=True)
class CloudEndpoints:
    """Where one cloud's Graph, Defender and sign-in live, and the Defender token's resource."""

    graph_url: str
    defender_url: str | None
    authority_url: str | None
    defender_resource: str | None

    @property
    def graph_resource(self) -> str:
        return self.graph_url.rstrip("/")


SANDBOX_GRAPH_URL = "http://graph.sandbox.invalid"
SANDBOX_DEFENDER_URL = "http://defender.sandbox.invalid"

# Sources: Microsoft Graph national cloud deployments (learn.microsoft.com/graph/deployments) and
# Defender for Endpoint's API hosts per cloud (learn.microsoft.com/defender-endpoint/gov).
# GCC (moderate) signs in and calls Graph globally but has its own Defender host; Defender for
# Endpoint has no documented API host in China (21Vianet): MAM_DEFENDER_URL must name one there.
CLOUD_ENDPOINTS: dict[Cloud, CloudEndpoints] = {
    Cloud.GLOBAL: CloudEndpoints(
        "https://graph.microsoft.com",
        "https://api.security.microsoft.com",
        "https://login.microsoftonline.com",
        "https://api.securitycenter.microsoft.com",
    ),
    Cloud.GCC: CloudEndpoints(
        "https://graph.microsoft.com",
        "https://api-gcc.securitycenter.microsoft.us",
        "https://login.microsoftonline.com",
        "https://api-gcc.securitycenter.microsoft.us",
    ),
    Cloud.GCC_HIGH: CloudEndpoints(
        "https://graph.microsoft.us",
        "https://api-gov.securitycenter.microsoft.us",
        "https://login.microsoftonline.us",
        "https://api-gov.securitycenter.microsoft.us",
    ),
    Cloud.DOD: CloudEndpoints(
        "https://dod-graph.microsoft.us",
        "https://api-gov.securitycenter.microsoft.us",
        "https://login.microsoftonline.us",
        "https://api-gov.securitycenter.microsoft.us",
    ),
    Cloud.CHINA: CloudEndpoints(
        "https://microsoftgraph.chinacloudapi.cn",
        None,
        "https://login.chinacloudapi.cn",
        None,
    ),
    Cloud.SANDBOX: CloudEndpoints(SANDBOX_GRAPH_URL, SANDBOX_DEFENDER_URL, None, None),
}

_SLACK_PRINCIPAL = re.compile(r"^[UWS][A-Z0-9]{2,}$")
_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_LATENCY = re.compile(r"\d+(\.\d+)?\s*([:±]\s*\d+(\.\d+)?)?")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Service plans (Microsoft's "Product names and service plan identifiers for licensing") that license a
# user for Intune app protection: INTUNE_A (Plan 1), INTUNE_A_GOV, INTUNE_A_VL, INTUNE_EDU, INTUNE_SMBIZ.
# Not INTUNE_O365 (882e1d05-…), Office's basic mobility, which has no app protection with Defender.
INTUNE_PLANS = ("c1ec4a95-1f05-45b3-a911-aa3fa01094f5", "d216f254-796f-4dab-bbfa-710686e646b9",
                "3e170737-c728-4eae-bbb9-3f3360f7184c", "da24caf9-af8e-485c-b7c8-e73336da2693",
                "8e9ff0ff-aa7a-4b20-83c1-2f636b600ac2")
# Defender for Endpoint: MDE_LITE (Plan 1), WINDEFATP (Plan 2), MDE_SMB (Defender for Business).
DEFENDER_PLANS = ("292cc034-7b7c-4950-aaf5-943befd3f1d4", "871d91ec-ec1a-452b-a83f-bd76c7d770ef",
                  "bfc1bbd9-981b-4f71-9b82-17c35fd0e2a4")

# What each variable should look like, used to turn a validation error into one line.
EXAMPLES: dict[str, str] = {
    "SLACK_BOT_TOKEN": "a bot token starting with xoxb- (OAuth & Permissions page)",
    "SLACK_APP_TOKEN": "an app-level token starting with xapp- with connections:write (Basic Information page)",
    "SLACK_SIGNING_SECRET": "the app's signing secret (Basic Information > App Credentials)",
    "SLACK_API_URL": "an https URL ending in /api/, e.g. https://slack.com/api/ or https://slack-gov.com/api/",
    "AZURE_TENANT_ID": "the Entra tenant id (a GUID) or its primary domain, e.g. contoso.onmicrosoft.com",
    "AZURE_CLIENT_ID": "the app registration's application (client) id, a GUID",
    "AZURE_CLIENT_SECRET": "the app registration's client secret value",
    "AZURE_CLIENT_CERTIFICATE_PATH": "the path of a PEM file holding the private key and its certificate",
    "AZURE_USE_MANAGED_IDENTITY": "true or false",
    "MAM_CLOUD": "one of global, gcc, gcc-high, dod, china, sandbox",
    "MAM_GRAPH_URL": "an http(s) base URL without the version, e.g. https://graph.microsoft.com",
    "MAM_DEFENDER_URL": "an http(s) base URL, e.g. https://api.security.microsoft.com",
    "MAM_AUTHORITY_URL": "an http(s) sign-in host, e.g. https://login.microsoftonline.com",
    "DATABASE_URL": "postgresql://user:pass@host:5432/db or sqlite:///path/mam-bot.db",
    "MAM_ADMINS": "comma-separated Slack user ids (U…/W…) and/or user-group ids (S…), e.g. U012AB3CD,S0614TZR7",
    "MAM_APPROVERS": "comma-separated Slack user ids (U…/W…) and/or user-group ids (S…), e.g. U045EF6GH",
    "MAM_ALERT_CHANNEL": "a Slack channel id such as C0123ABCD (channel details > About)",
    "MAM_APPROVAL_CHANNEL": "a Slack channel id such as C0123ABCD (channel details > About)",
    "MAM_APPROVAL_QUORUM": "how many approvers must approve a change, a whole number from 1 to 10 (default 1)",
    "MAM_APPROVAL_EXPIRY_HOURS": "hours a request waits for approval before it expires, e.g. 24",
    "MAM_SWEEP_MINUTES": "minutes between threat sweeps, e.g. 5",
    "MAM_INDEX_MINUTES": "minutes between refreshes of the registrations index (Intune's report export), 5 or more, "
                         "e.g. 60",
    "MAM_LICENCE_HOURS": "hours between licence reads, e.g. 24",
    "MAM_DRIFT_MINUTES": "minutes between checks for policy and connector changes made outside the bot, e.g. 10",
    "MAM_INTUNE_PLAN_IDS": "comma-separated service plan ids (GUIDs) that license Intune, e.g. "
                           "c1ec4a95-1f05-45b3-a911-aa3fa01094f5",
    "MAM_DEFENDER_PLAN_IDS": "comma-separated service plan ids (GUIDs) of Defender for Endpoint, e.g. "
                             "871d91ec-ec1a-452b-a83f-bd76c7d770ef",
    "MAM_SANDBOX_LATENCY_MS": "milliseconds each in-process sandbox request takes, and its jitter: 300, 300:100 "
                              "or 300±100",
    "MAM_ALERT_DIGEST_THRESHOLD": "how many new or resolved blocks in one sweep become one digest card, e.g. 10",
    "MAM_ALERT_DM_USERS": "true or false: DM users whose app is blocked",
    "MAM_TIMEZONE": "an IANA time zone for working hours, e.g. Europe/London or America/New_York",
    "MAM_WORK_HOURS": "the hours nudges may be sent, e.g. 09:00-17:00",
    "MAM_WORK_DAYS": "the days nudges may be sent, e.g. mon-fri or mon,wed,fri",
    "MAM_NUDGE_MINUTES": "minutes between onboarding-nudge runs (they send only in working hours), e.g. 15",
    "MAM_NUDGE_REMINDER_DAYS": "days between onboarding reminders, e.g. 3",
    "MAM_NUDGE_MAX": "nudges per user at most, first one included, e.g. 3",
    "MAM_NUDGE_UNREGISTERED": "true or false: also nudge assigned users with no managed app yet",
    "MAM_SLACK_LOOKUPS_PER_RUN": "Slack users.lookupByEmail calls per nudge run, e.g. 50",
    "MAM_SLACK_POSTS_PER_SECOND": "messages the bot may post per second, all replicas together, e.g. 10",
    "MAM_SOCKET_PING_SECONDS": "seconds between Socket Mode pings (a dead connection is noticed within two), e.g. 5",
    "MAM_SHUTDOWN_DRAIN_SECONDS": "seconds `serve` answers 503 on /healthz after SIGTERM while still serving "
                                  "requests, 0 to 120, e.g. 5",
    "MAM_SHUTDOWN_GRACE_SECONDS": "seconds work already acknowledged (executions included) gets to finish after "
                                  "SIGTERM, 0 to 600, e.g. 20",
    "MAM_METRICS_PORT": "the port of /metrics, /healthz and /livez, 0 to pick a free one, e.g. 9464",
    "MAM_METRICS_HOST": "the address /metrics, /healthz and /livez listen on, e.g. 127.0.0.1, or 0.0.0.0 in a "
                        "container",
    "MAM_LOG_FORMAT": "text or json (one JSON object per line)",
    "MAM_LOG_LEVEL": "debug, info, warning or error",
}


CLOUD_CHOICES = ", ".join(c.value for c in Cloud)

# What `mam-bot run` / `serve` say when MAM_CLOUD was left to its default: with real Slack the
# tenant is chosen, never assumed (the default, sandbox, would show real admins simulated data).
MAM_CLOUD_REQUIRED = (f"one of {CLOUD_CHOICES}: with real Slack the tenant must be chosen explicitly "
                      "(sandbox serves simulated data)")

_PASSWORD_PARAMETER = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """A database URL safe to print: the password, if any, shown as *** (`user:password@` or `?password=`)."""
    url = _PASSWORD_PARAMETER.sub(r"\1***", url)
    head, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0:
        return url
    user, colon, _ = rest[:at].partition(":")
    if not colon or "/" in user:
        return url
    return f"{head}://{user}:***@{rest[at + 1:]}"


def database_url_problem(url: str) -> str | None:
    """Why DATABASE_URL cannot work (one clause, password masked), or None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shown = mask_url(url)
    if not url.strip():
        return "is empty"
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme in ("postgres", "postgresql"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        parsed = make_url(url)
        _ = parsed.port  # a non-numeric port fails here or in make_url
    except (ArgumentError, ValueError):
        return f"{shown!r} is not a database URL"
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            return f"{shown!r} names the SQLite driver {driver!r}; only the built-in one is supported"
        return None
    if backend == "postgresql":
        if driver not in ("", "psycopg"):
            return f"{shown!r} names the PostgreSQL driver {driver!r}; mam-bot uses psycopg 3 (postgresql://)"
        return None
    return f"{shown!r} is not a SQLite or PostgreSQL URL"


class SettingsError(Exception):
    """A setting is missing or malformed; the message is one line that names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    slack_bot_token: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"

    azure_tenant_id: str | None = None
    azure_client_id: str | None = None
    azure_client_secret: SecretStr | None = None
    azure_client_certificate_path: Path | None = None
    azure_use_managed_identity: bool = False

    mam_cloud: Cloud = Cloud.SANDBOX
    mam_graph_url: str | None = None
    mam_defender_url: str | None = None
    mam_authority_url: str | None = None

    database_url: str = "sqlite:///mam-bot.db"

    mam_admins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    mam_approvers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    mam_alert_channel: str | None = None
    mam_approval_channel: str | None = None
    mam_approval_quorum: int = Field(default=1, ge=1, le=10)
    mam_approval_expiry_hours: float = Field(default=24.0, gt=0, le=24 * 30)

    # the watch: threat sweep, alerts and onboarding nudges
    # Defender is read every MAM_SWEEP_MINUTES and joined with the registrations index, which Intune's
    # report export refreshes every MAM_INDEX_MINUTES; licences every MAM_LICENCE_HOURS
    mam_sweep_minutes: float = Field(default=5.0, ge=1, le=24 * 60)
    mam_index_minutes: float = Field(default=60.0, ge=5, le=24 * 60)
    mam_licence_hours: float = Field(default=24.0, ge=1, le=24 * 7)
    mam_drift_minutes: float = Field(default=10.0, ge=1, le=24 * 60)  # policies and connector compared, changes told
    mam_intune_plan_ids: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(INTUNE_PLANS))
    mam_defender_plan_ids: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFENDER_PLANS))
    # the in-process sandbox's answer time per request: "300" or "300:100" (milliseconds, ± jitter)
    mam_sandbox_latency_ms: str = ""
    mam_alert_digest_threshold: int = Field(default=10, ge=1, le=1000)
    mam_alert_dm_users: bool = False
    mam_timezone: str = "UTC"
    mam_work_hours: str = "09:00-17:00"
    mam_work_days: str = "mon-fri"
    mam_nudge_minutes: float = Field(default=15.0, ge=1, le=24 * 60)
    mam_nudge_reminder_days: float = Field(default=3.0, gt=0, le=60)
    mam_nudge_max: int = Field(default=3, ge=1, le=10)
    mam_nudge_unregistered: bool = False
    mam_slack_lookups_per_run: int = Field(default=50, ge=1, le=1000)
    mam_slack_posts_per_second: float = Field(default=10.0, gt=0, le=1000)
    mam_socket_ping_seconds: float = Field(default=5.0, ge=0.2, le=60)
    # a stop (SIGTERM, SIGINT): how long `serve` says not-ready while still serving, then how long work
    # already acknowledged gets to finish (bot/cli.py, docs/deployment.md "Shutdown")
    mam_shutdown_drain_seconds: float = Field(default=5.0, ge=0, le=120)
    mam_shutdown_grace_seconds: float = Field(default=20.0, ge=0, le=600)
    # /metrics, /healthz and /livez for the operator, on a port of their own in `run` and `serve` (bot/health.py):
    # never on the port Slack reaches
    mam_metrics_port: int = Field(default=9464, ge=0, le=65535)
    mam_metrics_host: str = "127.0.0.1"
    mam_log_format: Literal["text", "json"] = "text"
    mam_log_level: Literal["debug", "info", "warning", "error"] = "warning"  # `--log-level` wins

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        problem = database_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value.strip()

    @field_validator("mam_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone") from None
        return value

    @field_validator("mam_work_hours")
    @classmethod
    def _work_hours(cls, value: str) -> str:
        from datetime import time

        try:
            start, end = (time.fromisoformat(part.strip()) for part in value.split("-", 1))
        except ValueError:
            raise ValueError(f"{value!r} is not a range of hours") from None
        if end <= start:
            raise ValueError(f"{value!r} ends before it starts")
        return value

    @field_validator("mam_work_days")
    @classmethod
    def _work_days(cls, value: str) -> str:
        days = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
        parts = [p for chunk in value.lower().replace(" ", "").split(",") for p in chunk.split("-")]
        if not parts or any(p[:3] not in days for p in parts):
            raise ValueError(f"{value!r} is not a list of days")
        return value

    @field_validator(
        "slack_bot_token", "slack_app_token", "slack_signing_secret", "azure_client_secret", mode="before"
    )
    @classmethod
    def _blank_secret_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("does not start with xoxb-")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("does not start with xapp-")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _slack_api_url(cls, value: str) -> str:
        if not _URL.match(value):
            raise ValueError(f"{value!r} is not a URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("mam_log_format", "mam_log_level", mode="before")
    @classmethod
    def _log_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("mam_graph_url", "mam_defender_url", "mam_authority_url", mode="before")
    @classmethod
    def _url(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
            if not _URL.match(value):
                raise ValueError(f"{value!r} is not a URL")
            return value.rstrip("/")
        return value

    @field_validator("azure_tenant_id", "azure_client_id", "mam_alert_channel", "mam_approval_channel",
                     mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("azure_client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F-]{36}", value.strip()):
            raise ValueError(f"{value!r} is not a GUID")
        return value.strip() if value else value

    @field_validator("mam_admins", "mam_approvers", mode="before")
    @classmethod
    def _principals(cls, value: Any) -> list[str]:
        items = [p.strip() for p in value.split(",")] if isinstance(value, str) else list(value or [])
        items = [p for p in items if p]
        bad = [p for p in items if not _SLACK_PRINCIPAL.match(p)]
        if bad:
            raise ValueError(f"{', '.join(bad)} is not a Slack user or user-group id")
        return items

    @field_validator("mam_intune_plan_ids", "mam_defender_plan_ids", mode="before")
    @classmethod
    def _plan_ids(cls, value: Any) -> list[str]:
        items = [p.strip().lower() for p in value.split(",")] if isinstance(value, str) else list(value or [])
        items = [p for p in items if p]
        bad = [p for p in items if not _GUID.fullmatch(p)]
        if bad:
            raise ValueError(f"{', '.join(bad)} is not a service plan id (a GUID such as {INTUNE_PLANS[0]})")
        if not items:
            raise ValueError("needs at least one service plan id")
        return items

    @field_validator("mam_sandbox_latency_ms")
    @classmethod
    def _sandbox_latency(cls, value: str) -> str:
        if value.strip() and not _LATENCY.fullmatch(value.strip()):
            raise ValueError(f"{value!r} is not a latency: give milliseconds as 300, 300:100 or 300±100 "
                             "(latency and jitter)")
        return value.strip()

    @field_validator("mam_alert_channel", "mam_approval_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not _CHANNEL.match(value.strip()):
            raise ValueError(f"{value!r} is not a channel id")
        return value.strip() if value else value

    @field_validator("azure_client_certificate_path")
    @classmethod
    def _cert_path(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{str(value)!r} is not a file")
        return value

    # ---- derived -------------------------------------------------------------------------------

    def endpoints(self) -> CloudEndpoints:
        """The cloud's hosts, with MAM_GRAPH_URL / MAM_DEFENDER_URL / MAM_AUTHORITY_URL applied."""
        base = CLOUD_ENDPOINTS[self.mam_cloud]
        return CloudEndpoints(
            graph_url=self.mam_graph_url or base.graph_url,
            defender_url=self.mam_defender_url or base.defender_url,
            authority_url=self.mam_authority_url or base.authority_url,
            defender_resource=base.defender_resource,
        )

    @property
    def uses_in_process_sandbox(self) -> bool:
        """Sandbox cloud with no host override: the tenant runs inside this process."""
        return self.mam_cloud is Cloud.SANDBOX and not (self.mam_graph_url or self.mam_defender_url)

    @property
    def has_admins(self) -> bool:
        return bool(self.mam_admins)

    @property
    def cloud_is_explicit(self) -> bool:
        """MAM_CLOUD was set (environment, `.env` or argument), not left to its default."""
        return "mam_cloud" in self.model_fields_set


def load_settings(**overrides: Any) -> Settings:
    """Read settings; a bad value raises SettingsError with one line naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err.get("loc") else "settings"
    env = field.upper()
    detail = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "enum":
        detail = f"{err.get('input')!r} is not allowed"
    elif err.get("type") == "bool_parsing":
        detail = f"{err.get('input')!r} is not a boolean"
    hint = EXAMPLES.get(env, "")
    return f"{env}: {detail}; expected {hint}" if hint else f"{env}: {detail}"


class Mode(StrEnum):
    RUN = "run"
    SERVE = "serve"
    CONSOLE = "console"


def missing_for(settings: Settings, mode: Mode) -> list[str]:
    """The variables a mode still needs, most important first (empty: ready to start)."""
    missing: list[str] = []
    if mode is Mode.RUN:
        missing += [n for n, v in (("SLACK_APP_TOKEN", settings.slack_app_token),
                                   ("SLACK_BOT_TOKEN", settings.slack_bot_token)) if v is None]
    elif mode is Mode.SERVE:
        missing += [n for n, v in (("SLACK_SIGNING_SECRET", settings.slack_signing_secret),
                                   ("SLACK_BOT_TOKEN", settings.slack_bot_token)) if v is None]
    if mode in (Mode.RUN, Mode.SERVE) and not settings.cloud_is_explicit:
        missing.append("MAM_CLOUD")
    missing += missing_microsoft(settings)
    return missing


def missing_microsoft(settings: Settings) -> list[str]:
    if settings.mam_cloud is Cloud.SANDBOX:
        return []
    missing: list[str] = []
    if settings.azure_use_managed_identity:
        return missing  # the identity comes from Azure; AZURE_CLIENT_ID optionally names a user-assigned one
    if not settings.azure_tenant_id:
        missing.append("AZURE_TENANT_ID")
    if not settings.azure_client_id:
        missing.append("AZURE_CLIENT_ID")
    if settings.azure_client_secret is None and settings.azure_client_certificate_path is None:
        missing.append("AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH, or AZURE_USE_MANAGED_IDENTITY=true)")
    if settings.mam_cloud is Cloud.CHINA and not settings.mam_defender_url:
        missing.append("MAM_DEFENDER_URL")
    return missing


def missing_line(mode: Mode, missing: list[str]) -> str:
    """One line for start-up: the first missing variable with what it should look like."""
    first = missing[0]
    hint = EXAMPLES.get(first, "")
    if first.startswith("AZURE_CLIENT_SECRET"):
        hint = "a client secret, or set AZURE_CLIENT_CERTIFICATE_PATH (PEM) or AZURE_USE_MANAGED_IDENTITY=true"
    if first == "MAM_CLOUD":
        hint = MAM_CLOUD_REQUIRED
    if first == "MAM_DEFENDER_URL":
        hint = "the Defender for Endpoint API host for this cloud (none is documented for MAM_CLOUD=china)"
    also = f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""
    return f"mam-bot {mode.value}: {first.split(' ')[0]} is not set; expected {hint}{also}"
