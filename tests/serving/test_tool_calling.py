"""Tool calling through the openai client, as an agentic client (Continue's agent mode, Cline, Aider) asks for it,
against qwen-coder-azure-dev's VM served on this CPU machine (stack_on_cpu) from the launcher the plan rendered:
its model's catalog parser (hermes, catalog/tool-calling.yaml) is on by default.

The path exercised, as the pinned vLLM's source has it: a chat completion with `tools` and tool_choice "auto"
(vllm/entrypoints/openai/chat_completion/serving.py) is served because the launch has --enable-auto-tool-choice
and --tool-call-parser=hermes; the model's free (unconstrained, greedy) output goes to the parser
(vllm/parser/abstract_parser.py, DelegatingParser) whose tool half is Hermes2ProToolParser
(vllm/tool_parsers/hermes_tool_parser.py): extract_tool_calls finds <tool_call>...</tool_call> and json-loads
its name and arguments; streamed, extract_tool_calls_streaming. No structured output is involved (that is
tool_choice "required" or a named function): what the model writes is what the parser reads.

A tiny model cannot be trusted to write a tool call, so the one served here has weights that make it certain
(tests/serving/tiny_model.py, make_tiny_model(tool_call=...)): after its Hermes-style chat template's generation
prompt it writes <tool_call>, the call's JSON and </tool_call>, then </s>.

Also here: every parser name of the catalog is one the pinned vLLM registers and can load; `make check`'s tools
check passes against the server, and fails against one whose vllmArgs name a parser that does not read the
model's format (their parser wins over the catalog's). Fails in CI (skips elsewhere) without .venv-vllm; one server for the module.
"""

from __future__ import annotations

import json
import subprocess

import openai
import pytest
import yaml

from conftest import PlannedStack, config_of, run_plan
from fleet import tool_calling
from stack_on_cpu import require_vllm, serve_stack_on_cpu
from test_check_and_bench import results_of, run_tool
from vllm_server import VENV_PYTHON

STACK = "qwen-coder-azure-dev"  # Qwen/Qwen2.5-Coder-7B-Instruct: hermes
CALL = {"name": "get_weather", "arguments": {"city": "Berlin"}}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
MESSAGES = [{"role": "user", "content": "What is the weather in Berlin?"}]
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(plan_of, tmp_path_factory):
    with serve_stack_on_cpu(plan_of(STACK), tmp_path_factory.mktemp(STACK), tool_call=CALL) as served:
        yield served


@pytest.fixture(scope="module")
def client(stack):
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=stack.api_key, max_retries=0, timeout=120)


def test_the_launch_turns_on_the_catalogs_tool_call_parser(stack):
    assert stack.argv[stack.argv.index("--enable-auto-tool-choice") + 1] == "--tool-call-parser=hermes"


def test_a_tool_call_comes_back_parsed_through_the_openai_client(stack, client):
    reply = client.chat.completions.create(model=stack.served_model_name, messages=MESSAGES, tools=TOOLS,
                                           tool_choice="auto")
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Berlin"}
    assert not choice.message.content  # nothing of the <tool_call> markup is left as text


def test_a_streamed_tool_call_comes_back_parsed(stack, client):
    name, arguments = "", ""
    for chunk in client.chat.completions.create(model=stack.served_model_name, messages=MESSAGES, tools=TOOLS,
                                                tool_choice="auto", stream=True):
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name += delta.function.name or "" if delta.function else ""
            arguments += delta.function.arguments or "" if delta.function else ""
    assert name == "get_weather"
    assert json.loads(arguments) == {"city": "Berlin"}


def test_without_tools_the_same_output_is_plain_text(stack, client):
    """The parser runs only for requests with tools: the model's markup then reaches the client as it is."""
    reply = client.chat.completions.create(model=stack.served_model_name, messages=MESSAGES)
    assert reply.choices[0].message.content == f"<tool_call>{json.dumps(CALL)}</tool_call>"
    assert not reply.choices[0].message.tool_calls


def test_make_check_tools_passes_against_the_server(stack):
    result = run_tool("cli.check", "--url", stack.base_url, "--api-key", stack.api_key,
                      "--model", stack.served_model_name, "--direct")
    assert result.returncode == 0, result.stdout
    assert results_of(result.stdout)["tools"] == "PASS", result.stdout
    assert 'PASS  tools      get_weather({"city": "Berlin"}) parsed in' in result.stdout


def test_a_parser_of_the_stacks_own_wins_and_check_fails_where_it_does_not_read_the_model(tmp_path):
    """vllmArgs naming another parser (pythonic, which reads `[get_weather(city="Berlin")]`, not <tool_call>) replace
    the catalog's in the launch vLLM runs; the model's Hermes call then stays text, and make check says so. (A parser
    whose tokens the tokenizer lacks, such as llama3_json's <|python_tag|>, keeps vLLM 0.32 from starting at all:
    vllm/parser/parser_manager.py validate_parser_tokenizer.)"""
    path = tmp_path / "Pulumi.qwen-pythonic-parser.yaml"
    config = {**config_of(STACK), "vllmArgs": ["--tool-call-parser=pythonic"]}
    path.write_text(yaml.safe_dump({"config": {f"vllm-fleet:{key}": value for key, value in config.items()}}))
    planned = run_plan(path)
    assert planned.returncode == 0, planned.stderr
    with serve_stack_on_cpu(PlannedStack(path.stem, json.loads(planned.stdout)), tmp_path / "served",
                            tool_call=CALL) as served:
        assert "--tool-call-parser=hermes" not in served.argv
        assert served.argv[served.argv.index("--enable-auto-tool-choice") + 1] == "--tool-call-parser=pythonic"
        result = run_tool("cli.check", "--url", served.base_url, "--api-key", served.api_key,
                          "--model", served.served_model_name, "--direct")
    assert result.returncode == 1, result.stdout
    assert results_of(result.stdout)["tools"] == "FAIL", result.stdout
    assert ("FAIL  tools      no parsed tool call (finish_reason stop): the model wrote '<tool_call>{\"name\": "
            "\"get_weather\"") in result.stdout
    assert "FAILED: 1 of 10 checks (tools)" in result.stdout


def test_every_catalog_parser_is_registered_and_loads_in_the_pinned_vllm():
    """The names of catalog/tool-calling.yaml as vLLM's own registries hold them (ToolParserManager,
    ReasoningParserManager), each class imported: a name vLLM renamed or dropped fails here."""
    require_vllm()
    names = {key: sorted({entry[key] for entry in tool_calling.entries().values() if entry.get(key)})
             for key in tool_calling.REGISTRIES}
    code = ("import json, sys; from vllm.tool_parsers import ToolParserManager; "
            "from vllm.reasoning import ReasoningParserManager; names = json.loads(sys.argv[1]); "
            "print(json.dumps({key: {name: manager.get_tool_parser(name).__name__ if key == 'tool_call_parser' "
            "else manager.get_reasoning_parser(name).__name__ for name in names[key]} for key, manager in "
            "(('tool_call_parser', ToolParserManager), ('reasoning_parser', ReasoningParserManager))}))")
    result = subprocess.run([str(VENV_PYTHON), "-c", code, json.dumps(names)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(loaded["tool_call_parser"]) == {"hermes", "qwen3_coder", "llama3_json", "mistral", "openai"}
    assert loaded["tool_call_parser"]["hermes"] == "Hermes2ProToolParser"
    assert loaded["reasoning_parser"] == {"openai_gptoss": "GptOssReasoningParser"}
