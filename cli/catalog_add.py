"""Records a Hugging Face model's architecture in catalog/models.yaml, read from its config.json and safetensors
metadata on the hub, so that plans and `make compare` size it offline (CI, air-gapped machines).

    python -m cli.catalog_add Qwen/Qwen3-Coder-30B-A3B-Instruct [--revision <sha>] [--dry-run]

Needs the hub (HF_TOKEN in the environment for gated models). Not imported by the Pulumi program.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fleet import hub
from fleet.spec import MODELS_FILE, ModelArch, model_entries

# Key order of a written entry: the architecture first, then what is for people.
_ORDER = ["params_b", "layers", "heads", "kv_heads", "head_dim", "max_len", "quantization", "gated", "kv_lora_rank",
          "qk_rope_head_dim", "sliding_window", "sliding_layers", "experts", "active_params_b",
          "moe_intermediate_size", "quant_block", "quantized_params_b", "weights_gb", "gpus", "base", "source"]


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    return json.dumps(str(value))  # a YAML double-quoted string


def entry_yaml(model: str, entry: dict) -> str:
    """The entry as the catalog writes it: one flow mapping under the model id."""
    keys = [k for k in _ORDER if k in entry] + sorted(set(entry) - set(_ORDER))
    body = ", ".join(f"{key}: {_scalar(entry[key])}" for key in keys)
    return f"  {model}:\n    {{{body}}}\n"


def add(model: str, entry: dict, models_file: Path = MODELS_FILE) -> str:
    """Appends the entry to the catalog (the models map is the file's last key) and returns what was written.
    Refuses a model the catalog already lists and an entry that does not make a valid ModelArch."""
    if model in model_entries():
        raise ValueError(f"{model} is already in {models_file.name}")
    ModelArch.from_entry(entry)  # raises on a missing or unknown key
    text = entry_yaml(model, entry)
    current = models_file.read_text()
    models_file.write_text(current.rstrip("\n") + "\n" + text)
    model_entries.cache_clear()
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make catalog-add", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="Hugging Face model id, e.g. Qwen/Qwen3-Coder-30B-A3B-Instruct")
    parser.add_argument("--revision", help="a commit of the repository (default: main)")
    parser.add_argument("--dry-run", action="store_true", help="print the entry instead of writing it")
    args = parser.parse_args(argv)
    if args.model in model_entries():
        print(f"{args.model} is already in catalog/models.yaml", file=sys.stderr)
        return 0
    try:
        entry = hub.fetch_entry(args.model, args.revision)
    except hub.HubError as error:
        print(f"error: {args.model}: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(entry_yaml(args.model, entry), end="")
        return 0
    print(add(args.model, entry), end="")
    print(f"added to {MODELS_FILE.relative_to(MODELS_FILE.parent.parent)}: review it, then make compare "
          f"MODEL={args.model}; record how vLLM serves its tool calls in catalog/tool-calling.yaml "
          f"(docs/tools.md)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
