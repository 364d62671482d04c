"""vllmArgs read as the pinned vLLM's parser reads them (catalog/vllm-serve-flags.json, fleet/vllm_args.py): one
line naming the flag for each refusal, and sizing reads the value vLLM stores. tests/serving/
test_vllm_judges_vllm_args.py checks the same cases against vLLM itself."""

from __future__ import annotations

import pytest

from fleet import catalog, sizing, vllm_args
from fleet.errors import ConfigError
from test_spec import error_of, parse

OPTIONS = vllm_args.metadata()["options"]


def refusal(args: list) -> str:
    error = error_of(vllmArgs=args)
    assert error.key == "vllmArgs" and "\n" not in str(error), str(error)
    return str(error)


@pytest.mark.parametrize("flag", sorted(flag for dest in vllm_args.MANAGED for flag in OPTIONS[dest]["flags"]
                                        if not flag.startswith("--no-")))
def test_every_flag_of_a_managed_destination_is_refused_under_any_alias(flag):
    dest = vllm_args._flags()[flag]
    message = refusal([flag] if OPTIONS[dest]["nargs"] == 0 else [flag, "2"])
    primary = OPTIONS[dest]["flags"][0]
    assert f"{primary} is managed by vllm-fleet" in message
    if flag != primary:
        assert f"{flag} is vLLM's alias of {primary}" in message


@pytest.mark.parametrize("args, words", [
    (["--max-num-seqs=8", "--max-num-seqs=16"], "--max-num-seqs sets what --max-num-seqs set already"),
    (["--max-num-seqs=8", "--max_num_seqs", "16"], "vLLM keeps only the last"),
    (["--enable-prefix-caching", "--no-enable-prefix-caching"], "--no-enable-prefix-caching sets what"),
    (["-tp", "2"], "-tp is vLLM's alias of --tensor-parallel-size"),
    (["--tensor-parallel=2"], "set the accelerator key instead"),  # vLLM reads the start of a flag as the flag
    (["--max-num-seqs=0"], "--max-num-seqs must be at least 1"),
    (["--max-num-batched-tokens=2.5K"], "--max-num-batched-tokens takes a whole number, or one like 8k"),
    (["--watermark=1"], "--watermark must be less than 1.0"),
    (["--tool-call-parser=hermez"], "--tool-call-parser takes a name of vLLM's tool call parsers (did you mean hermes"),
    (["--reasoning-parser=nope"], "reasoning parsers"),
    (["--max-num", "3"], "--max-num is the start of"),
    (["--enable-auto-tool-choice"], "--enable-auto-tool-choice needs --tool-call-parser too"),
    (["--enable-log-outputs"], "needs --enable-log-requests too"),
    (["--max-num-seqs=512", "--max-num-batched-tokens=256"], "--max-num-batched-tokens=256 is below --max-num-seqs=512"),
    (["--no-enable-chunked-prefill", "--max-num-batched-tokens=1024"], "is below maxModelLen (8192)"),
    (["--long-prefill-token-threshold=9000"], "is above maxModelLen (8192)"),
    (["--enable-eplb"], "needs --enable-expert-parallel"),
    (["--uds=/run/vllm.sock"], "a Unix socket instead of the port"),
    (["--headless"], "nothing answers on the port"),
    (["--api-server-count", "0"], "starts no API server"),
    (["--grpc"], "gRPC instead of the HTTP API"),
    (["-dp", "2"], "needs 2x the GPUs the VM has"),
    (["--prefill-context-parallel-size=2"], "needs 2x the GPUs the VM has"),
    (["--distributed-executor-backend=ray"], "the VMs do not install ray"),
    (["--nnodes=2"], "several nodes"),
    (["--data-parallel-address=10.0.0.2"], "several nodes"),
    (["--max-num-seqs", "4", "5"], "--max-num-seqs takes a single value"),
])
def test_what_vllm_would_refuse_or_cannot_serve_gets_one_line_naming_the_flag(args, words):
    assert words in refusal(args)


