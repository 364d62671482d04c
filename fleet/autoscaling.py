"""Autoscaling on vLLM's own signals (the metrics of fleet/metrics.py): the targets every cloud's policies hold, from
the sizing or the stack's `autoscaling` key, and how a cloud's autoscaler reacts, for the plan.

Two signals: the requests a VM has in hand (vLLM's requests waiting plus running) against what one VM holds at once
(the sizing's requests per replica, the plan's capacity), and the share of its KV cache in use, where a cloud takes
several; each cloud's policy (components/<cloud>/fleet.py) scales out when either is above its target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .values import whole_number

if TYPE_CHECKING:  # spec.py parses the key with this module
    from .sizing import Sizing
    from .spec import FleetSpec

KEY_DOC = ("{requestsPerVm, kvCacheUsage}: scale out when vLLM's requests waiting + running a VM pass requestsPerVm "
           "(default 80% of the requests one VM holds at once, the plan's capacity) or its KV cache is fuller than "
           "kvCacheUsage (0.1-0.99, default 0.8); with replicas.min < max")
# Of what one VM holds: the default target, headroom for the requests that arrive while a new VM starts.
DEFAULT_SHARE = 0.8
DEFAULT_KV_CACHE_USAGE = 0.8
KV_CACHE_USAGE_RANGE = (0.1, 0.99)
MAX_REQUESTS_PER_VM = 10000
# The metric period every cloud's policy reads (one-minute data points, each of two scrapes a VM).
PERIOD_SECONDS = 60


@dataclass(frozen=True)
class AutoscalingConfig:
    """The stack's `autoscaling` key: None where it leaves a target to the sizing."""

    requests_per_vm: int | None = None
    kv_cache_usage: float | None = None


def parse(value: Any, replicas: Any, cloud: str) -> AutoscalingConfig:
    """`replicas`: the stack's replicas key as written. Its targetRequestsPerMinute no longer scales the fleet; it
    remains GCP's balancing capacity of a VM (the backend's max rate), and means nothing on the other clouds."""
    if isinstance(replicas, dict) and "targetRequestsPerMinute" in replicas and cloud != "gcp":
        raise ConfigError("replicas.targetRequestsPerMinute", replicas["targetRequestsPerMinute"],
                          "no longer scales the fleet: autoscaling follows vLLM's own signals; set "
                          "autoscaling.requestsPerVm (requests waiting + running a VM) instead")
    if value is None:
        return AutoscalingConfig()
    if not isinstance(value, dict) or not value or set(value) - {"requestsPerVm", "kvCacheUsage"}:
        raise ConfigError("autoscaling", value, f"must be a map {KEY_DOC}, e.g. {{requestsPerVm: 24}}")
    if isinstance(replicas, dict) and replicas.get("min", 1) == replicas.get("max", max(replicas.get("min", 1), 1)):
        raise ConfigError("autoscaling", value, "applies only where replicas.min is below replicas.max: a fleet of "
                                                "a fixed size does not scale")
    if not isinstance(replicas, dict):
        raise ConfigError("autoscaling", value, "applies only where replicas.min is below replicas.max, e.g. "
                                                "replicas: {min: 1, max: 4}")
    requests = value.get("requestsPerVm")
    kv = value.get("kvCacheUsage")
    if kv is not None:
        low, high = KV_CACHE_USAGE_RANGE
        if isinstance(kv, bool) or not isinstance(kv, (int, float)) or not low <= kv <= high:
            raise ConfigError("autoscaling.kvCacheUsage", kv,
                              f"must be the share of the KV cache in use, {low} to {high} (vLLM's "
                              f"vllm:kv_cache_usage_perc is 0 to 1), e.g. 0.8")
        kv = float(kv)
    return AutoscalingConfig(
        requests_per_vm=None if requests is None else whole_number("autoscaling.requestsPerVm", requests, 1,
                                                                    MAX_REQUESTS_PER_VM),
        kv_cache_usage=kv)


@dataclass(frozen=True)
class Targets:
    requests_per_vm: int  # vLLM's requests waiting + running, on average a VM
    kv_cache_usage: float  # vLLM's KV cache usage, on average a VM, 0 to 1
    requests_from: str  # where requests_per_vm comes from, for the plan


def targets(spec: FleetSpec, sizing: Sizing) -> Targets:
    config = spec.autoscaling
    per_vm = sizing.requests_per_replica
    if config.requests_per_vm is not None:
        requests, source = config.requests_per_vm, "autoscaling.requestsPerVm"
    else:
        requests = max(1, math.floor(per_vm * DEFAULT_SHARE))
        source = f"{DEFAULT_SHARE:.0%} of the {per_vm} requests a VM holds at once"
    kv = config.kv_cache_usage if config.kv_cache_usage is not None else DEFAULT_KV_CACHE_USAGE
    return Targets(requests, kv, source)


@dataclass(frozen=True)
class Reaction:
    """How a cloud's autoscaler reacts to the signals: what the plan says (the `autoscaling` stack output)."""

    policies: tuple[str, ...]  # each policy or rule, in the cloud's words
    period_seconds: int  # the metric period it reads
    warmup_seconds: int  # how long a new VM's metrics are left out (or the cooldown after a scale-out)
    scale_in: str  # how it scales in: cooldown, steps
    time_to_capacity_seconds: int  # from the load's rise to a new VM serving
    basis: str  # what time_to_capacity_seconds adds up


def reaction_output(targets: Targets, reaction: Reaction) -> dict[str, Any]:
    return {"requestsPerVm": targets.requests_per_vm, "requestsPerVmFrom": targets.requests_from,
            "kvCacheUsage": targets.kv_cache_usage, "policies": list(reaction.policies),
            "periodSeconds": reaction.period_seconds, "warmupSeconds": reaction.warmup_seconds,
            "scaleIn": reaction.scale_in, "timeToCapacitySeconds": reaction.time_to_capacity_seconds,
            "timeToCapacityBasis": reaction.basis}


def time_to_capacity(detect_seconds: int, start_seconds: int, how_started: str) -> tuple[int, str]:
    """(seconds, basis): the policy's detection (its periods and evaluations) and the new VM's start."""
    return detect_seconds + start_seconds, (f"{detect_seconds} s for the policy to see the load over its period, "
                                            f"then {start_seconds} s until the new VM serves ({how_started})")
