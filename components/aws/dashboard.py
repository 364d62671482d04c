"""The stack's CloudWatch dashboard (fleet/dashboard.py's panels) and alarms (fleet/alerts.py), notifying an SNS topic
of the stack's (alerts.email subscribes to it) and alerts.topic.

vLLM's metrics come from the CloudWatch agent (monitoring.py), the group's sizes from the Auto Scaling group's
metrics (enabled on the group), answers and healthy hosts from the load balancer. The agent drops Prometheus
histograms: the TTFT and TPOT panels say so, and there is no TTFT alarm on AWS (docs/autoscaling.md)."""

from __future__ import annotations

import json
import re

import pulumi
from pulumi_aws import cloudwatch, sns

from components.base import FleetComponent
from fleet import alerts, dashboard, usage
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

from . import monitoring

GROUP_METRICS = {"replicas_desired": "GroupDesiredCapacity", "replicas_in_service": "GroupInServiceInstances",
                 "replicas_starting": "GroupPendingInstances"}
STATISTICS = {"avg": "Average", "max": "Maximum", "sum": "Sum"}
PERIOD = 60
WIDTH, HEIGHT, COLUMNS = 12, 6, 2
NO_HISTOGRAMS = ("The CloudWatch agent drops Prometheus histograms, so vLLM's {title} is not in CloudWatch on AWS "
                 "(docs/autoscaling.md). The VM's own /metrics has it.")


def dashboard_name(spec: FleetSpec) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"vllm-fleet-{spec.stack}")


def _lb(alb_suffix: str, tg_suffix: str | None = None) -> list[str]:
    return (["TargetGroup", tg_suffix] if tg_suffix else []) + ["LoadBalancer", alb_suffix]


def _series(series: dashboard.Series, index: int, group: str, alb: str, tg: str, price: float,
            stack: str) -> list[list]:
    """The widget's metrics array entries of one series (a metric, or metric math on hidden ones); [] where AWS
    lacks it."""
    label, hidden = {"label": series.label}, {"visible": False}
    metric = series.metric
    if metric is not None:
        if metric not in monitoring.SHIPPED:
            return []
        base = [monitoring.NAMESPACE, monitoring.metric_name(metric), monitoring.DIMENSION, group]
        if series.stat == "rate":  # the agent sends a counter's delta since the last scrape: the sum a second
            return [[*base, {"stat": "Sum", "id": f"m{index}", **hidden}],
                    [{"expression": f"m{index} / PERIOD(m{index})", **label}]]
        return [[*base, {"stat": STATISTICS[series.stat], **label}]]
    counter = series.key_counter
    if counter is not None:  # one line a key: a search over the Key dimension of the stack's counters
        names = monitoring.NAMES
        search = (f"SEARCH('{{{names['namespace']},{names['stack']},{names['key']}}} "
                  f"MetricName=\"{usage.metric_name('aws', counter)}\" {names['stack']}=\"{stack}\"', 'Sum', {PERIOD})")
        return [[{"expression": search, "label": f"${{PROP('Dim.{names['key']}')}} {series.label}"}]]
    source = series.source
    if source in GROUP_METRICS:
        return [["AWS/AutoScaling", GROUP_METRICS[source], "AutoScalingGroupName", group, {"stat": "Maximum", **label}]]
    if source in ("lb_4xx", "lb_5xx"):
        code = source[-3:].upper()
        return [["AWS/ApplicationELB", f"HTTPCode_ELB_{code}_Count", *_lb(alb), {"stat": "Sum", "id": f"e{index}", **hidden}],
                ["AWS/ApplicationELB", f"HTTPCode_Target_{code}_Count", *_lb(alb), {"stat": "Sum", "id": f"t{index}", **hidden}],
                [{"expression": f"FILL(e{index}, 0) + FILL(t{index}, 0)", **label}]]
    if source in ("healthy_vms", "unhealthy_vms"):
        name = "HealthyHostCount" if source == "healthy_vms" else "UnHealthyHostCount"
        return [["AWS/ApplicationELB", name, *_lb(alb, tg), {"stat": "Maximum", **label}]]
    if source == "cost_per_hour":
        return [["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", group,
                 {"stat": "Maximum", "id": f"c{index}", **hidden}],
                [{"expression": f"c{index} * {price:.4f}", **label}]]
    raise ValueError(f"AWS renders no {source}")


