"""vLLM's metrics in CloudWatch: the CloudWatch agent on each instance scrapes vLLM's /metrics (its Prometheus
support) and writes embedded metric format (EMF) log events to the stack's log group, from which CloudWatch makes
the metrics of NAMESPACE, dimension AutoScalingGroupName. The instance role may write to that log group only.

The agent supports Prometheus gauges, counters (sent as the delta since the last scrape) and summaries; it drops
histograms (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/ContainerInsights-Prometheus-metrics-conversion.html),
so vLLM's time-to-first-token and time-per-output-token histograms stay on the VM: AWS ships the gauges and
counters of fleet/metrics.py (docs/autoscaling.md), and the per-key counters of fleet/usage.py (with their labels,
and the stack, as dimensions: fleet/usage.py MONITORING, what `make usage` reads)."""

from __future__ import annotations

import json

import pulumi
from pulumi_aws import cloudwatch, iam

from components.base import FleetComponent
from components.monitoring import CONFIG_DIR, agent_boot
from fleet import metrics, usage
from fleet.spec import FleetSpec

NAMES = usage.MONITORING["aws"]
NAMESPACE = NAMES["namespace"]
DIMENSION = "AutoScalingGroupName"
SHIPPED = metrics.of_types("gauge", "counter")
# The EMF log events are only the metrics' carrier: CloudWatch has extracted the metrics when they arrive.
LOG_RETENTION_DAYS = 1
AGENT_CONFIG, PROMETHEUS_CONFIG = "cloudwatch-agent.json", "cloudwatch-prometheus.yaml"


def metric_name(metric: metrics.VllmMetric) -> str:
    """The CloudWatch metric of a shipped vLLM metric: the sample's name (a counter's with _total: the delta)."""
    if metric not in SHIPPED:
        raise ValueError(f"{metric.family} is a {metric.type}: the CloudWatch agent does not ship it")
    return metric.samples[0]


def log_group_name(spec: FleetSpec) -> str:
    return f"/vllm-fleet/{spec.stack}/metrics"


def key_declarations() -> list[dict]:
    """The EMF metric declarations of the per-key counters (after the vLLM metrics' one, which names the job): one
    a set of labels, whose dimensions are the stack and those labels (fleet/usage.py MONITORING names them)."""
    by_labels: dict[tuple[str, ...], list[str]] = {}
    for counter in usage.KEY_COUNTERS:
        by_labels.setdefault(tuple(NAMES[label] for label in counter.labels), []).append(f"^{counter.name}$")
    return [{"dimensions": [[NAMES["stack"], *labels]], "metric_selectors": selectors}
            for labels, selectors in by_labels.items()]


def boot(spec: FleetSpec, group_name: str) -> dict:
    """CloudBoot's part for the CloudWatch agent (components/monitoring.py). Every series of the scrape carries the
    group's name (the vLLM metrics' dimension: the policies read the group's average) and the stack's."""
    return agent_boot("aws", spec, SHIPPED, {AGENT_CONFIG: "aws-cloudwatch-agent.json.j2",
                                              PROMETHEUS_CONFIG: "aws-prometheus.yaml.j2"}, {
        "metrics_agent_config": f"{CONFIG_DIR}/{AGENT_CONFIG}",
        "metrics_prometheus_config": f"{CONFIG_DIR}/{PROMETHEUS_CONFIG}",
        "metrics_log_group": log_group_name(spec), "metrics_namespace": NAMESPACE,
        "metrics_dimension": DIMENSION, "metrics_key_declarations": key_declarations()},
        {DIMENSION: group_name, NAMES["stack"]: spec.stack})


def log_group(fleet: FleetComponent, spec: FleetSpec) -> cloudwatch.LogGroup:
    return cloudwatch.LogGroup(fleet.child("metrics"), name=log_group_name(spec), retention_in_days=LOG_RETENTION_DAYS,
                               opts=fleet.opts)


def allow_publishing(fleet: FleetComponent, role_name: pulumi.Input[str], group: cloudwatch.LogGroup) -> None:
    """The instance role may put log events into the metrics log group (how EMF reaches CloudWatch), nothing else:
    no other log group, no PutMetricData."""
    def policy(arn: str) -> str:
        return json.dumps({"Version": "2012-10-17", "Statement": [{
            "Sid": "WriteVllmMetricsAsEmf", "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": [arn, f"{arn}:log-stream:*"]}]})

    iam.RolePolicy(fleet.child("publish-metrics"), role=role_name, policy=group.arn.apply(policy), opts=fleet.opts)
