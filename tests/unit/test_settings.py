import pytest

from bot.settings import (
    CLOUD_ENDPOINTS,
    Cloud,
    Mode,
    SettingsError,
    load_settings,
    mask_url,
    missing_for,
    missing_line,
)

ENV_VARS = [
    "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_API_URL", "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USE_MANAGED_IDENTITY",
    "MAM_CLOUD", "MAM_GRAPH_URL", "MAM_DEFENDER_URL", "MAM_AUTHORITY_URL", "DATABASE_URL", "MAM_ADMINS",
    "MAM_APPROVERS", "MAM_ALERT_CHANNEL", "MAM_APPROVAL_CHANNEL",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_are_the_embedded_sandbox():
    s = load_settings()
    assert s.mam_cloud is Cloud.SANDBOX
    assert s.uses_in_process_sandbox
    assert s.database_url.startswith("sqlite:///")
    assert s.slack_api_url == "https://slack.com/api/"
    assert missing_for(s, Mode.CONSOLE) == []


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("MAM_CLOUD", "azure", "MAM_CLOUD: 'azure' is not allowed; expected one of global, gcc"),
        ("MAM_ADMINS", "U012AB3CD,bob", "MAM_ADMINS: bob is not a Slack user or user-group id"),
        ("SLACK_APP_TOKEN", "xoxb-123", "SLACK_APP_TOKEN: does not start with xapp-"),
        ("SLACK_BOT_TOKEN", "xapp-123", "SLACK_BOT_TOKEN: does not start with xoxb-"),
        ("AZURE_USE_MANAGED_IDENTITY", "maybe", "AZURE_USE_MANAGED_IDENTITY: 'maybe' is not a boolean"),
        ("MAM_GRAPH_URL", "graph", "MAM_GRAPH_URL: 'graph' is not a URL"),
        ("MAM_ALERT_CHANNEL", "#alerts", "MAM_ALERT_CHANNEL: '#alerts' is not a channel id"),
        ("AZURE_CLIENT_ID", "my-app", "AZURE_CLIENT_ID: 'my-app' is not a GUID"),
        ("AZURE_CLIENT_CERTIFICATE_PATH", "/nope.pem", "AZURE_CLIENT_CERTIFICATE_PATH: '/nope.pem' is not a file"),
    ],
)
def test_a_malformed_setting_is_one_line_naming_it(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message
    assert "expected" in message


def test_secret_values_never_appear_in_repr(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-very-secret")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "hunter2")
    s = load_settings()
    assert "very-secret" not in repr(s) and "hunter2" not in repr(s)


def test_principals_are_split_and_trimmed(monkeypatch):
    monkeypatch.setenv("MAM_ADMINS", " U012AB3CD , S0614TZR7,")
    assert load_settings().mam_admins == ["U012AB3CD", "S0614TZR7"]


def test_env_file_is_read(tmp_path):
    (tmp_path / ".env").write_text("MAM_CLOUD=gcc-high\nMAM_APPROVERS=U045EF6GH\n")
    s = load_settings()
    assert s.mam_cloud is Cloud.GCC_HIGH and s.mam_approvers == ["U045EF6GH"]


def test_host_overrides_apply_in_every_cloud(monkeypatch):
    monkeypatch.setenv("MAM_CLOUD", "gcc")
    monkeypatch.setenv("MAM_GRAPH_URL", "https://graph.proxy.example/")
    e = load_settings().endpoints()
    assert e.graph_url == "https://graph.proxy.example"
    assert e.defender_url == "https://api-gcc.securitycenter.microsoft.us"
    assert e.authority_url == "https://login.microsoftonline.com"


def test_sandbox_with_a_host_override_goes_over_http(monkeypatch):
    monkeypatch.setenv("MAM_GRAPH_URL", "http://127.0.0.1:8765")
    assert not load_settings().uses_in_process_sandbox


def test_cloud_hosts():
    assert CLOUD_ENDPOINTS[Cloud.GCC_HIGH].graph_url == "https://graph.microsoft.us"
    assert CLOUD_ENDPOINTS[Cloud.DOD].graph_url == "https://dod-graph.microsoft.us"
    assert CLOUD_ENDPOINTS[Cloud.DOD].authority_url == "https://login.microsoftonline.us"
    assert CLOUD_ENDPOINTS[Cloud.GCC].graph_url == "https://graph.microsoft.com"
    assert CLOUD_ENDPOINTS[Cloud.CHINA].defender_url is None


def test_run_without_app_token_names_it():
    s = load_settings()
    missing = missing_for(s, Mode.RUN)
    assert missing[0] == "SLACK_APP_TOKEN"
    line = missing_line(Mode.RUN, missing)
    assert line.startswith("mam-bot run: SLACK_APP_TOKEN is not set; expected an app-level token")


def test_a_real_cloud_needs_credentials(monkeypatch):
    monkeypatch.setenv("MAM_CLOUD", "global")
    assert missing_for(load_settings(), Mode.CONSOLE) == [
        "AZURE_TENANT_ID", "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH, or AZURE_USE_MANAGED_IDENTITY=true)"]
    monkeypatch.setenv("AZURE_USE_MANAGED_IDENTITY", "true")
    assert missing_for(load_settings(), Mode.CONSOLE) == []


# --- MAM_CLOUD with real Slack, and DATABASE_URL ----------------------------------------------------


@pytest.mark.parametrize("mode", [Mode.RUN, Mode.SERVE])
def test_real_slack_needs_mam_cloud_chosen_explicitly(monkeypatch, mode):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    s = load_settings()
    assert s.mam_cloud is Cloud.SANDBOX and not s.cloud_is_explicit
    assert missing_for(s, mode) == ["MAM_CLOUD"]
    assert missing_line(mode, ["MAM_CLOUD"]) == (
        f"mam-bot {mode.value}: MAM_CLOUD is not set; expected one of global, gcc, gcc-high, dod, china, sandbox: "
        "with real Slack the tenant must be chosen explicitly (sandbox serves simulated data)")
    assert missing_for(s, Mode.CONSOLE) == []  # the console's Slack is simulated: the default stands
    monkeypatch.setenv("MAM_CLOUD", "sandbox")
    assert load_settings().cloud_is_explicit and missing_for(load_settings(), mode) == []


def test_mam_cloud_from_the_env_file_counts_as_explicit(tmp_path):
    (tmp_path / ".env").write_text("MAM_CLOUD=sandbox\n")
    assert load_settings().cloud_is_explicit


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost:5432/mam", "DATABASE_URL: 'localhost:5432/mam' is not a database URL"),
        ("postgresql://bot:hunter2@db:port/mam",
         "DATABASE_URL: 'postgresql://bot:***@db:port/mam' is not a database URL"),
        ("mysql://bot:hunter2@db/mam", "DATABASE_URL: 'mysql://bot:***@db/mam' is not a SQLite or PostgreSQL URL"),
        ("postgresql+psycopg2://bot:hunter2@db/mam", "DATABASE_URL: 'postgresql+psycopg2://bot:***@db/mam' names the "
                                                     "PostgreSQL driver 'psycopg2'"),
        (" ", "DATABASE_URL: is empty"),
    ],
)
def test_a_bad_database_url_is_one_line_without_its_password(monkeypatch, value, expected):
    monkeypatch.setenv("DATABASE_URL", value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(expected)
    assert message.endswith("; expected postgresql://user:pass@host:5432/db or sqlite:///path/mam-bot.db")
    assert "\n" not in message and "hunter2" not in message


@pytest.mark.parametrize("value", ["sqlite:///mam-bot.db", "sqlite://", "postgres://u:p@db/mam",
                                   "postgresql+psycopg://u@db:5432/mam", "sqlite:////var/lib/mam/x.db"])
def test_good_database_urls_pass(monkeypatch, value):
    monkeypatch.setenv("DATABASE_URL", value)
    assert load_settings().database_url == value


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bot:hunter2@db:5432/mam", "postgresql://bot:***@db:5432/mam"),
        ("postgresql://bot:p@ss/w@rd@db/mam", "postgresql://bot:***@db/mam"),
        ("postgresql://bot@db/mam", "postgresql://bot@db/mam"),
        ("sqlite:////srv/a@b.db", "sqlite:////srv/a@b.db"),
    ],
)
def test_mask_url(url, shown):
    assert mask_url(url) == shown
