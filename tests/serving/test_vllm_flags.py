"""catalog/vllm-serve-flags.json, which vllmArgs are checked against, is what `vllm serve`'s own argument parser of
the pinned vLLM says: listed again from .venv-vllm, it must not differ. A vLLM bump updates it (make vllm-flags) in
the same change. Fails in CI (skips elsewhere) without .venv-vllm."""

from __future__ import annotations

import json
import subprocess

from fleet import serving
from fleet.vllm_args import FLAGS_FILE as VLLM_FLAGS_FILE
from stack_on_cpu import require_vllm
from vllm_server import REPO_ROOT, VENV_PYTHON


def test_the_flag_list_is_what_the_pinned_vllm_parses():
    require_vllm()
    result = subprocess.run([str(VENV_PYTHON), "serving-test/serve_flags.py"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout == VLLM_FLAGS_FILE.read_text(), ("run `.venv-vllm/bin/python serving-test/serve_flags.py > "
                                                          "catalog/vllm-serve-flags.json` and commit it")
    listed = json.loads(result.stdout)
    assert listed["vllm"] == serving.VLLM_VERSION
    # the flags the stacks use are there, with the values they take
    options = listed["options"]
    assert options["enable_prefix_caching"]["flags"] == ["--enable-prefix-caching", "--no-enable-prefix-caching"]
    assert options["max_num_seqs"] == {"flags": ["--max-num-seqs"], "type": "int", "nargs": None, "kind": "int", "min": 1}
    assert "fp8" in options["kv_cache_dtype"]["choices"]
    # aliases of flags the project sets, and the registries vLLM checks names against
    assert "-tp" in options["tensor_parallel_size"]["flags"]
    assert "--device-memory-utilization" in options["gpu_memory_utilization"]["flags"]
    assert options["tool_call_parser"]["registry"] == "tool_call_parsers"
    assert "hermes" in listed["registries"]["tool_call_parsers"]


def test_the_pinned_vllm_serves_awq_checkpoints_in_bfloat16_too():
    """The spec accepts dtype bfloat16 for AWQ/GPTQ checkpoints because the kernels vLLM picks for them (without
    --quantization, as the VMs run them) take bfloat16 activations in this release."""
    require_vllm()
    code = ("import torch; from vllm.model_executor.layers.quantization.auto_awq import AutoAWQConfig; "
            "from vllm.model_executor.layers.quantization.auto_gptq import AutoGPTQConfig; "
            "print(all(torch.bfloat16 in c.get_supported_act_dtypes() for c in (AutoAWQConfig, AutoGPTQConfig)))")
    result = subprocess.run([str(VENV_PYTHON), "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip().splitlines()[-1] == "True", result.stderr[-2000:]
