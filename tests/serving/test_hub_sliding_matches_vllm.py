"""A model read from the hub (fleet/hub.py) gets the sliding-window layers vLLM gives it: for config.json files of
the model types whose window transformers or vLLM treat differently (no layer_types: every layer slides; Qwen's
use_sliding_window; layer_types that transformers builds), the window and sliding layers of hub.entry_from_config,
and the requests of max_model_len tokens the plan's sizing then computes, equal what the pinned vLLM's ModelConfig
and get_kv_cache_configs make of the same file (tests/serving/kv_by_vllm.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from fleet import hub, sizing
from fleet.spec import ModelArch
from stack_on_cpu import require_vllm
from vllm_server import REPO_ROOT, VENV_PYTHON

CONFIGS = Path(__file__).resolve().parent.parent / "data" / "configs"
MAX_MODEL_LEN, BATCHED, KV_BYTES = 16384, 2048, 8 * sizing.GIB


def config(architecture: str, model_type: str, layers: int = 12, **extra) -> dict:
    return {"architectures": [architecture], "model_type": model_type, "num_hidden_layers": layers,
            "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 128, "hidden_size": 1024,
            "intermediate_size": 4096, "vocab_size": 32000, "max_position_embeddings": 65536,
            "torch_dtype": "bfloat16", **extra}


CASES = {
    "StarCoder2 15B (sliding_window, no layer_types)": json.loads((CONFIGS / "starcoder2-15b.json").read_text()),
    "Mistral 7B v0.1": config("MistralForCausalLM", "mistral", sliding_window=4096),
    "Phi-3 (sliding_window, no layer_types)": config("Phi3ForCausalLM", "phi3", sliding_window=2047),
    "Llama with a window but no layer_types": config("LlamaForCausalLM", "llama", sliding_window=8192),
    "a window of 0 is none": config("MistralForCausalLM", "mistral", sliding_window=0),
    "Qwen2.5 (window without use_sliding_window)": config("Qwen2ForCausalLM", "qwen2", sliding_window=32768,
                                                          max_window_layers=12),
    "Qwen2 use_sliding_window, every layer from 0": config("Qwen2ForCausalLM", "qwen2", sliding_window=4096,
                                                           use_sliding_window=True, max_window_layers=0),
    "Qwen3 use_sliding_window above max_window_layers": config("Qwen3ForCausalLM", "qwen3", sliding_window=4096,
                                                               use_sliding_window=True, max_window_layers=12),
    "Gemma 2 (transformers alternates)": config("Gemma2ForCausalLM", "gemma2", sliding_window=4096),
    "Gemma 3 text (sliding_window_pattern)": config("Gemma3ForCausalLM", "gemma3_text", sliding_window=1024,
                                                    sliding_window_pattern=6),
    "Cohere2 (pattern 4 by default)": config("Cohere2ForCausalLM", "cohere2", sliding_window=4096),
    "gpt-oss (layer_types)": json.loads((CONFIGS / "gpt-oss-20b.json").read_text()),
}


def test_hub_entries_slide_the_layers_vllm_slides():
    require_vllm()
    cases, expected = [], []
    for name, raw in CASES.items():
        entry = hub.entry_from_config(raw, {"BF16": 1_000_000_000})
        arch = ModelArch.from_entry(entry)
        memory = sizing.model_memory(arch, None, MAX_MODEL_LEN, in_flight_tokens=BATCHED * sizing.BATCHES_IN_FLIGHT)
        cases.append({"config": raw, "tp": 1, "kv_dtype": "auto", "max_model_len": MAX_MODEL_LEN,
                      "max_num_seqs": 256, "max_num_batched_tokens": BATCHED, "gpu_kv_bytes": KV_BYTES})
        expected.append((name, (arch.sliding_window, arch.sliding_layers if arch.sliding_window else 0),
                         int(KV_BYTES / sizing.GIB / memory.request_gib(MAX_MODEL_LEN))))
    result = subprocess.run([str(VENV_PYTHON), "tests/serving/kv_by_vllm.py"], cwd=REPO_ROOT, input=json.dumps(cases),
                            capture_output=True, text=True, timeout=900,
                            env={"HF_HUB_OFFLINE": "1", "VLLM_HOST_IP": "127.0.0.1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-4000:]
    answers = json.loads(result.stdout.rsplit("\nRESULTS ", 1)[1])
    wrong = []
    for (name, sliding, requests), vllm in zip(expected, answers):
        if "windows" not in vllm:
            wrong.append(f"{name}: vLLM refused: {vllm}")
            continue
        windows = [w for w in vllm["windows"] if w]
        by_vllm = (windows[0] if windows else 0, len(windows))
        if sliding != by_vllm or requests != int(vllm["requests"]):
            wrong.append(f"{name}: hub.py {sliding} -> {requests} requests, vLLM {by_vllm} -> {vllm['requests']}")
    assert not wrong, "\n".join(wrong)
