"""A VM's life from the cloud's point of view, on every cloud: when it counts as making progress, failed or
serving (the boot-aware health endpoint, cloud-init/vllm-fleet-health.py), and how long it drains before it goes.

Readiness by progress: the groups' autohealing (GCP's autohealing health check, Azure's Application Health
extension, AWS's launch lifecycle hook through heartbeats) asks the endpoint, which answers healthy while the setup
advances (a step finished, bytes of the install or the weights download growing) or vLLM serves, and unhealthy once
the setup failed for good, made no progress for STALL_SECONDS, or vLLM stopped answering for longer than a restart
takes. The load balancers keep asking vLLM's own /health for traffic.
"""

from __future__ import annotations

import math

from .sizing import Sizing
from .spec import FleetSpec

HEALTH_PORT = 8001
HEALTH_PATH = "/vllm-fleet-health"
# A setup that makes no progress for this long (no step finished, no byte added to the install or the weights) has
# stalled: the longest quiet stretch of a working setup is a retry's backoff (120 s), apt's lock wait (300 s) or a
# DKMS build of the NVIDIA driver (minutes), all well under it.
STALL_SECONDS = 900
# Where the setup records its steps and the drain its start (tmpfs: a boot starts afresh).
PROGRESS_DIR = "/run/vllm-fleet"
# Where a cloud ignores a new VM's health for a start-up delay of its own (GCP's initial delay, Azure's grace period),
# a VM still starting answers "not yet" (a rolling replacement waits for it), and healthy from this long before the
# delay ends if it makes progress: the cloud's probes see it healthy before they count.
SWITCH_LEAD_SECONDS = 300
# How often a VM tells AWS's launch lifecycle hook that it still makes progress.
HEARTBEAT_SECONDS = 60

# The drain. Every cloud's edge lets a response last at most this long (AWS's idle timeout, GCP's backend timeout,
# Azure's request timeout: each 1200 s, tests/test_drain.py checks it), and a generation of maxModelLen tokens takes
# at most maxModelLen / MIN_DECODE_TOKENS_PER_S (a conservative rate for one sequence on a fully loaded VM).
LONGEST_RESPONSE_SECONDS = 1200
MIN_DECODE_TOKENS_PER_S = 10
# How long a load balancer takes to stop sending a VM new requests once its health checks fail: the unhealthy
# threshold times the interval (AWS 3 x 15 s, GCP 3 x 10 s, Azure 3 x 15 s), with margin.
EDGE_NOTICE_SECONDS = 60
# What vLLM needs after its drain to tear the engine down, before systemd kills it.
STOP_MARGIN_SECONDS = 60


def load_seconds(sizing: Sizing) -> int:
    """How long vLLM may take from the end of the setup (or a crash) until it serves: the plan's load phase twice,
    and never less than the stall bound."""
    return max(STALL_SECONDS, 2 * sizing.time_to_serve.load)


def drain_seconds(spec: FleetSpec) -> int:
    """How long a VM that leaves lets its generations in flight finish: the longest the stack allows."""
    return min(LONGEST_RESPONSE_SECONDS, math.ceil(spec.max_model_len / MIN_DECODE_TOKENS_PER_S))


def stop_timeout_seconds(spec: FleetSpec) -> int:
    """vllm.service's TimeoutStopSec: vLLM's drain (--shutdown-timeout) and its teardown."""
    return drain_seconds(spec) + STOP_MARGIN_SECONDS


def healthy_after_seconds(cloud_delay_seconds: int) -> int:
    """Uptime from which a VM still starting answers healthy, where the cloud ignores its health for
    `cloud_delay_seconds` after it starts."""
    return max(0, cloud_delay_seconds - SWITCH_LEAD_SECONDS)

