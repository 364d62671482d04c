"""Usage per API key: what each VM counts (cloud-init/fleet_usage.py.j2, loaded by `vllm serve --middleware`) and
where it finds what it needs. The counters are a cloud-neutral list that the VMs' middleware is rendered with and
that the metric shipping and `make usage` (cli/usage.py) read by the same names.

Every counter carries the label `key`: the NAME of the API key (apiKeys' name, `default` for apiKey), never the key.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyCounter:
    name: str  # the Prometheus name, as /metrics shows it (a counter: ..._total)
    help: str
    labels: tuple[str, ...]  # `key` first


# The per-key counters each VM exposes on vLLM's /metrics, in vLLM's prometheus_client registry.
REQUESTS = KeyCounter("vllm_fleet_key_requests_total", "Requests to /v1 sent with this API key, answered or refused",
                      ("key",))
PROMPT_TOKENS = KeyCounter("vllm_fleet_key_prompt_tokens_total",
                           "Prompt tokens of the requests with this API key, as vLLM reports them in usage", ("key",))
COMPLETION_TOKENS = KeyCounter("vllm_fleet_key_completion_tokens_total",
                               "Completion tokens of the requests with this API key, as vLLM reports them in usage",
                               ("key",))
ERRORS = KeyCounter("vllm_fleet_key_errors_total",
                    "Requests with this API key answered with an HTTP error status (429: over its rate limit)",
                    ("key", "status"))
KEY_COUNTERS = (REQUESTS, PROMPT_TOKENS, COMPLETION_TOKENS, ERRORS)

# The module vLLM imports (`--middleware fleet_usage.UsageMiddleware`), the directory it is installed in (on vLLM's
# PYTHONPATH, set by vllm.service) and the files it reads at start (vllm.service's environment names them).
MODULE = "fleet_usage"
MIDDLEWARE = f"{MODULE}.UsageMiddleware"
MODULE_DIR = "/usr/local/lib/vllm-fleet/python"
# name -> sha256 of the key (hex), written 0640 root:vllm by vllm-fleet-setup from the API keys secret.
KEY_HASHES_FILE = "/etc/vllm/api-key-hashes.json"
# The rateLimits of the stack (fleet/rate_limits.py), rendered into user-data: names and numbers, no secret.
RATE_LIMITS_FILE = "/etc/vllm-fleet/rate-limits.json"
# The environment variables the middleware reads the two files' paths from.
KEY_HASHES_VARIABLE = "FLEET_KEY_HASHES"
RATE_LIMITS_VARIABLE = "FLEET_RATE_LIMITS"

# Where each cloud's monitoring holds the counters: what the VMs' agents write (components/<cloud>/monitoring.py
# renders them from this) and cli/usage.py reads. The agents keep each Prometheus label as a dimension/label of the
# same name (`key`, `status`), and add the stack's name as `stack`/`Stack` (a label of the scrape target).
# AWS: the CloudWatch agent's EMF, each datapoint the counter's increase since the scrape before (Sum adds them up).
# GCP: the Ops Agent's Prometheus receiver, prometheus.googleapis.com/<name>/counter, CUMULATIVE. Azure: Telegraf's
# azure_monitor, custom metrics of the VMs' scale set in namespace <prefix><input>, each value an increase (Total).
MONITORING = {
    "aws": {"namespace": "vllm-fleet", "metric": "{name}", "stack": "Stack", "key": "key", "status": "status"},
    "gcp": {"metric": "prometheus.googleapis.com/{name}/counter", "stack": "stack", "key": "key", "status": "status"},
    "azure": {"namespace": "vllm-fleet/prometheus", "metric": "{name}", "key": "key", "status": "status"},
}


def metric_name(cloud: str, counter: KeyCounter) -> str:
    """The counter's metric in the cloud's monitoring."""
    return MONITORING[cloud]["metric"].format(name=counter.name)
