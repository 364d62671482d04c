"""Run by .venv-vllm's Python: vLLM's own KV cache arithmetic for the cases on stdin (JSON), answered on stdout.

Each case: a config.json, tensor parallel size, KV cache dtype, max_model_len, max_num_seqs, max_num_batched_tokens
and the KV cache memory of one GPU. Each layer gets the KVCacheSpec its attention layer's get_kv_cache_spec builds
(vllm/model_executor/layers/attention/attention.py, mla_attention.py) from vLLM's ModelConfig; get_kv_cache_configs
groups them and counts blocks, get_max_concurrency_for_kv_cache_config the requests of max_model_len tokens;
`windows` is each layer's sliding window (None: full attention)."""

import json
import sys
import tempfile
from pathlib import Path

from vllm.config import CacheConfig, ModelConfig, ParallelConfig, SchedulerConfig, VllmConfig
from vllm.utils.torch_utils import kv_cache_dtype_str_to_dtype
from vllm.v1.core.kv_cache_utils import get_kv_cache_configs, get_max_concurrency_for_kv_cache_config
from vllm.v1.kv_cache_interface import FullAttentionSpec, MLAAttentionSpec, SlidingWindowSpec, get_kv_quant_mode

BLOCK_SIZE = 16  # --block-size on CUDA


def layer_specs(model: ModelConfig, parallel: ParallelConfig, kv_dtype: str) -> dict:
    dtype = kv_cache_dtype_str_to_dtype(kv_dtype, model)
    layer_types = getattr(model.hf_text_config, "layer_types", None)
    specs = {}
    for i in range(model.get_num_layers(parallel)):
        common = dict(block_size=BLOCK_SIZE, head_size=model.get_head_size(), dtype=dtype,
                      kv_quant_mode=get_kv_quant_mode(kv_dtype))
        if model.use_mla:
            spec = MLAAttentionSpec(num_kv_heads=1, max_tp_shards=1, cache_dtype_str=kv_dtype, **common)
        else:
            # Attention(per_layer_sliding_window=...) for layer_types' sliding layers, else the model-level window
            window = (model.get_sliding_window() if layer_types is None or layer_types[i] == "sliding_attention"
                      else None)
            kv_heads = model.get_num_kv_heads(parallel)
            spec = (SlidingWindowSpec(num_kv_heads=kv_heads, sliding_window=window, **common) if window
                    else FullAttentionSpec(num_kv_heads=kv_heads, **common))
        specs[f"model.layers.{i}.self_attn.attn"] = spec
    return specs


def answer(case: dict, models: dict) -> dict:
    key = json.dumps(case["config"], sort_keys=True)
    if key not in models:
        folder = Path(tempfile.mkdtemp())
        (folder / "config.json").write_text(key)
        models[key] = folder
    model = ModelConfig(model=str(models[key]), skip_tokenizer_init=True, max_model_len=case["max_model_len"],
                        dtype="bfloat16", quantization=None)
    parallel = ParallelConfig(tensor_parallel_size=case["tp"])
    scheduler = SchedulerConfig(max_num_batched_tokens=case["max_num_batched_tokens"], max_num_seqs=case["max_num_seqs"],
                                max_model_len=case["max_model_len"], is_encoder_decoder=False)
    config = VllmConfig(model_config=model, cache_config=CacheConfig(block_size=BLOCK_SIZE, cache_dtype=case["kv_dtype"]),
                        parallel_config=parallel, scheduler_config=scheduler)
    # as on a CUDA GPU: this CPU build turns async scheduling (two batches in flight) off
    config.scheduler_config.async_scheduling = True
    # what the engine core resolves for FlashAttention (NHD); pages of one size pack alike in every layout
    config.cache_config.kv_cache_layout = "LBNHC"
    specs = layer_specs(model, parallel, case["kv_dtype"])
    kv_config = get_kv_cache_configs(config, [specs], [case["gpu_kv_bytes"]])[0]
    return {"bytes_per_token": sum(s.page_size_bytes for s in specs.values()) // BLOCK_SIZE * case["tp"],
            "requests": get_max_concurrency_for_kv_cache_config(config, kv_config),
            "windows": [getattr(spec, "sliding_window", None) for spec in specs.values()]}


def main() -> None:
    models: dict = {}
    results = []
    for case in json.load(sys.stdin):
        try:
            results.append(answer(case, models))
        except ValueError as error:  # vLLM refuses: not enough KV cache for one request
            results.append({"error": str(error)[:300]})
    print("\nRESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
