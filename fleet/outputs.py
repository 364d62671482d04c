"""The stack outputs every cloud exports: where to reach the model, what it runs on, what it costs and which
cloud quota it needs."""

from __future__ import annotations

import json
from typing import Any

import pulumi

from . import catalog
from .sizing import Sizing
from .spec import FleetSpec

HOURS_PER_MONTH = 730


def cost(spec: FleetSpec, sizing: Sizing) -> dict[str, Any]:
    cloud = catalog.cloud(spec.cloud)
    hourly = sizing.instance.usd_per_hour
    return {
        "usdPerHourPerReplica": round(hourly, 2),
        "usdPerHour": round(hourly * spec.replicas.desired, 2),
        "usdPerMonth": round(hourly * spec.replicas.desired * HOURS_PER_MONTH, 0),
        "usdPerHourAtMaxReplicas": round(hourly * spec.replicas.max, 2),
        "basis": (f"on-demand {sizing.instance.name} in {cloud.reference_region}, prices of {cloud.prices_as_of}; "
                  f"GPU VMs only (load balancer, disks and traffic extra)"
                  + ("; spot VMs usually cost less" if spec.spot else "")),
    }


def quota(spec: FleetSpec, sizing: Sizing) -> list[dict[str, Any]]:
    """The quotas the VMs count against, at desired and at max replicas (what autoscaling may reach)."""
    cloud = catalog.cloud(spec.cloud)
    needs = []
    for q in cloud.quotas(sizing.instance, spec.spot):
        per_vm = sizing.instance.per_vm(q.unit)
        needs.append({
            "name": q.name, "code": q.code, "unit": q.unit,
            "scope": spec.region if q.scope == "region" else q.scope,
            "perReplica": per_vm, "atDesired": per_vm * spec.replicas.desired, "atMax": per_vm * spec.replicas.max,
        })
    return needs


def _curl(base_url: str, spec: FleetSpec) -> str:
    body = json.dumps({"model": spec.served_model_name, "prompt": "def fibonacci(n):", "max_tokens": 64})
    return (f"export VLLM_API_KEY=$(pulumi stack output apiKey --show-secrets -s {spec.stack})\n"
            f"curl -sS {base_url}/completions -H \"Authorization: Bearer $VLLM_API_KEY\" "
            f"-H 'Content-Type: application/json' -d '{body}'")


def _continue_config(base_url: str, spec: FleetSpec) -> str:
    # Continue's config.yaml; the key stays in Continue's secrets, not in the file.
    return "\n".join([
        "models:",
        f"  - name: {spec.served_model_name} (vllm-fleet {spec.stack})",
        "    provider: vllm",
        f"    model: {spec.served_model_name}",
        f"    apiBase: {base_url}",
        "    apiKey: ${{ secrets.VLLM_FLEET_API_KEY }}",
        "    roles: [chat, edit, apply, autocomplete]",
    ])


def stack_outputs(spec: FleetSpec, sizing: Sizing, endpoint: pulumi.Output[str],
                  api_key: pulumi.Output[str], warnings: list[str]) -> dict[str, Any]:
    base_url = endpoint.apply(lambda url: f"{url}/v1")
    instance = sizing.instance
    return {
        "endpoint": endpoint,
        "openaiBaseUrl": base_url,
        "servedModelName": spec.served_model_name,
        "apiKey": pulumi.Output.secret(api_key),
        "instanceType": instance.name,
        "gpuType": instance.gpu,
        "gpuCount": instance.gpu_count,
        "tensorParallelSize": sizing.tensor_parallel_size,
        "replicas": {"min": spec.replicas.min, "desired": spec.replicas.desired, "max": spec.replicas.max},
        "spot": spec.spot,
        "memory": {
            "weightsGib": round(sizing.memory.weights_gib, 1),
            "kvCacheGib": round(sizing.kv_cache_gib, 1),
            "kvCacheTokens": sizing.kv_cache_tokens,
            "maxModelLen": spec.max_model_len,
        },
        "estimatedCost": cost(spec, sizing),
        "quota": quota(spec, sizing),
        "curlExample": base_url.apply(lambda url: _curl(url, spec)),
        "continueConfig": base_url.apply(lambda url: _continue_config(url, spec)),
        "warnings": warnings,
    }
