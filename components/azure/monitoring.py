"""vLLM's metrics in Azure Monitor: what autoscale reads from a scale set besides its host metrics are custom
metrics of the scale set itself, which Azure Monitor takes through its custom metrics API (REST, or an agent that
calls it). The Azure Monitor Agent sends the guest OS's performance counters there but scrapes no Prometheus
endpoint of a VM (its Prometheus scraping is for AKS and Arc-enabled Kubernetes, into an Azure Monitor workspace,
which autoscale does not read); Telegraf's azure_monitor output is the agent Microsoft documents for custom metrics
of a Linux VM or scale set. Each VM runs Telegraf: its prometheus input scrapes vLLM's /metrics and its
azure_monitor output posts the gauges and counters of fleet/metrics.py (counters as per-second rates) as custom
metrics of the scale set, namespace NAMESPACE, without dimensions; and the per-key counters of fleet/usage.py, each
value the increase since the scrape before (a Starlark processor: Azure Monitor keeps no counters), with their
labels as dimensions (fleet/usage.py MONITORING: what `make usage` reads; the scale set is the stack's own). Azure
Monitor's metrics keep min, max, sum and count a minute, no distributions: the TTFT and TPOT histograms stay on the VM (docs/autoscaling.md).

The VMs' identity may publish metrics on the scale set only (Monitoring Metrics Publisher there)."""

from __future__ import annotations

import json

import pulumi
from pulumi_azure_native import authorization

from components.base import FleetComponent
from components.monitoring import CONFIG_DIR, agent_boot
from fleet import metrics, usage
from fleet.spec import FleetSpec

SHIPPED = metrics.of_types("gauge", "counter")
MEASUREMENT = "prometheus"  # the measurement of Telegraf's prometheus input
NAMESPACE = usage.MONITORING["azure"]["namespace"]
NAMESPACE_PREFIX = NAMESPACE.removesuffix(MEASUREMENT)  # Telegraf's azure_monitor: the prefix and the measurement
AGENT_CONFIG = "telegraf.conf"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"  # built-in role definition id
# InfluxData's package signing key (https://repos.influxdata.com/influxdata-archive.key), as InfluxData's install
# instructions check it.
TELEGRAF_KEY_FINGERPRINT = "24C975CBA61A024EE1B631787C3D57159FC2F927"


def _field(sample: str) -> str:
    return sample.replace(":", "_")


def metric_name(metric: metrics.VllmMetric) -> str:
    """The custom metric of a shipped vLLM metric: the sample's name with _ for :, a counter's as its rate."""
    if metric not in SHIPPED:
        raise ValueError(f"{metric.family} is a {metric.type}: Azure Monitor custom metrics hold no histograms")
    return _field(metric.samples[0]) + ("_rate" if metric.type == "counter" else "")


def boot(spec: FleetSpec) -> dict:
    """CloudBoot's part for Telegraf (components/monitoring.py); the template reads identity_client_id too."""
    counters = [_field(m.samples[0]) for m in SHIPPED if m.type == "counter"]
    return agent_boot("azure", spec, SHIPPED, {AGENT_CONFIG: "azure-telegraf.conf.j2"}, {
        "metrics_agent_config": f"{CONFIG_DIR}/{AGENT_CONFIG}", "metrics_namespace": NAMESPACE,
        "metrics_namespace_prefix": NAMESPACE_PREFIX, "metrics_counter_fields": json.dumps(counters),
        "metrics_measurement": MEASUREMENT,
        "metrics_key_counters": json.dumps([usage.metric_name("azure", c) for c in usage.KEY_COUNTERS]),
        "telegraf_key_fingerprint": TELEGRAF_KEY_FINGERPRINT})


def allow_publishing(fleet: FleetComponent, spec: FleetSpec, scale_set, identity) -> None:
    authorization.RoleAssignment(
        fleet.child("publish-metrics"), scope=scale_set.id, principal_id=identity.principal_id,
        principal_type="ServicePrincipal", role_definition_id=fleet.role_id(MONITORING_METRICS_PUBLISHER),
        description=f"vllm-fleet {spec.stack}: the VMs publish vLLM's metrics on their scale set", opts=fleet.opts)
