"""The files that install mam-bot as a service (issue 17 item 1): Dockerfile, compose.yaml, deploy/.

The static checks read each file and hold it to what docs/deployment.md promises (non-root, read-only root
filesystem, a stop longer than the bot's drain plus grace, probes, migrations first). The wheel test builds
the wheel and runs `mam-bot` from a clean virtualenv holding it, from a temporary directory, to prove an
image or a systemd install built from the wheel has the migrations and the commands.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
DRAIN = Settings.model_fields["mam_shutdown_drain_seconds"].default
GRACE = Settings.model_fields["mam_shutdown_grace_seconds"].default
STOP_SECONDS = DRAIN + GRACE

YAML_FILES = sorted([ROOT / "compose.yaml", *K8S.glob("*.yaml"), *(ROOT / "deploy" / "prometheus").glob("*.yml")])


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in K8S.glob("*.yaml"):
        for doc in load_all(path):
            if "kind" in doc and "metadata" in doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def seconds(value: str | int) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(value))
    if isinstance(value, int) or not match or not any(match.groups()):
        return float(value)
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


# ---- every YAML file ----------------------------------------------------------------------------


def test_the_defaults_the_stop_budgets_are_held_to() -> None:
    assert (DRAIN, GRACE) == (5.0, 20.0)


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    assert load_all(path), f"{path} is empty"


def test_all_the_files_are_there() -> None:
    for name in ("Dockerfile", ".dockerignore", "compose.yaml", ".env.example", "deploy/systemd/mam-bot.service",
                 "deploy/prometheus/alerts.yml", "deploy/kubernetes/job-migrate.yaml"):
        assert (ROOT / name).is_file(), name


# ---- Kubernetes ---------------------------------------------------------------------------------


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def the_container(obj: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(obj)["containers"]
    assert len(containers) == 1
    return containers[0]


WORKLOADS = [("Deployment", "mam-bot-http"), ("Deployment", "mam-bot-socket"), ("Job", "mam-bot-migrate")]


@pytest.mark.parametrize("key", WORKLOADS, ids=lambda k: k[1])
def test_pods_run_non_root_read_only_with_no_capabilities(key: tuple[str, str]) -> None:
    obj = k8s_objects()[key]
    spec, container = pod_spec(obj), the_container(obj)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1
    volume = next(v for v in spec["volumes"] if v["name"] == tmp[0]["name"])
    assert "emptyDir" in volume
    sources = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert [next(iter(ref)) for ref in container["envFrom"]] == ["configMapRef", "secretRef"]
    assert sources == {"mam-bot"}
    assert ("ConfigMap", "mam-bot") in k8s_objects()


@pytest.mark.parametrize("name", ["mam-bot-http", "mam-bot-socket"])
def test_deployments_stop_in_time_and_survive_disruptions(name: str) -> None:
    objects = k8s_objects()
    deployment = objects[("Deployment", name)]
    assert deployment["spec"]["replicas"] == 2
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > STOP_SECONDS
    pdb = objects[("PodDisruptionBudget", name)]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"][
        "labels"].items()


OPERATOR_PORT = 9464  # MAM_METRICS_PORT in configmap.yaml


def probe_port(container: dict[str, Any], probe: str, path: str) -> int:
    """The port number `probe` asks for `path` on (a port's name resolved)."""
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    get = container[probe]["httpGet"]
    assert get["path"] == path, f"{probe} asks {get['path']}, not {path}"
    return int(ports.get(get["port"], get["port"]))


def test_http_deployment_serves_on_3000_with_probes() -> None:
    objects = k8s_objects()
    deployment = objects[("Deployment", "mam-bot-http")]
    container = the_container(deployment)
    assert container["args"] == ["serve", "--host", "0.0.0.0", "--port", "3000"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 3000, "operator": OPERATOR_PORT}
    assert probe_port(container, "readinessProbe", "/healthz") == 3000
    # the load balancer that only watches the probe sees the 503 within the drain
    readiness = container["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < DRAIN
    # liveness must not depend on the database (/healthz does): /livez on the operator's port doesn't
    assert probe_port(container, "livenessProbe", "/livez") == OPERATOR_PORT
    service = objects[("Service", "mam-bot-http")]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # Slack reaches the Service: only port 3000, never the operator's port with /metrics
    assert [p["targetPort"] for p in service["spec"]["ports"]] in (["http"], [3000])
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(OPERATOR_PORT)


def test_socket_deployment_runs_socket_mode_without_a_service() -> None:
    objects = k8s_objects()
    deployment = objects[("Deployment", "mam-bot-socket")]
    container = the_container(deployment)
    assert container["args"] == ["run"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"operator": OPERATOR_PORT}
    assert probe_port(container, "readinessProbe", "/healthz") == OPERATOR_PORT
    assert probe_port(container, "livenessProbe", "/livez") == OPERATOR_PORT
    assert [k for k in objects if k[0] == "Service"] == [("Service", "mam-bot-http")]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


def test_configmap_opens_the_operator_port_to_the_pod() -> None:
    data = k8s_objects()[("ConfigMap", "mam-bot")]["data"]
    assert data["MAM_METRICS_HOST"] == "0.0.0.0" and data["MAM_METRICS_PORT"] == str(OPERATOR_PORT)
    assert data["MAM_LOG_FORMAT"] == "json"


def test_migrate_job_upgrades_the_schema() -> None:
    job = k8s_objects()[("Job", "mam-bot-migrate")]
    assert job["apiVersion"] == "batch/v1"
    assert the_container(job)["args"] == ["db", "upgrade"]
    assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")


def test_secret_example_holds_placeholders_only() -> None:
    secret = k8s_objects()[("Secret", "mam-bot")]
    for key, value in secret["stringData"].items():
        assert "CHANGE-ME" in value or set(value) <= set("0-"), f"{key} looks like a real value"


def test_kustomization_names_files_that_exist_and_not_the_example_secret() -> None:
    (kustomization,) = load_all(K8S / "kustomization.yaml")
    assert "secret.example.yaml" not in kustomization["resources"]
    for name in kustomization["resources"]:
        assert (K8S / name).is_file(), name
    # one transport per Slack app: Socket Mode by default, the HTTP files named for the swap
    assert "deployment-socket.yaml" in kustomization["resources"]
    assert "deployment-http.yaml" not in kustomization["resources"]
    text = (K8S / "kustomization.yaml").read_text()
    assert "HTTP mode: deployment-http.yaml" in text and "HTTP mode: service.yaml" in text


# ---- Compose ------------------------------------------------------------------------------------


def test_compose_postgres_then_migrate_then_the_bot() -> None:
    (compose,) = load_all(ROOT / "compose.yaml")
    services = compose["services"]
    assert {"postgres", "migrate", "mam-bot"} <= services.keys()
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert services["migrate"]["command"] == ["db", "upgrade"]
    bot = services["mam-bot"]
    assert bot["command"] == ["run"]
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert bot["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name, service in services.items():
        if name == "postgres":
            continue
        assert service["build"] == "."
        assert service["env_file"] == ".env"
        assert "@postgres:5432/" in service["environment"]["DATABASE_URL"]
        assert service["read_only"] is True
        assert service["tmpfs"] == ["/tmp"]
        assert seconds(service["stop_grace_period"]) > STOP_SECONDS
    # both modes keep the image's check (/healthz on the operator's port); only the one-off migration turns it off
    assert "healthcheck" not in bot and "healthcheck" not in services["mam-bot-http"]
    assert services["migrate"]["healthcheck"] == {"disable": True}
    http = services["mam-bot-http"]
    assert http["command"][0] == "serve"
    assert http["ports"] == ["3000:3000"], "only Slack's port is published, never the one with /metrics"


def test_env_example_names_the_settings_and_holds_no_secrets() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    assigned = dict(line.lstrip("# ").split("=", 1) for line in lines if re.match(r"#? ?[A-Z_]+=", line))
    fields = {name.upper() for name in Settings.model_fields}
    assert fields <= assigned.keys() | {"MAM_SANDBOX_LATENCY_MS", "MAM_INTUNE_PLAN_IDS", "MAM_DEFENDER_PLAN_IDS"}
    for key in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "AZURE_CLIENT_SECRET",
                "POSTGRES_PASSWORD"):
        assert assigned[key] == "", key


# ---- Dockerfile ---------------------------------------------------------------------------------


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    lines = dockerfile()
    froms = [line for line in lines if line.upper().startswith("FROM ")]
    assert len(froms) >= 2
    assert any("pip wheel" in line for line in lines)
    final = lines[lines.index(froms[-1]):]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users, "the runtime stage sets no USER"
    assert users[-1].split(":")[0] not in ("0", "root")
    assert users[-1].split(":")[0] == "10001"
    (health,) = [line for line in final if line.upper().startswith("HEALTHCHECK ")]
    assert "/healthz" in health and "MAM_METRICS_PORT" in health and "9464" in health
    assert "EXPOSE 3000 9464" in final
    assert 'ENTRYPOINT ["mam-bot"]' in final
    assert 'CMD ["run"]' in final
    env = " ".join(line for line in final if line.upper().startswith("ENV "))
    assert "HOME=/tmp" in env and "TMPDIR=/tmp" in env
    assert 'DATABASE_URL=""' in env, "the image must not fall back to the SQLite file on a read-only filesystem"
    assert "MAM_METRICS_HOST=0.0.0.0" in env and "MAM_METRICS_PORT=9464" in env


def test_dockerignore_keeps_secrets_and_the_venv_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().splitlines())
    assert {".env", ".venv", ".git", "*.db"} <= ignored


# ---- systemd and Prometheus ---------------------------------------------------------------------


def test_systemd_unit() -> None:
    section, unit = "", {}
    for line in (ROOT / "deploy" / "systemd" / "mam-bot.service").read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            unit.setdefault((section, key), []).append(value)
    service = {key: values[-1] for (section, key), values in unit.items() if section == "Service"}
    assert service["ExecStartPre"] == "/opt/mam-bot/bin/mam-bot db upgrade"
    assert service["ExecStart"] == "/opt/mam-bot/bin/mam-bot run"
    assert service["EnvironmentFile"] == "/etc/mam-bot/env"
    assert service["User"] == "mam-bot"
    assert seconds(service["TimeoutStopSec"]) > STOP_SECONDS
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "3"
    for key, value in {"NoNewPrivileges": "true", "ProtectSystem": "strict", "PrivateTmp": "true",
                       "ProtectHome": "true"}.items():
        assert service[key] == value, key


def test_prometheus_alerts() -> None:
    (rules,) = load_all(ROOT / "deploy" / "prometheus" / "alerts.yml")
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    expressions = " ".join(rule["expr"] for rule in alerts.values())
    for metric in ("mam_leader", 'mam_job_last_success_timestamp_seconds{job="threat-sweep"}',
                   "mam_outbox_oldest_age_seconds", "mam_microsoft_throttled_total"):
        assert metric in expressions
    assert all({"expr", "for", "labels", "annotations"} <= rule.keys() for rule in alerts.values())


def test_every_metric_the_alerts_use_is_one_the_bot_exports(tmp_path: Path) -> None:
    """A renamed metric would silence an alert: each name in alerts.yml must be in a real scrape."""
    from datetime import UTC, datetime

    from prometheus_client.parser import text_string_to_metric_families

    from bot.metrics import Metrics, StateCollector
    from bot.store import create_store
    from bot.store.models import JobRun

    store = create_store(f"sqlite:///{tmp_path}/m.db")
    try:
        with store.session() as session:
            now = datetime.now(UTC)
            session.add(JobRun(job="threat-sweep", holder="h", started_at=now, finished_at=now, outcome="ok"))
            session.commit()
        metrics = Metrics()
        metrics.watch(StateCollector(store, leading=lambda: True, intervals=lambda: {"threat-sweep": 300.0}))
        metrics.watch_slack(lambda: True)
        metrics.ack("command", 0.01)
        metrics.microsoft_throttled.labels("graph", "/v1.0/users").inc()
        families = list(text_string_to_metric_families(metrics.render().decode()))
        exported = {f.name for f in families} | {s.name for f in families for s in f.samples}
    finally:
        store.close()
    rules = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    used = set(re.findall(r"\b(mam_[a-z_]+)", rules))
    assert used, "alerts.yml names no metric"
    assert used <= exported, f"alerts.yml uses metrics the bot does not export: {sorted(used - exported)}"


# ---- the wheel, installed -----------------------------------------------------------------------


def build_wheel(out: Path) -> Path:
    """`pip wheel --no-deps` with the project venv's pip: without build isolation (offline) when this venv's
    setuptools can build pyproject.toml, else with it (pip fetches setuptools: network or pip's cache)."""
    base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(ROOT)]
    tries = []
    for extra in (["--no-build-isolation"], []):
        result = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=120, check=False)
        wheels = list(out.glob("mam_bot-*.whl"))
        if result.returncode == 0 and len(wheels) == 1:
            return wheels[0]
        tries.append(f"{' '.join(extra) or 'isolated'}: {result.stderr[-1500:]}")
    pytest.fail("could not build the wheel:\n" + "\n".join(tries))


