"""The plan's KV cache arithmetic is vLLM's: for every catalog model at each tensor parallel size the plan may pick
(every instance type of the three clouds that holds it), with 16-bit and fp8 KV cache, the KV bytes a token and the
requests of maxModelLen tokens a VM serves equal what the pinned vLLM's own KV cache specs and
get_kv_cache_configs compute (tests/serving/kv_by_vllm.py, one .venv-vllm process for all cases) from a config.json
written from the catalog's numbers. A vLLM bump that changes its arithmetic makes this fail."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from fleet import catalog, sizing
from fleet.errors import ConfigError
from fleet.spec import ModelArch, known_models, parse_spec
from stack_on_cpu import require_vllm
from vllm_server import REPO_ROOT, VENV_PYTHON


def config_json(arch: ModelArch) -> dict:
    """A config.json with the catalog's attention numbers, of the architecture vLLM reads them from."""
    common = {"num_hidden_layers": arch.layers, "num_attention_heads": arch.heads, "vocab_size": 32000,
              "max_position_embeddings": arch.max_len, "torch_dtype": "bfloat16"}
    if arch.mla:
        return {**common, "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
                "hidden_size": 2048, "num_key_value_heads": arch.kv_heads, "kv_lora_rank": arch.kv_lora_rank,
                "qk_rope_head_dim": arch.qk_rope_head_dim, "qk_nope_head_dim": 128, "v_head_dim": 128,
                "q_lora_rank": None, "intermediate_size": 10944}
    if arch.sliding_window and arch.sliding_layers == arch.layers:  # StarCoder2: sliding_window, no layer_types
        return {**common, "architectures": ["Starcoder2ForCausalLM"], "model_type": "starcoder2",
                "hidden_size": arch.heads * arch.head_dim, "num_key_value_heads": arch.kv_heads,
                "sliding_window": arch.sliding_window, "intermediate_size": 4 * arch.heads * arch.head_dim}
    if arch.sliding_window:  # gpt-oss: layer_types alternating sliding and full attention
        types = ["sliding_attention" if i < 2 * arch.sliding_layers and i % 2 == 0 else "full_attention"
                 for i in range(arch.layers)]
        return {**common, "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss",
                "hidden_size": arch.hidden_size or 2880, "num_key_value_heads": arch.kv_heads,
                "head_dim": arch.head_dim, "sliding_window": arch.sliding_window, "layer_types": types,
                "num_local_experts": arch.experts or 32, "intermediate_size": arch.moe_intermediate_size or 2880}
    return {**common, "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": arch.heads * arch.head_dim, "num_key_value_heads": arch.kv_heads, "head_dim": arch.head_dim,
            "intermediate_size": 4 * arch.heads * arch.head_dim}


# Models whose own config.json is recorded (tests/data/configs): vLLM reads that file, not one written from the
# catalog, so that a catalog entry that misses what the model's config says (StarCoder2's window) fails here.
CONFIGS = Path(__file__).resolve().parent.parent / "data" / "configs"
RECORDED = {"bigcode/starcoder2-15b": "starcoder2-15b", "bigcode/starcoder2-15b-instruct-v0.1": "starcoder2-15b",
            "openai/gpt-oss-20b": "gpt-oss-20b", "Qwen/Qwen3-Coder-30B-A3B-Instruct": "qwen3-coder-30b-a3b-instruct"}


def model_config(model: str, arch: ModelArch) -> dict:
    if model in RECORDED:
        return json.loads((CONFIGS / f"{RECORDED[model]}.json").read_text())
    return config_json(arch)


def planned(model: str, kv_dtype: str) -> list[sizing.Sizing]:
    """Every fitting option of the model on the three clouds (at its full context, or 8192 tokens where that fits
    nowhere)."""
    found = []
    for cloud in catalog.clouds():
        region = catalog.cloud(cloud).reference_region
        for max_len in (None, 8192):
            raw = {"cloud": cloud, "region": region, "model": model, "allowedCidrs": '["10.0.0.0/8"]',
                   **({"gcp": '{"project": "my-project-123"}'} if cloud == "gcp" else {}),
                   **({"maxModelLen": str(max_len)} if max_len else {}),
                   **({"vllmArgs": '["--kv-cache-dtype=fp8"]'} if kv_dtype == "fp8" else {})}
            try:
                found += sizing.options(parse_spec("t", raw, set()))
                break
            except ConfigError:
                continue
    return found


def test_kv_bytes_and_requests_are_vllms():
    require_vllm()
    cases, expected, seen = [], [], set()
    for model in known_models():
        arch = ModelArch(**known_models()[model])
        for kv_dtype in ("auto", "fp8"):
            for option in planned(model, kv_dtype):
                memory, tp = option.memory, option.tensor_parallel_size
                batched = memory.in_flight_tokens // sizing.BATCHES_IN_FLIGHT
                case = {"config": model_config(model, arch), "tp": tp, "kv_dtype": kv_dtype,
                        "max_model_len": memory.max_model_len, "max_num_seqs": option.max_num_seqs,
                        "max_num_batched_tokens": batched, "gpu_kv_bytes": int(option.kv_cache_gib * sizing.GIB / tp)}
                # one case per architecture, tensor parallel size, KV dtype and batch size: other instance types
                # differ only in the KV cache's size
                key = json.dumps({k: v for k, v in case.items() if k not in ("gpu_kv_bytes", "max_num_seqs")},
                                 sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                cases.append(case)
                expected.append((f"{model} on {option.instance.name} ({kv_dtype} KV)",
                                 round(memory.gib_per_token * sizing.GIB),
                                 int(option.kv_cache_gib / memory.request_gib(memory.max_model_len))))
    result = subprocess.run([str(VENV_PYTHON), "tests/serving/kv_by_vllm.py"], cwd=REPO_ROOT, input=json.dumps(cases),
                            capture_output=True, text=True, timeout=900,
                            env={"HF_HUB_OFFLINE": "1", "VLLM_HOST_IP": "127.0.0.1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-4000:]
    answers = json.loads(result.stdout.rsplit("\nRESULTS ", 1)[1])
    wrong = [(what, {"plan": (per_token, requests)}, vllm) for (what, per_token, requests), vllm in zip(expected, answers)
             if vllm.get("bytes_per_token") != per_token or int(vllm.get("requests", -1)) != requests]
    assert not wrong, f"{len(wrong)} of {len(cases)} differ from vLLM: {wrong[:8]}"
