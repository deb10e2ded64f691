"""Prometheus configuration, alert rules and their unit tests, and the Grafana dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.deploy.tools import REPO, check, tool

MON = REPO / "monitoring"
RULES = MON / "rules" / "fer-alerts.yml"
DASHBOARD = MON / "grafana" / "fer-platform.json"
COMPONENT_JOBS = {"gateway", "auth", "inference", "reports", "reports-worker", "triton"}
# The metric names every service agreed to export, plus Triton's and Prometheus' own.
KNOWN_METRICS = {
    "up",
    "http_requests_total", "http_request_duration_seconds_bucket",
    "grpc_server_handled_total", "grpc_server_handling_seconds_bucket",
    "reports_jobs_total", "reports_render_seconds_bucket", "reports_queue_depth", "reports_dead_lettered_total",
    "training_jobs_total",
    "reports_batches_total", "reports_batch_photos_total", "reports_videos_total", "reports_video_frames_total",
    "live_sessions_open", "live_frames_total", "live_frame_seconds_bucket",
    "training_job_duration_seconds_bucket", "inference_model_promoted",
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count", "nv_inference_exec_count",
    "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us", "nv_inference_pending_request_count",
}
PROMQL_WORDS = {
    "sum", "by", "rate", "increase", "histogram_quantile", "max", "count", "or", "vector", "and", "on", "le",
    "job", "status", "route", "method", "grpc_code", "grpc_method", "model", "version", "outcome", "e6",
}


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r'"[^"]*"', "", expr)
    words = set(re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", expr))
    return {w for w in words if w not in PROMQL_WORDS and not re.fullmatch(r"e\d+", w)}


def test_prometheus_config_is_valid() -> None:
    out = check([tool("promtool"), "check", "config", str(MON / "prometheus.yml")])
    assert "SUCCESS" in out


def test_prometheus_scrapes_every_component_under_the_job_names_the_rules_use() -> None:
    config = yaml.safe_load((MON / "prometheus.yml").read_text())
    jobs = {c["job_name"] for c in config["scrape_configs"]}
    assert COMPONENT_JOBS <= jobs
    down = next(r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
                if r.get("alert") == "FerServiceDown")
    watched = set(re.search(r'job=~"([^"]+)"', down["expr"]).group(1).split("|"))
    assert watched == COMPONENT_JOBS, f"FerServiceDown watches {watched}"


def test_alert_rules_are_valid() -> None:
    out = check([tool("promtool"), "check", "rules", str(RULES)])
    assert "SUCCESS" in out


def test_alert_rule_unit_tests_pass() -> None:
    out = check([tool("promtool"), "test", "rules", str(MON / "tests" / "fer-alerts.test.yml")], cwd=MON / "tests")
    assert "SUCCESS" in out


def test_every_alert_has_a_firing_test_case() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    required = {"FerServiceDown", "FerGatewayHighErrorRate", "FerGrpcHighErrorRate", "FerGatewayHighLatencyP99",
                "FerGrpcHighLatencyP99", "FerTritonHighQueueTime", "FerReportsDeadLettered", "FerTrainingJobFailed",
                "FerPromotedVersionFailing"}
    assert required <= alerts
    tests = yaml.safe_load((MON / "tests" / "fer-alerts.test.yml").read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert alerts <= fired, f"alerts without a test that makes them fire: {sorted(alerts - fired)}"


def test_rules_use_only_agreed_metric_names() -> None:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            unknown = metric_names(rule["expr"]) - KNOWN_METRICS
            assert not unknown, f"{rule.get('alert')}: unknown metric(s) {unknown}"


def test_dashboard_is_well_formed_and_every_query_parses(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("requests", "latency", "batch size", "queue", "report", "training", "videos", "live camera"):
        assert topic in titles, f"the dashboard has no {topic} panel"
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert exprs
    used: set[str] = set()
    for expr in exprs:
        used |= metric_names(expr)
    assert used <= KNOWN_METRICS, f"unknown metric(s) in the dashboard: {used - KNOWN_METRICS}"
    # promtool parses PromQL inside recording rules; Grafana's interval variable becomes a literal.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": e.replace("$__rate_interval", "5m")} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump(rules))
    check([tool("promtool"), "check", "rules", str(path)])
