"""Model memory, the cheapest instance type (and, for the capacity key, number of replicas) of the stack's region
whose GPUs hold it, and how many requests a VM serves at once.

What vLLM allocates on each VM (vLLM 0.32, the release the VMs run; GiB = 2^30 bytes):

    usable      = GPUs x GPU memory x gpuMemoryUtilization
    weights     = params_b x 10^9 x bytes per parameter (2 for 16 bit, 1 for fp8; a checkpoint read from the hub
                  is its safetensors size, weights_gb). A mixture of experts holds every expert: params_b is the
                  total, not the active parameters.
                  4-bit AWQ/GPTQ: 4 bits a parameter with a 16-bit scale and a 4-bit zero per group of 128, but
                  the embeddings and the LM head (vocab_size x hidden_size each) stay 16 bit.
                  mxfp4 (gpt-oss): the quantized_params_b experts at 4.25 bits, the rest 16 bit; vLLM's kernels
                  pad the experts' shapes (vllm/model_executor/layers/fused_moe/oracle/mxfp4.py): Marlin (below
                  compute capability 9.0, e.g. A100) pads hidden_size to 256 and each GPU's share of the
                  intermediate size to 128 (gpt-oss: 2880 x 2880 -> 3072 x 2944); the OAI Triton kernels (9.0,
                  H100) pad each GPU's intermediate share to 64.
    download    = the checkpoint: the weights as stored (16 bit for load-time quantization fp8, which vLLM
                  quantizes after reading them); what the data disk caches and the time to serve downloads.
    KV cache    = usable - weights - 1.5 GiB a GPU (CUDA context, NCCL buffers, activations, CUDA graphs)
    KV a token  = what one token takes in the KV cache of all the VM's GPUs together, at tensor parallel size tp:
                  attention:  2 (K and V) x layers x max(kv_heads, tp) x head_dim x 2 bytes (vLLM splits the KV
                              heads over the GPUs, and repeats them when tp exceeds them)
                  MLA:        layers x (kv_lora_rank + qk_rope_head_dim) x 2 bytes x tp (one latent a token and
                              layer, no separate V, and every GPU holds all of it)
                  --kv-cache-dtype=fp8 in vllmArgs halves the 2 bytes.
    a request   = full-attention layers: their KV a token x its tokens, in vLLM's 16-token blocks; sliding-window
                  layers (gpt-oss every other one, StarCoder2 all): min(sliding_window - 1 + tokens in flight,
                  its tokens) in blocks, plus one block (vllm/v1/kv_cache_interface.py SlidingWindowSpec), where
                  tokens in flight = 2 (async scheduling) x max_num_batched_tokens (2048; 8192 on GPUs of 70 GiB
                  or more other than A100; or --max-num-batched-tokens of vllmArgs)
    requests    = floor(KV cache / a request), at most vLLM's max_num_seqs (256; 1024 on GPUs of 70 GiB or more
                  other than A100: vllm/engine/arg_utils.py), or --max-num-seqs of vllmArgs

vLLM refuses to start unless the KV cache holds one request of maxModelLen tokens: that is what "fits" means. With
the capacity key {concurrentRequests: N, tokensPerRequest: T}, the fleet is the cheapest instance type x replicas
(replicas = ceil(N / requests of T tokens a VM)) in the stack's region; docs/capacity.md works examples by hand.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from . import catalog, vllm_args
from .catalog import InstanceType, Price
from .errors import ConfigError
from .spec import FleetSpec, ModelArch, Replicas

GIB = 1024**3
# Bytes per parameter as stored on the GPU. 4-bit AWQ/GPTQ: 4 bits with a 16-bit scale and a 4-bit zero per group
# of 128 (their embeddings and LM head stay 16 bit: embedding_params). MXFP4 (gpt-oss) is 4-bit values with one
# 8-bit scale per 32: 4.25 bits.
BYTES_PER_PARAM = {None: 2.0, "fp8": 1.0, "awq": (4 + 20 / 128) / 8, "gptq": (4 + 20 / 128) / 8, "mxfp4": 4.25 / 8}
# The compute capability from which vLLM runs gpt-oss's mxfp4 experts on the OAI Triton kernels instead of Marlin.
MXFP4_TRITON_CAPABILITY = (9, 0)
KV_BYTES = 2  # the KV cache stays 16 bit unless vllmArgs asks for --kv-cache-dtype fp8
# CUDA context, NCCL buffers, activations and CUDA graphs per GPU, measured as ~1-2 GiB on vLLM 0.x.
OVERHEAD_GIB_PER_GPU = 1.5
# vLLM's KV cache block on CUDA (--block-size): a request holds whole blocks.
BLOCK_TOKENS = 16
# vLLM 0.32's max_num_seqs for the OpenAI server (vllm/engine/arg_utils.py _get_default_max_num_seqs...): 1024 on
# GPUs of 70 GiB or more other than A100, 256 on the others.
MAX_NUM_SEQS, MAX_NUM_SEQS_LARGE_GPU = 256, 1024
# ... and its max_num_batched_tokens for the OpenAI server (get_batch_defaults): 2048, 8192 on GPUs of 70 GiB or more
# other than A100, 16384 on GPUs of 160 GiB or more. Async scheduling (on by default) keeps two batches in flight,
# whose tokens a sliding-window layer holds beyond its window (VllmConfig.max_in_flight_tokens).
MAX_NUM_BATCHED_TOKENS, MAX_NUM_BATCHED_TOKENS_LARGE_GPU, MAX_NUM_BATCHED_TOKENS_HUGE_GPU = 2048, 8192, 16384
BATCHES_IN_FLIGHT = 2
# Without the capacity key, the plan warns when a VM holds fewer full-context requests than this.
FEW_REQUESTS = 4
MAX_REPLICAS = 100  # what the replicas key allows

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
    weights_gib: float  # on the GPUs
    kv_gib_per_token: float  # of the full-attention layers, in the KV cache of all the VM's GPUs together
    max_model_len: int
    # Sliding-window layers: their KV of one token (all GPUs) and the window they keep of each request.
    window_gib_per_token: float = 0.0
    sliding_window: int = 0
    tensor_parallel_size: int = 1
    in_flight_tokens: int = BATCHES_IN_FLIGHT * MAX_NUM_BATCHED_TOKENS  # vLLM's max_in_flight_tokens
    download_gib: float = 0.0  # the checkpoint the VM downloads and caches (weights_gib where 0)

    @property
    def checkpoint_gib(self) -> float:
        return self.download_gib or self.weights_gib

    @property
    def gib_per_token(self) -> float:
        """What a token of a long request adds, every layer counted (sliding ones up to their window)."""
        return self.kv_gib_per_token + self.window_gib_per_token

    def request_gib(self, tokens: int) -> float:
        """The KV cache one request of `tokens` tokens (prompt + completion) holds."""
        blocks = math.ceil(tokens / BLOCK_TOKENS)
        window_blocks = 0
        if self.sliding_window:
            held = min(self.sliding_window - 1 + self.in_flight_tokens, tokens)
            window_blocks = math.ceil(held / BLOCK_TOKENS) + 1  # the window may start inside a block
        return (self.kv_gib_per_token * blocks + self.window_gib_per_token * window_blocks) * BLOCK_TOKENS

    @property
    def one_sequence_gib(self) -> float:
        """vLLM refuses to start unless the KV cache holds at least one sequence of max_model_len tokens."""
        return self.request_gib(self.max_model_len)


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
    def warm_seconds(self) -> int:
        """A stopped VM started again (a warm or standby pool's): it boots and loads the weights from its own disk;
        vLLM and the weights are installed."""
        return self.boot + self.load

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
    instance: InstanceType  # usd_per_hour: its price in the stack's region (see price)
    tensor_parallel_size: int
    memory: ModelMemory
    kv_cache_gib: float  # what is left for the KV cache on one VM
    data_disk_gb: int
    time_to_serve: TimeToServe
    price: Price | None = None  # where the price comes from (the stack's region, or the reference region's)
    # The replicas the fleet runs: the stack's, or with the capacity key those that hold its load.
    replicas: Replicas | None = None
    tokens_per_request: int = 0  # the capacity key's, else max_model_len: what requests_per_replica counts
    max_num_seqs: int = MAX_NUM_SEQS

    @property
    def startup_grace_seconds(self) -> int:
        """How long a new VM may take before health checks count: its whole expected time to serve."""
        return self.time_to_serve.seconds

    @property
    def kv_cache_tokens(self) -> int:
        """Tokens the KV cache holds in every layer (a model whose layers all slide holds more in requests)."""
        return int(self.kv_cache_gib / self.memory.gib_per_token)

    def requests_of(self, tokens: int) -> int:
        """Requests of `tokens` tokens one VM serves at once: as many as its KV cache holds, at most max_num_seqs."""
        return min(int(self.kv_cache_gib / self.memory.request_gib(tokens)), self.max_num_seqs)

    @property
    def requests_per_replica(self) -> int:
        return self.requests_of(self.tokens_per_request or self.memory.max_model_len)

    @property
    def full_context_requests(self) -> int:
        """Requests of maxModelLen tokens one VM holds at once."""
        return self.requests_of(self.memory.max_model_len)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def mxfp4_padding(arch: ModelArch, compute_capability: tuple[int, int] | None, tensor_parallel_size: int,
                  expert_parallel: bool = False) -> float:
    """How much larger vLLM's mxfp4 kernels make the experts than the checkpoint stores them on a GPU of
    `compute_capability` (mxfp4_round_up_hidden_size_and_intermediate_size); 1 where unknown."""
    if compute_capability is None or not (arch.hidden_size and arch.moe_intermediate_size):
        return 1.0
    # Tensor parallelism splits each expert's intermediate size over the GPUs; expert parallelism keeps it whole.
    share = arch.moe_intermediate_size // (1 if expert_parallel else tensor_parallel_size)
    if compute_capability >= MXFP4_TRITON_CAPABILITY:
        hidden, padded_share = arch.hidden_size, _round_up(share, 64)
    else:  # Marlin
        hidden, padded_share = _round_up(arch.hidden_size, 256), _round_up(share, 128)
    return hidden * padded_share / (arch.hidden_size * share)


def embedding_params_b(arch: ModelArch) -> float:
    """The input embeddings and the LM head (untied in every 4-bit checkpoint of the catalog), in billions."""
    return 2 * arch.vocab_size * arch.hidden_size / 1e9


def checkpoint_gib(arch: ModelArch, quantization: str | None) -> float:
    """The checkpoint as stored: what the VM downloads and caches (load-time fp8 reads the 16-bit weights)."""
    return weights_gib(arch, quantization if quantization == arch.quantization else None)


def weights_gib(arch: ModelArch, quantization: str | None, compute_capability: tuple[int, int] | None = None,
                tensor_parallel_size: int = 1, expert_parallel: bool = False) -> float:
    """The weights on the GPUs (all of them together): see the module's docstring."""
    prequantized = quantization is not None and quantization == arch.quantization
    if quantization == "mxfp4" and prequantized:
        padding = mxfp4_padding(arch, compute_capability, tensor_parallel_size, expert_parallel)
        experts = arch.quantized_params_b or 0.0
        if arch.weights_gb:  # the checkpoint's own size, from its safetensors metadata
            stored = arch.weights_gb * 1e9
        else:
            stored = (experts * BYTES_PER_PARAM["mxfp4"] + (arch.params_b - experts) * BYTES_PER_PARAM[None]) * 1e9
        return (stored + experts * 1e9 * BYTES_PER_PARAM["mxfp4"] * (padding - 1)) / GIB
    if arch.weights_gb and prequantized:
        return arch.weights_gb * 1e9 / GIB
    if quantization in ("awq", "gptq"):
        embeddings = embedding_params_b(arch)
        return ((arch.params_b - embeddings) * BYTES_PER_PARAM[quantization]
                + embeddings * BYTES_PER_PARAM[None]) * 1e9 / GIB
    return arch.params_b * 1e9 * BYTES_PER_PARAM[quantization] / GIB


def model_memory(arch: ModelArch, quantization: str | None, max_model_len: int, kv_fp8: bool = False,
                 tensor_parallel_size: int = 1, compute_capability: tuple[int, int] | None = None,
                 in_flight_tokens: int = BATCHES_IN_FLIGHT * MAX_NUM_BATCHED_TOKENS,
                 expert_parallel: bool = False) -> ModelMemory:
    """Weights and KV cache of the model at tensor parallel size `tensor_parallel_size` on GPUs of
    `compute_capability` (None: no kernel's padding) with vLLM's `in_flight_tokens` (see the module's docstring for
    every formula)."""
    tp = tensor_parallel_size
    element = (1 if kv_fp8 else KV_BYTES) / GIB
    if arch.mla:
        per_layer = (arch.kv_lora_rank + arch.qk_rope_head_dim) * element * tp
    else:
        per_layer = 2 * max(arch.kv_heads, tp) * arch.head_dim * element
    sliding_layers = arch.sliding_layers if arch.sliding_window else 0
    return ModelMemory(weights_gib(arch, quantization, compute_capability, tp, expert_parallel),
                       per_layer * (arch.layers - sliding_layers), max_model_len,
                       window_gib_per_token=per_layer * sliding_layers, sliding_window=arch.sliding_window,
                       tensor_parallel_size=tp, in_flight_tokens=in_flight_tokens,
                       download_gib=checkpoint_gib(arch, quantization))


def _tp_fits_heads(arch: ModelArch, tp: int) -> bool:
    # vLLM splits attention heads evenly over the GPUs; KV heads are split, or replicated when tp exceeds them.
    return arch.heads % tp == 0 and (arch.kv_heads % tp == 0 or tp % arch.kv_heads == 0)


def expert_parallel(args: tuple[str, ...]) -> bool:
    return vllm_args.value_of(args, "enable_expert_parallel") is True


def _large_gpu(instance: InstanceType) -> bool:
    # vllm/engine/arg_utils.py get_batch_defaults: GPUs of 70 GiB or more, other than A100, get larger batches.
    return instance.gpu_memory_gib >= 70 and not instance.gpu.startswith("A100")


def default_batched_tokens(instance: InstanceType) -> int:
    """vLLM's default max_num_batched_tokens for the OpenAI server on this instance's GPUs."""
    if instance.gpu_memory_gib >= 160:
        return MAX_NUM_BATCHED_TOKENS_HUGE_GPU
    return MAX_NUM_BATCHED_TOKENS_LARGE_GPU if _large_gpu(instance) else MAX_NUM_BATCHED_TOKENS


def max_num_seqs(instance: InstanceType, args: tuple[str, ...] = ()) -> int:
    """vLLM's cap on requests in flight on one VM (its default for the GPU, at most max_num_batched_tokens, or
    --max-num-seqs of vllmArgs)."""
    given = vllm_args.number_of(args, "max_num_seqs")
    if given is not None:
        return int(given)
    default = MAX_NUM_SEQS_LARGE_GPU if _large_gpu(instance) else MAX_NUM_SEQS
    batched = vllm_args.number_of(args, "max_num_batched_tokens")
    return min(default, int(batched)) if batched is not None else default


def in_flight_tokens(instance: InstanceType, args: tuple[str, ...], max_model_len: int) -> int:
    """vLLM's max_in_flight_tokens on the VM: the batches async scheduling keeps in flight (one with
    --no-async-scheduling) x max_num_batched_tokens (its default for the GPU, at most max_num_seqs x max_model_len,
    or --max-num-batched-tokens of vllmArgs)."""
    given = vllm_args.number_of(args, "max_num_batched_tokens")
    if given is not None:
        batched = int(given)
    else:
        batched = min(default_batched_tokens(instance), max_num_seqs(instance, args) * max_model_len)
    batches = 1 if vllm_args.value_of(args, "async_scheduling") is False else BATCHES_IN_FLIGHT
    return batches * batched


def batching_refusal(instance: InstanceType, spec: FleetSpec) -> str | None:
    """Why vLLM refuses --max-num-seqs of vllmArgs on this instance's GPUs, or None: without --max-num-batched-tokens
    it batches its default for the GPU, and refuses fewer batched tokens than sequences (vllm/config/scheduler.py)."""
    seqs = vllm_args.number_of(spec.vllm_args, "max_num_seqs")
    if seqs is None or vllm_args.value_of(spec.vllm_args, "max_num_batched_tokens") is not None:
        return None
    default = default_batched_tokens(instance)
    if vllm_args.value_of(spec.vllm_args, "performance_mode") == "throughput":
        default *= 2
    if vllm_args.value_of(spec.vllm_args, "enable_chunked_prefill") is False:
        default = max(default, spec.max_model_len)
    if seqs <= default:
        return None
    return (f"--max-num-seqs={seqs} is above the {default} tokens vLLM batches a step by default on {instance.gpu}, "
            f"and vLLM refuses fewer batched tokens than sequences: add --max-num-batched-tokens={seqs} or more")


def kv_cache_room_gib(instance: InstanceType, memory: ModelMemory, utilization: float) -> float:
    usable = instance.total_gpu_memory_gib * utilization
    return usable - memory.weights_gib - OVERHEAD_GIB_PER_GPU * instance.gpu_count


def _why_not(instance: InstanceType, spec: FleetSpec, memory: ModelMemory) -> str | None:
    arch = spec.arch
    if arch.gpus is not None and instance.gpu not in arch.gpus:
        return f"vLLM does not serve {spec.model} on {instance.gpu} (it does on {', '.join(arch.gpus)})"
    if not _tp_fits_heads(arch, instance.gpu_count):
        return (f"tensor parallel size {instance.gpu_count} does not divide the model's {arch.heads} attention "
                f"heads / {arch.kv_heads} KV heads")
    if (_fp8_block_experts(spec) and (arch.moe_intermediate_size // instance.gpu_count) % arch.quant_block
            and not expert_parallel(spec.vllm_args)):
        return (f"tensor parallel size {instance.gpu_count} splits the experts' {arch.moe_intermediate_size} "
                f"intermediate size into {arch.moe_intermediate_size // instance.gpu_count}, not whole "
                f"{arch.quant_block}-wide fp8 blocks: add --enable-expert-parallel to vllmArgs")
    room = kv_cache_room_gib(instance, memory, spec.gpu_memory_utilization)
    if room < memory.one_sequence_gib:
        return (f"{instance.gpu_count}x {instance.gpu} ({instance.total_gpu_memory_gib:.0f} GiB) leaves "
                f"{max(room, 0):.1f} GiB for the KV cache after {memory.weights_gib:.1f} GiB of weights, "
                f"but one {memory.max_model_len}-token sequence needs {memory.one_sequence_gib:.1f} GiB")
    return None


def _fp8_block_experts(spec: FleetSpec) -> bool:
    """Whether the checkpoint's experts are fp8 in fixed-width blocks, which tensor parallelism must not split."""
    arch = spec.arch
    return bool(spec.quantization == "fp8" and arch.quantization == "fp8" and arch.quant_block
                and arch.moe_intermediate_size)


def fit_flags(spec: FleetSpec) -> list[str]:
    """The vLLM arguments, missing from the stack's vllmArgs, that let more instance types hold its model:
    --enable-expert-parallel for fp8 block-quantized experts (see _why_not). `make compare` sizes with them, and
    the plan warns when they would give a cheaper fit (cheaper_with_flags)."""
    return ["--enable-expert-parallel"] if _fp8_block_experts(spec) and not expert_parallel(spec.vllm_args) else []


def _weights_disk_gb(memory: ModelMemory) -> int:
    # The checkpoint on disk, with room for one more copy while a new revision downloads.
    return int(math.ceil(memory.checkpoint_gib * GIB / 1e9 * 2 + 20))


def time_to_serve(cloud: catalog.CloudCatalog, memory: ModelMemory, data_disk_gb: int) -> TimeToServe:
    disk = cloud.data_disk_mb_per_s(data_disk_gb)
    download_rate = min(HUB_MB_PER_S, disk)
    weights_mb = memory.checkpoint_gib * GIB / 1e6  # downloaded, then read from the disk
    return TimeToServe(boot=BOOT_SECONDS, install=INSTALL_SECONDS,
                       download=math.ceil(weights_mb / download_rate),
                       load=math.ceil(weights_mb / disk) + ENGINE_START_SECONDS,
                       download_mb_per_s=download_rate, disk_mb_per_s=disk)


def kv_fp8(spec: FleetSpec) -> bool:
    # Every fp8 format vLLM offers (fp8, fp8_e4m3, fp8_e5m2, fp8_inc, fp8_ds_mla...) stores one byte an element.
    return str(vllm_args.value_of(spec.vllm_args, "kv_cache_dtype") or "").startswith("fp8")


def memory_at(spec: FleetSpec, instance: InstanceType) -> ModelMemory:
    """The model's memory on one VM of `instance`, tensor parallel over all its GPUs."""
    return model_memory(spec.arch, spec.quantization, spec.max_model_len, kv_fp8(spec), instance.gpu_count,
                        instance.compute_capability, in_flight_tokens(instance, spec.vllm_args, spec.max_model_len),
                        expert_parallel(spec.vllm_args))


def _replicas_for(spec: FleetSpec, per_replica: int) -> int | None:
    """How many replicas hold the capacity key's load at `per_replica` requests each; None where the stack's
    replicas.desired (or max) cannot."""
    capacity = spec.capacity
    needed = math.ceil(capacity.concurrent_requests / per_replica) if per_replica else MAX_REPLICAS + 1
    if capacity.desired_set:
        return spec.replicas.desired if needed <= spec.replicas.desired else None
    needed = max(needed, spec.replicas.min if capacity.min_set else 1)
    limit = spec.replicas.max if capacity.max_set else MAX_REPLICAS
    return needed if needed <= limit else None


def _effective_replicas(spec: FleetSpec, count: int) -> Replicas:
    """The stack's replicas with desired (and, where the stack leaves them, min and max) following the capacity
    key's count."""
    given = spec.capacity
    replicas = spec.replicas
    maximum = replicas.max if given.max_set else max(count, replicas.min)
    minimum = replicas.min if given.min_set else min(replicas.min, count)
    return dataclasses.replace(replicas, min=minimum, desired=count, max=max(maximum, count))


def options(spec: FleetSpec) -> list[Sizing]:
    """Every way to serve the spec in its region, cheapest first ($/hour of the whole fleet at desired replicas;
    then fewer replicas, fewer GPUs, the name). `size` takes the first; `make compare` shows them all. Raises
    ConfigError naming what does not fit."""
    cloud = catalog.cloud(spec.cloud)
    priced = cloud.in_region(spec.region)

    if spec.instance_type:
        candidates = [priced[spec.instance_type]]
        key, value = "instanceType", spec.instance_type
    else:
        candidates = [it for it in priced.values()
                      if (spec.accelerator_gpu in (None, it.gpu))
                      and (spec.accelerator_count in (None, it.gpu_count))]
        key = "accelerator" if spec.accelerator_gpu else "model"
        value = (f"{spec.accelerator_gpu}:{spec.accelerator_count}" if spec.accelerator_count
                 else spec.accelerator_gpu) if spec.accelerator_gpu else spec.model
        if not candidates:
            offered = sorted({f"{it.gpu}:{it.gpu_count}" for it in cloud.instance_types.values()})
            raise ConfigError(key, value, f"{spec.cloud} has no such instance type; it offers {', '.join(offered)}")

    offered = [it for it in candidates if cloud.unavailable(it, spec.region, spec.spot) is None]
    # Types the region sells only as spot VMs: where they alone would hold the model, the answer is spot: true.
    spot_only = [it for it in candidates if it not in offered and not spec.spot
                 and cloud.unavailable(it, spec.region, True) is None
                 and _why_not(it, spec, memory_at(spec, it)) is None]
    spot_hint = (f"; {', '.join(it.name for it in spot_only)} would hold it but {spec.region} sells "
                 f"{'it' if len(spot_only) == 1 else 'them'} only as spot VMs: set spot: true, or choose another "
                 f"region") if spot_only else ""
    if not offered:
        reason = cloud.unavailable(candidates[0], spec.region, spec.spot)
        raise ConfigError(key, value, f"{candidates[0].name if len(candidates) == 1 else 'no such instance type'}: "
                                      f"{reason}{spot_hint if len(candidates) > 1 else ''}")
    candidates = offered
    memories = {it.name: memory_at(spec, it) for it in candidates}
    reasons = {it.name: _why_not(it, spec, memories[it.name]) for it in candidates}
    fitting = [it for it in candidates if reasons[it.name] is None]
    batching = {it.name: batching_refusal(it, spec) for it in fitting}
    if fitting and all(batching.values()):
        raise ConfigError("vllmArgs", f"--max-num-seqs={vllm_args.value_of(spec.vllm_args, 'max_num_seqs')}",
                          batching[fitting[0].name])
    fitting = [it for it in fitting if batching[it.name] is None]
    context_parallel = {it.name: vllm_args.context_parallel_refusal(
        spec.vllm_args, it.gpu_count, spec.arch.heads, spec.arch.kv_heads, spec.arch.mla) for it in fitting}
    if fitting and all(context_parallel.values()):
        raise ConfigError("vllmArgs", f"--decode-context-parallel-size="
                                      f"{vllm_args.value_of(spec.vllm_args, 'decode_context_parallel_size')}",
                          context_parallel[fitting[0].name])
    fitting = [it for it in fitting if context_parallel[it.name] is None]
    if not fitting:
        if len(candidates) == 1:
            detail = reasons[candidates[0].name]
        else:
            largest = max(candidates, key=lambda it: it.total_gpu_memory_gib)
            detail = f"even the largest, {largest.name}: {reasons[largest.name]}"
        memory = memories[candidates[0].name]
        needed = memory.weights_gib + memory.one_sequence_gib
        raise ConfigError(key, value,
                          f"cannot hold {spec.model} ({spec.quantization or spec.dtype}, maxModelLen {spec.max_model_len}, "
                          f"~{needed:.0f} GiB): {detail}{spot_hint}. Choose a larger accelerator, quantization "
                          f"awq/fp8 or a smaller maxModelLen")

    needed_disk = _weights_disk_gb(memories[fitting[0].name])
    if spec.data_disk_gb is not None and spec.data_disk_gb < needed_disk:
        raise ConfigError("dataDiskGb", spec.data_disk_gb,
                          f"must be at least {needed_disk} GB to cache {memories[fitting[0].name].checkpoint_gib:.0f} "
                          f"GiB of weights")
    data_disk_gb = spec.data_disk_gb or max(needed_disk, cloud.min_data_disk_gb)
    tokens = spec.capacity.tokens_per_request if spec.capacity else spec.max_model_len

    every = [Sizing(instance=it, tensor_parallel_size=it.gpu_count, memory=memories[it.name],
                    kv_cache_gib=kv_cache_room_gib(it, memories[it.name], spec.gpu_memory_utilization),
                    data_disk_gb=data_disk_gb, time_to_serve=time_to_serve(cloud, memories[it.name], data_disk_gb),
                    price=cloud.price(it, spec.region), replicas=spec.replicas, tokens_per_request=tokens,
                    max_num_seqs=max_num_seqs(it, spec.vllm_args))
             for it in fitting]
    found = every
    if spec.capacity:
        counts = [(sizing, _replicas_for(spec, sizing.requests_per_replica)) for sizing in every]
        found = [dataclasses.replace(sizing, replicas=_effective_replicas(spec, count))
                 for sizing, count in counts if count is not None]
        if not found:
            best = max(every, key=lambda sizing: sizing.requests_per_replica)
            limit = (f"replicas.desired ({spec.replicas.desired})" if spec.capacity.desired_set
                     else f"replicas.max ({spec.replicas.max})" if spec.capacity.max_set
                     else f"{MAX_REPLICAS} replicas")
            raise ConfigError("capacity", f"{spec.capacity.concurrent_requests} x {tokens} tokens",
                              f"needs more than {limit}: a VM holds at most {best.requests_per_replica} such "
                              f"requests ({best.instance.name}); raise replicas, or lower concurrentRequests or "
                              f"tokensPerRequest")
    return sorted(found, key=rank)


def hourly(sizing: Sizing) -> float:
    """What the fleet's GPU VMs cost an hour at desired replicas."""
    return sizing.instance.usd_per_hour * (sizing.replicas.desired if sizing.replicas else 1)


def rank(sizing: Sizing) -> tuple:
    """The one order of ways to serve a model, for the plan's pick (options, size) and `make compare`'s rows:
    cheapest first ($/hour to the cent); on a tie a recorded price before a borrowed one, then more replicas of
    smaller VMs (a failed VM then takes a smaller part of the capacity, and a zone's outage may spare some), then
    more requests held, then the name."""
    regional = sizing.price.regional if sizing.price else True
    replicas = sizing.replicas.desired if sizing.replicas else 1
    return (round(hourly(sizing), 2), not regional, -replicas, sizing.instance.gpu_count,
            -sizing.requests_per_replica * replicas, sizing.instance.name)


def size(spec: FleetSpec) -> Sizing:
    """The instance type (and with the capacity key, the replicas) the stack runs: the cheapest way to serve it
    in its region."""
    return options(spec)[0]


def with_sized_replicas(spec: FleetSpec, sizing: Sizing) -> FleetSpec:
    """The spec the group is built from: with the capacity key, the replicas sizing found hold its load."""
    if sizing.replicas is not None and sizing.replicas != spec.replicas:
        return dataclasses.replace(spec, replicas=sizing.replicas)
    return spec


def capacity_warning(spec: FleetSpec, sizing: Sizing) -> str | None:
    """Without the capacity key: a warning when one VM holds fewer than FEW_REQUESTS requests of maxModelLen."""
    if spec.capacity is not None:
        return None
    held = sizing.full_context_requests
    if held >= FEW_REQUESTS:
        return None
    return (f"one {sizing.instance.name} holds {held} request{'s' if held != 1 else ''} of {spec.max_model_len} "
            f"tokens at once ({sizing.kv_cache_tokens} tokens of KV cache): a team will queue behind it. Size for "
            f"your load with capacity: {{concurrentRequests: N, tokensPerRequest: T}}, or lower maxModelLen; "
            f"make compare MODEL={spec.model} shows the options")


# A pick that costs this many times what the model needs elsewhere is worth a warning.
COSTLY_RATIO = 1.5


def cheaper_elsewhere(spec: FleetSpec, sizing: Sizing) -> list[str]:
    """Where the same model, precision, context (and capacity) cost far less than the pick: without the
    accelerator or instanceType that chose it, in this region; or, for the cheapest pick here, in another region
    of the same cloud whose prices catalog/prices.yaml records."""
    pinned = "instanceType" if spec.instance_type else "accelerator" if spec.accelerator_gpu else None
    if pinned:
        here = options(dataclasses.replace(spec, instance_type=None, accelerator_gpu=None, accelerator_count=None))[0]
        if hourly(here) * COSTLY_RATIO < hourly(sizing):
            return [f"{pinned} picks {sizing.instance.name} at ${hourly(sizing):.2f}/hour, but {spec.model} fits "
                    f"{here.instance.name} ({here.instance.gpu_count}x {here.instance.gpu}) at ${hourly(here):.2f}/hour "
                    f"in {spec.region}"]
        return []
    elsewhere = []
    for region in catalog.cloud(spec.cloud).regions:
        if region == spec.region:
            continue
        try:
            found = options(dataclasses.replace(spec, region=region))[0]
        except ConfigError:
            continue  # nothing there holds it
        if found.price is not None and found.price.regional:
            elsewhere.append(found)
    best = min(elsewhere, key=hourly, default=None)
    if best and hourly(best) * COSTLY_RATIO < hourly(sizing):
        return [f"{spec.region} offers {spec.model} no cheaper fit than {sizing.instance.name} at "
                f"${hourly(sizing):.2f}/hour; in {best.price.region} it fits {best.instance.name} "
                f"({best.instance.gpu_count}x {best.instance.gpu}) at ${hourly(best):.2f}/hour"]
    return []


def cheaper_with_flags(spec: FleetSpec, sizing: Sizing) -> list[str]:
    """A warning where vLLM arguments the stack lacks (fit_flags) would give a cheaper fit in its region."""
    flags = fit_flags(spec)
    if not flags or spec.instance_type:
        return []
    try:
        found = options(dataclasses.replace(spec, vllm_args=spec.vllm_args + tuple(flags)))[0]
    except ConfigError:
        return []
    if rank(found) >= rank(sizing) or round(hourly(found), 2) >= round(hourly(sizing), 2):
        return []
    def vms(found: Sizing) -> str:
        return f"{found.replicas.desired if found.replicas else 1}x {found.instance.name}"

    return [f"with {' '.join(flags)} in vllmArgs, {spec.model} fits {vms(found)} ({found.instance.gpu_count}x "
            f"{found.instance.gpu} each) at ${hourly(found):.2f}/hour in {spec.region}, against {vms(sizing)} at "
            f"${hourly(sizing):.2f}/hour without: add {', '.join(flags)} to vllmArgs"]
