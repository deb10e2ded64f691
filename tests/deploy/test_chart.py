"""The Helm chart and the plain manifests: lint, schema-validate every rendering, and check the wiring
between objects (what a schema cannot see: selectors, ports, secrets, policies, GPU placement)."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from services.inference.config import TrainingSettings
from services.inference.training.kubernetes import build_job
from services.inference.training.spec import TrainingJobSpec
from tests.deploy.tools import CHART, K8S_VERSION, REPO, check, run, tool

VALUES_FILES = [None, *sorted(p.name for p in (CHART / "ci").glob("*.yaml"))]
VALUES_IDS = ["default" if v is None else v for v in VALUES_FILES]


# What every real install must give (values.schema.json): a StorageClass that provides ReadWriteMany,
# and the registry the images were pushed to. The CI values files set them (or an existing claim) themselves.
REGISTRY = "registry.example.com/fer"
REQUIRED = ["--set", "modelRepository.storageClass=rwx-class", "--set", f"image.registry={REGISTRY}"]


def helm_args(values: str | None) -> list[str]:
    return ["-f", str(CHART / "ci" / values)] if values else REQUIRED


def template(*args: str) -> list[str]:
    """`helm template` with the required values and the given settings."""
    return [tool("helm"), "template", "fer", str(CHART), "--namespace", "fer", *REQUIRED, *args]


@functools.lru_cache(maxsize=None)
def render_text(values: str | None) -> str:
    return check([tool("helm"), "template", "fer", str(CHART), "--namespace", "fer", *helm_args(values)])


def render(values: str | None) -> list[dict]:
    return [d for d in yaml.safe_load_all(render_text(values)) if d]


def kubernetes_validate(text: str, what: str) -> None:
    proc = run([tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, "--quiet", "--no-warn", "-"], input=text)
    if proc.returncode != 0 or "ERROR" in proc.stdout + proc.stderr:
        pytest.fail(f"{what} fails Kubernetes {K8S_VERSION} schemas:\n{proc.stdout}{proc.stderr}", pytrace=False)


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def component(doc: dict) -> str:
    return doc["metadata"]["labels"]["app.kubernetes.io/component"]


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


def containers(doc: dict, init: bool = False) -> list[dict]:
    spec = doc["spec"]["template"]["spec"]
    return spec.get("containers", []) + (spec.get("initContainers", []) if init else [])


def triton_model_config(docs: list[dict]):
    """The rendered config.pbtxt, parsed as the inference service parses it before a load."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    text = by_kind(docs, "ConfigMap")["fer-fer-platform-triton-model-config"]["data"]["config.pbtxt"]
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def instance_kind(config) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind)


# ---------------------------------------------------------------- lint and schemas


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_helm_lint_strict(values: str | None) -> None:
    check([tool("helm"), "lint", "--strict", str(CHART), *helm_args(values)])


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_rendered_chart_is_valid_kubernetes(values: str | None) -> None:
    kubernetes_validate(render_text(values), f"helm template with {values or 'default values'}")


def test_plain_manifests_are_valid_kubernetes() -> None:
    for path in (REPO / "k8s").glob("*.yaml"):
        if path.name == "values.yaml":
            continue
        kubernetes_validate(path.read_text(), str(path.relative_to(REPO)))


def test_plain_manifests_are_in_step_with_the_chart() -> None:
    proc = run(["bash", str(REPO / "scripts" / "render-k8s.sh"), "--check"], timeout=120)
    assert proc.returncode == 0, f"k8s/ or the chart's files/ are stale: run `make k8s`\n{proc.stderr}"


@pytest.mark.parametrize("setting, message", [
    ("gateway.replicaz=3", "replicaz"),  # a misspelt key
    ("amqp.url=http://broker:5672", "amqp"),
    ("triton.model.platform=tensorflow", "platform"),
    ("image.pullPolicy=Sometimes", "pullPolicy"),
    ("gateway.trustedProxies={ingress-nginx}", "trustedProxies"),
])
def test_schema_rejects_bad_values(setting: str, message: str) -> None:
    proc = run(template("--set", setting))
    assert proc.returncode != 0, f"--set {setting} was accepted"
    assert message in proc.stderr


