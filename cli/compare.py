"""Every way to serve a model across clouds, regions, instance types and weight precisions, cheapest first.

    python -m cli.compare codellama/CodeLlama-70b-Instruct-hf
    python -m cli.compare Qwen/Qwen3-Coder-30B-A3B-Instruct --concurrency 40 --tokens 8192 --format json

Each row is what `make plan` would pick for a stack with that cloud, region, model and quantization: the same
parse_spec and the same sizing (fleet.sizing.options) run for every (cloud, region, precision), so a row's
instance type, tensor parallel size, requests and price are the plan's. Precisions: the model's own weights (16 bit,
or its pre-quantized format), fp8 quantized when vLLM loads it (any 16-bit model), and every pre-quantized
checkpoint of catalog/models.yaml whose `base` is the model (AWQ, GPTQ, FP8). With --concurrency and --tokens the
rows are fleets (instance type x replicas) holding that many requests of that many tokens at once.

Not imported by the Pulumi program.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import textwrap
from dataclasses import dataclass
from typing import Any

from fleet import catalog, sizing
from fleet.errors import ConfigError
from fleet.spec import model_entries, parse_spec

HOURS_PER_MONTH = 730
# Whatever the stack's allowedCidrs, they change no price: compare needs a valid one to parse a spec.
_PLACEHOLDER_CIDRS = ["10.0.0.0/8"]


@dataclass(frozen=True)
class Variant:
    """One way to hold the model's weights: a checkpoint and the quantization vLLM serves it with."""

    checkpoint: str
    quantization: str | None  # the stack's quantization key (None: the checkpoint's own format)
    label: str  # bf16/fp16, fp8, awq, gptq, mxfp4
    note: str = ""


def variants(model: str) -> list[Variant]:
    """The model's own weights, fp8 at load time (for a 16-bit model), and its pre-quantized checkpoints."""
    entries = model_entries()
    entry = entries.get(model, {})
    own = entry.get("quantization")
    found = [Variant(model, None, own or "bf16/fp16", "pre-quantized checkpoint" if own else "")]
    if not own:
        found.append(Variant(model, "fp8", "fp8", "quantized to fp8 when vLLM loads it"))
        for other, other_entry in entries.items():
            if other_entry.get("base") == model and other_entry.get("quantization"):
                found.append(Variant(other, None, other_entry["quantization"],
                                     f"pre-quantized checkpoint of {model}"))
    return found


def _config(cloud: str, region: str, variant: Variant, max_model_len: int | None,
            capacity: tuple[int, int] | None, vllm_args: list[str] | None = None) -> dict[str, str]:
    raw: dict[str, Any] = {"cloud": cloud, "region": region, "model": variant.checkpoint,
                           "allowedCidrs": _PLACEHOLDER_CIDRS}
    if variant.quantization:
        raw["quantization"] = variant.quantization
    if max_model_len:
        raw["maxModelLen"] = max_model_len
    if capacity:
        raw["capacity"] = {"concurrentRequests": capacity[0], "tokensPerRequest": capacity[1]}
    if vllm_args:
        raw["vllmArgs"] = vllm_args
    return {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in raw.items()}


def _spec(cloud: str, region: str, variant: Variant, max_model_len: int | None, capacity: tuple[int, int] | None):
    """The spec of a stack with the row's keys; with the vLLM arguments that let more instance types hold the
    model (fleet.sizing.fit_flags, e.g. --enable-expert-parallel for fp8 block-quantized experts)."""
    spec = parse_spec("compare", _config(cloud, region, variant, max_model_len, capacity), set())
    flags = sizing.fit_flags(spec)
    if flags:
        spec = parse_spec("compare", _config(cloud, region, variant, max_model_len, capacity, flags), set())
    return spec


def _stack_keys(cloud_name: str, region: str, variant: Variant, option: sizing.Sizing, spec) -> dict[str, Any]:
    """Every stack key the row assumes, as a stack file sets it (what the plan needs to pick the same)."""
    keys: dict[str, Any] = {"cloud": cloud_name, "region": region, "model": variant.checkpoint}
    if variant.quantization:
        keys["quantization"] = variant.quantization
    keys["accelerator"] = f"{option.instance.gpu}:{option.instance.gpu_count}"
    if spec.capacity:
        keys["capacity"] = {"concurrentRequests": spec.capacity.concurrent_requests,
                            "tokensPerRequest": spec.capacity.tokens_per_request}
    if spec.max_model_len != spec.arch.max_len:
        keys["maxModelLen"] = spec.max_model_len
    if spec.vllm_args:
        keys["vllmArgs"] = list(spec.vllm_args)
    return keys


