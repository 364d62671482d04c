"""catalog/vllm-serve-flags.json, which vllmArgs are checked against, is what `vllm serve`'s own argument parser of
the pinned vLLM says: listed again from .venv-vllm, it must not differ. A vLLM bump updates it (make vllm-flags) in
the same change. Fails in CI (skips elsewhere) without .venv-vllm."""

from __future__ import annotations

import json
import subprocess

from fleet import serving
from fleet.spec import VLLM_FLAGS_FILE
from stack_on_cpu import require_vllm
from vllm_server import REPO_ROOT, VENV_PYTHON


def test_the_flag_list_is_what_the_pinned_vllm_parses():
    require_vllm()
    result = subprocess.run([str(VENV_PYTHON), "serving-test/serve_flags.py"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout == VLLM_FLAGS_FILE.read_text(), "run `make vllm-flags` and commit the list"
    listed = json.loads(result.stdout)
    assert listed["vllm"] == serving.VLLM_VERSION
    # the flags the stacks use are there, with the values they take
    assert listed["flags"]["--enable-prefix-caching"] == {"kind": "switch"}
    assert listed["flags"]["--max-num-seqs"] == {"kind": "int"}
    assert "fp8" in listed["flags"]["--kv-cache-dtype"]["choices"]


def test_the_pinned_vllm_serves_awq_checkpoints_in_bfloat16_too():
    """The spec accepts dtype bfloat16 for AWQ/GPTQ checkpoints because the kernels vLLM picks for them (without
    --quantization, as the VMs run them) take bfloat16 activations in this release."""
    require_vllm()
    code = ("import torch; from vllm.model_executor.layers.quantization.auto_awq import AutoAWQConfig; "
            "from vllm.model_executor.layers.quantization.auto_gptq import AutoGPTQConfig; "
            "print(all(torch.bfloat16 in c.get_supported_act_dtypes() for c in (AutoAWQConfig, AutoGPTQConfig)))")
    result = subprocess.run([str(VENV_PYTHON), "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip().splitlines()[-1] == "True", result.stderr[-2000:]
