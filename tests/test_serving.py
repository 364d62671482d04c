"""serving.cpu_argv: the one place where the CPU serving test (tests/serving) departs from a VM's arguments."""

from __future__ import annotations

import pytest

from conftest import launcher_argv, stacks_of, write_files
from fleet import bootstrap, serving

GPU_ARGV = ["codellama/CodeLlama-70b-Instruct-hf", "--config", "/etc/vllm/api-keys.yaml", "--host", "0.0.0.0", "--port", "8000",
            "--served-model-name", "codellama-70b-instruct", "--tensor-parallel-size", "4", "--max-model-len", "4096",
            "--gpu-memory-utilization", "0.9", "--dtype", "auto", "--quantization", "awq",
            "--enable-prefix-caching", "--kv-cache-dtype=fp8", "--max-num-seqs=64", "--block-size=16",
            "--distributed-executor-backend", "ray"]


def test_gpu_only_arguments_are_rewritten_and_everything_else_is_kept():
    assert serving.cpu_argv(GPU_ARGV, "/tmp/tiny", port=41234, max_model_len=2048, config_root="/tmp/vm/") == [
        "/tmp/tiny", "--config", "/tmp/vm/etc/vllm/api-keys.yaml", "--host", "127.0.0.1", "--port", "41234",
        "--served-model-name", "codellama-70b-instruct",
        "--tensor-parallel-size", "1", "--max-model-len", "2048", "--dtype", "auto",
        "--enable-prefix-caching", "--max-num-seqs=64", "--enforce-eager"]


def test_a_shorter_context_stays_and_flags_in_either_form_are_read():
    argv = ["m", "--max-model-len=512", "--port=8000", "--quantization=fp8", "--enforce-eager"]
    assert serving.cpu_argv(argv, "/tmp/tiny", port=1, max_model_len=2048, config_root="/r") == [
        "/tmp/tiny", "--max-model-len", "512", "--port", "1", "--enforce-eager"]


@pytest.mark.parametrize("argv", [["--host", "0.0.0.0"], ["m", "--tensor-parallel-size"]])
def test_arguments_it_cannot_read_are_refused(argv):
    with pytest.raises(ValueError):
        serving.cpu_argv(argv, "/tmp/tiny", port=1, max_model_len=2048, config_root="/r")


@pytest.mark.parametrize("stack", stacks_of())
def test_every_stack_keeps_all_but_the_documented_rewrites(stack, plan_of):
    argv = launcher_argv(write_files(plan_of(stack).user_data)[bootstrap.PATHS["launcher"]]["content"])
    cpu = serving.cpu_argv(argv, "/tmp/tiny", port=41234, max_model_len=2048, config_root="/tmp/vm")
    rewritten = {"--config", "--host", "--port", "--tensor-parallel-size", "--max-model-len",
                 *serving.CPU_DROPPED_FLAGS}

    def flags(tokens):
        return [t.split("=", 1)[0] for t in tokens if t.startswith("--") and t.split("=", 1)[0] not in rewritten]

    assert flags(cpu) == flags(argv) + ["--enforce-eager"]
    for flag in ("--served-model-name", "--dtype"):
        assert cpu[cpu.index(flag) + 1] == argv[argv.index(flag) + 1]
    assert cpu[cpu.index("--config") + 1] == "/tmp/vm" + argv[argv.index("--config") + 1]
    assert not set(cpu) & set(serving.CPU_DROPPED_FLAGS)
