"""GPU instance types per cloud, read from catalog/gpu-instances.yaml, and their prices and availability in each
region, read from catalog/prices.yaml."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pulumi
import yaml

CATALOG_FILE = Path(__file__).resolve().parent.parent / "catalog" / "gpu-instances.yaml"
PRICES_FILE = CATALOG_FILE.parent / "prices.yaml"


@dataclass(frozen=True)
class Quota:
    """One cloud quota a VM counts against, in `unit` (vcpus or gpus) per VM."""

    group: str
    name: str
    code: str | None
    unit: str
    scope: str


@dataclass(frozen=True)
class InstanceType:
    cloud: str
    name: str
    gpu: str
    gpu_count: int
    gpu_memory_gib: float
    vcpus: int
    memory_gib: float
    usd_per_hour: float
    quota_groups: tuple[str, ...]
    compute_capability: tuple[int, int]  # CUDA's (major, minor): which of vLLM's kernels the GPU runs
    # Its GPUs are joined through NVSwitch, which needs nvidia-fabricmanager (the catalog's gpus.nvswitch_gpu_count).
    nvswitch: bool = False

    @property
    def total_gpu_memory_gib(self) -> float:
        return self.gpu_memory_gib * self.gpu_count

    def per_vm(self, unit: str) -> int:
        return {"vcpus": self.vcpus, "gpus": self.gpu_count}[unit]


@dataclass(frozen=True)
class Price:
    """What an instance type costs an hour in a region. `region` is the region whose price this is: the one asked
    for, or the cloud's reference region where catalog/prices.yaml records none for it (then `regional` is False)."""

    usd_per_hour: float
    spot_usd_per_hour: float | None
    region: str
    regional: bool
    as_of: str
    source: str