def test_the_registry_is_required_and_make_images_builds_exactly_the_rendered_names() -> None:
    """Nothing publishes the images for an operator (issue 15, defect 3): an install must name the registry
    it pushed them to, and `make images` with the same REGISTRY and TAG builds every reference the chart
    renders, the training Jobs' image (an env value of the inference service) included."""
    proc = run([tool("helm"), "template", "fer", str(CHART), "--set", "modelRepository.storageClass=rwx-class"])
    assert proc.returncode != 0 and "image.registry" in proc.stderr
    tag = "0a1b2c3d4e5f-dirty"
    listed = subprocess.run(["bash", str(REPO / "scripts" / "images.sh"), "--list"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "REGISTRY": REGISTRY, "TAG": tag}, check=True).stdout
    built = {line.split()[1] for line in listed.splitlines()}
    rendered = set(re.findall(rf"{re.escape(REGISTRY)}/[\w.-]+:{re.escape(tag)}", check(template("--set", f"image.tag={tag}"))))
    assert rendered == built
    assert {ref.split("/")[-1].split(":")[0] for ref in built} == {f"fer-{n}" for n in ("gateway", "auth", "inference", "reports", "training", "triton")}


def test_external_services_without_urls_fail_with_a_clear_message() -> None:
    proc = run(template("--set", "rabbitmq.enabled=false"))
    assert proc.returncode != 0 and "amqp.url (or amqp.existingSecret) is required" in proc.stderr
    proc = run(template("--set", "postgresql.auth.enabled=false"))
    assert proc.returncode != 0 and "auth.database.url" in proc.stderr


def test_an_ingress_needs_the_proxies_whose_forwarded_header_is_believed() -> None:
    proc = run(template("--set", "gateway.ingress.enabled=true"))
    assert proc.returncode != 0 and "gateway.trustedProxies is required" in proc.stderr
    for values, expected in ((None, ""), ("monitoring-ingress.yaml", "10.244.0.0/16")):
        gateway = by_kind(render(values), "Deployment")["fer-fer-platform-gateway"]
        env = {e["name"]: e.get("value") for e in containers(gateway)[0]["env"]}
        assert env["GATEWAY_TRUSTED_PROXIES"] == expected, values