def body(spec: FleetSpec, group: str, alb: str, tg: str, price: float) -> dict:
    widgets = []
    for number, panel in enumerate(dashboard.PANELS):
        place = {"x": (number % COLUMNS) * WIDTH, "y": (number // COLUMNS) * HEIGHT, "width": WIDTH, "height": HEIGHT}
        entries = [entry for index, series in enumerate(panel.series)
                   for entry in _series(series, number * 10 + index, group, alb, tg, price, spec.stack)]
        if not entries:
            widgets.append({"type": "text", **place, "properties": {
                "markdown": f"## {panel.title}\n\n{NO_HISTOGRAMS.format(title=panel.title.lower())}"}})
            continue
        widgets.append({"type": "metric", **place, "properties": {
            "title": f"{panel.title} ({panel.unit})", "view": "timeSeries", "region": spec.region, "period": PERIOD,
            "metrics": entries}})
    return {"widgets": widgets}


def url(spec: FleetSpec) -> str:
    return (f"https://{spec.region}.console.aws.amazon.com/cloudwatch/home?region={spec.region}"
            f"#dashboards/dashboard/{dashboard_name(spec)}")


def create(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, group_name: str, alb, target_group) -> None:
    price = sizing.instance.usd_per_hour
    cloudwatch.Dashboard(
        fleet.child("dashboard"), dashboard_name=dashboard_name(spec),
        dashboard_body=pulumi.Output.all(alb.arn_suffix, target_group.arn_suffix).apply(
            lambda suffixes: json.dumps(body(spec, group_name, suffixes[0], suffixes[1], price))),
        opts=fleet.opts)
    fleet.dashboard_url = url(spec)
    _alarms(fleet, spec, sizing, group_name, alb, target_group)


def _alarms(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, group: str, alb, target_group) -> None:
    config = spec.alerts
    targets: list[pulumi.Input[str]] = [config.topic] if config.topic else []
    if config.email:
        topic = sns.Topic(fleet.child("alerts"), opts=fleet.opts)
        sns.TopicSubscription(fleet.child("alerts-email"), topic=topic.arn, protocol="email", endpoint=config.email,
                              opts=fleet.opts)
        targets.append(topic.arn)

    def query(id_: str, namespace: str, name: str, stat: str, dimensions, return_data: bool = False):
        return cloudwatch.MetricAlarmMetricQueryArgs(id=id_, return_data=return_data, metric=cloudwatch.MetricAlarmMetricQueryMetricArgs(
            namespace=namespace, metric_name=name, stat=stat, period=PERIOD, dimensions=dimensions))

    def expression(id_: str, text: str, label: str):
        return cloudwatch.MetricAlarmMetricQueryArgs(id=id_, expression=text, label=label, return_data=True)

    lb = alb.arn_suffix.apply(lambda suffix: {"LoadBalancer": suffix})
    lb_tg = pulumi.Output.all(alb.arn_suffix, target_group.arn_suffix).apply(
        lambda s: {"LoadBalancer": s[0], "TargetGroup": s[1]})
    by_key = {
        # Only while the group is meant to serve: office hours may scale it to 0.
        "no_healthy_vm": dict(
            evaluation_periods=alerts.NO_HEALTHY_VM_MINUTES, threshold=1, comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="breaching", metric_queries=[
                query("desired", "AWS/AutoScaling", "GroupDesiredCapacity", "Maximum", {"AutoScalingGroupName": group}),
                query("healthy", "AWS/ApplicationELB", "HealthyHostCount", "Minimum", lb_tg),
                expression("none", "IF(desired > 0 AND FILL(healthy, 0) < 1, 1, 0)", "no healthy VM while serving")]),
        "errors_5xx": dict(
            evaluation_periods=2, threshold=config.errors_per_minute, comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching", metric_queries=[
                query("elb", "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "Sum", lb),
                query("target", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", lb),
                expression("errors", "FILL(elb, 0) + FILL(target, 0)", "5xx a minute")]),
        "never_healthy": dict(
            evaluation_periods=alerts.never_healthy_minutes(sizing), threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold", treat_missing_data="notBreaching",
            namespace="AWS/ApplicationELB", metric_name="UnHealthyHostCount", statistic="Minimum", period=PERIOD,
            dimensions=lb_tg),
    }
    for alarm in alerts.ALARMS:
        if alarm.key not in by_key:  # ttft_p95: no histograms in CloudWatch (module docstring)
            continue
        cloudwatch.MetricAlarm(
            fleet.child(f"alarm-{alarm.key.replace('_', '-')}"), alarm_description=f"vllm-fleet {spec.stack}: {alarm.title}",
            alarm_actions=targets, ok_actions=targets, **by_key[alarm.key], opts=fleet.opts)
