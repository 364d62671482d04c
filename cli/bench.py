"""Load-tests an endpoint with vLLM's own benchmark client, `vllm bench serve` of the pinned release (from the
.venv-vllm that serving-test/install.sh makes), and prints throughput, time to first token (TTFT) and time per
output token (TPOT) at the given concurrency.

    python -m cli.bench --stack codellama-prod [--concurrency 8 --prompts 64 --input-len 512 --output-len 128]
    python -m cli.bench --url URL --api-key KEY --model NAME --tokenizer DIR_OR_HF_ID [...]

Prompts are random token sequences of exactly --input-len tokens, so bench needs the model's tokenizer: with
--stack by default the stack's Hugging Face model (bench downloads its tokenizer: needs access to the hub, and
HF_TOKEN for a gated model); with --url, --tokenizer (a Hugging Face id or a local directory). `vllm bench serve`
exits 0 even when every request failed: this reads its result file and fails unless every request completed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import openai
import yaml

from .endpoint import ROOT, Endpoint, EndpointError, add_arguments, from_arguments

VLLM_BIN = Path(os.environ.get("VLLM_VENV", ROOT / ".venv-vllm")) / "bin" / "vllm"


# An endpoint's served model name need not be a Hugging Face id (servedModelName): with --url bench is told which.
TOKENIZER_NEEDED = ("--url needs --tokenizer (make bench: TOKENIZER=<Hugging Face id or local directory>): the "
                    "model's tokenizer, to make prompts of exactly --input-len tokens")


def stack_tokenizer(stack: str) -> str:
    """The Hugging Face id a stack serves, whose tokenizer bench downloads."""
    path = ROOT / "stacks" / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise EndpointError(f"no {path.relative_to(ROOT)} to read the model from: give --tokenizer")
    model = yaml.safe_load(path.read_text())["config"]["vllm-fleet:model"]
    if "://" in model:
        raise EndpointError(f"{stack} serves weights from a bucket: give --tokenizer DIR (a copy of them)")
    return model


def served_model(endpoint: Endpoint) -> str:
    """The model the endpoint lists first."""
    client = openai.OpenAI(base_url=endpoint.openai_base_url, api_key=endpoint.api_key, max_retries=0)
    try:
        return client.models.list().data[0].id
    except (openai.APIError, OSError, IndexError) as error:
        raise EndpointError(f"no model to bench: /v1/models: {error}; give --model") from None


def bench_command(endpoint: Endpoint, model: str, tokenizer: str, args: argparse.Namespace,
                  result_dir: Path) -> list[str]:
    return [
        str(VLLM_BIN), "bench", "serve", "--backend", "openai", "--base-url", endpoint.url,
        "--endpoint", "/v1/completions",
        "--model", model,  # without it bench asks /v1/models for one, without the key: 401
        "--tokenizer", tokenizer,
        "--dataset-name", "random", "--random-input-len", str(args.input_len),
        "--random-output-len", str(args.output_len),
        "--ignore-eos",  # every request generates --output-len tokens, whatever the model would say
        "--num-prompts", str(args.prompts), "--max-concurrency", str(args.concurrency),
        "--save-result", "--save-detailed", "--result-dir", str(result_dir), "--result-filename", "result.json",
    ]  # fmt: skip


def summary(result: dict[str, Any]) -> tuple[list[str], bool]:
    """Lines about a bench result file, and whether every request completed."""
    completed, prompts = result["completed"], result["num_prompts"]
    lines = [
        f"requests:   {completed} of {prompts} completed at concurrency {result['max_concurrency']} "
        f"in {result['duration']:.1f} s",
        f"throughput: {result['request_throughput']:.2f} req/s, {result['output_throughput']:.1f} output tok/s "
        f"({result['total_token_throughput']:.1f} tok/s in and out)",
        f"TTFT:       mean {result['mean_ttft_ms']:.1f} ms, p99 {result['p99_ttft_ms']:.1f} ms",
        f"TPOT:       mean {result['mean_tpot_ms']:.1f} ms, p99 {result['p99_tpot_ms']:.1f} ms",
    ]
    if completed < prompts:
        errors = sorted({error.strip().splitlines()[0] for error in result.get("errors", []) if error.strip()})
        lines.append(f"FAIL {prompts - completed} of {prompts} requests failed: {'; '.join(errors)[:500]}")
    return lines, completed == prompts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--tokenizer", help="the model's tokenizer: a Hugging Face id or a local directory "
                                            "(default with --stack: the stack's model; needed with --url)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    parser.add_argument("--prompts", type=int, default=64, help="requests in all (default 64)")
    parser.add_argument("--input-len", type=int, default=512, help="prompt tokens a request (default 512)")
    parser.add_argument("--output-len", type=int, default=128, help="generated tokens a request (default 128)")
    parser.add_argument("--result-dir", type=Path, help="keep bench's result.json here (default: a temporary folder)")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds (default 3600)")
    args = parser.parse_args(argv)
    try:
        endpoint = from_arguments(args)
        tokenizer = args.tokenizer or (stack_tokenizer(args.stack) if args.stack else None)
        if tokenizer is None:
            raise EndpointError(TOKENIZER_NEEDED)
        model = endpoint.model or served_model(endpoint)
    except EndpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not VLLM_BIN.exists():
        print(f"error: {VLLM_BIN} is missing: run serving-test/install.sh", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as scratch:
        result_dir = args.result_dir or Path(scratch)
        # bench reads the key from OPENAI_API_KEY only.
        env = {**os.environ, "OPENAI_API_KEY": endpoint.api_key}
        command = bench_command(endpoint, model, tokenizer, args, result_dir)
        try:
            finished = subprocess.run(command, env=env, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"FAIL bench did not finish in {args.timeout:.0f} s")
            return 1
        if finished.returncode != 0:
            print(f"FAIL vllm bench serve exited with {finished.returncode}")
            return 1
        lines, passed = summary(json.loads((result_dir / "result.json").read_text()))
    print(f"\nmake bench: {endpoint.url} ({model}), {args.input_len} tokens in, {args.output_len} out a request")
    print("\n".join(lines))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
