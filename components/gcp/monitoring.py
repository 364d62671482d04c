"""vLLM's metrics in Cloud Monitoring: Google's Ops Agent on each VM scrapes vLLM's /metrics with its Prometheus
receiver and writes them as Prometheus metrics (prometheus.googleapis.com/<name>/<kind>, monitored resource
prometheus_target, label job = the stack's job). The Prometheus receiver keeps histograms as distributions, so GCP
ships every metric of fleet/metrics.py, TTFT and TPOT included, and the per-key counters of fleet/usage.py: the
receiver keeps each Prometheus label as a metric label, and the scrape target's label `stack` (fleet/usage.py
MONITORING, what `make usage` reads) names the stack. The VMs' service account may write metrics
(roles/monitoring.metricWriter), nothing else of Monitoring."""

from __future__ import annotations

import pulumi
from pulumi_gcp import projects

from components.base import FleetComponent
from components.monitoring import CONFIG_DIR, agent_boot
from fleet import iam_names, metrics, usage
from fleet.spec import FleetSpec

SHIPPED = metrics.METRICS
AGENT_CONFIG = "ops-agent.yaml"
METRIC_WRITER = iam_names.GCP_METRIC_WRITER_ROLE


def metric_type(metric: metrics.VllmMetric) -> str:
    """The Cloud Monitoring metric type the Ops Agent writes a vLLM metric as (Managed Service for Prometheus'
    naming: the sample's name, a counter's with _total, and its kind)."""
    return f"prometheus.googleapis.com/{metric.samples[0] if metric.type == 'counter' else metric.family}/{metric.type}"


def job_filter(spec: FleetSpec) -> str:
    """The Monitoring filter of the stack's own series: the Ops Agent writes them on the prometheus_target resource
    whose job is the stack's (a per-group metric for the autoscaler, which sums the VMs' series)."""
    return f'resource.type = "prometheus_target" AND resource.labels.job = "{metrics.job_name(spec)}"'


def boot(spec: FleetSpec) -> dict:
    """CloudBoot's part for the Ops Agent (components/monitoring.py)."""
    return agent_boot("gcp", spec, SHIPPED, {AGENT_CONFIG: "gcp-ops-agent.yaml.j2"},
                      {"metrics_agent_config": f"{CONFIG_DIR}/{AGENT_CONFIG}"},
                      {usage.MONITORING["gcp"]["stack"]: spec.stack})


def allow_publishing(fleet: FleetComponent, project: str, member: pulumi.Input[str]) -> projects.IAMMember:
    return projects.IAMMember(fleet.child("metric-writer"), project=project, role=METRIC_WRITER, member=member,
                              opts=fleet.opts)
