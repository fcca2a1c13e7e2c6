"""Offline checks of the deployment files: Dockerfile, docker-compose.yml and k8s/.

Nothing here needs a network, a Docker engine or a cluster. Built-in Kubernetes
kinds are validated with ``kubernetes_validate`` (strict: unknown fields fail);
Kustomization and Strimzi custom resources, which it has no schema for, get
structural checks here (tests/test_kafka_acls.py validates the Strimzi ones against
Strimzi's own CRD schemas). The compose file and the Dockerfile are checked against the
service's contracts (CLI subcommands, ports, environment variables).
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from ops.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "docker-compose.yml"
K8S_DIR = ROOT / "k8s"
K8S_BASE = K8S_DIR / "base"

NAMESPACE = "pika-payment"
IMAGE_NAME = "pika-payment"
SERVICE_PORT = 5505
RUNTIME_UID = 10001

# The real CLI is the source of truth for the subcommands a container may run.
CLI_SUBCOMMANDS = frozenset(COMMANDS)
LONG_RUNNING = ("ingress", "worker", "relay", "notify")
# Subcommands that get a workload (compose service / Kubernetes object).
DEPLOYED_SUBCOMMANDS = frozenset(
    {*LONG_RUNNING, "migrate", "expire", "reconcile", "remind", "prune"}
)

SECRET_VARS = frozenset(
    {
        "DATABASE_URL",  # carries the database password
        "PAYMENT_JWT_SECRET",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "SMTP_PASSWORD",
    }
)
INT_VARS = (
    "PAYMENT_SERVICE_PORT",
    "KAFKA_COMMAND_PARTITIONS",
    "SMTP_PORT",
    "CREDIT_EXPIRY_DAYS",
    "MAX_CREDIT_BALANCE",
    "MIN_CREDIT_PURCHASE",
    "MAX_DAILY_TRANSACTIONS",
    "MAX_TRANSACTION_AMOUNT",
    "DEFAULT_CREDIT_PRICE",
)
BUSINESS_VARS = (*INT_VARS[3:], "LOG_LEVEL")
# Every setting the app reads, except the optional STRIPE_API_BASE.
REQUIRED_APP_VARS = frozenset(
    {
        "PAYMENT_SERVICE_PORT",
        "DATABASE_URL",
        "REDIS_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_COMMAND_PARTITIONS",
        "PAYMENT_JWT_SECRET",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "SMTP_HOST",
        "SMTP_PORT",
        "SMTP_USER",
        "SMTP_PASSWORD",
        "SMTP_FROM",
        "CREDIT_EXPIRY_DAYS",
        "MAX_CREDIT_BALANCE",
        "MIN_CREDIT_PURCHASE",
        "MAX_DAILY_TRANSACTIONS",
        "MAX_TRANSACTION_AMOUNT",
        "DEFAULT_CREDIT_PRICE",
        "LOG_LEVEL",
    }
)
LOG_LEVELS = frozenset({"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"})

# topic name -> partitions (contract)
KAFKA_TOPICS = {
    "payment.commands": 12,
    "payment.commands.internal": 12,
    "payment.events": 12,
    "payment.commands.dlq": 3,
    "payment.events.dlq": 3,
}
TOPIC_REPLICAS = 3

# API groups kubernetes_validate has no schema for: checked structurally.
STRIMZI_LISTENER_TYPES = frozenset(
    {"internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"}
)
CUSTOM_API_GROUPS = frozenset({
    "kustomize.config.k8s.io", "kafka.strimzi.io", "monitoring.coreos.com", "keda.sh",
    "gateway.networking.k8s.io",
})
K8S_VERSION = kubernetes_validate.latest_version()

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
COMPOSE_CONDITIONS = frozenset(
    {"service_started", "service_healthy", "service_completed_successfully"}
)


# --------------------------------------------------------------------------- helpers
def _api_group(doc: dict[str, Any]) -> str:
    api_version = doc.get("apiVersion", "")
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def _is_custom(doc: dict[str, Any]) -> bool:
    return _api_group(doc) in CUSTOM_API_GROUPS


@cache
def _k8s_files() -> tuple[Path, ...]:
    return tuple(
        sorted(p for p in K8S_DIR.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())
    )


@cache
def _load_yaml_docs(path: Path) -> tuple[Any, ...]:
    with path.open(encoding="utf-8") as fh:
        return tuple(doc for doc in yaml.safe_load_all(fh) if doc is not None)


@cache
def _k8s_docs() -> tuple[tuple[Path, dict[str, Any]], ...]:
    """(file, document) for every non-Kustomization document under k8s/."""
    out = []
    for path in _k8s_files():
        for doc in _load_yaml_docs(path):
            if isinstance(doc, dict) and doc.get("kind") != "Kustomization":
                out.append((path, doc))
    return tuple(out)


def _docs_of(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _k8s_docs() if doc.get("kind") == kind]


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _docs_of(kind) if d.get("metadata", {}).get("name") == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def _component(doc: dict[str, Any]) -> str:
    return doc["metadata"]["labels"]["app.kubernetes.io/component"]


def _deployment(component: str) -> dict[str, Any]:
    found = [d for d in _docs_of("Deployment") if _component(d) == component]
    assert len(found) == 1, f"expected one Deployment for {component}, found {len(found)}"
    return found[0]


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def _pod_template_labels(doc: dict[str, Any]) -> dict[str, str]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return doc["spec"]["template"]["metadata"]["labels"]


def _workloads() -> list[dict[str, Any]]:
    return [d for _, d in _k8s_docs() if d["kind"] in {"Deployment", "Job", "CronJob"}]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _label_selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against labels."""
    if not _selects(selector.get("matchLabels", {}), labels):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _replicas(deployment: dict[str, Any]) -> int:
    """What runs: the Deployment's replicas, or its autoscaler's minimum when an
    autoscaler owns the count (the Deployment then leaves spec.replicas out)."""
    name = deployment["metadata"]["name"]
    for hpa in _docs_of("HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == name:
            assert "replicas" not in deployment["spec"], f"{name}: the HPA owns replicas"
            return int(hpa["spec"]["minReplicas"])
    for scaled in _docs_of("ScaledObject"):
        if scaled["spec"]["scaleTargetRef"]["name"] == name:
            assert "replicas" not in deployment["spec"], f"{name}: KEDA owns replicas"
            return int(scaled["spec"]["minReplicaCount"])
    return int(deployment["spec"]["replicas"])


@cache
def _kustomization(directory: Path) -> dict[str, Any]:
    docs = _load_yaml_docs(directory / "kustomization.yaml")
    assert len(docs) == 1 and isinstance(docs[0], dict)
    return docs[0]


@cache
def _configmap_data() -> dict[str, str]:
    return dict(_one("ConfigMap", "pika-payment-config")["data"])


@cache
def _secret_data() -> dict[str, str]:
    secret = _one("Secret", "pika-payment-secrets")
    data = dict(secret.get("stringData") or {})
    for key, value in (secret.get("data") or {}).items():
        data[key] = base64.b64decode(value).decode()
    return data


# ---- Dockerfile
def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continuation are ignored by docker
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instr, args in _dockerfile_instructions():
        if instr == "FROM":
            stages.append([])
        elif not stages:
            assert instr == "ARG", f"{instr} before the first FROM"
            continue
        stages[-1].append((instr, args))
    return stages


def _json_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def _strip_flags(args: str) -> tuple[list[str], list[str]]:
    flags, rest = [], []
    for token in args.split():
        (flags if token.startswith("--") and not rest else rest).append(token)
    return flags, rest


# ---- compose
@cache
def _compose() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _is_app_service(service: dict[str, Any]) -> bool:
    image = str(service.get("image", ""))
    return "build" in service or image.split(":")[0].endswith(IMAGE_NAME)


def _app_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in _services().items() if _is_app_service(svc)}


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {p[0]: (p[1] if len(p) == 2 else None) for p in pairs}
    return dict(env)


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    if command is None:
        return []
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def _healthcheck_enabled(service: dict[str, Any]) -> bool:
    hc = service.get("healthcheck")
    if hc is None:
        # App services inherit the Dockerfile HEALTHCHECK.
        return _is_app_service(service) and any(
            i == "HEALTHCHECK" for i, _ in _dockerfile_stages()[-1]
        )
    return not hc.get("disable", False) and hc.get("test") not in (None, ["NONE"])