# ---------------------------------------------------------------- wiring


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_every_container_has_probes_resources_and_runs_unprivileged(values: str | None) -> None:
    for doc in workloads(render(values)):
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        for c in containers(doc):
            where = f"{doc['metadata']['name']}/{c['name']}"
            assert "livenessProbe" in c, f"{where} has no liveness probe"
            if component(doc) != "reports-worker":  # a queue consumer serves no traffic to gate
                assert "readinessProbe" in c, f"{where} has no readiness probe"
            assert c["resources"]["requests"].get("memory"), f"{where} requests no memory"
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
            ports = {p["containerPort"] for p in c.get("ports", [])} | {p["name"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                spec = c.get(probe, {})
                port = (spec.get("grpc") or spec.get("httpGet") or {}).get("port")
                if port is not None:
                    assert port in ports, f"{where} {probe} targets port {port} it does not expose"


def test_grpc_services_use_native_grpc_probes() -> None:
    deployments = by_kind(render(None), "Deployment")
    for name, port in (("auth", 50051), ("inference", 50052), ("reports", 50053)):
        (c,) = containers(deployments[f"fer-fer-platform-{name}"])
        assert c["readinessProbe"]["grpc"]["port"] == port
        assert c["livenessProbe"]["grpc"]["port"] == port
    (gw,) = containers(deployments["fer-fer-platform-gateway"])
    # The process, not its upstreams: one upstream down must not take login down with it.
    assert gw["readinessProbe"]["httpGet"]["path"] == gw["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_services_select_pods_and_target_named_ports(values: str | None) -> None:
    docs = render(values)
    pods = [(d["spec"]["template"]["metadata"]["labels"], containers(d)) for d in workloads(docs)]
    for svc in by_kind(docs, "Service").values():
        selector = svc["spec"]["selector"]
        matching = [cs for labels, cs in pods if selector.items() <= labels.items()]
        assert matching, f"Service {svc['metadata']['name']} selects no pod"
        names = {p["name"] for cs in matching for c in cs for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in names, f"{svc['metadata']['name']} targets missing port {port['targetPort']}"


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_secret_references_resolve(values: str | None) -> None:
    docs = render(values)
    rendered = set(by_kind(docs, "Secret"))
    external = {"fer-jwt", "fer-admin", "fer-reports-db"} if values == "external-services.yaml" else set()
    for doc in workloads(docs):
        for c in containers(doc, init=True):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if not ref:
                    continue
                assert ref["name"] in rendered | external, f"{doc['metadata']['name']} needs Secret {ref['name']}"
                if ref["name"] in rendered:
                    secret = by_kind(docs, "Secret")[ref["name"]]
                    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
                    assert ref["key"] in keys, f"Secret {ref['name']} has no key {ref['key']}"


def test_generated_secrets_are_consistent() -> None:
    secrets = by_kind(render(None), "Secret")
    auth_db = secrets["fer-fer-platform-auth-db"]["stringData"]
    assert auth_db["url"].startswith("postgresql+asyncpg://fer_auth:")
    assert f":{auth_db['password']}@fer-fer-platform-auth-postgresql:5432/fer_auth" in auth_db["url"]
    amqp = secrets["fer-fer-platform-amqp"]["stringData"]
    assert amqp["url"] == f"amqp://fer:{amqp['password']}@fer-fer-platform-rabbitmq:5672/%2F"
    import base64
    pem = base64.b64decode(secrets["fer-fer-platform-jwt"]["data"]["private-key.pem"]).decode()
    assert "BEGIN EC PRIVATE KEY" in pem  # ES256 signing key


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_network_policies_expose_only_the_gateway(values: str | None) -> None:
    docs = render(values)
    policies = by_kind(docs, "NetworkPolicy")
    if values == "no-gpu-dev.yaml":
        assert not policies
        return
    deny = policies["fer-fer-platform-default-deny"]
    assert deny["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in deny["spec"]
    for name, pol in policies.items():
        if name.endswith(("-default-deny", "-metrics")):
            continue
        target = pol["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for rule in pol["spec"]["ingress"]:
            peers = rule.get("from")
            if target == "gateway":
                if values == "monitoring-ingress.yaml":
                    assert peers and "namespaceSelector" in peers[0]
                continue
            assert peers, f"{name} lets anyone reach {target}"
            allowed = {p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in peers}
            expected = {
                "auth": {"gateway", "reports", "reports-worker"}, "inference": {"gateway", "reports", "reports-worker"},
                "reports": {"gateway"},
                "triton": {"inference"}, "auth-postgresql": {"auth"}, "inference-postgresql": {"inference"},
                "reports-postgresql": {"reports", "reports-worker"},
                "rabbitmq": {"inference", "reports", "reports-worker", "training"},
            }[target]
            assert allowed == expected, f"{name} admits {allowed}, expected {expected}"
    if values != "external-services.yaml":
        assert {"fer-fer-platform-auth-postgresql", "fer-fer-platform-reports-postgresql",
                "fer-fer-platform-rabbitmq"} <= set(policies)


def test_triton_runs_on_gpu_nodes_with_the_model_repository() -> None:
    docs = render(None)
    triton = by_kind(docs, "Deployment")["fer-fer-platform-triton"]
    pod = triton["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "--model-control-mode=explicit" in c["args"]
    claim = next(v for v in pod["volumes"] if v["name"] == "model-repository")["persistentVolumeClaim"]["claimName"]
    assert claim in by_kind(docs, "PersistentVolumeClaim")
    config = triton_model_config(docs)
    assert (config.name, config.platform, instance_kind(config)) == ("fer_resnet18", "pytorch_libtorch", "KIND_GPU")
    assert config.max_batch_size == 64 and config.dynamic_batching.max_queue_delay_microseconds == 1000
    # Triton's image must be able to seed the repository before the server starts.
    assert pod["initContainers"][0]["name"] == "seed-model-repository"


def test_no_gpu_values_put_triton_on_cpu() -> None:
    docs = render("no-gpu-dev.yaml")
    pod = by_kind(docs, "Deployment")["fer-fer-platform-triton"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert instance_kind(triton_model_config(docs)) == "KIND_CPU"
    assert not by_kind(docs, "HorizontalPodAutoscaler") and not by_kind(docs, "PodDisruptionBudget")
    assert not by_kind(docs, "Role")  # no training: no API rights


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_autoscalers_and_disruption_budgets_point_at_workloads(values: str | None) -> None:
    docs = render(values)
    deployments = by_kind(docs, "Deployment")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    if values != "no-gpu-dev.yaml":
        assert {component(h) for h in hpas.values()} == {"gateway", "inference"}
    for hpa in hpas.values():
        target = deployments[hpa["spec"]["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"], "an autoscaled Deployment must leave replicas to the HPA"
    for pdb in by_kind(docs, "PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= d["spec"]["template"]["metadata"]["labels"].items() for d in workloads(docs))


def test_inference_may_create_jobs_and_its_env_builds_a_valid_job(monkeypatch: pytest.MonkeyPatch) -> None:
    import kubernetes_validate

    docs = render("monitoring-ingress.yaml")
    role = by_kind(docs, "Role")["fer-fer-platform-training-launcher"]
    jobs_rule = next(r for r in role["rules"] if r["resources"] == ["jobs"])
    assert jobs_rule["apiGroups"] == ["batch"] and {"create", "get", "delete"} <= set(jobs_rule["verbs"])
    binding = by_kind(docs, "RoleBinding")["fer-fer-platform-training-launcher"]
    assert binding["subjects"][0]["name"] == "fer-fer-platform-inference"
    deployment = by_kind(docs, "Deployment")["fer-fer-platform-inference"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "fer-fer-platform-inference" and pod["automountServiceAccountToken"] is True

    env = {e["name"]: e.get("value", "") for e in pod["containers"][0]["env"]}
    prefix = TrainingSettings.model_config["env_prefix"]
    known = {prefix + f.upper() for f in TrainingSettings.model_fields}
    unknown = {k for k in env if k.startswith(prefix)} - known
    assert not unknown, f"the chart sets training settings the launcher does not read: {unknown}"
    for key, value in env.items():
        if key.startswith(prefix):
            monkeypatch.setenv(key, value)
    cfg = TrainingSettings()
    assert cfg.launcher == "kubernetes"
    assert cfg.namespace == "fer" and cfg.image.endswith("/fer-training:0.1.0")
    assert cfg.service_account in by_kind(docs, "ServiceAccount")
    assert cfg.model_repository_pvc in by_kind(docs, "PersistentVolumeClaim")
    assert cfg.dataset_pvc in by_kind(docs, "PersistentVolumeClaim")
    job = build_job(TrainingJobSpec(job_id="from-chart", dataset="fer2013/fer2013.csv.gz", recipe="r", gpus=2), cfg)
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    assert job["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    # Pod Security "restricted" admits it.
    assert job["spec"]["template"]["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # The rabbitmq NetworkPolicy admits training pods by these labels.
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "fer" and labels["app.kubernetes.io/component"] == "training"


def test_services_bind_all_interfaces_and_find_each_other() -> None:
    docs = render(None)
    services = by_kind(docs, "Service")
    for d in by_kind(docs, "Deployment").values():
        if component(d) in ("triton",):
            continue
        env = {e["name"]: e.get("value") for e in containers(d)[0]["env"]}
        prefix = component(d).split("-")[0].upper()
        assert env[f"{prefix}_HOST"] == "0.0.0.0", f"{d['metadata']['name']} would listen on loopback only"
    deployments = by_kind(docs, "Deployment")
    # The gateway calls every service; the reports service calls inference and auth (AnalyzeImage).
    for deployment, keys in (("gateway", ("GATEWAY_AUTH_ADDR", "GATEWAY_INFERENCE_ADDR", "GATEWAY_REPORTS_ADDR")),
                             ("reports", ("REPORTS_INFERENCE_ADDR", "REPORTS_AUTH_ADDR"))):
        env = {e["name"]: e.get("value") for e in containers(deployments[f"fer-fer-platform-{deployment}"])[0]["env"]}
        for key in keys:
            host, port = env[key].split(":")
            assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}, key


def test_monitoring_objects_match_services_and_rules_pass_promtool(tmp_path: Path) -> None:
    docs = render("monitoring-ingress.yaml")
    services = by_kind(docs, "Service")
    monitors = by_kind(docs, "ServiceMonitor")
    assert {component(m) for m in monitors.values()} == {"gateway", "auth", "inference", "reports", "triton"}
    for mon in monitors.values():
        assert mon["spec"]["jobLabel"] == "app.kubernetes.io/component"
        selected = [s for s in services.values() if mon["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
        assert len(selected) == 1, mon["metadata"]["name"]
        assert mon["spec"]["endpoints"][0]["port"] in {p["name"] for p in selected[0]["spec"]["ports"]}
    assert "fer-fer-platform-reports-worker" in by_kind(docs, "PodMonitor")

    (rule,) = by_kind(docs, "PrometheusRule").values()
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    check([tool("promtool"), "check", "rules", str(path)])
    source = yaml.safe_load((REPO / "monitoring" / "rules" / "fer-alerts.yml").read_text())
    assert rule["spec"]["groups"] == source["groups"]

    dashboard = by_kind(docs, "ConfigMap")["fer-fer-platform-dashboard"]
    assert json.loads(dashboard["data"]["fer-platform.json"])["uid"] == "fer-platform"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_plain_manifests_carry_no_credentials() -> None:
    docs = [d for d in yaml.safe_load_all((REPO / "k8s" / "fer-platform.yaml").read_text()) if d]
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert all(d["metadata"].get("namespace", "fer") == "fer" for d in docs)


def test_triton_config_follows_the_values_and_serves_the_shipped_model() -> None:
    from ferkit import modelrepo
    from ferkit.vision import ModelMetadata

    docs = render(None)
    config = triton_model_config(docs)
    meta = ModelMetadata.load(modelrepo.version_dir(REPO / "models", config.name) / modelrepo.METADATA_FILENAME)
    assert [i.name for i in config.input] == [meta.input_name] and [o.name for o in config.output] == [meta.output_name]
    assert list(config.input[0].dims) == [meta.input.channels, *meta.input.size]
    assert list(config.output[0].dims) == [len(meta.classes)]
    assert config.version_policy.latest.num_versions == modelrepo.VERSIONS_SERVED  # the registry serves two

    settings = ["triton.gpu.enabled=false", "triton.model.instanceCount=3",
                "triton.model.dynamicBatching.maxQueueDelayMicroseconds=250"]
    tuned_docs = [d for d in yaml.safe_load_all(check(template("--set", ",".join(settings)))) if d]
    tuned = triton_model_config(tuned_docs)
    assert (instance_kind(tuned), tuned.instance_group[0].count) == ("KIND_CPU", 3)
    assert tuned.dynamic_batching.max_queue_delay_microseconds == 250
    checksum = "checksum/model-config"
    triton_pod = [by_kind(d, "Deployment")["fer-fer-platform-triton"]["spec"]["template"]["metadata"] for d in (docs, tuned_docs)]
    assert triton_pod[0]["annotations"][checksum] != triton_pod[1]["annotations"][checksum], "a new config must restart Triton"


@pytest.mark.parametrize("settings", [
    "inference.enabled=false", "reports.enabled=false", "triton.enabled=false", "auth.enabled=false",
    "training.enabled=false", "networkPolicy.enabled=false", "auth.migrate=false,reports.migrate=false",
])
def test_each_component_can_be_switched_off(settings: str) -> None:
    text = check(template("--set", settings))
    kubernetes_validate(text, f"helm template --set {settings}")
    docs = [d for d in yaml.safe_load_all(text) if d]
    if settings.startswith(("inference", "reports")):
        off = settings.split(".")[0]
        assert not [d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component") == off]
        gateway = by_kind(docs, "Deployment")["fer-fer-platform-gateway"]
        env = {e["name"]: e.get("value") for e in containers(gateway)[0]["env"]}
        assert env[f"GATEWAY_{off.upper()}_ADDR"] == ""  # the gateway answers 503 for its routes
    if settings == "training.enabled=false":
        # No training anywhere: a job is refused, never run inside the inference pod (no torch there).
        inference = by_kind(docs, "Deployment")["fer-fer-platform-inference"]
        env = {e["name"]: e.get("value") for e in containers(inference)[0]["env"]}
        assert env["INFERENCE_TRAINING_LAUNCHER"] == "none"


# ---------------------------------------------------------------- a first install on a real cluster


def test_a_shared_model_repository_needs_a_class_that_can_share() -> None:
    # The cluster's default class is usually block storage: a ReadWriteMany claim on it stays Pending.
    proc = run([tool("helm"), "template", "fer", str(CHART)])
    assert proc.returncode != 0 and "modelRepository.storageClass" in proc.stderr
    for enough in ("modelRepository.existingClaim=fer-models", "modelRepository.accessModes={ReadWriteOnce}"):
        check([tool("helm"), "template", "fer", str(CHART), "--set", enough, "--set", f"image.registry={REGISTRY}"])
    for values, expected in ((None, "rwx-class"), ("monitoring-ingress.yaml", "nfs-client")):
        claims = by_kind(render(values), "PersistentVolumeClaim")
        assert {c["spec"].get("storageClassName") for c in claims.values()} == {expected}, values
        assert {component(c) for c in claims.values()} == {"model-repository", "datasets"}
    assert not by_kind(render("external-services.yaml"), "PersistentVolumeClaim")  # both claims brought


def test_training_pods_pull_with_the_release_pull_secrets() -> None:
    # Job pods run as the training ServiceAccount and inherit its imagePullSecrets.
    account = by_kind(render("external-services.yaml"), "ServiceAccount")["fer-fer-platform-training"]
    assert account["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert "imagePullSecrets" not in by_kind(render(None), "ServiceAccount")["fer-fer-platform-training"]


def _size_bytes(size: str) -> int:
    """An nginx size (12m, 512k, 1g) in bytes."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


def test_ingress_admits_the_upload_limit_and_refuses_metrics() -> None:
    from ferkit.limits import BATCH_MAX_BYTES, UPLOAD_MAX_BYTES, VIDEO_MAX_BYTES

    ingresses = by_kind(render("monitoring-ingress.yaml"), "Ingress")
    main, deny = ingresses["fer-fer-platform-gateway"], ingresses["fer-fer-platform-gateway-metrics-deny"]
    # ingress-nginx's default 1m would answer 413 to uploads the gateway accepts (the largest is a video);
    # the envelope needs room.
    annotations = main["metadata"]["annotations"]
    body = _size_bytes(annotations["nginx.ingress.kubernetes.io/proxy-body-size"])
    largest = max(UPLOAD_MAX_BYTES, BATCH_MAX_BYTES, VIDEO_MAX_BYTES)
    assert largest + 64 * 1024 <= body <= int(1.2 * largest)
    # A live camera WebSocket outlives ingress-nginx's 60 s idle timeout.
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 600
    assert main["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert [p["path"] for p in main["spec"]["rules"][0]["http"]["paths"]] == ["/"]
    # /metrics answers 403 through the ingress (the longer prefix wins), Prometheus scrapes the pods.
    assert deny["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/denylist-source-range": "0.0.0.0/0,::/0"}
    (rule,) = deny["spec"]["rules"]
    assert rule["host"] == main["spec"]["rules"][0]["host"] and deny["spec"]["ingressClassName"] == "nginx"
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [("/metrics", "Prefix")]

    own = check(template("--set", "gateway.ingress.enabled=true", "--set", "gateway.trustedProxies={10.0.0.0/8}",
                         "--set-string", r"gateway.ingress.annotations.nginx\.ingress\.kubernetes\.io/proxy-body-size=50m"))
    ingress = by_kind([d for d in yaml.safe_load_all(own) if d], "Ingress")["fer-fer-platform-gateway"]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "50m"


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_credentials_outlive_an_uninstall_like_the_volumes(values: str | None) -> None:
    # The databases' and broker's volumes are kept: a reinstall must find the passwords they hold.
    docs = render(values)
    for kind in ("Secret", "PersistentVolumeClaim"):
        for name, doc in by_kind(docs, kind).items():
            assert doc["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep", name
    if values == "monitoring-ingress.yaml":
        assert {"fer-fer-platform-admin", "fer-fer-platform-auth-db", "fer-fer-platform-amqp"} <= set(by_kind(docs, "Secret"))


def test_inference_loads_versions_with_the_config_the_chart_renders(tmp_path: Path) -> None:
    """A training export rewrites the repository's config.pbtxt (GPU, one instance); loads must keep
    sending the release's own config, the one Triton starts with (the ConfigMap), or the chart's Triton
    settings would silently revert after the first training run."""
    from ferkit import modelrepo
    from services.inference.registry import ModelRegistry

    # A CPU Triton with three instances: not what an export writes.
    docs = [d for d in yaml.safe_load_all(check(template("--set", "triton.gpu.enabled=false,triton.model.instanceCount=3"))) if d]
    served = by_kind(docs, "ConfigMap")["fer-fer-platform-triton-model-config"]["data"]["config.pbtxt"]
    assert instance_kind(triton_model_config(docs)) == "KIND_CPU"
    deployment = by_kind(docs, "Deployment")["fer-fer-platform-inference"]
    (server,) = containers(deployment)
    env = {e["name"]: e.get("value") for e in server["env"]}
    mount = next(m for m in server["volumeMounts"] if m["name"] == "triton-model-config")
    assert env["INFERENCE_TRITON_CONFIG_DIR"] == mount["mountPath"] and mount["readOnly"]
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "triton-model-config")
    assert volume["configMap"]["name"] == "fer-fer-platform-triton-model-config"
    (item,) = volume["configMap"]["items"]
    assert item == {"key": "config.pbtxt", "path": f"{triton_model_config(docs).name}.pbtxt"}

    # What the pod sees: the ConfigMap's file, and a repository whose config.pbtxt an export just wrote.
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / item["path"]).write_text(served)
    repo = tmp_path / "models"
    name = triton_model_config(docs).name
    modelrepo.write_model_configs(repo / name, name)
    assert (repo / name / modelrepo.CONFIG_FILENAME).read_text() != served
    registry = ModelRegistry(repo, triton=None, config_name=env["INFERENCE_TRITON_CONFIG_NAME"], config_dir=env["INFERENCE_TRITON_CONFIG_DIR"].replace(mount["mountPath"], str(config_dir)))
    assert registry.config_text(name) == served

    # An external Triton (triton.enabled=false) has no ConfigMap: the repository's config is served.
    external = [d for d in yaml.safe_load_all(check(template("--set", "triton.enabled=false"))) if d]
    (server,) = containers(by_kind(external, "Deployment")["fer-fer-platform-inference"])
    assert "INFERENCE_TRITON_CONFIG_DIR" not in {e["name"] for e in server["env"]}


def test_repository_ownership_is_fixed_only_when_asked() -> None:
    """NFS ignores fsGroup: an opt-in root init container gives the repository to the uid every writer
    runs as; by default nothing runs as root (Pod Security "restricted")."""
    def triton_inits(docs):
        spec = by_kind(docs, "Deployment")["fer-fer-platform-triton"]["spec"]["template"]["spec"]
        return {c["name"]: c for c in spec["initContainers"]}

    assert "fix-model-repository-ownership" not in triton_inits(render(None))
    fixed = [d for d in yaml.safe_load_all(check(template("--set", "modelRepository.fixOwnership=true"))) if d]
    inits = triton_inits(fixed)
    assert list(inits)[0] == "fix-model-repository-ownership", "before anything writes the repository"
    fix = inits["fix-model-repository-ownership"]
    assert "chown -R 10001:10001 /models" in fix["command"][-1]
    assert fix["securityContext"]["runAsUser"] == 0 and fix["securityContext"]["capabilities"]["add"] == ["CHOWN", "FOWNER", "DAC_OVERRIDE"]
    uids = {c["securityContext"].get("runAsUser") for name, c in inits.items() if name != "fix-model-repository-ownership"}
    assert 0 not in uids


def test_grpc_services_are_headless_so_callers_balance_over_every_pod() -> None:
    """A ClusterIP hands each long-lived gRPC channel one pod: more replicas (the HPA's) would take no
    calls. Headless Services resolve to every ready pod; the callers' channels balance (round_robin)."""
    services = by_kind(render(None), "Service")
    for component in ("auth", "inference", "reports", "triton"):
        assert services[f"fer-fer-platform-{component}"]["spec"]["clusterIP"] == "None", component
    assert services["fer-fer-platform-gateway"]["spec"].get("clusterIP") != "None"  # HTTP, behind the ingress