@pytest.mark.parametrize("args, written", [
    (["--max_num_seqs", 32], ("--max-num-seqs=32",)),
    (["--max-num-seq=16"], ("--max-num-seqs=16",)),
    (["-ep"], ("--enable-expert-parallel",)),
    (["--max-num-batched-tokens=8k", "--max-num-seqs", "64"], ("--max-num-batched-tokens=8k", "--max-num-seqs=64")),
    (["--enable-auto-tool-choice", "--tool-call-parser", "hermes"],
     ("--enable-auto-tool-choice", "--tool-call-parser=hermes")),
    (["--nnodes=1", "--data-parallel-size=1"], ("--nnodes=1", "--data-parallel-size=1")),
])
def test_what_vllm_accepts_is_written_in_its_long_form(args, written):
    assert parse(vllmArgs=args).vllm_args == written


def test_sizing_reads_the_value_vllm_stores_under_any_spelling():
    instance = catalog.cloud("aws").instance_types["g6e.xlarge"]
    assert sizing.max_num_seqs(instance, parse(vllmArgs=["--max_num_seqs", 24]).vllm_args) == 24
    assert sizing.kv_fp8(parse(vllmArgs=["--kv-cache-dtype", "fp8_e5m2"]))
    assert not sizing.kv_fp8(parse(vllmArgs=["--kv-cache-dtype=auto"]))
    assert sizing.expert_parallel(parse(vllmArgs=["-ep"]).vllm_args)
    assert vllm_args.value_of(("--no-enable-expert-parallel",), "enable_expert_parallel") is False


def test_the_file_is_read_by_destination_with_every_alias():
    flags = vllm_args._flags()
    assert flags["-tp"] == flags["--tensor-parallel-size"] == "tensor_parallel_size"
    assert flags["--device-memory-utilization"] == "gpu_memory_utilization"
    with pytest.raises(ConfigError, match="is not a flag of `vllm serve` in vLLM"):
        vllm_args.parse(["--enable-prefix-cacheing"], 4096)


def test_more_sequences_than_vllm_batches_by_default_on_the_gpu_is_refused():
    """Without --max-num-batched-tokens vLLM batches 2048 tokens a step on an L4 or A100 (8192 on an H100) and
    refuses fewer batched tokens than sequences (vllm/engine/arg_utils.py get_batch_defaults)."""
    with pytest.raises(ConfigError) as caught:
        sizing.size(parse(vllmArgs=["--max-num-seqs=4096"], accelerator="L4:1"))
    assert caught.value.key == "vllmArgs"
    assert "above the 2048 tokens vLLM batches a step by default on L4" in str(caught.value)
    assert "add --max-num-batched-tokens=4096" in str(caught.value)
    assert sizing.size(parse(vllmArgs=["--max-num-seqs=4096", "--max-num-batched-tokens=4096"], accelerator="L4:1"))
    assert sizing.size(parse(vllmArgs=["--max-num-seqs=2048"], accelerator="L4:1")).max_num_seqs == 2048


def test_decode_context_parallel_follows_vllms_rules():
    """vllm/config/parallel.py: tensor parallel divisible by dcp; vllm/config/model.py for GQA/MQA (not MLA): more
    GPUs than KV heads, dcp at most GPUs / KV heads and a divisor of the query heads per KV head."""
    def refused(dcp: int, tp: int, heads: int, kv_heads: int, mla: bool = False) -> str | None:
        args = vllm_args.parse([f"--decode-context-parallel-size={dcp}"], 4096)
        return vllm_args.context_parallel_refusal(args, tp, heads, kv_heads, mla)

    assert refused(1, 1, 32, 32) is None
    assert "must divide the tensor parallel size: the VM has 4 GPUs" in refused(3, 4, 32, 4)
    assert "only over more GPUs than KV heads" in refused(2, 8, 64, 8)
    assert "is above 2, vLLM's most for 8 GPUs" in refused(4, 8, 32, 4)
    assert "must divide the model's 3 query heads per KV head" in refused(2, 8, 12, 4)
    assert refused(2, 8, 32, 4) is None
    assert refused(8, 8, 16, 16, mla=True) is None  # MLA: only the divisibility
    assert "must divide" in refused(3, 8, 16, 16, mla=True)


def test_a_decode_context_parallel_size_no_vm_takes_is_one_line_naming_it():
    with pytest.raises(ConfigError) as caught:
        sizing.size(parse(vllmArgs=["-dcp", 3], accelerator="L4:4"))
    assert (caught.value.key, caught.value.value) == ("vllmArgs", "--decode-context-parallel-size=3")
    assert "\n" not in str(caught.value) and "must divide the tensor parallel size" in str(caught.value)
    assert sizing.size(parse(vllmArgs=["-dcp", 1], accelerator="L4:4"))
