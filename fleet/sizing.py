"""Model memory, and the cheapest instance type of the catalog whose GPUs hold it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import catalog
from .catalog import InstanceType
from .errors import ConfigError
from .spec import FleetSpec, ModelArch

GIB = 1024**3
# Bytes per parameter as stored on the GPU. 4-bit AWQ/GPTQ carry group scales/zeros and keep embeddings and the
# LM head in 16 bit, which comes to ~0.56 bytes per parameter on the checkpoints in catalog/models.yaml.
BYTES_PER_PARAM = {None: 2.0, "fp8": 1.0, "awq": 0.56, "gptq": 0.56}
KV_BYTES = 2  # the KV cache stays 16 bit unless vllmArgs asks for --kv-cache-dtype fp8
# CUDA context, NCCL buffers, activations and CUDA graphs per GPU, measured as ~1-2 GiB on vLLM 0.x.
OVERHEAD_GIB_PER_GPU = 1.5

# How long a new VM takes to serve, by phase (TimeToServe). Estimates, not measurements of this project: no GPU VM
# has been timed yet (docs/boot.md says how to measure one); each is meant to be on the slow side.
BOOT_SECONDS = 240  # the cloud allocates and starts the GPU VM, the image boots, cloud-init starts the setup
INSTALL_SECONDS = 600  # gcc, uv, a Python, and vLLM's ~6 GB of pinned wheels (torch with CUDA, NVIDIA libraries)
# Downloads from the Hugging Face hub (or the stack's bucket) reach some hundreds of MB/s on a cloud VM, often
# less: the budget assumes this, or the cache disk's own throughput where that is lower.
HUB_MB_PER_S = 100
ENGINE_START_SECONDS = 300  # CUDA and NCCL start, torch.compile and CUDA graph capture, after the weights are read


@dataclass(frozen=True)
class ModelMemory:
    weights_gib: float
    kv_gib_per_token: float
    max_model_len: int

    @property
    def one_sequence_gib(self) -> float:
        """vLLM refuses to start unless the KV cache holds at least one sequence of max_model_len tokens."""
        return self.kv_gib_per_token * self.max_model_len


@dataclass(frozen=True)
class TimeToServe:
    """How long a new VM takes until it serves, by phase, in seconds; what health-check grace periods, the setup's
    timeout and the plan's "time to serve" come from."""

    boot: int
    install: int
    download: int  # the weights, at download_mb_per_s
    load: int  # the weights from the cache disk at disk_mb_per_s, then the engine's start
    download_mb_per_s: float
    disk_mb_per_s: float

    @property
    def seconds(self) -> int:
        return self.boot + self.install + self.download + self.load

    @property
    def setup_timeout_seconds(self) -> int:
        """The setup unit's TimeoutStartSec: twice the expected install and download (network steps are retried
        within it), after which systemd stops the run and starts it again, resuming the download."""
        return 2 * (self.install + self.download)

    @property
    def setup_retry_seconds(self) -> int:
        """How long the setup keeps retrying a failing network step: until shortly before its timeout."""
        return self.setup_timeout_seconds - 60

    def describe(self) -> str:
        return (f"~{math.ceil(self.seconds / 60)} min: boot {self.boot} s, install vLLM {self.install} s, download "
                f"the weights {self.download} s at {self.download_mb_per_s:.0f} MB/s, load them at "
                f"{self.disk_mb_per_s:.0f} MB/s and start the engine {self.load} s")


@dataclass(frozen=True)
class Sizing:
    instance: InstanceType
    tensor_parallel_size: int
    memory: ModelMemory
    kv_cache_gib: float  # what is left for the KV cache on one VM
    data_disk_gb: int
    time_to_serve: TimeToServe

    @property
    def startup_grace_seconds(self) -> int:
        """How long a new VM may take before health checks count: its whole expected time to serve."""
        return self.time_to_serve.seconds

    @property
    def kv_cache_tokens(self) -> int:
        return int(self.kv_cache_gib / self.memory.kv_gib_per_token)


