"""The Grafana dashboard and the Prometheus alerts use only metrics that exist, and cover what operators watch.

Metric names come from the services' registry (shared/metrics.py) or RabbitMQ's Prometheus plugin
(`rabbitmq_*`); a typo in an expression would otherwise show as an empty panel or an alert that never fires.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

import shared.metrics
from tests.deploy.manifests import DEPLOY, REPO

DASHBOARD = json.loads((DEPLOY / "observability" / "grafana-dashboard.json").read_text())
RULES = yaml.safe_load((DEPLOY / "observability" / "prometheus-rules.yaml").read_text())
ALERTS = {rule["alert"]: rule for group in RULES["groups"] for rule in group["rules"] if "alert" in rule}

# The names fixed by the deployment contract: the services export them, dashboards and alerts rely on them.
CONTRACT_METRICS = {
    "learn_http_requests_total", "learn_http_request_duration_seconds", "learn_outbox_backlog",
    "learn_outbox_oldest_age_seconds", "learn_consumer_messages_total", "learn_certificates_regeneration_pending",
    "learn_certificates_regenerated_total",
}

PROMQL_WORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right",
    "inf", "nan",
}


def exported_series() -> set[str]:
    """Every series name shared.metrics can expose (counters get _total, histograms _bucket/_sum/_count)."""
    names: set[str] = set()
    for metric in vars(shared.metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        name = metric._name
        if isinstance(metric, Counter):
            names |= {f"{name}_total", f"{name}_created"}
        elif isinstance(metric, Histogram):
            names |= {name, f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
        elif isinstance(metric, Gauge):
            names.add(name)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, labels and durations stripped)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals: label values, regexes
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors, $__rate_interval
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, is_call = match.group(1), match.group(2)
        if not is_call and word.lower() not in PROMQL_WORDS:
            names.add(word)
    return names


def dashboard_expressions() -> list[str]:
    return [t["expr"] for p in DASHBOARD["panels"] for t in p.get("targets", [])]


def known(name: str) -> bool:
    return name in exported_series() or name.startswith("rabbitmq_")


def test_the_metric_name_extraction_reads_promql_as_prometheus_does() -> None:
    expr = ('histogram_quantile(0.99, sum by (service, le) (rate(learn_http_request_duration_seconds_bucket'
            '{status=~"5.."}[$__rate_interval]))) / on (service) group_left max(up) and absent(rabbitmq_x) > 1')
    assert metric_names(expr) == {"learn_http_request_duration_seconds_bucket", "up", "rabbitmq_x"}


def test_the_services_export_every_metric_of_the_contract() -> None:
    assert exported_series() >= CONTRACT_METRICS


def test_the_dashboard_is_a_grafana_dashboard_with_a_datasource_and_service_variable() -> None:
    assert DASHBOARD["uid"] and DASHBOARD["title"] and DASHBOARD["schemaVersion"] >= 36
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["service"]["includeAll"] is True


def test_every_panel_queries_prometheus_through_the_datasource_variable() -> None:
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_panels_fit_the_grid_without_overlapping() -> None:
    occupied: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not cells & occupied, panel["title"]
        occupied |= cells


def test_the_dashboard_uses_only_metrics_that_exist() -> None:
    used = set().union(*(metric_names(expr) for expr in dashboard_expressions()))
    assert {name for name in used if not known(name)} == set()


@pytest.mark.parametrize("metric", sorted(CONTRACT_METRICS))
def test_the_dashboard_charts_every_contract_metric(metric: str) -> None:
    used = set().union(*(metric_names(expr) for expr in dashboard_expressions()))
    assert {metric, f"{metric}_bucket"} & used


@pytest.mark.parametrize("title", ["Dead-letter queue depth", "Consumers per work queue"])
def test_the_dashboard_shows_the_broker_side_of_the_queues(title: str) -> None:
    (panel,) = [p for p in DASHBOARD["panels"] if p["title"] == title]
    assert all(name.startswith("rabbitmq_queue_") for t in panel["targets"] for name in metric_names(t["expr"]))


def test_every_alert_has_an_expression_a_duration_a_severity_and_a_summary() -> None:
    assert ALERTS
    for name, rule in ALERTS.items():
        assert rule["expr"].strip(), name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"].strip(), name


def test_alerts_use_only_metrics_that_exist() -> None:
    used = set().union(*(metric_names(rule["expr"]) for rule in ALERTS.values()))
    assert {name for name in used if not known(name)} == set()


def alert_selecting(metric: str) -> dict[str, Any]:
    matches = [rule for rule in ALERTS.values() if metric in metric_names(rule["expr"])]
    assert matches, f"no alert on {metric}"
    return matches[0]


def test_an_outbox_event_older_than_a_minute_alerts() -> None:
    assert re.search(r"\)\s*>\s*60\b", alert_selecting("learn_outbox_oldest_age_seconds")["expr"])


def test_any_dead_lettered_message_alerts() -> None:
    rule = alert_selecting("rabbitmq_queue_messages")
    assert "[.]dlq" in rule["expr"] and re.search(r"\)\s*>\s*0\s*$", rule["expr"])


def test_a_webhook_message_undelivered_for_an_hour_alerts_per_endpoint() -> None:
    rule = alert_selecting("learn_webhook_backlog_oldest_age_seconds")
    assert "by (endpoint)" in rule["expr"] and re.search(r"\)\s*>\s*3600\s*$", rule["expr"])
    assert "learn_webhook_deliveries_total" in exported_series() and "learn_webhook_backlog" in exported_series()


def test_a_work_queue_without_consumers_alerts() -> None:
    rule = alert_selecting("rabbitmq_queue_consumers")
    assert re.search(r"\)\s*==\s*0\s*$", rule["expr"])


def test_more_than_one_percent_of_server_errors_alerts() -> None:
    rule = ALERTS["LearnHttp5xxRateHigh"]
    assert 'status=~"5.."' in rule["expr"] and re.search(r">\s*0\.01\s*$", rule["expr"])


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_runbook_link_points_at_a_section_of_the_operations_guide() -> None:
    guide = (REPO / "docs" / "operations.md").read_text()
    anchors = {github_anchor(line.lstrip("#")) for line in guide.splitlines() if line.startswith("#")}
    for name, rule in ALERTS.items():
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert path == "docs/operations.md" and anchor in anchors, name