def _row(cloud_name: str, region: str, variant: Variant, option: sizing.Sizing, spec) -> dict[str, Any]:
    cloud = catalog.cloud(cloud_name)
    it = option.instance
    replicas = option.replicas.desired if spec.capacity else 1
    price = option.price
    quotas = [{"name": q.name, "code": q.code, "unit": q.unit,
               "scope": region if q.scope == "region" else q.scope, "amount": it.per_vm(q.unit) * replicas}
              for q in cloud.quotas(it, spot=False)]
    row = {
        "cloud": cloud_name,
        "region": region,
        "instanceType": it.name,
        "gpu": it.gpu,
        "gpuCount": it.gpu_count,
        "gpuMemoryGib": it.gpu_memory_gib,
        "tensorParallelSize": option.tensor_parallel_size,
        "quantization": variant.label,
        "checkpoint": variant.checkpoint,
        "replicas": replicas,
        "usdPerHourPerReplica": round(it.usd_per_hour, 4),
        "usdPerHour": round(it.usd_per_hour * replicas, 2),
        "usdPerMonth": round(it.usd_per_hour * replicas * HOURS_PER_MONTH),
        "spotUsdPerHour": round(price.spot_usd_per_hour * replicas, 2) if price.spot_usd_per_hour else None,
        "priced": price.regional,
        "priceRegion": price.region,
        "pricesAsOf": price.as_of,
        "weightsGib": round(option.memory.weights_gib, 1),
        "checkpointGib": round(option.memory.checkpoint_gib, 1),
        "kvCacheGib": round(option.kv_cache_gib, 1),
        "kvCacheTokens": option.kv_cache_tokens,
        "maxModelLen": spec.max_model_len,
        "fullContextRequestsPerReplica": option.full_context_requests,
        "tokensPerRequest": option.tokens_per_request,
        "requestsPerReplica": option.requests_per_replica,
        "requests": option.requests_per_replica * replicas,
        "quota": quotas,
        "vllmArgs": list(spec.vllm_args),
        "stack": _stack_keys(cloud_name, region, variant, option, spec),
        "notes": variant.note,
    }
    return row


# Why a pre-quantized FP8 checkpoint is preferable to quantization: fp8 at load time where both serve the same.
FP8_CHECKPOINT_PREFERRED = ("the FP8 checkpoint is preferable to quantization: fp8 at load time: it downloads half "
                            "the bytes, and its scales were calibrated by its publisher (load-time fp8 computes them "
                            "from the 16-bit weights alone)")


def _same_serving(row: dict[str, Any]) -> tuple:
    return (row["cloud"], row["region"], row["instanceType"], row["replicas"], row["usdPerHour"],
            row["requestsPerReplica"], row["priced"])


