"""Static checks of the Dockerfiles and docker-compose.yml (no Docker engine runs here): what would
break a build or a start — a COPY of a missing path, a root user, torch in a light image, env
variables the services do not read, references to services that do not exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.tools import REPO

SERVICES = {"gateway": "GATEWAY", "auth": "AUTH", "inference": "INFERENCE", "reports": "REPORTS"}
DOCKERFILES = [f"services/{s}/Dockerfile" for s in SERVICES] + ["training/Dockerfile", "deploy/triton/Dockerfile"]


def instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_copies_existing_paths_and_runs_unprivileged(dockerfile: str) -> None:
    steps = instructions(REPO / dockerfile)
    stages = [rest for word, rest in steps if word == "FROM"]
    assert stages, "no FROM"
    if not dockerfile.startswith("deploy/triton"):
        assert len(stages) >= 2, "expected a multi-stage build (dependencies apart from the runtime)"
    last_user = [rest for word, rest in steps if word == "USER"][-1]
    assert last_user.split(":")[0] not in ("0", "root"), "the image must not run as root"
    for word, rest in steps:
        if word != "COPY" or rest.startswith("--from"):
            continue
        sources = rest.split()[:-1]
        for src in sources:
            # models/ holds the trained versions; it may be empty before the first export.
            if src.startswith("models"):
                continue
            assert (REPO / src).exists(), f"{dockerfile}: COPY source {src} does not exist"


@pytest.mark.parametrize("service", SERVICES)
def test_service_images_generate_stubs_and_start_the_server(service: str) -> None:
    steps = instructions(REPO / "services" / service / "Dockerfile")
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    assert "grpc_tools.protoc" in runs and "protos/fer/v1/*.proto" in runs
    assert f"requirements.py {service}" in runs
    cmd = [rest for word, rest in steps if word == "CMD"][-1]
    module = re.search(r'"-m", "([\w.]+)"', cmd).group(1)
    assert module == f"services.{service}.server"
    assert (REPO / (module.replace(".", "/") + ".py")).is_file(), f"{module} does not exist"
    env = " ".join(rest for word, rest in steps if word == "ENV")
    assert f"{SERVICES[service]}_HOST=0.0.0.0" in env and "PYTHONPATH=/app:/app/gen" in env


@pytest.mark.parametrize("extra, heavy", [("gateway", False), ("auth", False), ("reports", False),
                                          ("inference", False), ("training", True)])
def test_image_requirements_carry_torch_only_for_training(extra: str, heavy: bool) -> None:
    out = subprocess.run([sys.executable, str(REPO / "deploy" / "docker" / "requirements.py"), extra],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert "grpcio>=1.66,<2" in out  # the core comes with every extra
    assert any(r.startswith("torch") for r in out) is heavy
    assert not any(r.startswith("fer-platform") for r in out), "self-references must be expanded"


def test_requirements_resolve_nested_extras() -> None:
    out = subprocess.run([sys.executable, str(REPO / "deploy" / "docker" / "requirements.py"), "auth"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "asyncpg" in out and "alembic" in out  # from the db extra auth includes
    bad = subprocess.run([sys.executable, str(REPO / "deploy" / "docker" / "requirements.py"), "nope"],
                         cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown extra" in bad.stderr


def test_compose_stack_is_consistent() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "rabbitmq", "triton", "gateway", "auth", "inference", "reports", "reports-worker",
            "prometheus"} <= set(services)
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            assert (REPO / build["dockerfile"]).is_file(), f"{name}: missing {build['dockerfile']}"
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for key in svc.get("environment", {}) or {}:
            prefix = name.split("-")[0].upper()
            assert key == "AMQP_URL" or key.startswith(prefix + "_"), f"{name}: {key} is not one of its settings"
        for volume in svc.get("volumes", []):
            src = volume.split(":")[0]
            if src.startswith("./"):
                assert (REPO / src).exists(), f"{name}: mounts missing {src}"
            else:
                assert src in compose["volumes"], f"{name}: undeclared volume {src}"
    images = {svc.get("image") for svc in services.values() if svc.get("build")}
    for name, svc in services.items():
        if not svc.get("build") and str(svc.get("image", "")).endswith(":local"):
            assert svc["image"] in images, f"{name} uses {svc['image']}, which no service builds"
    gpu = services["triton"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    gateway_env = services["gateway"]["environment"]
    for key, svc in (("GATEWAY_AUTH_ADDR", "auth"), ("GATEWAY_INFERENCE_ADDR", "inference"), ("GATEWAY_REPORTS_ADDR", "reports")):
        assert gateway_env[key].split(":")[0] == svc


def test_prometheus_in_compose_scrapes_compose_services() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    config = yaml.safe_load((REPO / "monitoring" / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host = target.split(":")[0]
            assert host == "localhost" or host in compose["services"], f"{job['job_name']} scrapes unknown host {host}"
