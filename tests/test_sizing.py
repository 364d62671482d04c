"""Model memory and the choice of instance type."""

from __future__ import annotations

import pytest

from fleet import catalog
from fleet.errors import ConfigError
from fleet.sizing import kv_cache_room_gib, model_memory, size
from fleet.spec import ModelArch, known_models, parse_spec

CODELLAMA_70B = ModelArch(**known_models()["codellama/CodeLlama-70b-Instruct-hf"])
CODELLAMA_7B = ModelArch(**known_models()["codellama/CodeLlama-7b-Instruct-hf"])


def spec(model: str, **config):
    raw = {"cloud": config.pop("cloud", "aws"), "region": config.pop("region", "us-east-1"), "model": model,
           "allowedCidrs": '["10.0.0.0/8"]', **{k: str(v) for k, v in config.items()}}
    return parse_spec("t", raw, set())


def fits(arch, quantization, max_len, gpu, count) -> bool:
    instance = next(it for it in catalog.cloud("aws").instance_types.values()
                    if it.gpu == gpu and it.gpu_count == count)
    memory = model_memory(arch, quantization, max_len)
    return kv_cache_room_gib(instance, memory, 0.9) >= memory.one_sequence_gib


def test_weights_follow_parameters_and_precision():
    assert model_memory(CODELLAMA_70B, None, 4096).weights_gib == pytest.approx(69e9 * 2 / 2**30)
    assert model_memory(CODELLAMA_70B, "fp8", 4096).weights_gib == pytest.approx(69e9 / 2**30)
    # KV cache: 2 (K and V) x 80 layers x 8 KV heads x 128 x 2 bytes = 320 KiB a token
    assert model_memory(CODELLAMA_70B, None, 4096).kv_gib_per_token * 2**30 == 2 * 80 * 8 * 128 * 2


def test_70b_fp16_needs_two_80gb_gpus_or_equivalent():
    assert fits(CODELLAMA_70B, None, 4096, "A100-80GB", 8)   # 8x 80 GB
    assert not fits(CODELLAMA_70B, None, 4096, "A10G", 4)   # 4x 24 GB: 88 GiB < 128 GiB of weights
    assert not fits(CODELLAMA_70B, None, 4096, "L40S", 1)
    assert fits(CODELLAMA_70B, None, 4096, "L40S", 4)       # 4x 48 GB = 192 GB
    assert fits(CODELLAMA_70B, None, 4096, "A10G", 8)       # 8x 24 GB = 192 GB
    two_80gb = catalog.InstanceType("aws", "x", "A100-80GB", 2, 79.1, 24, 440, 1.0, (), (8, 0))
    memory = model_memory(CODELLAMA_70B, None, 4096)
    assert kv_cache_room_gib(two_80gb, memory, 0.9) >= memory.one_sequence_gib
    one_80gb = catalog.InstanceType("aws", "x", "A100-80GB", 1, 79.1, 12, 220, 1.0, (), (8, 0))
    assert kv_cache_room_gib(one_80gb, memory, 0.9) < memory.one_sequence_gib


def test_7b_fits_one_24gb_gpu():
    assert fits(CODELLAMA_7B, None, 8192, "A10G", 1)
    assert fits(CODELLAMA_7B, None, 8192, "L4", 1)
    # ...but not at its full 16k context: the KV cache (512 KiB a token without GQA) no longer fits
    assert not fits(CODELLAMA_7B, None, 16384, "L4", 1)


def test_70b_awq_fits_48gb():
    assert fits(CODELLAMA_70B, "awq", 4096, "L40S", 1)
    assert not fits(CODELLAMA_70B, "awq", 4096, "L4", 1)


def test_cheapest_fit_is_chosen_and_tp_equals_gpus():
    sized = size(spec("codellama/CodeLlama-70b-Instruct-hf"))
    assert sized.instance.name == "g6e.12xlarge"  # 4x L40S, cheaper than g5.48xlarge, p4d, p4de, p5
    assert sized.tensor_parallel_size == sized.instance.gpu_count == 4
    fitting_prices = [it.usd_per_hour for it in catalog.cloud("aws").instance_types.values()
                      if it.total_gpu_memory_gib * 0.9 > 140]
    assert sized.instance.usd_per_hour == min(fitting_prices)
    small = size(spec("codellama/CodeLlama-7b-Instruct-hf", maxModelLen=8192))
    assert small.instance.name == "g6.xlarge" and small.tensor_parallel_size == 1


