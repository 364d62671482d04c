"""Tool calling by default (fleet/tool_calling.py, catalog/tool-calling.yaml): each catalog model's parsers, named as
the pinned vLLM names them, on in the launch unless vllmArgs override or turn them off, and what the stack outputs
tell a client (Continue's roles). tests/serving/test_tool_calling.py serves a tool call for real."""

from __future__ import annotations

import pytest
import yaml

from fleet import catalog, serving, sizing, tool_calling, vllm_args
from fleet.errors import ConfigError
from fleet.spec import model_entries
from test_spec import error_of, parse

HERMES = "Qwen/Qwen2.5-Coder-7B-Instruct"
REGISTRIES = vllm_args.metadata()["registries"]


def tools_of(model: str, args: list | None = None) -> tool_calling.ToolCalling:
    return parse(model=model, maxModelLen=4096, vllmArgs=args or []).tool_calling


def launch(model: str, args: list | None = None) -> list[str]:
    spec = parse(model=model, maxModelLen=4096, vllmArgs=args or [])
    return serving.serve_argv(spec, sizing.size(spec))


def test_every_catalog_model_has_its_tool_calling_recorded_and_no_other():
    assert set(tool_calling.entries()) == set(model_entries())


def test_every_recorded_parser_is_a_name_of_the_pinned_vllms_registry():
    """catalog/vllm-serve-flags.json holds vLLM's own registries (tests/serving/test_vllm_flags.py checks it
    against .venv-vllm; tests/serving/test_tool_calling.py loads each parser there)."""
    for model, entry in tool_calling.entries().items():
        assert entry["tool_call_parser"] is None or entry["tool_call_parser"] in REGISTRIES["tool_call_parsers"], model
        assert entry.get("reasoning_parser") in (None, *REGISTRIES["reasoning_parsers"]), model
        assert entry["source"], model


@pytest.mark.parametrize("entry, words", [
    ({"tool_call_parser": "hermes2", "source": "x"}, "tool_call_parser 'hermes2' is not a name of vLLM 0.32.0's "
                                                     "tool call parsers"),
    ({"tool_call_parser": "hermes", "reasoning_parser": "qwen4", "source": "x"}, "reasoning_parser 'qwen4'"),
    ({"tool_call_parser": "hermes"}, "source must say where"),
    ({"source": "x"}, "tool_call_parser required"),
    ({"tool_call_parser": "hermes", "source": "x", "base": True}, "a base model has no chat template"),
    ({"tool_call_parser": None, "source": "x", "parser": "hermes"}, "an entry maps"),
])
def test_a_wrong_entry_is_refused_with_the_file_and_model(tmp_path, monkeypatch, entry, words):
    copy = tmp_path / "tool-calling.yaml"
    copy.write_text(yaml.safe_dump({"models": {"acme/model": entry}}))
    monkeypatch.setattr(tool_calling, "TOOLS_FILE", copy)
    tool_calling.entries.cache_clear()
    try:
        with pytest.raises(catalog.CatalogError) as caught:
            tool_calling.entries()
    finally:
        tool_calling.entries.cache_clear()
    assert str(caught.value).startswith("catalog/tool-calling.yaml: acme/model: ") and words in str(caught.value)


@pytest.mark.parametrize("model, parser, reasoning", [
    ("Qwen/Qwen2.5-Coder-7B-Instruct", "hermes", None),
    ("Qwen/Qwen2.5-Coder-32B-Instruct-AWQ", "hermes", None),
    ("Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8", "qwen3_coder", None),
    ("meta-llama/Llama-3.1-8B-Instruct", "llama3_json", None),
    ("mistralai/Devstral-Small-2507", "mistral", None),
    ("openai/gpt-oss-20b", "openai", "openai_gptoss"),
])
def test_a_model_with_a_recorded_parser_launches_with_it(model, parser, reasoning):
    argv = launch(model)
    added = ["--enable-auto-tool-choice", f"--tool-call-parser={parser}",
             *([f"--reasoning-parser={reasoning}"] if reasoning else [])]
    assert argv[-len(added):] == added
    tools = tools_of(model)
    assert (tools.tool_call_parser, tools.reasoning_parser) == (parser, reasoning)
    assert tools.source.startswith("catalog/tool-calling.yaml: ")


@pytest.mark.parametrize("model", ["bigcode/starcoder2-7b", "codellama/CodeLlama-7b-hf",
                                   "codellama/CodeLlama-7b-Instruct-hf", "deepseek-ai/deepseek-coder-6.7b-instruct"])
def test_a_model_without_tool_calls_launches_without_them_and_says_why(model):
    assert not any("tool" in arg or "reasoning" in arg for arg in launch(model))
    tools = tools_of(model)
    assert tools.tool_call_parser is None and tools.argv == ()
    assert "no tool-call format" in tools.source or "no parser" in tools.source