@pytest.mark.wheel
def test_the_wheel_installs_and_runs_outside_the_source_tree(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist")

    # A venv of its own with no system site-packages and no pip; the project venv's pip installs the wheel
    # into it (`pip --python`). The dependencies are not installed again (offline, and it would take
    # minutes): a .pth file appends the project venv's site-packages, after the venv's own. Python does
    # not run the .pth files of a directory added that way, so the project's editable install of `bot`
    # (a .pth import hook) stays off and `bot` can only come from the wheel.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "--quiet", str(wheel)], check=True, timeout=60)
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_mam_bot_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith(("SLACK_", "AZURE_", "MAM_", "DATABASE_"))}
    env.update(HOME=str(work), TMPDIR=str(work), DATABASE_URL=f"sqlite:///{work / 'mam-bot.db'}",
               PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    mam_bot = shutil.which("mam-bot", path=str(venv / "bin"))
    assert mam_bot == str(venv / "bin" / "mam-bot"), "the wheel installed no mam-bot script"

    def run(*args: str | Path, timeout: float = 60) -> str:
        result = subprocess.run([str(a) for a in args], cwd=work, env=env, capture_output=True, text=True,
                                timeout=timeout, check=False)
        assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    where = run(python, "-c", textwrap.dedent("""
        import bot, bot.store.migrate as m, importlib.metadata as md
        from packaging.requirements import Requirement
        print(bot.__file__)
        print(m.MIGRATIONS_DIR)
        print(len(list((m.MIGRATIONS_DIR / "versions").glob("0*.py"))))
        missing = []
        for line in md.requires("mam-bot") or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                try:
                    if md.version(req.name) not in req.specifier:
                        missing.append(line)
                except md.PackageNotFoundError:
                    missing.append(line)
        print(missing)
    """)).splitlines()
    assert Path(where[0]).is_relative_to(site), f"bot imported from {where[0]}, not from the installed wheel"
    assert Path(where[1]).is_relative_to(site)
    source_versions = len(list((ROOT / "bot" / "migrations" / "versions").glob("0*.py")))
    assert int(where[2]) == source_versions > 0, "the wheel is missing migrations"
    assert where[3] == "[]", f"requirements not satisfied: {where[3]}"

    upgrade = run(mam_bot, "db", "upgrade")
    assert "applied 0001" in upgrade
    assert "nothing to do" in run(mam_bot, "db", "upgrade")
    assert "DATABASE_URL" in run(mam_bot, "check")
    assert run(mam_bot, "demo", timeout=120).strip()


def test_the_operators_port_is_open_to_the_monitoring_namespace_only() -> None:
    objects = k8s_objects()
    policy = objects[("NetworkPolicy", "mam-bot")]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "mam-bot"}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = {rule["ports"][0]["port"]: rule for rule in policy["spec"]["ingress"]}
    assert set(rules) == {OPERATOR_PORT, 3000}
    assert rules[OPERATOR_PORT]["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}]
    assert "from" not in rules[3000]  # the ingress controller that Slack reaches, wherever it runs