def test_accelerator_picks_the_cheapest_instance_with_those_gpus():
    sized = size(spec("codellama/CodeLlama-70b-Instruct-hf", accelerator="A100-80GB"))
    assert sized.instance.name == "p4de.24xlarge" and sized.tensor_parallel_size == 8


def test_tensor_parallel_size_must_divide_the_attention_heads():
    # StarCoder2-7B has 36 heads and 4 KV heads: 8 GPUs cannot split them.
    with pytest.raises(ConfigError) as caught:
        size(spec("bigcode/starcoder2-7b", instanceType="g6.48xlarge"))
    assert "tensor parallel size 8 does not divide the model's 36 attention heads" in str(caught.value)


def test_explicit_instance_type_that_cannot_hold_the_model_is_refused():
    with pytest.raises(ConfigError) as caught:
        size(spec("codellama/CodeLlama-70b-Instruct-hf", instanceType="g6e.xlarge"))
    assert caught.value.key == "instanceType"
    assert "cannot hold codellama/CodeLlama-70b-Instruct-hf" in str(caught.value)
    assert "quantization awq/fp8" in str(caught.value)


def test_data_disk_and_grace_period_grow_with_the_weights():
    small = size(spec("codellama/CodeLlama-7b-Instruct-hf", maxModelLen=8192))
    large = size(spec("codellama/CodeLlama-70b-Instruct-hf"))
    assert large.data_disk_gb > 2 * 128 and small.data_disk_gb < large.data_disk_gb
    assert 1500 <= large.startup_grace_seconds <= 3600  # SkyServe waits 1800 s for a 70B model
    assert small.startup_grace_seconds < large.startup_grace_seconds
    with pytest.raises(ConfigError) as caught:
        size(spec("codellama/CodeLlama-70b-Instruct-hf", dataDiskGb=100))
    assert caught.value.key == "dataDiskGb" and "at least" in str(caught.value)


def test_kv_cache_in_fp8_from_vllm_args_doubles_the_tokens():
    plain = size(spec("codellama/CodeLlama-7b-Instruct-hf", maxModelLen=8192))
    fp8 = size(parse_spec("t", {"cloud": "aws", "region": "us-east-1", "model": "codellama/CodeLlama-7b-Instruct-hf",
                                "maxModelLen": "8192", "allowedCidrs": '["10.0.0.0/8"]',
                                "vllmArgs": '["--kv-cache-dtype=fp8"]'}, set()))
    assert fp8.kv_cache_tokens == pytest.approx(2 * plain.kv_cache_tokens, rel=0.01)


def test_every_catalog_instance_is_consistent():
    for name in catalog.clouds():
        cloud = catalog.cloud(name)
        assert cloud.instance_types, name
        for it in cloud.instance_types.values():
            assert it.gpu_count in (1, 2, 4, 8) and it.usd_per_hour > 0 and it.vcpus > 0, it
            assert all(group in cloud.quota_groups for group in it.quota_groups), it


def test_gpu_memory_utilization_leaves_the_cuda_context_free_on_the_smallest_gpu():
    # 22 GiB (L4, A10G) - 1 GiB of CUDA context: at most 0.95 of it
    assert catalog.max_gpu_memory_utilization() == (0.95, "A10G")
    assert spec("codellama/CodeLlama-7b-Instruct-hf", gpuMemoryUtilization=0.95).gpu_memory_utilization == 0.95
    with pytest.raises(ConfigError) as caught:
        spec("codellama/CodeLlama-7b-Instruct-hf", gpuMemoryUtilization=0.96)
    assert caught.value.key == "gpuMemoryUtilization"
    assert "must be a number from 0.5 to 0.95" in str(caught.value) and "CUDA context" in str(caught.value)
