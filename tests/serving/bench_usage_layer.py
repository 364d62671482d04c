"""The usage layer's overhead, measured (docs/usage.md): codellama-dev's VM on this CPU machine (stack_on_cpu),
served with and without `--middleware fleet_usage.UsageMiddleware` (two servers at once), each loaded by cli.bench
(`vllm bench serve`, as `make bench` runs it) with the same prompts, in turn. Prints each run and the ratios of the
medians; a measurement, not a test.

    .venv/bin/python tests/serving/bench_usage_layer.py [--prompts 24 --concurrency 4 --rounds 4]
"""

from __future__ import annotations

import argparse
import hashlib
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parents[1])]

from conftest import ROOT, PlannedStack, run_plan, write_files  # noqa: E402
from fleet import bootstrap, usage  # noqa: E402
from stack_on_cpu import serve_stack_on_cpu  # noqa: E402
from vllm_server import VENV_PYTHON  # noqa: E402

# The layer alone, in .venv-vllm's Python: an ASGI app that answers a stream of 32 chunks and leaves vLLM's usage in
# the request state, called 20000 times bare and through the layer.
LAYER_ALONE = """
import asyncio, time
import fleet_usage

class Usage:
    prompt_tokens, completion_tokens = 64, 32

class Metadata:
    final_usage_info = Usage()

async def app(scope, receive, send):
    scope.setdefault("state", {})["request_metadata"] = Metadata()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(32):
        await send({"type": "http.response.body", "body": b"data: x\\n\\n", "more_body": True})
    await send({"type": "http.response.body", "body": b""})

async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}

async def send(message):
    pass

async def run(handler, n):
    start = time.perf_counter()
    for _ in range(n):
        await handler({"type": "http", "method": "POST", "path": "/v1/completions", "root_path": "",
                       "headers": [(b"authorization", b"Bearer key-a")]}, receive, send)
    return (time.perf_counter() - start) / n

layer = fleet_usage.UsageMiddleware(app)
for _ in range(3):
    bare, wrapped = asyncio.run(run(app, 20000)), asyncio.run(run(layer, 20000))
    print(f"the layer alone: {bare * 1e6:.1f} us a request bare, {wrapped * 1e6:.1f} us through the layer")
"""


def layer_alone(plan: PlannedStack, work: Path) -> None:
    (work / "fleet_usage.py").write_text(write_files(plan.user_data)[bootstrap.PATHS["usage_module"]]["content"])
    (work / "hashes.json").write_text(json.dumps({"a": hashlib.sha256(b"key-a").hexdigest()}))
    (work / "limits.json").write_text(json.dumps({"default": {}, "keys": {}}))
    subprocess.run([str(VENV_PYTHON), "-c", LAYER_ALONE], cwd=work, check=True, timeout=600, env={
        **os.environ, usage.KEY_HASHES_VARIABLE: "hashes.json", usage.RATE_LIMITS_VARIABLE: "limits.json"})


def bench(served, out: Path, args) -> dict:
    result = subprocess.run([sys.executable, "-m", "cli.bench", "--url", served.base_url, "--api-key", served.api_key,
                             "--tokenizer", str(served.model_dir), "--concurrency", str(args.concurrency),
                             "--prompts", str(args.prompts), "--input-len", "64", "--output-len", "32",
                             "--result-dir", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if result.returncode:
        raise SystemExit(result.stdout + result.stderr)
    return json.loads((out / "result.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--without-first", action="store_true", help="start the server without the layer first")
    args = parser.parse_args()
    planned = run_plan("codellama-dev")
    plan = PlannedStack("codellama-dev", json.loads(planned.stdout))
    runs: dict[bool, list[dict]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as work, contextlib.ExitStack() as servers:
        layer_alone(plan, Path(work))
        # Both servers up at once, benched in turn (the order alternating), so that the load of the machine drifts
        # over both alike.
        served = {layer: servers.enter_context(serve_stack_on_cpu(plan, Path(work) / str(layer), usage_layer=layer))
                  for layer in ((False, True) if args.without_first else (True, False))}
        for layer in (True, False):
            bench(served[layer], Path(work) / str(layer), args)  # warm-up: the first requests fill caches
        for round_ in range(args.rounds):
            for layer in (True, False) if round_ % 2 == 0 else (False, True):
                saved = bench(served[layer], Path(work) / str(layer), args)
                runs[layer].append(saved)
                print(f"{'with' if layer else 'without'} the usage layer: {saved['output_throughput']:.1f} output "
                      f"tok/s, {saved['request_throughput']:.3f} req/s, TTFT mean {saved['mean_ttft_ms']:.1f} ms, "
                      f"p99 {saved['p99_ttft_ms']:.1f} ms", flush=True)

    def median(layer: bool, field: str) -> float:
        return statistics.median(r[field] for r in runs[layer])

    print(f"median ratio with/without: output throughput "
          f"{median(True, 'output_throughput') / median(False, 'output_throughput'):.3f}, mean TTFT "
          f"{median(True, 'mean_ttft_ms') / median(False, 'mean_ttft_ms'):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