def model_memory(arch: ModelArch, quantization: str | None, max_model_len: int, kv_fp8: bool = False) -> ModelMemory:
    weights = arch.params_b * 1e9 * BYTES_PER_PARAM[quantization] / GIB
    kv_per_token = 2 * arch.layers * arch.kv_heads * arch.head_dim * (1 if kv_fp8 else KV_BYTES) / GIB
    return ModelMemory(weights, kv_per_token, max_model_len)


def _tp_fits_heads(arch: ModelArch, tp: int) -> bool:
    # vLLM splits attention heads evenly over the GPUs; KV heads are split, or replicated when tp exceeds them.
    return arch.heads % tp == 0 and (arch.kv_heads % tp == 0 or tp % arch.kv_heads == 0)


def kv_cache_room_gib(instance: InstanceType, memory: ModelMemory, utilization: float) -> float:
    usable = instance.total_gpu_memory_gib * utilization
    return usable - memory.weights_gib - OVERHEAD_GIB_PER_GPU * instance.gpu_count


def _why_not(instance: InstanceType, spec: FleetSpec, memory: ModelMemory) -> str | None:
    if not _tp_fits_heads(spec.arch, instance.gpu_count):
        return (f"tensor parallel size {instance.gpu_count} does not divide the model's {spec.arch.heads} attention "
                f"heads / {spec.arch.kv_heads} KV heads")
    room = kv_cache_room_gib(instance, memory, spec.gpu_memory_utilization)
    if room < memory.one_sequence_gib:
        return (f"{instance.gpu_count}x {instance.gpu} ({instance.total_gpu_memory_gib:.0f} GiB) leaves "
                f"{max(room, 0):.1f} GiB for the KV cache after {memory.weights_gib:.1f} GiB of weights, "
                f"but one {memory.max_model_len}-token sequence needs {memory.one_sequence_gib:.1f} GiB")
    return None


def _weights_disk_gb(memory: ModelMemory) -> int:
    # The checkpoint on disk is about the weights' size; room for one more copy while a new revision downloads.
    return int(math.ceil(memory.weights_gib * GIB / 1e9 * 2 + 20))


def time_to_serve(cloud: catalog.CloudCatalog, memory: ModelMemory, data_disk_gb: int) -> TimeToServe:
    disk = cloud.data_disk_mb_per_s(data_disk_gb)
    download_rate = min(HUB_MB_PER_S, disk)
    weights_mb = memory.weights_gib * GIB / 1e6
    return TimeToServe(boot=BOOT_SECONDS, install=INSTALL_SECONDS,
                       download=math.ceil(weights_mb / download_rate),
                       load=math.ceil(weights_mb / disk) + ENGINE_START_SECONDS,
                       download_mb_per_s=download_rate, disk_mb_per_s=disk)