# ------------------------------------------------------------------------- CLI contract
def test_deployed_processes_are_real_cli_subcommands() -> None:
    missing = DEPLOYED_SUBCOMMANDS - CLI_SUBCOMMANDS
    assert not missing, f"deployment files run subcommands the CLI lacks: {sorted(missing)}"


# --------------------------------------------------------------------- Dockerfile tests
def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    instructions = _dockerfile_instructions()
    froms = [args for instr, args in instructions if instr == "FROM"]
    assert len(froms) >= 2, "expected a build stage and a runtime stage"
    # One base for both stages, an ARG whose default is the tag and which builds pin by
    # digest (`--build-arg PYTHON_IMAGE=python:3.11-slim@sha256:…`).
    args = dict(a.split("=", 1) for i, a in instructions if i == "ARG" and "=" in a)
    assert args.get("PYTHON_IMAGE", "").startswith("python:3.11-slim")
    stage_names = []
    for args_of_from in froms:
        _, rest = _strip_flags(args_of_from)
        assert rest[0] == "${PYTHON_IMAGE}", f"unexpected base image {rest[0]}"
        if len(rest) == 3 and rest[1].upper() == "AS":
            stage_names.append(rest[2])
    # The final stage must take its artefacts from an earlier named stage.
    final = " ".join(args for _, args in _dockerfile_stages()[-1])
    assert any(f"from={name}" in final for name in stage_names[:-1]), (
        "runtime stage does not use the build stage (COPY --from / RUN --mount from=)"
    )


def test_dockerfile_runs_as_non_root_user() -> None:
    users = [args for instr, args in _dockerfile_stages()[-1] if instr == "USER"]
    assert users, "runtime stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    # Numeric so Kubernetes runAsNonRoot can verify it; same uid as the manifests.
    assert user == str(RUNTIME_UID)


def test_dockerfile_entrypoint_cmd_expose() -> None:
    final = _dockerfile_stages()[-1]
    entrypoints = [_json_form(a) for i, a in final if i == "ENTRYPOINT"]
    cmds = [_json_form(a) for i, a in final if i == "CMD"]
    assert entrypoints and entrypoints[-1] == ["pika-payment"]
    assert cmds and cmds[-1] == ["ingress"]
    exposed = {p.split("/")[0] for i, a in final if i == "EXPOSE" for p in a.split()}
    assert str(SERVICE_PORT) in exposed


def test_dockerfile_healthcheck_uses_python_against_health_endpoint() -> None:
    checks = [a for i, a in _dockerfile_stages()[-1] if i == "HEALTHCHECK"]
    assert len(checks) == 1
    # drop the --interval/--timeout/... flags, keep the exec-form JSON verbatim
    remainder = re.sub(r"^(--\S+\s+)*", "", checks[0])
    assert remainder.startswith("CMD "), "HEALTHCHECK must use CMD (exec form)"
    command = _json_form(remainder[len("CMD ") :])
    assert command[0] in {"python", "python3"}
    assert "/payment/health" in " ".join(command)
    assert not {"curl", "wget"} & set(" ".join(command).split())


def test_dockerfile_ships_alembic_files_in_workdir() -> None:
    final = _dockerfile_stages()[-1]
    workdirs = [a for i, a in final if i == "WORKDIR"]
    assert workdirs and workdirs[-1] == "/app"
    copied = set()
    for instr, args in final:
        if instr in {"COPY", "ADD"}:
            flags, rest = _strip_flags(args)
            if not any(f.startswith("--from") for f in flags):
                copied.update(s.rstrip("/") for s in rest[:-1])
    assert {"alembic.ini", "migrations"} <= copied


def test_dockerfile_copy_sources_exist_and_are_not_dockerignored() -> None:
    if not (ROOT / "pyproject.toml").exists():
        pytest.skip("application sources not in the tree yet")
    patterns = _dockerignore_patterns()
    for stage in _dockerfile_stages():
        for instr, args in stage:
            if instr not in {"COPY", "ADD"}:
                continue
            flags, rest = _strip_flags(args)
            if any(f.startswith("--from") for f in flags):
                continue
            for src in rest[:-1]:
                src = src.rstrip("/")
                assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
                if src != ".":
                    assert not _dockerignored(src, patterns), f"{src} is in .dockerignore"


def _dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def _dockerignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.lstrip("/").removeprefix("**/")
        if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path.split("/")[0], pat):
            ignored = not negate
    return ignored