@dataclass(frozen=True)
class CloudCatalog:
    name: str
    reference_region: str
    regions: tuple[str, ...]
    bucket_scheme: str
    instance_types: Mapping[str, InstanceType]
    quota_groups: Mapping[str, Mapping[str, Any]]
    prices_as_of: str
    raw: Mapping[str, Any]  # the cloud's whole section, for cloud-specific keys such as GCP's gpu_zones
    # catalog/prices.yaml: region -> instance type -> (on-demand, spot or None) $/hour
    regional_prices: Mapping[str, Mapping[str, tuple[float, float | None]]] = dataclasses.field(
        default_factory=dict)
    # Whether a type missing from a region of regional_prices is not offered there (the price list is complete).
    prices_complete: bool = False
    regional_prices_as_of: str = ""
    prices_source: str = ""

    def unavailable(self, instance: InstanceType, region: str, spot: bool) -> str | None:
        """Why `instance` cannot be had in `region`, from the section's optional `gpu_zones` (GPU -> region ->
        zones) and `spot_only` (types sold only as spot), and from catalog/prices.yaml where it lists every type of
        the region; None where it can."""
        gpu_zones = self.raw.get("gpu_zones")
        if gpu_zones is not None and region not in gpu_zones.get(instance.gpu, {}):
            return f"{region} has no {instance.gpu} (regions with it: {', '.join(sorted(gpu_zones.get(instance.gpu, {})))})"
        if self.prices_complete and region in self.regional_prices and instance.name not in self.regional_prices[region]:
            offering = sorted(r for r, types in self.regional_prices.items() if instance.name in types)
            return (f"{region} does not offer {instance.name} (regions with it: {', '.join(offering) or 'none'}; "
                    f"catalog/prices.yaml of {self.regional_prices_as_of})")
        if not spot and instance.name in self.raw.get("spot_only", ()):
            return "sold only as spot VMs (set spot: true)"
        return None

    def price(self, instance: InstanceType, region: str) -> Price:
        """The instance type's price in `region`, or the reference region's where none is recorded for it."""
        recorded = self.regional_prices.get(region, {}).get(instance.name)
        if recorded is not None:
            return Price(recorded[0], recorded[1], region, True, self.regional_prices_as_of, self.prices_source)
        reference = self.regional_prices.get(self.reference_region, {}).get(instance.name)
        spot = reference[1] if reference else None
        return Price(instance.usd_per_hour, spot, self.reference_region, region == self.reference_region,
                     self.prices_as_of, "catalog/gpu-instances.yaml")

    def in_region(self, region: str) -> dict[str, InstanceType]:
        """Every instance type with its price in `region` as usd_per_hour (the reference price where none is
        recorded), whether or not the region offers it (see unavailable)."""
        return {name: dataclasses.replace(it, usd_per_hour=self.price(it, region).usd_per_hour)
                for name, it in self.instance_types.items()}

    @property
    def min_data_disk_gb(self) -> int:
        """The smallest weights cache disk worth having: on clouds whose disk throughput grows with its size, a
        smaller one would take longer to load the weights than it saves."""
        return int(self.raw["data_disk"].get("min_gb", 0))

    def data_disk_mb_per_s(self, size_gb: int) -> float:
        """The weights cache disk's throughput (MB/s) at a size, from the section's data_disk: a fixed `mb_per_s`,
        `mb_per_s_per_gb` up to `max_mb_per_s`, or `tiers` of [largest size in GB, MB/s]."""
        disk = self.raw["data_disk"]
        if "mb_per_s" in disk:
            return float(disk["mb_per_s"])
        if "mb_per_s_per_gb" in disk:
            return min(disk["mb_per_s_per_gb"] * size_gb, disk["max_mb_per_s"])
        return float(next(rate for largest, rate in disk["tiers"] if size_gb <= largest))

    def disk_usd_per_month(self, disk_type: str, size_gb: int, iops: int = 0, mb_per_s: int = 0) -> float:
        """A disk's price a month, from the section's disk_prices: by size, and by the IOPS and throughput
        provisioned above what the type includes."""
        price = self.raw["disk_prices"][disk_type]
        return (size_gb * price["usd_per_gb_month"]
                + max(0, iops - price.get("free_iops", 0)) * price.get("usd_per_iops_month", 0)
                + max(0, mb_per_s - price.get("free_mb_per_s", 0)) * price.get("usd_per_mb_per_s_month", 0))

    def quotas(self, instance: InstanceType, spot: bool) -> list[Quota]:
        found: dict[str, Quota] = {}
        for group in instance.quota_groups:
            entry = self.quota_groups[group]
            # A group with no separate spot quota (e.g. a CPU quota) counts spot VMs under its on-demand name.
            variant = entry.get("spot", entry["on_demand"]) if spot else entry["on_demand"]
            # Two groups may name one quota for spot VMs (Azure's low-priority total): it is counted once.
            found.setdefault(variant["name"], Quota(group, variant["name"], variant.get("code"), entry["unit"],
                                                    entry.get("scope", "region")))
        return list(found.values())


class CatalogError(pulumi.RunError):
    """A catalog file that does not say what sizing needs (a RunError: `pulumi up` prints the message alone)."""


# The numbers of a catalog/models.yaml entry (fleet/spec.py ModelArch) and what each must be.
MODEL_INTS = ("layers", "heads", "kv_heads", "head_dim", "max_len", "kv_lora_rank", "qk_rope_head_dim",
              "sliding_window", "sliding_layers", "experts", "moe_intermediate_size", "quant_block", "hidden_size",
              "vocab_size")
MODEL_FLOATS = ("params_b", "active_params_b", "quantized_params_b", "weights_gb")
MODEL_REQUIRED = ("params_b", "layers", "heads", "kv_heads", "head_dim", "max_len")


def model_entry_problem(entry: Mapping[str, Any]) -> tuple[str, Any, str] | None:
    """What is wrong with a model's architecture numbers, as (key, value, what would work); None if nothing."""
    for key in MODEL_INTS + MODEL_FLOATS:
        value = entry.get(key)
        if value is None:
            if key in MODEL_REQUIRED:
                return key, None, f"required, with {', '.join(MODEL_REQUIRED)}"
            continue
        kinds = (int,) if key in MODEL_INTS else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
            return key, value, ("a positive whole number" if key in MODEL_INTS
                                else "a positive number of billions" if key.endswith("_b") else "a positive number")
    if entry.get("heads") and entry.get("kv_heads") and entry["heads"] % entry["kv_heads"]:
        return "kv_heads", entry["kv_heads"], f"must divide the {entry['heads']} attention heads"
    if bool(entry.get("sliding_window")) != bool(entry.get("sliding_layers")):
        return ("sliding_layers", entry.get("sliding_layers"),
                "sliding_window and sliding_layers come together: the window and how many layers use it")
    if entry.get("sliding_layers", 0) > entry.get("layers", 0):
        return "sliding_layers", entry["sliding_layers"], f"at most the model's {entry.get('layers')} layers"
    return None


