"""The usage layer's overhead, measured (docs/usage.md): codellama-dev's VM on this CPU machine (stack_on_cpu),
served with and without `--middleware fleet_usage.UsageMiddleware`, each loaded by cli.bench (`vllm bench serve`,
as `make bench` runs it) with the same prompts, twice in turn. Prints each run and the ratios; a measurement, not a
test.

    .venv/bin/python tests/serving/bench_usage_layer.py [--prompts 32 --concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parents[1])]

from conftest import ROOT, PlannedStack, run_plan  # noqa: E402
from stack_on_cpu import serve_stack_on_cpu  # noqa: E402


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
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    planned = run_plan("codellama-dev")
    plan = PlannedStack("codellama-dev", json.loads(planned.stdout))
    runs: dict[bool, list[dict]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as work:
        for round_ in range(args.rounds):
            for layer in (True, False):
                where = Path(work) / f"{round_}-{layer}"
                where.mkdir()
                with serve_stack_on_cpu(plan, where, usage_layer=layer) as served:
                    bench(served, where, args)  # warm-up: the first requests compile and fill caches
                    saved = bench(served, where, args)
                runs[layer].append(saved)
                print(f"{'with' if layer else 'without'} the usage layer: {saved['output_throughput']:.1f} output "
                      f"tok/s, {saved['request_throughput']:.3f} req/s, TTFT mean {saved['mean_ttft_ms']:.1f} ms, "
                      f"p99 {saved['p99_ttft_ms']:.1f} ms", flush=True)

    def mean(layer: bool, field: str) -> float:
        return sum(r[field] for r in runs[layer]) / len(runs[layer])

    print(f"ratio with/without: output throughput {mean(True, 'output_throughput') / mean(False, 'output_throughput'):.3f}"
          f", mean TTFT {mean(True, 'mean_ttft_ms') / mean(False, 'mean_ttft_ms'):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