def test_dockerignore_excludes_junk_but_keeps_build_inputs() -> None:
    patterns = _dockerignore_patterns()
    for junk in (".git", ".venv", ".env", "tests", "devtools", "clients", "examples", "__pycache__"):
        assert _dockerignored(junk, patterns), f"{junk} should be in .dockerignore"
    for needed in ("pyproject.toml", "alembic.ini", "migrations", "README.md"):
        assert not _dockerignored(needed, patterns), f"{needed} must reach the build"


def test_pyproject_provides_the_console_script_the_image_runs() -> None:
    pyproject = ROOT / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("pyproject.toml not in the tree yet")
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    project = data["project"]
    assert project["name"] == "pika-payment"
    assert "pika-payment" in project.get("scripts", {})
    # Whatever the wheel build needs must survive .dockerignore.
    patterns = _dockerignore_patterns()
    needed = [project["readme"]] if isinstance(project.get("readme"), str) else []
    find = data.get("tool", {}).get("setuptools", {}).get("packages", {})
    if isinstance(find, dict):
        needed += [p.rstrip("*").rstrip(".") for p in find.get("find", {}).get("include", [])]
    for path in needed:
        assert not _dockerignored(path, patterns), f"{path} is needed by the build"


# ------------------------------------------------------------------ compose tests
def test_compose_has_required_services() -> None:
    services = _services()
    required = {"kafka", "postgres", "redis", "mailpit", "migrate", *LONG_RUNNING}
    assert required <= services.keys(), f"missing: {required - services.keys()}"
    assert _services()["kafka"]["image"].startswith("apache/kafka:")
    assert _services()["postgres"]["image"] == "postgres:15"
    assert _services()["redis"]["image"].split(":") == ["redis", "7"]
    assert "mailpit" in _services()["mailpit"]["image"]


