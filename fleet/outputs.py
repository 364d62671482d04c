"""The stack outputs every cloud exports: where to reach the model, what it runs on, what it costs and which
cloud quota it needs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pulumi

from . import catalog
from .catalog import Quota
from .schedule import WEEKS_PER_MONTH, StandbyPool
from .sizing import Sizing
from .spec import FleetSpec
from .tool_calling import continue_roles

if TYPE_CHECKING:
    from components.base import FleetComponent

HOURS_PER_MONTH = 730


def cost(spec: FleetSpec, sizing: Sizing, pool: StandbyPool | None = None, lead_minutes: int = 0) -> dict[str, Any]:
    """What the GPU VMs cost: an hour at desired and max replicas, and a month, around the clock or, with office
    hours, as scheduled (the office-hours replicas for the windows and the scale-up's lead, offHoursReplicas
    otherwise), with the standby pool's stopped disks and refills."""
    cloud = catalog.cloud(spec.cloud)
    price = sizing.price or cloud.price(sizing.instance, spec.region)
    hourly = price.usd_per_hour
    where = (f"in {spec.region}" if price.region == spec.region
             else f"in {price.region} (no price recorded for {spec.region})")
    spot = ""
    if spec.spot:
        spot = (f"; spot was ~${price.spot_usd_per_hour:.2f}/hour a VM when recorded" if price.spot_usd_per_hour
                else "; spot VMs usually cost less")
    result = {
        "usdPerHourPerReplica": round(hourly, 2),
        "usdPerHour": round(hourly * spec.replicas.desired, 2),
        "usdPerMonth": round(hourly * spec.replicas.desired * HOURS_PER_MONTH, 0),
        "usdPerHourAtMaxReplicas": round(hourly * spec.replicas.max, 2),
        "basis": (f"on-demand {sizing.instance.name} {where}, prices of {price.as_of}; "
                  f"GPU VMs only (load balancer, disks and traffic extra)" + spot),
        "region": spec.region,
        "priceRegion": price.region,
        "pricesAsOf": price.as_of,
        "priceSource": price.source,
    }
    if price.spot_usd_per_hour:
        result["spotUsdPerHourPerReplica"] = round(price.spot_usd_per_hour, 2)
    hours = spec.office_hours
    if hours:
        result.update(_scheduled_month(spec, hourly, pool, lead_minutes))
        result["basis"] += "; " + result.pop("scheduleBasis")
    return result


def _scheduled_month(spec: FleetSpec, hourly: float, pool: StandbyPool | None, lead_minutes: int) -> dict[str, Any]:
    hours = spec.office_hours
    open_hours = min(hours.hours_per_month(lead_minutes), HOURS_PER_MONTH)
    closed_hours = HOURS_PER_MONTH - open_hours
    replica_hours = spec.replicas.desired * open_hours + hours.off_hours_replicas * closed_hours
    serving = hourly * replica_hours
    pool_cost = 0.0
    if pool:
        stopped_vm_hours = pool.stopped_in_hours * open_hours + pool.stopped_off_hours * closed_hours
        refills = hours.openings_per_week(lead_minutes) * WEEKS_PER_MONTH * pool.refilled_per_opening
        pool_cost = (pool.disk_usd_per_vm_month / HOURS_PER_MONTH * stopped_vm_hours
                     + hourly * refills * pool.refill_seconds / 3600)
    always_on = hourly * spec.replicas.desired * HOURS_PER_MONTH
    total = serving + pool_cost
    return {
        "usdPerMonth": round(total, 0),
        "usdPerMonth24x7": round(always_on, 0),
        "savingPercent": round(100 * (1 - total / always_on)) if always_on else 0,
        "servingHoursPerMonth": round(open_hours, 1),
        "replicaHoursPerMonth": round(replica_hours, 1),
        "standbyPoolUsdPerMonth": round(pool_cost, 0),
        "scheduleBasis": (f"office hours {hours.describe()}: {open_hours:.0f} h a month at desired replicas (scale-up "
                          f"{lead_minutes} min early), {hours.off_hours_replicas} replicas otherwise"
                          + (f"; the standby pool's stopped disks and refills ${pool_cost:.0f}/month" if pool else "")),
    }