def _merge_fp8(model: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row where load-time fp8 of the model and its FP8 checkpoint give the same serving (instance type,
    replicas, price and requests): the checkpoint's, naming the other as the alternative."""
    checkpoints = {_same_serving(r): r for r in rows if r["quantization"] == "fp8" and r["checkpoint"] != model}
    merged = []
    for row in rows:
        load_time = row["quantization"] == "fp8" and row["checkpoint"] == model
        same = checkpoints.get(_same_serving(row)) if load_time else None
        if same is None:
            merged.append(row)
            continue
        same["alsoServedBy"] = {"model": model, "quantization": "fp8"}
        same["notes"] = f"same serving as {model} with quantization: fp8; {FP8_CHECKPOINT_PREFERRED}"
    return merged


def compare(model: str, *, clouds: list[str] | None = None, max_model_len: int | None = None,
            capacity: tuple[int, int] | None = None, priced_only: bool = False,
            every_type: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows in the plan's order, fleet.sizing.rank: cheapest first; notes on what could not be served and why).
    Rows of a region without a recorded price (catalog/prices.yaml) carry priced: false and the reference region's
    price; priced_only leaves them out. Of the instance types with the same GPUs in one region and precision only
    the one the plan picks with that accelerator is kept unless every_type. Load-time fp8 and the FP8 checkpoint
    share a row where they serve the same."""
    found: list[tuple[tuple, int, dict[str, Any]]] = []
    notes: dict[str, set[str]] = {}
    for cloud_name in clouds or catalog.clouds():
        cloud = catalog.cloud(cloud_name)
        for order, variant in enumerate(variants(model)):
            for region in cloud.regions:
                try:
                    spec = _spec(cloud_name, region, variant, max_model_len, capacity)
                    options = sizing.options(spec)
                except ConfigError as error:
                    if error.key in ("model", "instanceType", "accelerator", "capacity", "maxModelLen",
                                     "capacity.tokensPerRequest", "quantization"):
                        notes.setdefault(f"{cloud_name} {variant.label} ({variant.checkpoint})", set()).add(
                            error.expected)
                        continue
                    raise
                for option in options:
                    if priced_only and not option.price.regional:
                        continue
                    found.append((sizing.rank(option), order, _row(cloud_name, region, variant, option, spec)))
    found.sort(key=lambda entry: (entry[0], entry[2]["cloud"], entry[2]["region"], entry[1]))
    rows = [row for _rank, _order, row in found]
    if not every_type:
        seen: set[tuple] = set()
        kept = []
        for row in rows:  # the first of a group is the one the plan picks for that accelerator
            key = (row["cloud"], row["region"], row["checkpoint"], row["quantization"], row["gpu"], row["gpuCount"])
            if key not in seen:
                seen.add(key)
                kept.append(row)
        rows = kept
    return _merge_fp8(model, rows), [f"{what}: {'; '.join(sorted(reasons))}" for what, reasons in sorted(notes.items())]


def snippet(row: dict[str, Any], number: int) -> str:
    """The stack file of a row: every key it assumes, the cloud's required options and allowedCidrs to fill in."""
    options = importlib.import_module(f"components.{row['cloud']}.options").OPTIONS
    keys = row["stack"]
    lines = [f"# make compare row {number}: {row['replicas']}x {row['instanceType']} "
             f"({row['gpuCount']}x {row['gpu']} each) in {row['region']}, ${_money(row['usdPerHour'])}/hour"
             + ("" if row["priced"] else f" at {row['priceRegion']}'s rate (no price recorded for {row['region']})"),
             "# Save as stacks/Pulumi.<stack>.yaml and `make plan STACK=<stack>`; replace the addresses below."]
    if row.get("alsoServedBy"):
        lines += textwrap.wrap(row["notes"], 116, initial_indent="# ", subsequent_indent="# ")
    lines.append("config:")
    for key, value in keys.items():
        lines += _yaml_key(f"vllm-fleet:{key}", value)
    lines += ["  # Who may reach the endpoint: your office/VPN egress ranges.",
              *_yaml_key("vllm-fleet:allowedCidrs", ["203.0.113.0/24"])]
    # The cloud's own required options (components/<cloud>/options.py), with their documented example.
    required = [(name, doc) for name, doc in options.items() if "(required)" in doc]
    if required:
        lines.append(f"  vllm-fleet:{row['cloud']}:")
        for name, doc in required:
            lines += [f"    # {doc.split(' (required)')[0]}", f"    {name}: {doc.split('e.g. ')[-1]}"]
    return "\n".join(lines) + "\n"


def _yaml_key(key: str, value: Any) -> list[str]:
    if isinstance(value, list):
        return [f"  {key}:", *(f"    - {item}" for item in value)]
    if isinstance(value, dict):
        return [f"  {key}:", *(f"    {k}: {v}" for k, v in value.items())]
    return [f"  {key}: {value}"]


def _money(value: float) -> str:
    return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


def render_text(model: str, rows: list[dict[str, Any]], notes: list[str], *, limit: int,
                capacity: tuple[int, int] | None) -> str:
    out = []
    entry = model_entries().get(model, {})
    load = (f"{capacity[0]} requests of {capacity[1]} tokens at once" if capacity
            else "one VM each (with CONCURRENCY and TOKENS: the fleet for that load)")
    out.append(f"{model}: every way to serve it, cheapest first; {load}. On-demand $ of the GPU VMs in each region "
               f"(catalog/prices.yaml); load balancer, disks and traffic extra.")
    if entry.get("experts"):
        out.append(f"Mixture of {entry['experts']} experts: {entry['params_b']}B parameters held in memory, "
                   f"{entry.get('active_params_b', '?')}B active a token.")
    if not rows:
        out.append("No instance type of the catalog holds it.")
    header = ["#", "cloud", "region", "instance type", "GPUs", "TP", "precision", "vLLM args", "$/hour", "$/month",
              "spot $/h", "req/VM", "VMs", "quota to ask for"]
    table = []
    for number, row in enumerate(rows[:limit], 1):
        quota = "; ".join(f"{q['name']} {q['amount']} {q['unit']}" for q in row["quota"][:1])
        precision = row["quantization"] + ("" if row["checkpoint"] == model else f" ({row['checkpoint']})")
        if row.get("alsoServedBy"):
            precision += " = fp8 at load"
        elif row["stack"].get("quantization"):
            precision += " at load"
        unpriced = "" if row["priced"] else "*"
        table.append([str(number), row["cloud"], row["region"] + unpriced, row["instanceType"],
                      f"{row['gpuCount']}x {row['gpu']} {row['gpuMemoryGib']:.0f}G", str(row["tensorParallelSize"]),
                      precision, " ".join(row["vllmArgs"]) or "-", _money(row["usdPerHour"]) + unpriced,
                      f"{row['usdPerMonth']:,}", _money(row["spotUsdPerHour"]) if row["spotUsdPerHour"] else "-",
                      str(row["requestsPerReplica"]), str(row["replicas"]), quota])
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    for line in [header, *table]:
        out.append("  ".join(cell.ljust(width) if i not in (0, 8, 9, 10, 11, 12) else cell.rjust(width)
                             for i, (cell, width) in enumerate(zip(line, widths))).rstrip())
    if len(rows) > limit:
        out.append(f"... {len(rows) - limit} more rows (LIMIT=n, or FORMAT=json for all)")
    req = f"requests of {capacity[1]} tokens" if capacity else "full-context requests"
    out.append(f"req/VM: {req} one VM holds at once (KV cache, at most vLLM's max_num_seqs); VMs: replicas; TP: "
               f"tensor parallel size = GPUs a VM. * no price recorded for the region (catalog/prices.yaml): the "
               f"reference region's rate. Each row's stack file, with every key it assumes: SNIPPET=n.")
    if any(row.get("alsoServedBy") for row in rows[:limit]):
        out.append(f"fp8 (checkpoint) = fp8 at load: the same serving either way; {FP8_CHECKPOINT_PREFERRED}.")
    cheapest: dict[str, dict[str, Any]] = {}
    own: dict[str, dict[str, Any]] = {}
    for row in rows:
        cheapest.setdefault(row["cloud"], row)
        if row["checkpoint"] == model and row["quantization"] in ("bf16/fp16", entry.get("quantization")):
            own.setdefault(row["cloud"], row)
    if cheapest:
        out.append("")
        out.append("Cheapest per cloud:")
        for cloud_name, row in sorted(cheapest.items(), key=lambda kv: kv[1]["usdPerHour"]):
            line = (f"  {cloud_name:6} {row['quantization']:9} ${_money(row['usdPerHour'])}/h {row['instanceType']} "
                    f"in {row['region']}")
            if cloud_name in own and own[cloud_name] is not row:
                o = own[cloud_name]
                line += (f"; own weights ${_money(o['usdPerHour'])}/h {o['instanceType']} in {o['region']}")
            out.append(line)
    if notes:
        out.append("")
        out.append("Not served:")
        out.extend(f"  {note}" for note in notes)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a Hugging Face model id (catalog/models.yaml, else read from the hub)")
    parser.add_argument("--max-model-len", type=int, help="context length to serve (default: the model's)")
    parser.add_argument("--concurrency", type=int, help="requests in flight at once to size the fleet for")
    parser.add_argument("--tokens", type=int, help="tokens a request (prompt + completion); default maxModelLen")
    parser.add_argument("--clouds", default=",".join(catalog.clouds()), help="comma-separated: aws,gcp,azure")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--limit", type=int, default=30, help="rows of the text table (default 30)")
    parser.add_argument("--all", action="store_true", help="every instance type, not only the cheapest with the "
                                                           "same GPUs in a region")
    parser.add_argument("--priced-only", action="store_true",
                        help="leave out regions without a recorded price (shown at the reference region's price)")
    parser.add_argument("--snippet", type=int, metavar="N",
                        help="print the stack file of row N (every key the row assumes) instead of the table")
    args = parser.parse_args(argv)
    clouds = [c.strip() for c in args.clouds.split(",") if c.strip()]
    unknown = sorted(set(clouds) - set(catalog.clouds()))
    if unknown:
        print(f"error: --clouds {','.join(unknown)}: must be of {', '.join(catalog.clouds())}", file=sys.stderr)
        return 2
    capacity = None
    if args.concurrency or args.tokens:
        tokens = args.tokens or args.max_model_len
        if not tokens:
            try:
                tokens = parse_spec("compare", _config(clouds[0], catalog.cloud(clouds[0]).reference_region,
                                                       variants(args.model)[0], None, None), set()).max_model_len
            except ConfigError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
        capacity = (args.concurrency or 1, tokens)
    try:
        rows, notes = compare(args.model, clouds=clouds, max_model_len=args.max_model_len, capacity=capacity,
                              priced_only=args.priced_only, every_type=args.all)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.snippet is not None:
        if not 1 <= args.snippet <= len(rows):
            print(f"error: --snippet {args.snippet}: the table has rows 1 to {len(rows)}", file=sys.stderr)
            return 2
        print(snippet(rows[args.snippet - 1], args.snippet), end="")
        return 0
    if args.format == "json":
        print(json.dumps(rows, indent=2))  # a list of rows; what could not be served goes to stderr
        for note in notes:
            print(f"not served: {note}", file=sys.stderr)
    else:
        print(render_text(args.model, rows, notes, limit=args.limit, capacity=capacity))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
