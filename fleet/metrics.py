"""The vLLM metrics every VM ships to its cloud's own monitoring: one cloud-neutral list, which each cloud renders
(components/<cloud>/monitoring.py: the agent's configuration, the cloud's name of each metric, the policies, panels
and alarms that read them).

Each entry is a Prometheus metric family of vLLM's `/metrics` (vllm/v1/metrics/loggers.py of the pinned release,
fleet/serving.py VLLM_VERSION) with the type the cloud side assumes; tests/serving/test_metrics_exist.py scrapes the
real server and fails when a name or a type differs. The agents scrape 127.0.0.1 on the VM: `/metrics` answers
without the API key, so every edge keeps refusing it (tests/test_edge_paths.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import serving, usage
from .spec import FleetSpec

# How often each VM's agent scrapes vLLM: two samples a minute, the period the scaling policies read.
SCRAPE_SECONDS = 30
METRICS_PATH = "/metrics"
TYPES = ("gauge", "counter", "histogram")


@dataclass(frozen=True)
class VllmMetric:
    key: str  # the project's name of it: what policies, panels and alarms name
    family: str  # vLLM's Prometheus metric family (its # TYPE line)
    type: str  # gauge | counter | histogram, as vLLM declares it
    unit: str  # what one value counts
    what: str

    @property
    def exposed(self) -> str:
        """The name /metrics' # TYPE line gives the family: prometheus_client's text format names a counter by
        its sample, with _total."""
        return f"{self.family}_total" if self.type == "counter" else self.family

    @property
    def samples(self) -> tuple[str, ...]:
        """The sample names /metrics exposes for the family (the Prometheus text format's suffixes)."""
        if self.type == "counter":
            return (f"{self.family}_total",)
        if self.type == "histogram":
            return tuple(f"{self.family}_{suffix}" for suffix in ("bucket", "sum", "count"))
        return (self.family,)


METRICS = (
    VllmMetric("requests_waiting", "vllm:num_requests_waiting", "gauge", "requests",
               "requests queued, not yet scheduled: the VM is full"),
    VllmMetric("requests_running", "vllm:num_requests_running", "gauge", "requests",
               "requests in the running batch"),
    VllmMetric("kv_cache_usage", "vllm:kv_cache_usage_perc", "gauge", "fraction",
               "share of the KV cache in use, 0 to 1"),
    VllmMetric("ttft", "vllm:time_to_first_token_seconds", "histogram", "seconds",
               "time to first token of each request"),
    VllmMetric("tpot", "vllm:inter_token_latency_seconds", "histogram", "seconds",
               "time between two output tokens (time per output token)"),
    VllmMetric("prompt_tokens", "vllm:prompt_tokens", "counter", "tokens", "prompt tokens processed"),
    VllmMetric("generation_tokens", "vllm:generation_tokens", "counter", "tokens", "tokens generated"),
    VllmMetric("preemptions", "vllm:num_preemptions", "counter", "preemptions",
               "requests preempted for lack of KV cache (recomputed later)"),
)
BY_KEY = {m.key: m for m in METRICS}


def metric(key: str) -> VllmMetric:
    return BY_KEY[key]


def of_types(*types: str) -> tuple[VllmMetric, ...]:
    return tuple(m for m in METRICS if m.type in types)


def samples_regex(metrics: tuple[VllmMetric, ...] = METRICS) -> str:
    """A Prometheus relabel regex (fully anchored by Prometheus) that keeps exactly the samples of `metrics`."""
    return "|".join(re.escape(sample) for m in metrics for sample in m.samples)


def scrape_target() -> str:
    return f"127.0.0.1:{serving.SERVE_PORT}"


def job_name(spec: FleetSpec) -> str:
    """The Prometheus job of the stack's VMs: every cloud's metrics carry it, so one stack's series are its own."""
    return f"vllm-fleet-{spec.stack}"


@dataclass(frozen=True)
class Scrape:
    """What a VM's agent scrapes and ships: what the agent's configuration template (cloud-init/metrics/) renders.
    `metrics`: those of METRICS the cloud's agent can carry (components/<cloud>/monitoring.py says why not all); the
    per-key counters of fleet/usage.py (key_counters) on every cloud. `labels`: added to every series of the target."""

    job: str
    metrics: tuple[VllmMetric, ...]
    labels: dict[str, str] = field(default_factory=dict)
    key_counters: tuple[usage.KeyCounter, ...] = usage.KEY_COUNTERS
    target: str = scrape_target()
    path: str = METRICS_PATH
    seconds: int = SCRAPE_SECONDS

    @property
    def samples(self) -> tuple[str, ...]:
        """The vLLM metrics' samples (without the per-key counters)."""
        return tuple(sample for m in self.metrics for sample in m.samples)

    @property
    def kept(self) -> tuple[str, ...]:
        """Every sample the agent keeps: the vLLM metrics' and the per-key counters'."""
        return self.samples + tuple(c.name for c in self.key_counters)

    @property
    def keep_regex(self) -> str:
        return "|".join(re.escape(sample) for sample in self.kept)

    @property
    def selectors(self) -> tuple[str, ...]:
        """Each vLLM sample name as an anchored regular expression (the CloudWatch agent's metric_selectors)."""
        return tuple(f"^{re.escape(sample)}$" for sample in self.samples)