def test_compose_images_are_pinned() -> None:
    for name, svc in _services().items():
        if "image" in svc and "build" not in svc:
            image = svc["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"


def test_compose_app_services_run_cli_subcommands_from_one_image() -> None:
    apps = _app_services()
    assert {"migrate", *LONG_RUNNING} <= apps.keys()
    images = set()
    for name, svc in apps.items():
        command = _command(svc)
        assert command and command[0] in CLI_SUBCOMMANDS, f"{name}: command {command}"
        build = svc.get("build")
        assert build is not None, f"{name} must be built from the Dockerfile"
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile"
        if isinstance(build, dict):
            dockerfile = build.get("dockerfile", dockerfile)
        assert (ROOT / context / dockerfile).resolve() == DOCKERFILE
        images.add(svc.get("image"))
    assert len(images) == 1, f"app services should share one image tag, got {images}"
    # each long-running process is a service running its own subcommand
    for name in (*LONG_RUNNING, "migrate"):
        assert _command(apps[name]) == [name]


def test_compose_depends_on_targets_exist_and_have_no_cycles() -> None:
    services = _services()
    graph = {}
    for name, svc in services.items():
        deps = _depends_on(svc)
        for target, condition in deps.items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert condition in COMPOSE_CONDITIONS, f"{name}->{target}: {condition}"
            if condition == "service_healthy":
                assert _healthcheck_enabled(services[target]), (
                    f"{name} waits for {target} to be healthy but it has no healthcheck"
                )
        graph[name] = set(deps)

    visiting: set[str] = set()
    done: set[str] = set()

    def visit(node: str) -> None:
        assert node not in visiting, f"depends_on cycle through {node}"
        if node in done:
            return
        visiting.add(node)
        for nxt in graph[node]:
            visit(nxt)
        visiting.discard(node)
        done.add(node)

    for node in graph:
        visit(node)


def test_compose_migrate_is_one_shot_and_gates_the_processes() -> None:
    services = _services()
    migrate = services["migrate"]
    # `restart: no` unquoted is the YAML boolean False, which compose rejects.
    assert migrate.get("restart") == "no"
    deps = _depends_on(migrate)
    assert deps.get("postgres") == "service_healthy"
    assert deps.get("kafka") in {"service_started", "service_healthy"}
    for name in LONG_RUNNING:
        assert _depends_on(services[name]).get("migrate") == "service_completed_successfully", name


def test_compose_replicas_and_ports() -> None:
    services = _services()
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["relay"]["deploy"]["replicas"] == 2
    assert f"{SERVICE_PORT}:{SERVICE_PORT}" in [str(p) for p in services["ingress"]["ports"]]
    for name, svc in services.items():
        replicas = (svc.get("deploy") or {}).get("replicas", 1)
        if replicas > 1:
            assert "container_name" not in svc, f"{name}: container_name blocks replicas"
            assert not svc.get("ports"), f"{name}: fixed host ports clash between replicas"


def test_compose_app_environment_is_complete_and_consistent() -> None:
    services = _services()
    for name, svc in _app_services().items():
        env = _environment(svc)
        missing = REQUIRED_APP_VARS - env.keys()
        assert not missing, f"{name} lacks {sorted(missing)}"
        for key, value in env.items():
            assert isinstance(value, (str, int)) and not isinstance(value, bool), (
                f"{name}.{key}={value!r}: quote it, compose wants strings"
            )
        for key in INT_VARS:
            int(env[key])
        assert int(env["PAYMENT_SERVICE_PORT"]) == SERVICE_PORT
        assert env["LOG_LEVEL"] in LOG_LEVELS
        for key in SECRET_VARS - {"DATABASE_URL"}:
            assert "dev" in str(env[key]).lower(), f"{name}.{key} must be an obvious dev value"

        db = urlsplit(env["DATABASE_URL"])
        assert db.scheme.startswith("postgresql")
        assert db.hostname in services
        pg_env = _environment(services[db.hostname])
        assert db.username == pg_env["POSTGRES_USER"]
        assert db.password == pg_env["POSTGRES_PASSWORD"]
        assert db.path.lstrip("/") == pg_env["POSTGRES_DB"]

        redis = urlsplit(env["REDIS_URL"])
        assert redis.scheme == "redis" and redis.hostname in services

        advertised = _environment(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
        for server in env["KAFKA_BOOTSTRAP_SERVERS"].split(","):
            host, _, port = server.partition(":")
            assert host in services and f"//{host}:{port}" in advertised, server

        assert env["SMTP_HOST"] in services


def test_compose_infra_healthchecks() -> None:
    services = _services()
    pg_test = services["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in " ".join(pg_test)
    redis_test = services["redis"]["healthcheck"]["test"]
    assert "redis-cli" in " ".join(redis_test) and "ping" in " ".join(redis_test)


PROBED_IN_COMPOSE = tuple(name for name in LONG_RUNNING if name != "ingress")


def _compose_probe_code(name: str) -> str:
    """The Python a probed compose service's healthcheck runs (exec form: CMD python -c)."""
    test = _services()[name]["healthcheck"]["test"]
    assert test[0] == "CMD", f"{name}: exec form, the slim image's shell is not needed"
    assert test[1] in {"python", "python3"} and test[2] == "-c" and len(test) == 4, name
    return str(test[3])


def test_compose_long_running_services_are_healthchecked_on_their_own_probe_port() -> None:
    """The ingress keeps the image's HEALTHCHECK (/payment/health on its API port); worker,
    relay and notify call a probe path on METRICS_PORT, set as in their Deployments."""
    from services.settings import Settings

    services = _services()
    for name in LONG_RUNNING:
        assert _healthcheck_enabled(services[name]), f"{name}: no healthcheck"
    assert "healthcheck" not in services["ingress"], "the Dockerfile's HEALTHCHECK is the ingress's"
    for name in PROBED_IN_COMPOSE:
        env = _environment(services[name])
        settings = Settings(metrics_port=int(env["METRICS_PORT"]), metrics_host=env["METRICS_HOST"])
        assert settings.metrics_port, f"{name}: METRICS_PORT=0 turns the probe listener off"
        assert settings.metrics_host in {"0.0.0.0", "127.0.0.1"}, (
            f"{name}: the healthcheck calls 127.0.0.1 inside the container"
        )
        (container,) = _pod_spec(_deployment(name))["containers"]
        k8s_env = _env_values(container)
        assert (env["METRICS_PORT"], env["METRICS_HOST"]) == (
            k8s_env["METRICS_PORT"], k8s_env["METRICS_HOST"]), f"{name}: compose differs from k8s"
        code = _compose_probe_code(name)
        assert re.search(r"127\.0\.0\.1:\{port\}/(ready|health)'", code), code
        assert "os.environ['METRICS_PORT']" in code, f"{name}: must call its own METRICS_PORT"
        assert not {"curl", "wget"} & set(code.split())
        deps = _depends_on(services[name])
        assert deps.get("migrate") == "service_completed_successfully", name
        for infra in ("kafka", "postgres", "redis"):
            assert deps.get(infra) == "service_healthy", f"{name} must wait for {infra}"


@pytest.mark.parametrize("name", PROBED_IN_COMPOSE)
@pytest.mark.parametrize("ready", [True, False])
async def test_compose_healthcheck_passes_exactly_when_the_process_is_ready(
    name: str, ready: bool
) -> None:
    """Run the healthcheck's own code against a real probe listener (workers.probes)."""
    import asyncio
    import os
    import sys

    from devtools.processes import free_port
    from workers.probes import ProbeServer

    async def check() -> dict[str, str]:
        return {"postgres": "ok" if ready else "unavailable: test"}

    port = free_port()
    server = ProbeServer("127.0.0.1", port, check)
    await server.start()
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _compose_probe_code(name),
            env={**os.environ, "METRICS_PORT": str(port)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        returncode = await asyncio.wait_for(child.wait(), 30)
    finally:
        await server.stop()
    assert (returncode == 0) is ready, f"{name}: exit {returncode} with ready={ready}"


def test_compose_kafka_is_single_node_kraft() -> None:
    env = {k: str(v) for k, v in _environment(_services()["kafka"]).items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert [v.split("@")[0] for v in voters] == [env["KAFKA_NODE_ID"]]
    listener_names = {item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")}
    protocol_map = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert listener_names <= protocol_map.keys()
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listener_names
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert {a.split("://")[0] for a in advertised} <= listener_names
    assert any(a.endswith("//kafka:9092") for a in advertised)
    assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 1
    if "CLUSTER_ID" in env:
        raw = base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")
        assert len(raw) == 16, "CLUSTER_ID must be a base64url-encoded 16-byte UUID"


# ---------------------------------------------------------------------- k8s tests
def test_k8s_files_parse_into_named_objects() -> None:
    files = _k8s_files()
    assert files, "no manifests under k8s/"
    for path in files:
        docs = _load_yaml_docs(path)
        assert docs, f"{path} is empty"
        for doc in docs:
            assert isinstance(doc, dict), f"{path}: document is not a mapping"
            assert doc.get("apiVersion") and doc.get("kind"), f"{path}: no apiVersion/kind"
            if doc["kind"] != "Kustomization":
                name = doc.get("metadata", {}).get("name")
                assert isinstance(name, str) and DNS1123_SUBDOMAIN.match(name), (path, name)


def test_kustomization_resources_exist_and_cover_the_base() -> None:
    kustomization = _kustomization(K8S_BASE)
    assert kustomization["apiVersion"].startswith("kustomize.config.k8s.io/")
    assert kustomization["namespace"] == NAMESPACE
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources)), "duplicate resources"
    listed = set()
    for entry in resources:
        target = (K8S_BASE / entry).resolve()
        assert target.exists(), f"kustomization lists missing {entry}"
        if target.is_dir():
            assert (target / "kustomization.yaml").exists(), f"{entry} is not a kustomization"
            listed.update(target.rglob("*.yaml"))
        else:
            listed.add(target)
    on_disk = {
        p.resolve()
        for p in K8S_BASE.rglob("*")
        if p.suffix in {".yaml", ".yml"} and p.name != "kustomization.yaml"
    }
    assert not on_disk - listed, f"not listed in kustomization: {sorted(on_disk - listed)}"
    assert any("kafka" in Path(r).parts[0] for r in resources), "Strimzi CRs not listed"


def test_validator_rejects_invalid_documents() -> None:
    """Guard against a vacuous validation: strict mode must catch unknown fields."""
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "x", "image": "x", "replicas": 3}]},
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_builtin_kinds_validate_against_kubernetes_schema() -> None:
    errors = []
    validated = 0
    for path, doc in _k8s_docs():
        if _is_custom(doc):
            continue
        rel = path.relative_to(ROOT)
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            validated += 1
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{rel} {doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{rel}: {exc.message}")
    assert not errors, "\n".join(errors)
    assert validated >= 10


def test_namespace_object_matches_and_nothing_overrides_it() -> None:
    assert _one("Namespace", NAMESPACE)
    for path, doc in _k8s_docs():
        ns = doc.get("metadata", {}).get("namespace")
        assert ns in (None, NAMESPACE), f"{path}: hardcoded namespace {ns}"


def test_workloads_run_the_image_securely() -> None:
    configmaps = {d["metadata"]["name"] for d in _docs_of("ConfigMap")}
    secrets = {d["metadata"]["name"] for d in _docs_of("Secret")}
    accounts = {d["metadata"]["name"] for d in _docs_of("ServiceAccount")}
    workloads = _workloads()
    seen = set()
    for wl in workloads:
        label = f"{wl['kind']}/{wl['metadata']['name']}"
        pod = _pod_spec(wl)
        pod_sc = pod.get("securityContext", {})
        assert pod.get("serviceAccountName", "default") in accounts | {"default"}, label
        volumes = {v["name"] for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            assert container["image"].split(":")[0] == IMAGE_NAME, label
            assert "command" not in container, f"{label}: use args, keep the ENTRYPOINT"
            args = container["args"]
            assert args[0] in CLI_SUBCOMMANDS, f"{label}: args {args}"
            assert args[0] == _component(wl), f"{label}: args {args} vs component label"
            seen.add(args[0])
            resources = container["resources"]
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= resources[section].keys(), f"{label}: {section}"
            sc = container.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, label
            assert sc.get("runAsUser", pod_sc.get("runAsUser")) == RUNTIME_UID, label
            assert sc.get("readOnlyRootFilesystem") is True, label
            assert sc.get("allowPrivilegeEscalation") is False, label
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), label
            refs = container["envFrom"]
            assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} <= configmaps
            assert {r["secretRef"]["name"] for r in refs if "secretRef" in r} <= secrets
            assert any("configMapRef" in r for r in refs) and any("secretRef" in r for r in refs)
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{label}: mount {mount['name']} undeclared"
    assert seen == DEPLOYED_SUBCOMMANDS, f"missing workloads for {DEPLOYED_SUBCOMMANDS - seen}"


def test_deployments_replicas_and_selectors() -> None:
    expected = {"ingress": 3, "worker": 2, "relay": 2, "notify": 1}
    deployments = _docs_of("Deployment")
    assert sorted(_component(d) for d in deployments) == sorted(expected)
    for dep in deployments:
        component = _component(dep)
        assert _replicas(dep) == expected[component], component
        selector = dep["spec"]["selector"]["matchLabels"]
        assert _selects(selector, _pod_template_labels(dep)), f"{component}: selector mismatch"
        others = [d for d in deployments if d is not dep]
        assert not any(_selects(selector, _pod_template_labels(o)) for o in others), (
            f"{component}: selector overlaps another Deployment"
        )
    partitions = KAFKA_TOPICS["payment.commands"]
    assert _replicas(_deployment("worker")) <= partitions


def _resolve_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"unknown named port {port}"
    return named[port]


def test_ingress_probes_service_and_port() -> None:
    dep = _deployment("ingress")
    (container,) = _pod_spec(dep)["containers"]
    assert SERVICE_PORT in [p["containerPort"] for p in container["ports"]]
    ready = container["readinessProbe"]["httpGet"]
    live = container["livenessProbe"]["httpGet"]
    assert ready["path"] == "/payment/ready"
    assert live["path"] == "/payment/health"
    assert _resolve_port(container, ready["port"]) == SERVICE_PORT
    assert _resolve_port(container, live["port"]) == SERVICE_PORT

    services = _docs_of("Service")
    assert len(services) == 1
    svc = services[0]
    assert _selects(svc["spec"]["selector"], _pod_template_labels(dep))
    for other in _docs_of("Deployment"):
        if other is not dep:
            assert not _selects(svc["spec"]["selector"], _pod_template_labels(other))
    (port,) = svc["spec"]["ports"]
    assert port["port"] == 80
    assert _resolve_port(container, port.get("targetPort", port["port"])) == SERVICE_PORT


def test_ingress_metrics_are_scraped_on_a_port_the_service_does_not_expose() -> None:
    from services.settings import Settings

    dep = _deployment("ingress")
    (container,) = _pod_spec(dep)["containers"]
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    port = int(env["INGRESS_METRICS_PORT"])
    assert _resolve_port(container, "metrics") == port != SERVICE_PORT
    assert env["INGRESS_METRICS_HOST"] == "0.0.0.0", "Prometheus scrapes the pod's IP"
    (svc,) = _docs_of("Service")
    exposed = {_resolve_port(container, p.get("targetPort", p["port"])) for p in svc["spec"]["ports"]}
    assert port not in exposed, "the Service (and the cluster ingress) must not reach metrics"
    config = _configmap_data()
    assert "TRUSTED_PROXIES" in config, "the operator sees the setting and what empty means"
    Settings(trusted_proxies=config["TRUSTED_PROXIES"])  # a valid value, or none


def test_pod_disruption_budgets_cover_ingress_worker_and_relay() -> None:
    covered = set()
    for pdb in _docs_of("PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        deployments = _docs_of("Deployment")
        matches = [d for d in deployments if _selects(selector, _pod_template_labels(d))]
        assert len(matches) == 1, f"{pdb['metadata']['name']} selects {len(matches)} Deployments"
        dep = matches[0]
        replicas = _replicas(dep)
        if "minAvailable" in pdb["spec"]:
            assert pdb["spec"]["minAvailable"] < replicas, "PDB would block every eviction"
        else:
            assert pdb["spec"]["maxUnavailable"] >= 1
        covered.add(_component(dep))
    assert {"ingress", "worker", "relay"} <= covered


def test_migrate_job_is_one_shot_and_documents_ordering() -> None:
    jobs = _docs_of("Job")
    assert len(jobs) == 1
    job = jobs[0]
    pod = _pod_spec(job)
    assert pod["restartPolicy"] in {"Never", "OnFailure"}
    assert pod["containers"][0]["args"] == ["migrate"]
    assert job["spec"].get("backoffLimit", 6) >= 1
    annotations = job["metadata"].get("annotations", {})
    assert "argocd.argoproj.io/hook" in annotations or "helm.sh/hook" in annotations
    source = (K8S_BASE / "migrate-job.yaml").read_text(encoding="utf-8").lower()
    assert "before" in source and "kustomize" in source, "ordering comment missing"


def _cron_fields(schedule: str) -> list[str]:
    fields = schedule.split()
    assert len(fields) == 5, f"bad cron schedule {schedule!r}"
    return fields


def test_every_container_runs_flags_the_cli_accepts_and_cronjobs_report_json() -> None:
    parser = build_parser()
    for workload in _workloads():
        for container in _pod_spec(workload)["containers"]:
            parser.parse_args(container["args"])  # an unknown flag exits 2 here
    for cron in _docs_of("CronJob"):
        # One JSON object on stdout per run: what a log pipeline indexes and alerts on.
        assert "--json" in _pod_spec(cron)["containers"][0]["args"], _component(cron)


def test_cronjobs_expire_every_five_minutes_and_reconcile_nightly() -> None:
    crons = {_component(c): c for c in _docs_of("CronJob")}
    assert crons.keys() == {"expire", "reconcile", "remind", "prune"}
    assert crons["expire"]["spec"]["schedule"] == "*/5 * * * *"
    minute, hour, dom, month, dow = _cron_fields(crons["reconcile"]["spec"]["schedule"])
    assert minute.isdigit() and 0 <= int(minute) < 60
    assert hour.isdigit() and 0 <= int(hour) < 24
    assert (dom, month, dow) == ("*", "*", "*")
    minute, hour, *every_day = _cron_fields(crons["remind"]["spec"]["schedule"])
    assert minute.isdigit() and hour.isdigit() and every_day == ["*", "*", "*"], "remind: daily"
    for cron in crons.values():
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
        assert _pod_spec(cron)["restartPolicy"] in {"Never", "OnFailure"}


def test_prune_runs_daily_on_postgres_alone() -> None:
    (cron,) = [c for c in _docs_of("CronJob") if _component(c) == "prune"]
    minute, hour, *every_day = _cron_fields(cron["spec"]["schedule"])
    assert minute.isdigit() and hour.isdigit() and every_day == ["*", "*", "*"], "prune: daily"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert "pika-payment/kafka-client" not in _pod_template_labels(cron)
    (container,) = _pod_spec(cron)["containers"]
    assert container["args"] == ["prune", "--json"]
    env = {e["name"]: e for e in container.get("env", [])}
    assert "KAFKA_SASL_PASSWORD" not in env and "KAFKA_SASL_USERNAME" not in env
    # The shared settings must still validate without a Kafka login.
    assert env["KAFKA_SECURITY_PROTOCOL"]["value"] == "PLAINTEXT"
    assert env["KAFKA_SSL_CAFILE"]["value"] == ""
    assert not any(v.get("secret", {}).get("secretName", "").startswith("pika-kafka")
                   for v in _pod_spec(cron).get("volumes", []))


def test_prune_settings_in_the_configmap_are_accepted_and_tied_to_kafka() -> None:
    from services.settings import Settings

    config = _configmap_data()
    topics = {t["spec"]["topicName"]: t["spec"] for t in _docs_of("KafkaTopic")}
    kafka_days = int(config["KAFKA_COMMAND_RETENTION_DAYS"])
    event_days = int(config["KAFKA_EVENT_RETENTION_DAYS"])
    for name, days in (("payment.commands", kafka_days), ("payment.commands.internal", kafka_days),
                       ("payment.events", event_days)):
        spec_config = topics[name]["config"]
        assert int(spec_config["retention.ms"]) == days * 86_400_000, name
        # windows.py counts one default segment (7 days) past retention.ms.
        assert int(spec_config.get("segment.ms", 7 * 86_400_000)) <= 7 * 86_400_000, name
    keys = ("KAFKA_COMMAND_RETENTION_DAYS", "KAFKA_EVENT_RETENTION_DAYS", "OUTBOX_RETENTION_DAYS",
            "COMMAND_ID_RETENTION_DAYS", "STRIPE_EVENT_RETENTION_DAYS",
            "NOTIFICATION_RETENTION_DAYS", "EXPIRY_REMINDER_RETENTION_DAYS", "PRUNE_BATCH_SIZE")
    settings = Settings(**{key.lower(): config[key] for key in keys})
    assert settings.command_id_retention_days >= kafka_days + 14
    assert settings.notification_retention_days >= event_days + 14
    assert settings.stripe_event_retention_days >= 3
    assert config["KAFKA_CREATE_TOPICS"] == "false", "the KafkaTopics own the topics in k8s"
    assert int(config["KAFKA_TOPIC_REPLICATION_FACTOR"]) == TOPIC_REPLICAS


def test_configmap_and_secret_split_the_settings() -> None:
    config = _configmap_data()
    secret = _secret_data()
    assert not SECRET_VARS & config.keys(), "secrets must not be in the ConfigMap"
    assert secret.keys() >= SECRET_VARS
    missing = REQUIRED_APP_VARS - config.keys() - secret.keys()
    assert not missing, f"not provided to the pods: {sorted(missing)}"
    for key in INT_VARS:
        int(config[key])
    assert int(config["PAYMENT_SERVICE_PORT"]) == SERVICE_PORT
    assert config["LOG_LEVEL"] in LOG_LEVELS
    # the committed Secret is an example: placeholders only
    secret_files = {p.name for p, d in _k8s_docs() if d["kind"] == "Secret"}
    assert secret_files == {"secret.example.yaml"}
    for key, value in secret.items():
        assert "CHANGE_ME" in value, f"{key} in the example Secret is not a placeholder"


def test_business_settings_match_between_compose_and_k8s() -> None:
    config = _configmap_data()
    for name, svc in _app_services().items():
        env = _environment(svc)
        for key in BUSINESS_VARS:
            assert str(env[key]) == config[key], f"{key} differs: compose {name} vs ConfigMap"


# ----------------------------------------------------------------- Strimzi (custom)
# Strimzi 1.x serves only kafka.strimzi.io/v1. The Kafka versions it runs (its
# kafka-versions.yaml, `supported: true`) and the KRaft metadata version of each.
STRIMZI_API = "kafka.strimzi.io/v1"
STRIMZI_KAFKA_VERSIONS = {
    "4.2.0": "4.2-IV1", "4.2.1": "4.2-IV1", "4.3.0": "4.3-IV0", "4.3.1": "4.3-IV0",
}


def _kafka_cluster() -> dict[str, Any]:
    (kafka,) = _docs_of("Kafka")
    return kafka


def test_strimzi_kafka_cluster_is_kraft_with_node_pools() -> None:
    kafka = _kafka_cluster()
    assert kafka["apiVersion"] == STRIMZI_API
    assert DNS1123_LABEL.match(kafka["metadata"]["name"])
    # Strimzi 1.x is KRaft with node pools only: the annotations that switched them on
    # in 0.x are gone, and so is ZooKeeper.
    annotations = kafka["metadata"].get("annotations", {})
    assert not {"strimzi.io/node-pools", "strimzi.io/kraft"} & annotations.keys()
    spec = kafka["spec"]
    assert "zookeeper" not in spec
    version = spec["kafka"]["version"]
    assert version in STRIMZI_KAFKA_VERSIONS, f"Kafka {version} is not run by Strimzi 1.x"
    assert spec["kafka"]["metadataVersion"] == STRIMZI_KAFKA_VERSIONS[version]
    assert {"kafka", "entityOperator"} <= spec.keys()
    assert "topicOperator" in spec["entityOperator"], "KafkaTopic needs the Topic Operator"
    listeners = spec["kafka"]["listeners"]
    assert listeners and isinstance(listeners, list)
    names = set()
    for listener in listeners:
        assert re.fullmatch(r"[a-z0-9]{1,11}", str(listener["name"])), listener["name"]
        assert isinstance(listener["port"], int) and not isinstance(listener["port"], bool)
        assert listener["port"] >= 9092 and listener["port"] not in {9404, 9999}
        assert listener["type"] in STRIMZI_LISTENER_TYPES
        assert isinstance(listener["tls"], bool)
        names.add(listener["name"])
    assert len(names) == len(listeners), "duplicate listener names"
    config = spec["kafka"].get("config", {})
    assert int(config.get("min.insync.replicas", 1)) <= TOPIC_REPLICAS


def test_strimzi_node_pool_backs_the_cluster() -> None:
    kafka = _kafka_cluster()
    pools = _docs_of("KafkaNodePool")
    assert pools
    brokers = controllers = 0
    for pool in pools:
        assert pool["apiVersion"] == STRIMZI_API
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        spec = pool["spec"]
        replicas = spec["replicas"]
        assert isinstance(replicas, int) and not isinstance(replicas, bool)
        roles = set(spec["roles"])
        assert roles and roles <= {"broker", "controller"}
        assert spec["storage"]["type"] in {"jbod", "persistent-claim", "ephemeral"}
        brokers += replicas if "broker" in roles else 0
        controllers += replicas if "controller" in roles else 0
    assert brokers >= TOPIC_REPLICAS, "not enough brokers for the topic replication factor"
    assert controllers % 2 == 1, "KRaft quorum should have an odd number of controllers"


def test_strimzi_topics_match_the_contract() -> None:
    kafka_name = _kafka_cluster()["metadata"]["name"]
    topics = {}
    for topic in _docs_of("KafkaTopic"):
        assert topic["apiVersion"] == STRIMZI_API
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka_name
        spec = topic["spec"]
        name = spec.get("topicName", topic["metadata"]["name"])
        assert name not in topics, f"duplicate topic {name}"
        for key in ("partitions", "replicas"):
            assert isinstance(spec[key], int) and not isinstance(spec[key], bool), (name, key)
        min_isr = int(spec.get("config", {}).get("min.insync.replicas", 1))
        assert min_isr < spec["replicas"], f"{name}: min.insync.replicas leaves no slack"
        topics[name] = spec
    assert topics.keys() == KAFKA_TOPICS.keys()
    for name, partitions in KAFKA_TOPICS.items():
        assert topics[name]["partitions"] == partitions, name
        assert topics[name]["replicas"] == TOPIC_REPLICAS, name
    assert int(topics["payment.commands"]["config"]["min.insync.replicas"]) == 2


def test_app_config_points_at_the_strimzi_cluster() -> None:
    config = _configmap_data()
    kafka = _kafka_cluster()
    # The listener's TLS must match the protocol the app speaks (SSL / SASL_SSL).
    wants_tls = config.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT") in {"SSL", "SASL_SSL"}
    matching_ports = {
        listener["port"]
        for listener in kafka["spec"]["kafka"]["listeners"]
        if listener["tls"] == wants_tls
    }
    for server in config["KAFKA_BOOTSTRAP_SERVERS"].split(","):
        host, _, port = server.partition(":")
        assert host.split(".")[0] == f"{kafka['metadata']['name']}-kafka-bootstrap", server
        assert int(port) in matching_ports, server
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in _docs_of("KafkaTopic")}
    # migrate creates missing topics with these counts; they must agree with Strimzi.
    assert int(config["KAFKA_COMMAND_PARTITIONS"]) == partitions["payment.commands"]
    if "KAFKA_EVENT_PARTITIONS" in config:
        assert int(config["KAFKA_EVENT_PARTITIONS"]) == partitions["payment.events"]


# --------------------------------------------------------- optional: real kustomize
def _kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build", str(K8S_BASE)]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize", str(K8S_BASE)]
    return None


