"""Any current model, sized right: the catalog's 2025-2026 code models (mixtures of experts, multi-head latent
attention, sliding windows, mxfp4 and fp8-block checkpoints), models read from their own config.json (recorded
files of tests/data/configs/, never the network) and make catalog-add."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import run_plan
from fleet import catalog, hub
from cli import catalog_add
from fleet.errors import ConfigError
from fleet.sizing import GIB, model_memory, size
from fleet.spec import MODELS_FILE, ModelArch, known_models, model_entries, parse_spec

CONFIGS = Path(__file__).resolve().parent / "data" / "configs"


def arch(model: str) -> ModelArch:
    return ModelArch(**known_models()[model])


def recorded(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


def spec(model: str, cloud: str = "aws", region: str = "us-east-1", **config):
    raw = {"cloud": cloud, "region": region, "model": model, "allowedCidrs": '["10.0.0.0/8"]',
           **{k: (v if isinstance(v, str) else json.dumps(v)) for k, v in config.items()}}
    return parse_spec("t", raw, set())


def test_a_mixture_of_experts_holds_every_expert():
    moe = arch("Qwen/Qwen3-Coder-30B-A3B-Instruct")
    memory = model_memory(moe, None, 32768)
    # 30.5B parameters (3.3B active a token) x 2 bytes: all 128 experts are in memory
    assert memory.weights_gib == pytest.approx(30.5e9 * 2 / GIB)
    assert memory.kv_gib_per_token * GIB == 2 * 48 * 4 * 128 * 2  # attention as usual: 48 layers x 4 KV heads


def test_multi_head_latent_attention_caches_one_small_latent_on_every_gpu():
    mla = arch("deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct")
    one_gpu = model_memory(mla, None, 32768)
    # 27 layers x (512 + 64) x 2 bytes = 31,104 bytes a token, not 2 x 27 x 16 heads x 128 x 2 = 221,184
    assert one_gpu.kv_gib_per_token * GIB == 27 * (512 + 64) * 2
    assert 2 * 27 * 16 * 128 * 2 / (one_gpu.kv_gib_per_token * GIB) == pytest.approx(7.1, abs=0.05)
    # vLLM keeps the whole latent on each GPU: at tensor parallel 4 the VM's KV caches hold 4 copies
    assert model_memory(mla, None, 32768, tensor_parallel_size=4).kv_gib_per_token == pytest.approx(
        4 * one_gpu.kv_gib_per_token)


def test_kv_heads_are_repeated_when_tensor_parallelism_exceeds_them():
    qwen7b = arch("Qwen/Qwen2.5-Coder-7B-Instruct")  # 4 KV heads
    assert model_memory(qwen7b, None, 4096, tensor_parallel_size=4).kv_gib_per_token == pytest.approx(
        model_memory(qwen7b, None, 4096).kv_gib_per_token)
    assert model_memory(qwen7b, None, 4096, tensor_parallel_size=8).kv_gib_per_token == pytest.approx(
        2 * model_memory(qwen7b, None, 4096).kv_gib_per_token)


def test_gpt_oss_mxfp4_weights_and_sliding_window_kv():
    big = arch("openai/gpt-oss-120b")
    memory = model_memory(big, "mxfp4", 131072)
    # 114.66B expert parameters at 4.25 bits + 2.14B at 16 bits = 60.7 GiB; the model card says 60.8 GiB
    assert memory.weights_gib == pytest.approx(60.8, abs=0.15)
    # only the 18 full-attention layers grow with the request: 18 x 2 x 8 x 64 x 2 = 36,864 bytes a token;
    # the 18 sliding layers keep 128 + 16 tokens of any request
    # the 18 sliding layers keep their window (127 tokens) plus what two batches of 2048 tokens bring in flight,
    # in 16-token blocks, plus one block: min(127 + 4096, 8192) -> 264 + 1 blocks (SlidingWindowSpec)
    assert memory.kv_gib_per_token * GIB == 18 * 2 * 8 * 64 * 2
    assert memory.request_gib(8192) * GIB == 36864 * 8192 + 36864 * 265 * 16
    assert memory.request_gib(64) * GIB == 36864 * 64 + 36864 * 5 * 16  # a short request: all of it, + 1 block
    small = model_memory(arch("openai/gpt-oss-20b"), "mxfp4", 131072)
    assert small.weights_gib == pytest.approx(12.8, abs=0.1)  # "runs within 16 GB"


def test_gpt_oss_runs_only_where_vllm_serves_it():
    on_aws = size(spec("openai/gpt-oss-120b"))
    assert on_aws.instance.gpu in ("A100-40GB", "A100-80GB", "H100")  # not the cheaper L40S/L4/A10G types
    on_azure = size(spec("openai/gpt-oss-120b", cloud="azure", region="eastus", maxModelLen=8192))
    # one A100 80GB: 79.1 x 0.9 - 1.5 - 65.8 (Marlin's padded experts) = 3.8 GiB of KV cache, 9 requests of 8192
    assert on_azure.instance.name == "Standard_NC24ads_A100_v4" and on_azure.requests_per_replica == 9
    with pytest.raises(ConfigError) as caught:
        size(spec("openai/gpt-oss-20b", accelerator="L4"))
    assert "vLLM does not serve openai/gpt-oss-20b on L4" in str(caught.value)


def test_gpt_oss_experts_are_padded_as_vllms_kernel_for_the_gpu_pads_them():
    big = arch("openai/gpt-oss-120b")
    # A100 (compute capability 8.0): Marlin pads hidden 2880 -> 3072 and intermediate 2880 -> 2944
    on_a100 = model_memory(big, "mxfp4", 8192, compute_capability=(8, 0))
    expected = (114.66e9 * 3072 * 2944 / (2880 * 2880) * 4.25 / 8 + (116.8e9 - 114.66e9) * 2) / GIB
    assert on_a100.weights_gib == pytest.approx(expected) and on_a100.weights_gib == pytest.approx(65.84, abs=0.01)
    # H100 (9.0): the OAI Triton kernels pad each GPU's share of the intermediate size to 64: none at 1 GPU,
    # 1440 -> 1472 at 2
    assert model_memory(big, "mxfp4", 8192, compute_capability=(9, 0)).weights_gib == pytest.approx(60.72, abs=0.01)
    two = model_memory(big, "mxfp4", 8192, tensor_parallel_size=2, compute_capability=(9, 0))
    assert two.weights_gib == pytest.approx((114.66e9 * 1472 / 1440 * 4.25 / 8 + 2.14e9 * 2) / GIB)
    # the VM downloads the checkpoint as stored, unpadded
    assert on_a100.checkpoint_gib == pytest.approx(60.72, abs=0.01)
    # at its full 131072 tokens (4.5 GiB a request) one A100 80GB no longer holds it: vLLM would refuse to start
    with pytest.raises(ConfigError) as caught:
        size(spec("openai/gpt-oss-120b", cloud="azure", region="eastus", instanceType="Standard_NC24ads_A100_v4"))
    assert "after 65.8 GiB of weights" in str(caught.value)


def test_starcoder2_slides_every_layer():
    # config.json: sliding_window 4096 and no layer_types, so vLLM gives every layer a SlidingWindowSpec
    for model in ("bigcode/starcoder2-3b", "bigcode/starcoder2-7b", "bigcode/starcoder2-15b"):
        assert (arch(model).sliding_window, arch(model).sliding_layers) == (4096, arch(model).layers), model
    sized = size(spec("bigcode/starcoder2-15b", instanceType="g6e.xlarge"))
    # a 16k request keeps min(4095 + 2 x 2048, 16384) = 8191 tokens -> 512 + 1 blocks of 40 x 2 x 4 x 128 x 2 bytes
    assert sized.memory.request_gib(16384) * GIB == 40 * 2 * 4 * 128 * 2 * 513 * 16
    assert sized.full_context_requests == 14  # 8.8 GiB of KV cache; 7 when every token of 16k was kept
    assert sized.kv_cache_tokens == int(sized.kv_cache_gib * GIB / (40 * 2 * 4 * 128 * 2))


def test_a_model_whose_every_layer_slides_plans(stack_file):
    params = {"params_b": 7.0, "layers": 32, "heads": 32, "kv_heads": 8, "head_dim": 128, "max_len": 32768,
              "sliding_window": 4096, "sliding_layers": 32}
    result = run_plan(stack_file({"cloud": "aws", "region": "us-east-1", "model": "acme/all-sliding",
                                  "modelParams": params, "allowedCidrs": ["10.0.0.0/8"]}))
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)["outputs"]
    assert outputs["memory"]["kvBytesPerToken"] == 32 * 2 * 8 * 128 * 2 and outputs["capacity"]["requestsPerReplica"] > 1


def test_the_catalog_loader_refuses_numbers_that_are_not_an_architecture(tmp_path, monkeypatch):
    copy = tmp_path / "models.yaml"
    monkeypatch.setattr("fleet.spec.MODELS_FILE", copy)
    base = "{params_b: 7.0, layers: 32, heads: 32, kv_heads: 8, head_dim: 128, max_len: 4096"
    cases = {f"{base}, sliding_window: 4096, sliding_layers: 40}}": "sliding_layers = 40: at most the model's 32 layers",
             base.replace("7.0", "true") + "}": "params_b = True: a positive number of billions",
             f"{base}, quantization: awq}}": "a 4-bit checkpoint needs hidden_size and vocab_size"}
    for text, expected in cases.items():
        copy.write_text(f"models:\n  acme/bad: {text}\n")
        model_entries.cache_clear()
        known_models.cache_clear()
        try:
            with pytest.raises(catalog.CatalogError) as caught:
                known_models()
            assert str(caught.value) == f"catalog/models.yaml: acme/bad: {expected}" or expected in str(caught.value)
            assert str(caught.value).startswith("catalog/models.yaml: acme/bad: "), caught.value
        finally:
            model_entries.cache_clear()
            known_models.cache_clear()


def test_model_params_with_more_sliding_layers_than_layers_is_refused():
    params = {"params_b": 7.0, "layers": 32, "heads": 32, "kv_heads": 8, "head_dim": 128, "max_len": 4096,
              "sliding_window": 4096, "sliding_layers": 33}
    with pytest.raises(ConfigError) as caught:
        spec("acme/x", modelParams=params)
    assert caught.value.key == "modelParams.sliding_layers" and "at most the model's 32 layers" in str(caught.value)


def test_4bit_checkpoints_keep_embeddings_and_lm_head_in_16_bit():
    awq = arch("Qwen/Qwen2.5-Coder-7B-Instruct-AWQ")
    embeddings = 2 * 152064 * 3584  # input embeddings and the untied LM head, 2 bytes each
    expected = ((7.62e9 - embeddings) * (4 + 20 / 128) / 8 + embeddings * 2) / GIB
    assert model_memory(awq, "awq", 4096).weights_gib == pytest.approx(expected)
    assert model_memory(awq, "awq", 4096).weights_gib == pytest.approx(5.19, abs=0.01)  # the checkpoint: 5.58 GB


def test_load_time_fp8_downloads_the_16_bit_checkpoint():
    fp8 = size(spec("codellama/CodeLlama-7b-Instruct-hf", quantization="fp8", maxModelLen=8192))
    plain = size(spec("codellama/CodeLlama-7b-Instruct-hf", maxModelLen=8192))
    assert fp8.memory.weights_gib == pytest.approx(6.74e9 / GIB)  # quantized on the GPU after loading
    assert fp8.memory.checkpoint_gib == pytest.approx(6.74e9 * 2 / GIB)
    rate = fp8.time_to_serve.download_mb_per_s
    assert fp8.time_to_serve.download == math.ceil(6.74e9 * 2 / 1e6 / rate) == plain.time_to_serve.download
    assert fp8.data_disk_gb == plain.data_disk_gb


def test_an_fp8_block_checkpoint_needs_expert_parallelism_on_8_gpus():
    with pytest.raises(ConfigError) as caught:
        size(spec("Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8", instanceType="p5.48xlarge", maxModelLen=32768))
    assert "splits the experts' 2560 intermediate size into 320, not whole 128-wide fp8 blocks" in str(caught.value)
    assert "--enable-expert-parallel" in str(caught.value)
    sized = size(spec("Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8", instanceType="p5.48xlarge", maxModelLen=32768,
                      vllmArgs=["--enable-expert-parallel"]))
    # 480B at 1 byte = 447 GiB of 8 x 79.1 x 0.9 - 12 = 557.5 GiB
    assert sized.memory.weights_gib == pytest.approx(447.0, abs=0.1) and sized.kv_cache_gib > 100
    # its 16-bit weights (894 GiB) fit no instance type of the catalog
    with pytest.raises(ConfigError) as caught:
        size(spec("Qwen/Qwen3-Coder-480B-A35B-Instruct"))
    assert "cannot hold Qwen/Qwen3-Coder-480B-A35B-Instruct" in str(caught.value)


@pytest.mark.parametrize("stack", [
    {"cloud": "gcp", "region": "us-central1", "model": "Qwen/Qwen3-Coder-30B-A3B-Instruct", "maxModelLen": 32768,
     "gcp": {"project": "my-project-123"}},
    {"cloud": "azure", "region": "eastus", "model": "openai/gpt-oss-120b"},
    {"cloud": "aws", "region": "us-east-1", "model": "deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct",
     "maxModelLen": 32768},
    {"cloud": "aws", "region": "us-west-2", "model": "mistralai/Devstral-Small-2507", "maxModelLen": 32768},
])
def test_current_models_plan_without_model_params(stack, stack_file):
    result = run_plan(stack_file({**stack, "allowedCidrs": ["10.0.0.0/8"]}))
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)["outputs"]
    assert outputs["model"]["id"] == stack["model"] and outputs["capacity"]["requestsPerReplica"] >= 1


# --- config.json -> catalog entry -------------------------------------------------------------------------------
def test_a_moe_config_reads_as_the_catalog_has_it():
    entry = hub.entry_from_config(recorded("qwen3-coder-30b-a3b-instruct"), {"BF16": 30_532_122_624})
    assert entry == {"params_b": 30.53, "layers": 48, "heads": 32, "kv_heads": 4, "head_dim": 128,
                     "max_len": 262144, "experts": 128, "moe_intermediate_size": 768}
    catalogued = known_models()["Qwen/Qwen3-Coder-30B-A3B-Instruct"]
    assert {k: catalogued[k] for k in ("layers", "heads", "kv_heads", "head_dim", "max_len", "experts",
                                       "moe_intermediate_size")} == {k: entry[k] for k in (
        "layers", "heads", "kv_heads", "head_dim", "max_len", "experts", "moe_intermediate_size")}


def test_gpt_oss_config_reads_its_sliding_layers_and_mxfp4_weights():
    # safetensors of an mxfp4 checkpoint: expert blocks and scales as U8 (two 4-bit values a byte), the rest BF16
    entry = hub.entry_from_config(recorded("gpt-oss-20b"), {"U8": 10_150_000_000, "BF16": 1_790_000_000})
    assert (entry["sliding_window"], entry["sliding_layers"], entry["experts"]) == (128, 12, 32)
    assert entry["quantization"] == "mxfp4" and entry["weights_gb"] == pytest.approx(13.73)
    assert (entry["params_b"], entry["quantized_params_b"]) == (20.9, 19.11)  # the model card's 20.9B
    sized = model_memory(ModelArch.from_entry(entry), "mxfp4", 131072)
    assert sized.weights_gib == pytest.approx(12.79, abs=0.01)  # the checkpoint's bytes, not params x 2
    assert sized.kv_gib_per_token == pytest.approx(model_memory(arch("openai/gpt-oss-20b"), "mxfp4", 131072)
                                                   .kv_gib_per_token)


def test_an_mla_config_reads_its_latent():
    entry = hub.entry_from_config(recorded("deepseek-v2-lite"), {"BF16": 15_706_484_224})
    assert (entry["kv_lora_rank"], entry["qk_rope_head_dim"], entry["experts"]) == (512, 64, 64)
    assert model_memory(ModelArch.from_entry(entry), None, 4096).kv_gib_per_token * GIB == 27 * 576 * 2
    catalogued = arch("deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct")
    assert (catalogued.layers, catalogued.kv_lora_rank, catalogued.qk_rope_head_dim) == (27, 512, 64)


def test_an_fp8_block_config_reads_its_block():
    entry = hub.entry_from_config(recorded("qwen3-coder-480b-a35b-instruct-fp8"),
                                  {"F8_E4M3": 479_000_000_000, "F32": 120_000_000, "BF16": 1_500_000_000})
    assert (entry["quantization"], entry["quant_block"], entry["moe_intermediate_size"]) == ("fp8", 128, 2560)
    assert entry["weights_gb"] == pytest.approx(479 + 0.48 + 3.0, abs=0.01)
    catalogued = known_models()["Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8"]
    assert all(catalogued[k] == entry[k] for k in ("layers", "heads", "kv_heads", "head_dim", "max_len",
                                                  "quantization", "quant_block", "moe_intermediate_size"))


def test_a_dense_mistral_config_has_no_sliding_window():
    entry = hub.entry_from_config(recorded("mistral-small-24b-params"), {"BF16": 23_572_403_200})
    assert "sliding_window" not in entry and (entry["layers"], entry["kv_heads"], entry["head_dim"]) == (40, 8, 128)
    devstral = known_models()["mistralai/Devstral-Small-2507"]
    assert all(devstral[k] == entry[k] for k in ("layers", "heads", "kv_heads", "head_dim", "max_len"))


def test_a_config_that_is_not_a_decoder_is_refused():
    with pytest.raises(hub.HubError, match="num_hidden_layers"):
        hub.entry_from_config({"model_type": "bert_like", "hidden_size": 768}, {"F32": 10})


# --- a model the catalog lacks ------------------------------------------------------------------------------
def test_a_model_outside_the_catalog_is_sized_from_its_hub_config(monkeypatch):
    def fetch(model, revision):
        assert (model, revision) == ("acme/coder-moe", "abc123")
        return hub.entry_from_config(recorded("qwen3-coder-30b-a3b-instruct"), {"BF16": 30_532_122_624},
                                     source="recorded")

    monkeypatch.setattr(hub, "fetch_entry", fetch)
    parsed = spec("acme/coder-moe", modelRevision="abc123", maxModelLen=32768)
    assert parsed.arch.experts == 128 and parsed.arch.layers == 48
    assert size(parsed).memory.weights_gib == pytest.approx(30.53e9 * 2 / GIB, abs=0.01)


def test_without_the_hub_an_unknown_model_says_how_to_add_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as caught:
        spec("acme/coder-moe")
    assert caught.value.key == "modelParams"
    assert "HF_HUB_OFFLINE is set" in str(caught.value) and "make catalog-add MODEL=acme/coder-moe" in str(caught.value)


def test_catalog_add_writes_an_entry_that_reads_back(tmp_path, monkeypatch):
    copy = tmp_path / "models.yaml"
    copy.write_text(MODELS_FILE.read_text())
    entry = hub.entry_from_config(recorded("gpt-oss-20b"), {"U8": 10_150_000_000, "BF16": 1_790_000_000},
                                  gated=False, source="https://huggingface.co/acme/oss/blob/abc/config.json")
    monkeypatch.setattr("fleet.spec.MODELS_FILE", copy)
    model_entries.cache_clear()
    known_models.cache_clear()
    try:
        written = catalog_add.add("acme/oss", entry, copy)
        # 10.15e9 bytes of mxfp4 blocks hold 19.11e9 parameters, plus 1.79e9 16-bit ones: 20.9B, as the card says
        assert written.startswith("  acme/oss:\n    {params_b: 20.9, layers: 24")
        assert ModelArch(**known_models()["acme/oss"]) == ModelArch.from_entry(entry)
        assert model_entries()["acme/oss"]["source"].startswith("https://huggingface.co/acme/oss")
        with pytest.raises(ValueError, match="already in"):
            catalog_add.add("acme/oss", entry, copy)
    finally:
        model_entries.cache_clear()
        known_models.cache_clear()


# --- the catalog itself -----------------------------------------------------------------------------------------
def test_every_catalog_entry_is_a_model_architecture_with_its_references_right():
    gpus = set(catalog.gpu_names())
    for model, entry in model_entries().items():
        parsed = ModelArch.from_entry(entry)
        assert parsed.heads % parsed.kv_heads == 0, model
        assert set(entry) <= {f for f in ModelArch.__dataclass_fields__} | {"source", "base", "notes"}, model
        if entry.get("base"):
            assert entry["base"] in model_entries() and entry.get("quantization"), model
            assert not model_entries()[entry["base"]].get("quantization"), model
            base = known_models()[entry["base"]]
            assert (base["layers"], base["heads"]) == (parsed.layers, parsed.heads), model
        if parsed.gpus:
            assert set(parsed.gpus) <= gpus, model
        if parsed.experts or parsed.mla or parsed.sliding_window or parsed.quantization in ("mxfp4", "fp8"):
            assert entry.get("source"), f"{model}: a 2025-2026 entry says where its numbers come from"
        if parsed.quantization == "mxfp4":
            assert parsed.quantized_params_b and parsed.quantized_params_b < parsed.params_b, model
