"""A model's architecture from its own Hugging Face repository: config.json and the safetensors metadata (the
checkpoint's tensor sizes, read from the file headers without downloading the weights).

`entry_from_config` turns those into a catalog/models.yaml entry and needs no network (the tests feed it recorded
config.json files); `fetch_entry` asks the hub through huggingface_hub. The Pulumi program imports this module only
for a model the catalog lacks; `make catalog-add` (cli/catalog_add.py) writes the entry into the catalog so that
offline plans and CI never need the hub.
"""

from __future__ import annotations

import datetime
import os
import socket
import urllib.parse
from typing import Any

# Bytes per element of each safetensors dtype.
DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
               "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BOOL": 1, "F4": 0.5}
# config.json quant_method -> the name sizing (and vLLM's --quantization) uses.
QUANT_METHODS = {"fp8": "fp8", "awq": "awq", "gptq": "gptq", "mxfp4": "mxfp4"}
HUB_TIMEOUT_S = 15
CONNECT_TIMEOUT_S = 5


class HubError(Exception):
    """The hub could not be asked, or its answer does not describe a model vLLM-fleet can size."""


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    """Multimodal configs (Mistral 3, Llama 4, Qwen-VL) keep the language model's numbers under text_config."""
    text = config.get("text_config")
    return {**config, **text} if isinstance(text, dict) else config