def _iter_listed_docs() -> Iterator[dict[str, Any]]:
    for entry in _kustomization(K8S_BASE)["resources"]:
        yield from _load_yaml_docs((K8S_BASE / entry).resolve())


def test_kustomize_build_renders_every_resource_into_the_namespace() -> None:
    command = _kustomize_command()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed")
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(rendered) == sum(1 for _ in _iter_listed_docs())
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]
        if not _is_custom(doc):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# ------------------------------------------------- probes, scraping, autoscaling, routes
LONG_RUNNING = ("ingress", "worker", "relay", "notify")
# The app's KAFKA_SASL_MECHANISM -> the same mechanism in KEDA's kafka scaler.
KEDA_SASL = {"SCRAM-SHA-512": "scram_sha512", "SCRAM-SHA-256": "scram_sha256", "PLAIN": "plaintext"}
WORKER_PROBES = {"startupProbe": "/health", "readinessProbe": "/ready", "livenessProbe": "/health"}


def _env_values(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_every_long_running_workload_is_probed() -> None:
    """Worker, relay and notify on their probe listener (workers.probes, METRICS_PORT
    bound to the pod's interfaces); the ingress on its API port."""
    from services.settings import Settings

    assert {_component(d) for d in _docs_of("Deployment")} == set(LONG_RUNNING)
    for dep in _docs_of("Deployment"):
        (container,) = _pod_spec(dep)["containers"]
        for probe in WORKER_PROBES:
            assert "httpGet" in container.get(probe, {}), f"{_component(dep)}: no {probe}"
        if _component(dep) == "ingress":
            continue
        env = _env_values(container)
        settings = Settings(metrics_port=int(env["METRICS_PORT"]), metrics_host=env["METRICS_HOST"])
        assert settings.metrics_host == "0.0.0.0", "the kubelet and Prometheus call the pod IP"
        for probe, path in WORKER_PROBES.items():
            get = container[probe]["httpGet"]
            assert get["path"] == path, (_component(dep), probe)
            assert _resolve_port(container, get["port"]) == settings.metrics_port
        assert _resolve_port(container, "metrics") == settings.metrics_port


def test_the_pod_monitor_scrapes_every_pod_with_a_metrics_port() -> None:
    (monitor,) = _docs_of("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert monitor["spec"].get("namespaceSelector") is None, "this namespace only"
    for workload in _workloads():
        containers = _pod_spec(workload)["containers"]
        has_metrics = any(p.get("name") == endpoint["port"]
                          for c in containers for p in c.get("ports", []))
        selected = _label_selector_matches(monitor["spec"]["selector"],
                                           _pod_template_labels(workload))
        assert selected == has_metrics, f"{workload['metadata']['name']}: scraped={selected}"
        assert has_metrics == (_component(workload) in LONG_RUNNING)
        annotations = workload["spec"].get("template", {}).get("metadata", {}).get("annotations", {})
        assert not any(k.startswith("prometheus.io/") for k in annotations), "one way to scrape"


def test_the_ingress_autoscaler_targets_the_ingress_deployment() -> None:
    (hpa,) = _docs_of("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    ingress = _deployment("ingress")
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1", "Deployment", ingress["metadata"]["name"])
    (pdb,) = [p for p in _docs_of("PodDisruptionBudget") if _component(p) == "ingress"]
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert any(m["type"] == "Resource" for m in hpa["spec"]["metrics"])


def test_keda_scales_the_worker_on_both_command_topics_within_their_partitions() -> None:
    from workers.ledger import GROUP_ID

    (scaled,) = _docs_of("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    worker = _deployment("worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"kafka"}
    topics = {t["metadata"]["topic"] for t in triggers}
    assert topics == {"payment.commands", "payment.commands.internal"}
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in _docs_of("KafkaTopic")}
    assert scaled["spec"]["maxReplicaCount"] <= min(partitions[topic] for topic in topics)
    assert scaled["spec"]["maxReplicaCount"] <= int(_configmap_data()["KAFKA_COMMAND_PARTITIONS"])
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    config = _configmap_data()
    (container,) = _pod_spec(worker)["containers"]
    password_ref = next(e["valueFrom"]["secretKeyRef"] for e in container["env"]
                        if e["name"] == "KAFKA_SASL_PASSWORD")
    ca_secret = next(v["secret"]["secretName"] for v in _pod_spec(worker)["volumes"]
                     if v["name"] == "kafka-ca")
    for trigger in triggers:
        meta = trigger["metadata"]
        assert meta["consumerGroup"] == GROUP_ID
        assert meta["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
        assert meta["sasl"] == KEDA_SASL[config["KAFKA_SASL_MECHANISM"]]
        assert meta["tls"] == "enable"
        auth = _one("TriggerAuthentication", trigger["authenticationRef"]["name"])
        assert auth["apiVersion"] == "keda.sh/v1alpha1"
        secrets = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
        assert secrets["password"] == (password_ref["name"], password_ref["key"])
        assert secrets["ca"][0] == ca_secret
        (username,) = auth["spec"]["env"]
        assert (username["parameter"], username["name"], username["containerName"]) == (
            "username", "KAFKA_SASL_USERNAME", container["name"])


def _route_for(route: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    """The rule a Gateway picks: an Exact match before the longest PathPrefix."""
    candidates = []
    for rule in route["spec"]["rules"]:
        for match in rule["matches"]:
            kind, value = match["path"]["type"], match["path"]["value"]
            if match.get("method", method) != method:
                continue
            if kind == "Exact" and path == value:
                candidates.append(((1, len(value)), rule))
            elif kind == "PathPrefix" and (path == value or path.startswith(value.rstrip("/") + "/")):
                candidates.append(((0, len(value)), rule))
    return max(candidates, key=lambda c: c[0])[1] if candidates else None


def test_the_http_route_sends_the_api_and_the_stripe_webhook_to_the_ingress() -> None:
    from ingress.controllers.webhooks import StripeWebhookController

    (route,) = _docs_of("HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    (parent,) = route["spec"]["parentRefs"]
    assert parent.get("kind", "Gateway") == "Gateway" and parent["name"]
    (svc,) = _docs_of("Service")
    service_ports = {p["port"] for p in svc["spec"]["ports"]}
    webhook = StripeWebhookController.path + next(iter(StripeWebhookController.stripe_event.paths))
    for method, path in (("POST", webhook), ("GET", "/payment/credits/balance"),
                         ("GET", "/payment/ready"), ("POST", "/payment/commands")):
        rule = _route_for(route, method, path)
        assert rule is not None, f"{method} {path} is not routed"
        (backend,) = rule["backendRefs"]
        assert backend["name"] == svc["metadata"]["name"] and backend["port"] in service_ports
    assert _route_for(route, "GET", "/paymentx") is None
    assert _route_for(route, "GET", "/other") is None
    assert any(m["path"] == {"type": "Exact", "value": webhook}
               for rule in route["spec"]["rules"] for m in rule["matches"]), "webhook rule"


def test_the_ingress_drains_before_it_stops() -> None:
    """Endpoints are removed asynchronously: the pod sleeps before SIGTERM so the
    Service, ingress controller and Gateway stop sending it requests first."""
    pod = _pod_spec(_deployment("ingress"))
    (container,) = pod["containers"]
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep >= 5
    assert pod["terminationGracePeriodSeconds"] >= sleep + 20, "time left to finish requests"


def test_tracing_is_configured_off_in_k8s_and_compose_with_a_documented_exporter() -> None:
    """The OTel variables are there for an operator to switch on, and switched off: a
    value the SDK setup refuses would stop every process at start."""
    from services.tracing import tracing_wanted

    config = _configmap_data()
    assert config["OTEL_TRACES_EXPORTER"] == "none"
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http")
    assert not tracing_wanted({"OTEL_TRACES_EXPORTER": config["OTEL_TRACES_EXPORTER"]})
    for name, svc in _app_services().items():
        env = _environment(svc)
        assert env["OTEL_TRACES_EXPORTER"] == "none", name
        assert not tracing_wanted({"OTEL_TRACES_EXPORTER": env["OTEL_TRACES_EXPORTER"]})
    # Switched on, the exporter must get out: the egress policy opens the collector's port.
    collector_port = urlsplit(config["OTEL_EXPORTER_OTLP_ENDPOINT"]).port
    egress = next(d for d in _docs_of("NetworkPolicy") if d["metadata"]["name"] == "pika-payment-egress")
    opened = {p["port"] for rule in egress["spec"]["egress"] for p in rule.get("ports", [])}
    assert collector_port in opened, f"egress to the OTLP collector port {collector_port}"
