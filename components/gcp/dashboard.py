"""The stack's Cloud Monitoring dashboard (fleet/dashboard.py's panels) and alerting policies (fleet/alerts.py),
notifying an email channel of the stack's (alerts.email) and alerts.topic (an existing notification channel).

Every series is PromQL, which Cloud Monitoring runs over the Ops Agent's Prometheus metrics (monitoring.py: the
stack's job) and over Google's own metrics by their PromQL names (compute_googleapis_com:instance_group_size,
loadbalancing_googleapis_com:https_request_count). A VM serves when its vLLM reports: the serving VMs are the count
of its series; the group's size counts every VM of the group."""

from __future__ import annotations

import json

import pulumi
from pulumi_gcp import monitoring

from components.base import FleetComponent
from fleet import alerts, dashboard, metrics, usage
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

WINDOW = "5m"
COLUMNS, WIDTH, HEIGHT = 2, 24, 16  # of the mosaic layout's 48 columns


def _queries(spec: FleetSpec, group: str, url_map: str, price: float) -> dict[str, str]:
    job = f'job="{metrics.job_name(spec)}"'
    size = f'max(compute_googleapis_com:instance_group_size{{instance_group_name="{group}"}})'
    serving = f'count(vllm:num_requests_running{{{job}}})'
    requests = f'loadbalancing_googleapis_com:https_request_count{{url_map_name="{url_map}"'
    return {"size": size, "serving": serving, "job": job,
            "replicas_desired": size, "replicas_in_service": serving,
            "replicas_starting": f"{size} - ({serving} or on() vector(0))",
            "lb_4xx": f'sum(rate({requests},response_code_class="400"}}[{WINDOW}])) * 60',
            "lb_5xx": f'sum(rate({requests},response_code_class="500"}}[{WINDOW}])) * 60',
            "healthy_vms": serving, "unhealthy_vms": f"{size} - ({serving} or on() vector(0))",
            "cost_per_hour": f"{size} * {price:.4f}"}


def promql(series: dashboard.Series, queries: dict[str, str]) -> str:
    metric = series.metric
    counter = series.key_counter
    if counter is not None:  # one line a key (legend_template names it)
        return f"sum by ({usage.MONITORING['gcp']['key']}) (rate({counter.name}{{{queries['job']}}}[{WINDOW}])) * 60"
    if metric is None:
        return queries[series.source]
    selector = f"{{{queries['job']}}}"
    if metric.type == "histogram":
        quantile = int(series.stat[1:]) / 100
        return (f"histogram_quantile({quantile}, sum by (le) (rate({metric.family}_bucket{selector}[{WINDOW}])))")
    if metric.type == "counter":
        return f"sum(rate({metric.samples[0]}{selector}[{WINDOW}]))"
    return f"{series.stat}({metric.family}{selector})"


def legend_template(series: dashboard.Series) -> str:
    if series.key_counter is not None:
        return f"${{metric.labels.{usage.MONITORING['gcp']['key']}}} {series.label}"
    return series.label


def dashboard_json(spec: FleetSpec, queries: dict[str, str]) -> str:
    tiles = []
    for number, panel in enumerate(dashboard.PANELS):
        tiles.append({"xPos": (number % COLUMNS) * WIDTH, "yPos": (number // COLUMNS) * HEIGHT, "width": WIDTH,
                      "height": HEIGHT, "widget": {"title": f"{panel.title} ({panel.unit})", "xyChart": {
                          "dataSets": [{"plotType": "LINE", "legendTemplate": legend_template(series),
                                        "timeSeriesQuery": {"prometheusQuery": promql(series, queries)}}
                                       for series in panel.series]}}})
    return json.dumps({"displayName": f"vllm-fleet {spec.stack}", "mosaicLayout": {"columns": 48, "tiles": tiles}})


def create(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, project: str, group, url_map_name) -> None:
    price = sizing.instance.usd_per_hour
    queries = pulumi.Output.all(group.name, url_map_name).apply(lambda names: _queries(spec, names[0], names[1], price))
    board = monitoring.Dashboard(fleet.child("dashboard"), project=project,
                                 dashboard_json=queries.apply(lambda q: dashboard_json(spec, q)), opts=fleet.opts)
    fleet.dashboard_url = board.id.apply(
        lambda id_: f"https://console.cloud.google.com/monitoring/dashboards/custom/{id_.rsplit('/', 1)[-1]}"
                    f"?project={project}")
    _alarms(fleet, spec, sizing, project, queries)


def _alarms(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, project: str, queries) -> None:
    config = spec.alerts
    channels: list[pulumi.Input[str]] = [config.topic] if config.topic else []
    if config.email:
        channels.append(monitoring.NotificationChannel(
            fleet.child("alerts-email"), project=project, type="email", display_name=f"vllm-fleet {spec.stack}",
            labels={"email_address": config.email}, opts=fleet.opts).id)
    ttft = dashboard.Series("ttft", "p95", "p95")
    # (PromQL, how long it must hold)
    conditions = {
        # Only while the group has VMs: office hours may scale it to none.
        "no_healthy_vm": (lambda q: f"({q['size']} > 0) unless on() ({q['serving']} > 0)",
                          f"{alerts.NO_HEALTHY_VM_MINUTES * 60}s"),
        "errors_5xx": (lambda q: f"{q['lb_5xx']} > {config.errors_per_minute}", "120s"),
        "ttft_p95": (lambda q: f"{promql(ttft, q)} > {config.ttft_p95_seconds:g}", "300s"),
        "never_healthy": (lambda q: f"{q['unhealthy_vms']} > 0", f"{alerts.never_healthy_minutes(sizing) * 60}s"),
    }
    for alarm in alerts.ALARMS:
        if alarm.key == "never_healthy" and fleet.standby_pool:
            # The group's size counts its stopped standby VMs, which never report.
            continue
        query, duration = conditions[alarm.key]
        monitoring.AlertPolicy(
            fleet.child(f"alarm-{alarm.key.replace('_', '-')}"), project=project, combiner="OR",
            display_name=f"vllm-fleet {spec.stack}: {alarm.title}", notification_channels=channels,
            conditions=[monitoring.AlertPolicyConditionArgs(
                display_name=alarm.title,
                condition_prometheus_query_language=monitoring.AlertPolicyConditionConditionPrometheusQueryLanguageArgs(
                    query=queries.apply(query), duration=duration, evaluation_interval="60s"))],
            opts=fleet.opts)