def entry_from_config(config: dict[str, Any], parameter_count: dict[str, int] | None = None, *,
                      gated: bool = False, source: str | None = None) -> dict[str, Any]:
    """A catalog/models.yaml entry from a model's config.json and its safetensors parameter counts by dtype.

    - layers, heads, kv_heads (num_key_value_heads, default the heads), head_dim (default hidden_size / heads),
      max_len (max_position_embeddings) as in config.json;
    - multi-head latent attention: kv_lora_rank and qk_rope_head_dim;
    - sliding-window layers as vLLM attends them (_sliding_layers): layer_types' sliding_attention layers; a
      sliding_window without layer_types applies to every layer (Mistral 7B v0.1, StarCoder2), except where
      transformers' config class drops the window (Qwen2's without use_sliding_window) or builds layer_types;
    - experts: num_local_experts, num_experts or n_routed_experts; moe_intermediate_size;
    - quantization_config.quant_method fp8/awq/gptq/mxfp4, and the fp8 block size (weight_block_size);
    - params_b: the parameters the safetensors tensors hold (every expert; see _parameters for packed formats);
      for a quantized checkpoint weights_gb, the bytes of all its tensors (what vLLM loads), and for mxfp4
      quantized_params_b.
    """
    c = _text_config(config)
    try:
        layers = int(c.get("num_hidden_layers") or c["n_layer"])
        heads = int(c.get("num_attention_heads") or c["n_head"])
    except (KeyError, TypeError, ValueError):
        raise HubError("config.json names no num_hidden_layers / num_attention_heads: not a decoder vLLM-fleet "
                       "can size; set modelParams") from None
    kv_heads = int(c.get("num_key_value_heads") or (1 if c.get("multi_query") else heads))
    head_dim = int(c.get("head_dim") or int(c["hidden_size"]) // heads)
    max_len = int(c.get("max_position_embeddings") or c.get("n_positions") or c.get("seq_length") or 0)
    if max_len <= 0:
        raise HubError("config.json names no max_position_embeddings; set modelParams")
    entry: dict[str, Any] = {"params_b": 0.0, "layers": layers, "heads": heads, "kv_heads": kv_heads,
                             "head_dim": head_dim, "max_len": max_len}
    quant = c.get("quantization_config") or {}
    method = QUANT_METHODS.get(str(quant.get("quant_method", "")).lower())
    if method:
        entry["quantization"] = method
        block = quant.get("weight_block_size")
        if method == "fp8" and isinstance(block, list) and block:
            entry["quant_block"] = int(block[0])
    if gated:
        entry["gated"] = True
    if c.get("kv_lora_rank"):
        entry["kv_lora_rank"] = int(c["kv_lora_rank"])
        entry["qk_rope_head_dim"] = int(c.get("qk_rope_head_dim") or 0)
    window, sliding = _sliding_layers(c, layers)
    if sliding:
        entry["sliding_window"], entry["sliding_layers"] = window, sliding
    experts = c.get("num_local_experts") or c.get("num_experts") or c.get("n_routed_experts")
    if experts:
        entry["experts"] = int(experts)
        if c.get("moe_intermediate_size"):
            entry["moe_intermediate_size"] = int(c["moe_intermediate_size"])
    if parameter_count:
        counts = {dtype.upper(): count for dtype, count in parameter_count.items()}
        weights = sum(count * DTYPE_BYTES.get(dtype, 2) for dtype, count in counts.items())
        entry["params_b"] = round(_parameters(counts, method) / 1e9, 2)
        if method:
            entry["weights_gb"] = round(weights / 1e9, 2)
        if method == "mxfp4":
            entry["quantized_params_b"] = round(counts.get("U8", 0) / (4.25 / 8) / 1e9, 2)
    if not entry["params_b"]:
        raise HubError("the repository has no safetensors metadata to count its parameters; set modelParams")
    if source:
        entry["source"] = source
    return entry


# How vLLM finds a model's sliding-window layers. vLLM reads the config that transformers' config class of the
# model_type builds from config.json (hf_text_config); a sliding_window of 0 is none (vllm/config/model.py);
# without layer_types the model-level window is CacheConfig.sliding_window and every layer's Attention takes it
# (vllm/engine/arg_utils.py create_engine_config, vllm/model_executor/layers/attention/attention.py), with
# layer_types only the sliding_attention layers slide. transformers (5.19, .venv-vllm) changes config.json's
# numbers for these model types first:
# - the window is dropped unless use_sliding_window (default false) is set:
USE_SLIDING_WINDOW_TYPES = frozenset({"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl", "qwen3", "qwen3_moe",
                                      "smollm3"})
# - layer_types is generated when config.json has none: layer i slides if rule(i, config) (models/<type>/
#   configuration_<type>.py __post_init__).
GENERATED_LAYER_TYPES = {
    "qwen2": lambda i, c: i >= int(c.get("max_window_layers", 28)),
    "qwen3": lambda i, c: i >= int(c.get("max_window_layers", 28)),
    "qwen2_moe": lambda i, c: (i + 1) % 2 != 0 and i < int(c.get("max_window_layers", 28)),
    "gemma2": lambda i, c: (i + 1) % 2 != 0,
    "gemma3_text": lambda i, c: (i + 1) % int(c.get("sliding_window_pattern", 6)) != 0,
    "gemma3": lambda i, c: (i + 1) % int(c.get("sliding_window_pattern", 6)) != 0,  # text_config without its type
    "cohere2": lambda i, c: (i + 1) % int(c.get("sliding_window_pattern", 4)) != 0,
}


def _sliding_layers(c: dict[str, Any], layers: int) -> tuple[int, int]:
    """(sliding_window, how many of the layers slide) as vLLM attends them; (0, 0) for none."""
    model_type = c.get("model_type")
    window = int(c.get("sliding_window") or 0)
    if not window or (model_type in USE_SLIDING_WINDOW_TYPES and not c.get("use_sliding_window", False)):
        return 0, 0
    layer_types = c.get("layer_types")
    if isinstance(layer_types, list):
        return window, sum(1 for kind in layer_types[:layers] if kind == "sliding_attention")
    rule = GENERATED_LAYER_TYPES.get(model_type)
    return window, (sum(1 for i in range(layers) if rule(i, c)) if rule else layers)


def _parameters(counts: dict[str, int], method: str | None) -> float:
    """The model's parameters from its safetensors element counts by dtype. A quantized checkpoint stores
    several parameters an element: mxfp4 two 4-bit values a byte with an 8-bit scale per 32 (4.25 bits a
    parameter, U8 tensors), AWQ/GPTQ eight 4-bit values an int32 (I32 tensors); fp8 one a byte. 16/32-bit
    tensors (embeddings, norms, scales) count one each."""
    plain = sum(count for dtype, count in counts.items() if dtype in ("BF16", "F16", "F32"))
    if method == "mxfp4":
        return plain + counts.get("U8", 0) / (4.25 / 8)
    if method in ("awq", "gptq"):
        return plain + counts.get("I32", 0) * 8
    if method == "fp8":
        return plain + counts.get("F8_E4M3", 0) + counts.get("F8_E5M2", 0)
    return float(sum(counts.values()))


def _reachable(endpoint: str) -> None:
    """Raises HubError at once where the hub's host cannot be connected to: huggingface_hub would retry each request
    for ~25 s, logging every try, before failing the same way."""
    url = urllib.parse.urlsplit(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise HubError(f"cannot reach {endpoint}: {error.strerror or error}") from None


def fetch_entry(model: str, revision: str | None = None) -> dict[str, Any]:
    """The catalog entry of a Hugging Face model, read from the hub (HF_TOKEN in the environment for gated ones).
    Raises HubError when the hub cannot be asked: offline (HF_HUB_OFFLINE=1), unreachable, unknown model."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise HubError("HF_HUB_OFFLINE is set")
    try:
        import huggingface_hub
        from huggingface_hub import HfApi
    except ImportError:  # pragma: no cover - requirements.txt installs it
        raise HubError("huggingface_hub is not installed (pip install -r requirements.txt)") from None
    _reachable(huggingface_hub.constants.ENDPOINT)
    token = os.environ.get("HF_TOKEN") or None
    try:
        path = huggingface_hub.hf_hub_download(model, "config.json", revision=revision, token=token,
                                               etag_timeout=HUB_TIMEOUT_S)
        with open(path, encoding="utf-8") as handle:
            import json

            config = json.load(handle)
        metadata = huggingface_hub.get_safetensors_metadata(model, revision=revision, token=token,
                                                             timeout=HUB_TIMEOUT_S)
        info = HfApi().model_info(model, revision=revision, token=token, timeout=HUB_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - any failure of the hub is the same "could not ask" to the user
        raise HubError(f"could not read {model}: {type(error).__name__}: {str(error).splitlines()[0][:160]}") from None
    sha = getattr(info, "sha", None) or revision or "main"
    today = datetime.date.today().isoformat()
    return entry_from_config(config, dict(metadata.parameter_count), gated=bool(getattr(info, "gated", False)),
                             source=f"https://huggingface.co/{model}/blob/{sha}/config.json + safetensors "
                                    f"metadata, read {today}")