def office_hours(spec: FleetSpec, fleet: FleetComponent, lead_minutes: int) -> dict[str, Any]:
    """What the schedule does, in the stack's time zone: when the group scales up and down, the standby pool the
    cloud keeps (or why none), and how to start the fleet early."""
    hours = spec.office_hours
    pool = fleet.standby_pool
    return {
        "timezone": hours.timezone,
        "windows": [w.describe() for w in hours.windows],
        "offHoursReplicas": hours.off_hours_replicas,
        "scaleUpMinutesEarly": lead_minutes,
        "scaleUpAt": [m.describe() for m in hours.openings(lead_minutes)],
        "scaleDownAt": [m.describe() for m in hours.closings(lead_minutes)],
        "standbyPool": {"kind": pool.kind, "stoppedInHours": pool.stopped_in_hours,
                        "stoppedOffHours": pool.stopped_off_hours,
                        "diskUsdPerStoppedVmMonth": round(pool.disk_usd_per_vm_month, 2), "note": pool.note}
        if pool else None,
        "standbyNote": fleet.standby_note,
        "wake": f"make wake STACK={spec.stack}",
        "wakeTarget": fleet.wake_target,
    }


def capacity(spec: FleetSpec, sizing: Sizing) -> dict[str, Any]:
    """How many requests the fleet serves at once: per replica, at desired and at max replicas, for the capacity
    key's request length (else maxModelLen's), and what limits a replica (its KV cache or vLLM's max_num_seqs)."""
    tokens = sizing.tokens_per_request or spec.max_model_len
    per_replica = sizing.requests_of(tokens)
    kv_bound = int(sizing.kv_cache_gib / sizing.memory.request_gib(tokens))
    result = {
        "tokensPerRequest": tokens,
        "requestsPerReplica": per_replica,
        "requestsAtDesired": per_replica * spec.replicas.desired,
        "requestsAtMax": per_replica * spec.replicas.max,
        "fullContextRequestsPerReplica": sizing.full_context_requests,
        "limitedBy": "max_num_seqs" if kv_bound > sizing.max_num_seqs else "kv_cache",
        "maxNumSeqs": sizing.max_num_seqs,
    }
    if spec.capacity is not None:
        result["concurrentRequests"] = spec.capacity.concurrent_requests
    return result


def quota(spec: FleetSpec, fleet: FleetComponent) -> list[dict[str, Any]]:
    """The quotas the VMs count against, at desired and at max replicas (what autoscaling may reach), during a
    rolling replacement at max replicas (which launches before it terminates), and while a pool's stopped VMs run
    their setup (at creation and when the pool is filled again) next to the desired ones. A group that may launch
    several types counts each VM at the largest; a spot group with an on-demand base needs both quotas."""
    cloud = catalog.cloud(spec.cloud)
    replicas = spec.replicas
    base = spec.on_demand_base if spec.spot else replicas.max
    # (spot, VMs at desired replicas, VMs at max replicas): the group's on-demand VMs, then its spot VMs.
    kinds = [(False, min(base, replicas.desired), min(base, replicas.max))]
    if spec.spot:
        kinds.append((True, replicas.desired - kinds[0][1], replicas.max - kinds[0][2]))
    # Pools hold on-demand VMs only (schedule.standby_vms).
    pool = fleet.standby_pool.stopped_off_hours if fleet.standby_pool else 0
    needs: dict[str, dict[str, Any]] = {}
    for spot, at_desired, at_max in kinds:
        if not at_max:
            continue
        largest: dict[str, tuple[Quota, int]] = {}
        for instance in fleet.instance_types:
            for q in cloud.quotas(instance, spot):
                largest[q.name] = (q, max(largest.get(q.name, (q, 0))[1], instance.per_vm(q.unit)))
        for q, per_vm in largest.values():
            need = needs.setdefault(q.name, {"name": q.name, "code": q.code, "unit": q.unit,
                                             "scope": spec.region if q.scope == "region" else q.scope,
                                             "perReplica": 0, "atDesired": 0, "atMax": 0, "duringUpdate": 0,
                                             "withPoolSetup": 0})
            need["perReplica"] = max(need["perReplica"], per_vm)
            need["atDesired"] += per_vm * at_desired
            need["atMax"] += per_vm * at_max
            need["duringUpdate"] += per_vm * (at_max + fleet.update_surge(at_max))
            need["withPoolSetup"] += per_vm * (at_desired + (0 if spot else pool))
    return list(needs.values())


