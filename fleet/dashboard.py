"""The stack's dashboard and alarms, cloud-neutral: the panels and alarms every cloud renders in its own console
(components/<cloud>/dashboard.py); fleet/alerts.py has the alarms.

A series reads a vLLM metric of fleet/metrics.py (by its key), a per-key counter of fleet/usage.py (by its name: one
line a key, stat sum_by_key: its increase a minute over the VMs) or one of the cloud's own signals (SIGNALS: the
group's sizes, the load balancer's answers and healthy VMs, the cost). A cloud renders each series it has and
says in the panel why it lacks one (AWS and Azure keep no histograms: docs/autoscaling.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import metrics, usage

SIGNALS = ("replicas_desired", "replicas_in_service", "replicas_starting", "lb_4xx", "lb_5xx", "healthy_vms",
           "unhealthy_vms", "cost_per_hour")
STATS = ("avg", "max", "sum", "p50", "p95", "rate", "sum_by_key")


@dataclass(frozen=True)
class Series:
    source: str  # a key of fleet/metrics.py METRICS, a name of fleet/usage.py KEY_COUNTERS, or one of SIGNALS
    stat: str  # how the VMs' values are combined: avg/max/sum over the VMs, p50/p95 of a histogram, rate of a counter
    label: str

    @property
    def metric(self) -> metrics.VllmMetric | None:
        return metrics.BY_KEY.get(self.source)

    @property
    def key_counter(self) -> usage.KeyCounter | None:
        return next((c for c in usage.KEY_COUNTERS if c.name == self.source), None)


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    series: tuple[Series, ...]


PANELS = (
    Panel("Replicas", "VMs", (Series("replicas_desired", "max", "desired"),
                              Series("replicas_in_service", "max", "in service"),
                              Series("replicas_starting", "max", "starting"))),
    Panel("Requests waiting and running (average a VM)", "requests", (
        Series("requests_waiting", "avg", "waiting"), Series("requests_running", "avg", "running"))),
    Panel("KV cache usage", "fraction", (Series("kv_cache_usage", "avg", "average a VM"),
                                         Series("kv_cache_usage", "max", "fullest VM"))),
    Panel("Time to first token", "seconds", (Series("ttft", "p50", "p50"), Series("ttft", "p95", "p95"))),
    Panel("Time per output token", "seconds", (Series("tpot", "p50", "p50"), Series("tpot", "p95", "p95"))),
    Panel("Tokens per second", "tokens/s", (Series("prompt_tokens", "rate", "in (prompt)"),
                                            Series("generation_tokens", "rate", "out (generated)"))),
    # One series a panel: an Azure chart splits by a dimension only a chart of one metric.
    Panel("Prompt tokens by API key", "tokens/min", (Series(usage.PROMPT_TOKENS.name, "sum_by_key", "in"),)),
    Panel("Completion tokens by API key", "tokens/min", (Series(usage.COMPLETION_TOKENS.name, "sum_by_key", "out"),)),
    Panel("Preemptions per second", "preemptions/s", (Series("preemptions", "rate", "preempted"),)),
    Panel("Load balancer errors", "responses/min", (Series("lb_4xx", "sum", "4xx"), Series("lb_5xx", "sum", "5xx"))),
    Panel("Healthy VMs", "VMs", (Series("healthy_vms", "max", "healthy"), Series("unhealthy_vms", "max", "unhealthy"))),
    Panel("Cost per hour at the current size", "USD/hour", (Series("cost_per_hour", "max", "GPU VMs"),)),
)




def referenced_metrics() -> set[str]:
    """The vLLM metric keys the panels read."""
    return {s.source for p in PANELS for s in p.series if s.metric}