def size(spec: FleetSpec) -> Sizing:
    cloud = catalog.cloud(spec.cloud)
    kv_fp8 = any(arg in ("--kv-cache-dtype=fp8", "--kv-cache-dtype=fp8_e4m3") for arg in spec.vllm_args)
    memory = model_memory(spec.arch, spec.quantization, spec.max_model_len, kv_fp8)

    if spec.instance_type:
        candidates = [cloud.instance_types[spec.instance_type]]
        key, value = "instanceType", spec.instance_type
    else:
        candidates = [it for it in cloud.instance_types.values()
                      if (spec.accelerator_gpu in (None, it.gpu))
                      and (spec.accelerator_count in (None, it.gpu_count))]
        key = "accelerator" if spec.accelerator_gpu else "model"
        value = (f"{spec.accelerator_gpu}:{spec.accelerator_count}" if spec.accelerator_count
                 else spec.accelerator_gpu) if spec.accelerator_gpu else spec.model
        if not candidates:
            offered = sorted({f"{it.gpu}:{it.gpu_count}" for it in cloud.instance_types.values()})
            raise ConfigError(key, value, f"{spec.cloud} has no such instance type; it offers {', '.join(offered)}")

    offered = [it for it in candidates if cloud.unavailable(it, spec.region, spec.spot) is None]
    if not offered:
        reason = cloud.unavailable(candidates[0], spec.region, spec.spot)
        raise ConfigError(key, value, f"{candidates[0].name if len(candidates) == 1 else 'no such instance type'}: "
                                      f"{reason}")
    candidates = offered
    reasons = {it.name: _why_not(it, spec, memory) for it in candidates}
    fitting = [it for it in candidates if reasons[it.name] is None]
    if not fitting:
        if len(candidates) == 1:
            detail = reasons[candidates[0].name]
        else:
            largest = max(candidates, key=lambda it: it.total_gpu_memory_gib)
            detail = f"even the largest, {largest.name}: {reasons[largest.name]}"
        needed = memory.weights_gib + memory.one_sequence_gib
        raise ConfigError(key, value,
                          f"cannot hold {spec.model} ({spec.quantization or spec.dtype}, maxModelLen {spec.max_model_len}, "
                          f"~{needed:.0f} GiB): {detail}. Choose a larger accelerator, quantization awq/fp8 or a "
                          f"smaller maxModelLen")
    chosen = min(fitting, key=lambda it: (it.usd_per_hour, it.gpu_count, it.name))

    needed_disk = _weights_disk_gb(memory)
    if spec.data_disk_gb is not None and spec.data_disk_gb < needed_disk:
        raise ConfigError("dataDiskGb", spec.data_disk_gb,
                          f"must be at least {needed_disk} GB to cache {memory.weights_gib:.0f} GiB of weights")
    data_disk_gb = spec.data_disk_gb or max(needed_disk, cloud.min_data_disk_gb)
    return Sizing(
        instance=chosen,
        tensor_parallel_size=chosen.gpu_count,
        memory=memory,
        kv_cache_gib=kv_cache_room_gib(chosen, memory, spec.gpu_memory_utilization),
        data_disk_gb=data_disk_gb,
        time_to_serve=time_to_serve(cloud, memory, data_disk_gb),
    )


# A pick that costs this many times what the model needs elsewhere is worth a warning.
COSTLY_RATIO = 1.5


def cheaper_elsewhere(spec: FleetSpec, sizing: Sizing) -> list[str]:
    """Where the same model, precision and context cost far less than the pick: a smaller type in this region
    (when accelerator or instanceType chose it), or the cheapest fit in another region of the same cloud."""
    cloud = catalog.cloud(spec.cloud)
    chosen = sizing.instance

    def fits_in(region: str) -> list[InstanceType]:
        return [it for it in cloud.instance_types.values()
                if cloud.unavailable(it, region, spec.spot) is None and _why_not(it, spec, sizing.memory) is None]

    notes = []
    here = min(fits_in(spec.region), key=lambda it: it.usd_per_hour, default=None)
    pinned = "instanceType" if spec.instance_type else "accelerator" if spec.accelerator_gpu else None
    if pinned and here and here.usd_per_hour * COSTLY_RATIO < chosen.usd_per_hour:
        notes.append(f"{pinned} picks {chosen.name} at ${chosen.usd_per_hour:.2f}/hour, but {spec.model} fits "
                     f"{here.name} ({here.gpu_count}x {here.gpu}) at ${here.usd_per_hour:.2f}/hour in {spec.region}")
    elif not pinned:
        elsewhere = min(((it, region) for region in cloud.regions if region != spec.region for it in fits_in(region)),
                        key=lambda pair: pair[0].usd_per_hour, default=None)
        if elsewhere and elsewhere[0].usd_per_hour * COSTLY_RATIO < chosen.usd_per_hour:
            it, region = elsewhere
            notes.append(f"{spec.region} offers {spec.model} no cheaper fit than {chosen.name} at "
                         f"${chosen.usd_per_hour:.2f}/hour; in {region} it fits {it.name} ({it.gpu_count}x {it.gpu}) "
                         f"at ${it.usd_per_hour:.2f}/hour")
    return notes
