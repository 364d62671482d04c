"""How cli.check and cli.bench find a deployed endpoint: a stack's outputs as `pulumi stack output --json`
prints them, or --url and a key. The tools themselves run against a real vLLM in tests/serving."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT
from cli import bench
from cli.endpoint import Endpoint, EndpointError, from_stack_outputs


def outputs_document(plan, **changes) -> dict:
    """`pulumi stack output --json [--show-secrets]` prints the program's outputs by name: the plan's, which show a
    secret as [secret] as the CLI does without --show-secrets."""
    return {**plan.outputs, **changes}


def test_a_stacks_outputs_name_the_endpoint_model_and_key(plan_of):
    document = outputs_document(plan_of("codellama-prod"), apiKey="sk-0123")
    assert from_stack_outputs(document) == Endpoint("https://codellama.example.com", "sk-0123",
                                                    "codellama-70b-instruct")
    assert from_stack_outputs(document).openai_base_url == document["openaiBaseUrl"]


def test_outputs_without_show_secrets_or_before_pulumi_up_are_explained(plan_of):
    with pytest.raises(EndpointError, match="--show-secrets"):
        from_stack_outputs(outputs_document(plan_of("codellama-dev")))
    with pytest.raises(EndpointError, match="no output endpoint, apiKey: has `pulumi up` finished"):
        from_stack_outputs({"servedModelName": "x"})


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


@pytest.mark.parametrize("tool", ["cli.check", "cli.bench"])
def test_tools_say_what_is_missing_in_one_line(tool):
    no_key = run(tool, "--url", "http://127.0.0.1:9", env={"OPENAI_API_KEY": ""})
    assert no_key.returncode == 2 and no_key.stderr == "error: --url needs --api-key (or OPENAI_API_KEY in the " \
                                                       "environment)\n"
    # This machine has no Pulumi CLI (nor does the PATH here): --stack says how to get it or what to give instead.
    no_cli = run(tool, "--stack", "codellama-prod", env={"PATH": ""})
    assert no_cli.returncode == 2 and "the Pulumi CLI is not installed" in no_cli.stderr
    usage = run(tool, env={})
    assert usage.returncode == 2 and "one of the arguments --stack --url is required" in usage.stderr


def test_bench_with_a_url_asks_for_the_tokenizer_in_one_line():
    # Before the endpoint is asked anything: nothing listens on port 9.
    result = run("cli.bench", "--url", "http://127.0.0.1:9", "--api-key", "k", env={})
    assert result.returncode == 2 and result.stderr == f"error: {bench.TOKENIZER_NEEDED}\n"
    assert "TOKENIZER=" in result.stderr
    made = subprocess.run(["make", "--no-print-directory", "bench", "URL=http://127.0.0.1:9", "KEY=k"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 2 and made.stderr.startswith(f"error: {bench.TOKENIZER_NEEDED}\n"), made.stderr


def test_bench_tokenizes_with_the_stacks_hugging_face_model():
    assert bench.stack_tokenizer("codellama-prod") == "codellama/CodeLlama-70b-Instruct-hf"
    with pytest.raises(EndpointError, match="give --tokenizer"):
        bench.stack_tokenizer("not-a-stack")
