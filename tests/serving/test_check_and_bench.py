"""The tools for a deployed endpoint, cli.check and cli.bench, run as a user runs them against codellama-dev's
VM served on this CPU machine (stack_on_cpu): passing, and failing where the endpoint is wrong.

Fails in CI (skips elsewhere) without .venv-vllm; one server for the module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from cli.check import ODD_PATHS
from stack_on_cpu import ServedStack, serve_stack_on_cpu
from vllm_server import REPO_ROOT

STACK = "codellama-dev"  # serves under its Hugging Face id: a model name with a slash
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(plan_of, tmp_path_factory):
    with serve_stack_on_cpu(plan_of(STACK), tmp_path_factory.mktemp(STACK)) as served:
        yield served


def run_tool(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m fleet.<tool> ARGS` as a user runs it; if it hangs, its whole process group is killed."""
    tool = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})
    try:
        output, _ = tool.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(tool.pid, signal.SIGKILL)
        tool.communicate()
        raise
    return subprocess.CompletedProcess(tool.args, tool.returncode, output)


def results_of(output: str) -> dict[str, str]:
    """cli.check's result lines: check name -> PASS, FAIL or SKIP."""
    return {words[1]: words[0] for words in map(str.split, output.splitlines())
            if words[:1] in (["PASS"], ["FAIL"], ["SKIP"])}


CHECKS = ["health", "auth", "models", "completion", "chat", "streaming", "tools", "edge", "paths", "metrics"]


def test_check_passes_against_the_stack_served_on_cpu(stack):
    """CodeLlama Instruct has no tool-call parser (catalog/tool-calling.yaml): vLLM refuses tool_choice auto, and
    the tools check says so instead of failing (tests/serving/test_tool_calling.py: a model with one passes it)."""
    result = run_tool("cli.check", "--url", stack.base_url, "--api-key", stack.api_key,
                      "--model", stack.served_model_name, "--direct")
    assert result.returncode == 0, result.stdout
    assert results_of(result.stdout) == {**dict.fromkeys(CHECKS, "PASS"), "tools": "SKIP"}, result.stdout
    assert "SKIP  tools      the server runs without a tool-call parser" in result.stdout
    assert "OK: 9 checks passed, 1 skipped (tools)" in result.stdout


def test_check_takes_the_openai_base_url_and_key_and_finds_the_model(stack):
    result = run_tool("cli.check", "--url", f"{stack.base_url}/v1", "--direct",
                      env={"OPENAI_API_KEY": stack.api_key})
    assert result.returncode == 0, result.stdout
    assert f"PASS  models     /v1/models lists {stack.served_model_name!r}" in result.stdout


def test_check_fails_with_a_wrong_key(stack):
    result = run_tool("cli.check", "--url", stack.base_url, "--api-key", "not-the-key",
                      "--model", stack.served_model_name, "--direct")
    assert result.returncode == 1, result.stdout
    assert results_of(result.stdout) == {"health": "PASS", "auth": "PASS", "models": "FAIL", "completion": "FAIL",
                                         "chat": "FAIL", "streaming": "FAIL", "tools": "FAIL", "edge": "PASS",
                                         "paths": "PASS", "metrics": "PASS"}, result.stdout
    assert "FAIL  models     401: the endpoint refuses the API key" in result.stdout
    assert "FAILED: 5 of 10 checks (models, completion, chat, streaming, tools)" in result.stdout


def test_check_fails_when_invocations_and_metrics_reach_the_public(stack):
    """Without --direct the URL stands for a load balancer, which must refuse /invocations and /metrics: vLLM alone
    answers both without the key."""
    result = run_tool("cli.check", "--url", stack.base_url, "--api-key", stack.api_key)
    assert result.returncode == 1, result.stdout
    assert results_of(result.stdout)["edge"] == results_of(result.stdout)["metrics"] == "FAIL"
    # vLLM answers every odd spelling itself (401 or 404): no load balancer refused them
    assert results_of(result.stdout)["paths"] == "FAIL"
    assert f"{len(ODD_PATHS)} of {len(ODD_PATHS)} odd spellings reached vLLM" in result.stdout
    assert "POST /invocations without the key answered 200" in result.stdout
    assert "GET /metrics answers anyone without the key" in result.stdout


def bench(stack: ServedStack, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return run_tool("cli.bench", "--url", stack.base_url, *args, "--tokenizer", str(stack.model_dir),
                    "--concurrency", "2", "--prompts", "6", "--input-len", "32", "--output-len", "16",
                    "--result-dir", str(tmp_path),
                    env={"HF_HUB_OFFLINE": "1"})  # the tokenizer is a directory: bench must not look for a hub


def test_bench_reports_throughput_and_time_to_first_token(stack, tmp_path):
    result = bench(stack, tmp_path, "--api-key", stack.api_key)  # the model: the one the endpoint lists
    assert result.returncode == 0, result.stdout
    assert f"make bench: {stack.base_url} ({stack.served_model_name}), 32 tokens in, 16 out" in result.stdout
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["completed"] == 6 and saved["max_concurrency"] == 2 and saved["total_output_tokens"] == 6 * 16
    assert "requests:   6 of 6 completed at concurrency 2" in result.stdout
    assert f"{saved['request_throughput']:.2f} req/s, {saved['output_throughput']:.1f} output tok/s" in result.stdout
    assert f"TTFT:       mean {saved['mean_ttft_ms']:.1f} ms, p99 {saved['p99_ttft_ms']:.1f} ms" in result.stdout
    assert "TPOT:" in result.stdout


def test_bench_fails_when_requests_fail_though_vllm_bench_exits_0(stack, tmp_path):
    result = bench(stack, tmp_path, "--api-key", "not-the-key", "--model", stack.served_model_name)
    assert result.returncode == 1, result.stdout
    assert json.loads((tmp_path / "result.json").read_text())["completed"] == 0
    assert "FAIL 6 of 6 requests failed: Unauthorized" in result.stdout