def check_model_entry(model: str, entry: Mapping[str, Any], source: str) -> None:
    """A catalog entry must also say what sizes a 4-bit checkpoint's 16-bit embeddings (fleet/sizing.py)."""
    problem = model_entry_problem(entry)
    if (not problem and entry.get("quantization") in ("awq", "gptq") and not entry.get("weights_gb")
            and not (entry.get("hidden_size") and entry.get("vocab_size"))):
        problem = ("hidden_size", entry.get("hidden_size"), "a 4-bit checkpoint needs hidden_size and vocab_size (its "
                   "embeddings and LM head stay 16 bit), or weights_gb")
    if problem:
        key, value, expected = problem
        raise CatalogError(f"{source}: {model}: {key} = {value!r}: {expected}")


@functools.cache
def _load() -> dict[str, Any]:
    return yaml.safe_load(CATALOG_FILE.read_text())


@functools.cache
def _prices() -> dict[str, Any]:
    return yaml.safe_load(PRICES_FILE.read_text())["clouds"] if PRICES_FILE.exists() else {}


def gpu_names() -> list[str]:
    return sorted(_load()["gpus"])


def gpu_memory_gib(gpu: str) -> float:
    return float(_load()["gpus"][gpu]["memory_gib"])


# What vLLM needs free on a GPU besides its gpuMemoryUtilization share: it refuses to start when the memory free
# after creating the CUDA context (torch, cuBLAS and NCCL workspaces: ~0.5-1 GiB) is less than that share
# (vllm/v1/worker/utils.py: "Free memory on device ... is less than desired GPU memory utilization").
CUDA_CONTEXT_GIB = 1.0


def max_gpu_memory_utilization() -> tuple[float, str]:
    """The largest gpuMemoryUtilization (two decimals) that leaves CUDA_CONTEXT_GIB free on the catalog's smallest
    GPU, and that GPU."""
    smallest = min(gpu_names(), key=gpu_memory_gib)
    return math.floor((1 - CUDA_CONTEXT_GIB / gpu_memory_gib(smallest)) * 100) / 100, smallest


def clouds() -> list[str]:
    return sorted(_load()["clouds"])


@functools.cache
def cloud(name: str) -> CloudCatalog:
    data = _load()
    section = data["clouds"][name]
    prices = _prices().get(name, {})
    gpus = data["gpus"]
    instance_types = {
        itype: InstanceType(
            cloud=name,
            name=itype,
            gpu=entry["gpu"],
            gpu_count=entry["gpu_count"],
            gpu_memory_gib=gpus[entry["gpu"]]["memory_gib"],
            vcpus=entry["vcpus"],
            memory_gib=entry["memory_gib"],
            usd_per_hour=entry["usd_per_hour"],
            quota_groups=tuple(entry["quotas"]),
            compute_capability=tuple(gpus[entry["gpu"]]["compute_capability"]),
            nvswitch=entry["gpu_count"] >= gpus[entry["gpu"]].get("nvswitch_gpu_count", math.inf),
        )
        for itype, entry in section["instance_types"].items()
    }
    return CloudCatalog(
        name=name,
        reference_region=section["reference_region"],
        regions=tuple(section["regions"]),
        bucket_scheme=section["bucket_scheme"],
        instance_types=instance_types,
        quota_groups=section["quota_groups"],
        prices_as_of=str(data["prices_as_of"]),
        raw=section,
        regional_prices={region: {itype: (float(entry[0]), None if entry[1] is None else float(entry[1]))
                                  for itype, entry in (types or {}).items() if itype in instance_types}
                         for region, types in (prices.get("regions") or {}).items()},
        prices_complete=bool(prices.get("complete", False)),
        regional_prices_as_of=str(prices.get("as_of", "")),
        prices_source=str(prices.get("source", "")),
    )