def test_vllm_args_name_their_own_parser_and_it_wins():
    argv = launch(HERMES, ["--tool-call-parser=qwen3_json"])
    assert "--tool-call-parser=hermes" not in argv
    assert argv[-2:] == ["--enable-auto-tool-choice", "--tool-call-parser=qwen3_json"]  # the switch added once
    assert tools_of(HERMES, ["--tool-call-parser=qwen3_json"]).source == "vllmArgs"
    given = ["--enable-auto-tool-choice", "--tool-call-parser", "qwen3_json"]
    assert launch(HERMES, given)[-2:] == ["--enable-auto-tool-choice", "--tool-call-parser=qwen3_json"]
    assert launch(HERMES, given).count("--enable-auto-tool-choice") == 1
    # a model without a recorded parser: vllmArgs may give one
    assert tools_of("codellama/CodeLlama-7b-Instruct-hf", ["--tool-call-parser=llama3_json"]).tool_call_parser == (
        "llama3_json")
    # their reasoning parser wins too, the recorded tool-call parser stays
    argv = launch("openai/gpt-oss-20b", ["--reasoning-parser=deepseek_r1"])
    assert "--reasoning-parser=openai_gptoss" not in argv and argv[-1] == "--reasoning-parser=deepseek_r1"
    assert "--tool-call-parser=openai" in argv


def test_no_enable_auto_tool_choice_turns_tool_calls_off():
    argv = launch(HERMES, ["--no-enable-auto-tool-choice"])
    assert not any(arg.startswith("--tool-call-parser") or arg == "--enable-auto-tool-choice" for arg in argv)
    assert argv[-1] == "--no-enable-auto-tool-choice"
    tools = tools_of(HERMES, ["--no-enable-auto-tool-choice"])
    assert tools.tool_call_parser is None and "turned off in vllmArgs" in tools.source
    # reasoning is not tool calling: gpt-oss keeps its reasoning parser
    assert launch("openai/gpt-oss-20b", ["--no-enable-auto-tool-choice"])[-2:] == [
        "--reasoning-parser=openai_gptoss", "--no-enable-auto-tool-choice"]


def test_turning_tool_calls_off_and_naming_a_parser_is_one_clear_error():
    error = error_of(model=HERMES, vllmArgs=["--no-enable-auto-tool-choice", "--tool-call-parser=hermes"])
    assert error.key == "vllmArgs"
    assert str(error) == ("config vllm-fleet:vllmArgs = '--no-enable-auto-tool-choice --tool-call-parser=hermes': "
                          "--no-enable-auto-tool-choice turns tool calls off and --tool-call-parser names a parser "
                          "for them: give one of the two")


def test_the_switch_without_a_parser_is_refused_for_a_model_without_one():
    error = error_of(vllmArgs=["--enable-auto-tool-choice"])  # CodeLlama Instruct: none recorded
    assert "--enable-auto-tool-choice needs --tool-call-parser too" in str(error)


def test_a_model_outside_the_catalog_gets_no_parser():
    tools = tool_calling.resolve("acme/private-coder", ())
    assert tools.tool_call_parser is None and tools.argv == ()
    assert "vllmArgs may name one" in tools.source
    assert tool_calling.resolve(None, ()).argv == ()  # a bucket model


def test_the_docs_chat_template_is_shown_where_vllms_docs_name_one():
    assert tools_of("meta-llama/Llama-3.1-8B-Instruct").summary()["vllmDocsChatTemplate"] == (
        "examples/tool_chat_template_llama3.1_json.jinja")
    assert "vllmDocsChatTemplate" not in tools_of(HERMES).summary()
    # not for a parser of the user's choosing
    assert tools_of("meta-llama/Llama-3.1-8B-Instruct", ["--tool-call-parser=pythonic"]).chat_template is None


def test_the_docs_table_lists_every_recorded_parser():
    from conftest import ROOT

    doc = (ROOT / "docs" / "tools.md").read_text()
    for model, entry in tool_calling.entries().items():
        assert f"| {model} |" in doc, model
        row = next(line for line in doc.splitlines() if line.startswith(f"| {model} |"))
        assert (entry["tool_call_parser"] or "none") in row and (entry.get("reasoning_parser") or "") in row, row


@pytest.mark.parametrize("stack, roles, capabilities", [
    ("qwen-coder-azure-dev", ["chat", "edit", "apply", "autocomplete"], ["tool_use"]),
    ("codellama-dev", ["chat", "edit", "apply", "autocomplete"], None),
    ("starcoder2-gcp-dev", ["autocomplete"], None),
])
def test_the_continue_config_says_which_roles_the_model_serves(plan_of, stack, roles, capabilities):
    outputs = plan_of(stack).outputs
    [model] = yaml.safe_load(outputs["continueConfig"])["models"]
    assert model["roles"] == roles
    assert model.get("capabilities") == capabilities
    if capabilities is None:
        assert "# no tool_use (agent mode): " in outputs["continueConfig"]
    assert outputs["toolCalling"]["toolCallParser"] == ("hermes" if capabilities else None)
