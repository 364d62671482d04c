"""Tool calling and reasoning as vLLM serves them: the parsers catalog/tool-calling.yaml records for a model, turned
on by default in the launch and overridden or turned off by the stack's vllmArgs.

vLLM answers a request with `tools` (tool_choice auto, what agentic clients send) only when it runs with
--enable-auto-tool-choice and a --tool-call-parser that reads the model's tool-call format; a model that thinks
needs a --reasoning-parser too. For a model with a recorded parser the VMs get those flags, unless vllmArgs:

- name their own --tool-call-parser (it wins; --enable-auto-tool-choice is added if they leave it out), or their
  own --reasoning-parser (it wins);
- turn tool calls off with --no-enable-auto-tool-choice (vLLM's own switch, passed on): no parser is added; with
  a --tool-call-parser as well, that is a contradiction and refused.

A model with no recorded parser (a base model, a model whose chat template has no tool calls, a model not in the
catalog, a bucket model) gets no flags: vllmArgs may name a parser.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping

import yaml

from . import catalog, vllm_args
from .errors import ConfigError

TOOLS_FILE = catalog.CATALOG_FILE.parent / "tool-calling.yaml"
ENTRY_KEYS = ("tool_call_parser", "reasoning_parser", "chat_template", "base", "source")
# vLLM's registries (catalog/vllm-serve-flags.json) each parser name is one of.
REGISTRIES = {"tool_call_parser": "tool_call_parsers", "reasoning_parser": "reasoning_parsers"}


@dataclass(frozen=True)
class ToolCalling:
    """What vLLM runs with for tool calls and reasoning, and the flags vllm-fleet adds for it."""

    tool_call_parser: str | None  # None: vLLM refuses tool_choice auto (what agentic clients send)
    reasoning_parser: str | None
    source: str  # where the parsers come from: the catalog, vllmArgs, or why there are none
    base: bool = False  # a base model: completions only
    chat_template: str | None = None  # the template vLLM's docs recommend (not on the VMs)
    argv: tuple[str, ...] = ()  # the flags added to `vllm serve`, after the project's and before vllmArgs

    def summary(self) -> dict[str, Any]:
        """The stack output: what the launch runs with and why."""
        shown: dict[str, Any] = {"toolCallParser": self.tool_call_parser, "reasoningParser": self.reasoning_parser,
                                 "source": self.source}
        if self.chat_template:
            shown["vllmDocsChatTemplate"] = self.chat_template
        return shown


NO_TOOL_CALLING = ToolCalling(None, None, "no parser recorded")


def entry_problem(model: str, entry: Any) -> str | None:
    """What is wrong with a catalog/tool-calling.yaml entry, or None."""
    if not isinstance(entry, dict) or set(entry) - set(ENTRY_KEYS) or "tool_call_parser" not in entry:
        return f"{model}: an entry maps {', '.join(ENTRY_KEYS)} (tool_call_parser required, null for none)"
    if not isinstance(entry.get("source"), str) or not entry["source"]:
        return f"{model}: source must say where the parser names come from, or why there is none"
    for key, registry in REGISTRIES.items():
        name = entry.get(key)
        if name is not None and name not in vllm_args.metadata()["registries"][registry]:
            return (f"{model}: {key} {name!r} is not a name of vLLM {vllm_args.metadata()['vllm']}'s "
                    f"{registry.replace('_', ' ')}")
    if entry.get("base") and entry["tool_call_parser"] is not None:
        return f"{model}: a base model has no chat template, so no tool calls"
    return None


@functools.cache
def entries() -> Mapping[str, Mapping[str, Any]]:
    """catalog/tool-calling.yaml, each entry checked."""
    found = yaml.safe_load(TOOLS_FILE.read_text())["models"]
    for model, entry in found.items():
        problem = entry_problem(model, entry)
        if problem:
            raise catalog.CatalogError(f"catalog/{TOOLS_FILE.name}: {problem}")
    return found


def resolve(model: str | None, args: tuple[str, ...]) -> ToolCalling:
    """The tool calling of `model` (None: a bucket model) served with the parsed vllmArgs `args`."""
    entry = entries().get(model) if model else None
    given_parser = vllm_args.value_of(args, "tool_call_parser")
    auto = vllm_args.value_of(args, "enable_auto_tool_choice")
    given_reasoning = vllm_args.value_of(args, "reasoning_parser")
    if auto is False and given_parser is not None:
        raise ConfigError(vllm_args.KEY, f"--no-enable-auto-tool-choice --tool-call-parser={given_parser}",
                          "--no-enable-auto-tool-choice turns tool calls off and --tool-call-parser names a parser "
                          "for them: give one of the two")
    recorded = entry or {}
    recorded_reasoning = recorded.get("reasoning_parser")
    added: list[str] = []
    if auto is False:
        parser, source = None, "turned off in vllmArgs (--no-enable-auto-tool-choice)"
    elif given_parser is not None:
        parser, source = str(given_parser), "vllmArgs"
        if auto is None:
            added.append("--enable-auto-tool-choice")
    elif recorded.get("tool_call_parser"):
        parser, source = recorded["tool_call_parser"], f"catalog/{TOOLS_FILE.name}: {recorded['source']}"
        added += ["--enable-auto-tool-choice", f"--tool-call-parser={parser}"]
    else:
        parser = None
        source = (f"catalog/{TOOLS_FILE.name}: {recorded['source']}" if entry else
                  "no parser recorded for this model in catalog/tool-calling.yaml: vllmArgs may name one")
    reasoning = given_reasoning if given_reasoning is not None else recorded_reasoning
    if given_reasoning is None and recorded_reasoning:
        added.append(f"--reasoning-parser={recorded_reasoning}")
    return ToolCalling(tool_call_parser=parser, reasoning_parser=None if reasoning is None else str(reasoning),
                       source=source, base=bool(recorded.get("base")),
                       chat_template=recorded.get("chat_template") if parser == recorded.get("tool_call_parser") else None,
                       argv=tuple(added))


def continue_roles(tools: ToolCalling) -> tuple[list[str], list[str]]:
    """Continue's config.yaml `roles` and `capabilities` of the served model: a base model autocompletes only; agent
    mode (tool_use) only where vLLM parses the model's tool calls."""
    roles = ["autocomplete"] if tools.base else ["chat", "edit", "apply", "autocomplete"]
    return roles, ["tool_use"] if tools.tool_call_parser and not tools.base else []