def _curl(base_url: str, spec: FleetSpec) -> str:
    body = json.dumps({"model": spec.served_model_name, "prompt": "def fibonacci(n):", "max_tokens": 64})
    return (f"export VLLM_API_KEY=$(pulumi stack output apiKey --show-secrets -s {spec.stack})\n"
            f"curl -sS {base_url}/completions -H \"Authorization: Bearer $VLLM_API_KEY\" "
            f"-H 'Content-Type: application/json' -d '{body}'")


def _continue_config(base_url: str, spec: FleetSpec) -> str:
    # Continue's config.yaml; the key stays in Continue's secrets, not in the file. Roles and capabilities as
    # Continue's config.yaml reference names them: agent mode needs tool_use, which vLLM serves only with a parser.
    roles, capabilities = continue_roles(spec.tool_calling)
    lines = [
        "models:",
        f"  - name: {spec.served_model_name} (vllm-fleet {spec.stack})",
        "    provider: vllm",
        f"    model: {spec.served_model_name}",
        f"    apiBase: {base_url}",
        "    apiKey: ${{ secrets.VLLM_FLEET_API_KEY }}",
        f"    roles: [{', '.join(roles)}]",
    ]
    if capabilities:
        lines.append(f"    capabilities: [{', '.join(capabilities)}]")
    else:
        lines.append("    # no tool_use (agent mode): " + ("a base model serves completions only" if spec.tool_calling.base
                                                          else "vLLM serves this model without a tool-call parser"))
    return "\n".join(lines)


def time_to_serve(sizing: Sizing) -> dict[str, Any]:
    budget = sizing.time_to_serve
    return {"seconds": budget.seconds, "boot": budget.boot, "install": budget.install, "download": budget.download,
            "load": budget.load, "downloadMBps": round(budget.download_mb_per_s), "diskMBps": round(budget.disk_mb_per_s),
            "basis": budget.describe()}


def stack_outputs(spec: FleetSpec, sizing: Sizing, fleet: FleetComponent, api_key: pulumi.Output[str],
                  warnings: list[str]) -> dict[str, Any]:
    """`fleet` is the cloud's component; `warnings` are the program's own, shown before the component's."""
    base_url = fleet.endpoint.apply(lambda url: f"{url}/v1")
    instance = sizing.instance
    lead = fleet.scale_up_lead_minutes(sizing)
    outputs = {
        "endpoint": fleet.endpoint,
        "openaiBaseUrl": base_url,
        "servedModelName": spec.served_model_name,
        "apiKey": pulumi.Output.secret(api_key),
        "apiKeyNames": list(spec.api_key_names),
        "instanceType": instance.name,
        "instanceTypes": [it.name for it in fleet.instance_types],
        "gpuType": instance.gpu,
        "gpuCount": instance.gpu_count,
        "tensorParallelSize": sizing.tensor_parallel_size,
        "replicas": {"min": spec.replicas.min, "desired": spec.replicas.desired, "max": spec.replicas.max},
        "spot": spec.spot,
        "image": fleet.image,
        "model": {"id": spec.model, "revision": spec.model_revision},
        "memory": {
            "weightsGib": round(sizing.memory.weights_gib, 1),
            "kvCacheGib": round(sizing.kv_cache_gib, 1),
            "kvCacheTokens": sizing.kv_cache_tokens,
            "maxModelLen": spec.max_model_len,
            "kvBytesPerToken": round(sizing.memory.gib_per_token * 2**30),
        },
        "capacity": capacity(spec, sizing),
        "timeToServe": time_to_serve(sizing),
        "estimatedCost": cost(spec, sizing, fleet.standby_pool, lead),
        "quota": quota(spec, fleet),
        "curlExample": base_url.apply(lambda url: _curl(url, spec)),
        "continueConfig": base_url.apply(lambda url: _continue_config(url, spec)),
        "toolCalling": spec.tool_calling.summary(),
        "warnings": [*warnings, *fleet.warnings],
    }
    if spec.office_hours:
        outputs["officeHours"] = office_hours(spec, fleet, lead)
    return outputs
