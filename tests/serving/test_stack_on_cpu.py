"""codellama-prod's VM for real on this CPU machine: the launcher, vllm.service's environment and the 0600
environment file that the stack's rendered user-data gives a VM start vLLM 0.32.0 (the CPU build of the release
the VMs install) on a tiny Llama made here, with the arguments changed only by serving.cpu_argv. Checked through
OpenAI's client and plain HTTP, as fleet.check checks a deployed endpoint.

Fails in CI (skips elsewhere) when serving-test/install.sh has not made .venv-vllm. One server for the module:
~25-35 s to ready on 2 cores, ~2.6 GiB of memory.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import openai
import pytest

from conftest import config_of, launcher_argv, stacks_of, write_files
from fleet import bootstrap, serving
from stack_on_cpu import ServedStack, serve_stack_on_cpu
from tiny_model import MAX_POSITIONS

STACK = "codellama-prod"  # TP 4, an explicit servedModelName and vllmArgs: the most to carry over
# The server's start (first test) and each test's own requests; a hung server fails the test instead of CI.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(plan_of, tmp_path_factory):
    with serve_stack_on_cpu(plan_of(STACK), tmp_path_factory.mktemp(STACK)) as served:
        yield served


@pytest.fixture(scope="module")
def client(stack: ServedStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=stack.api_key, timeout=60, max_retries=0)


def test_the_server_runs_the_stacks_arguments_changed_only_by_cpu_argv(stack, plan_of):
    rendered = launcher_argv(write_files(plan_of(STACK).user_data)[bootstrap.PATHS["launcher"]]["content"])
    command = Path(f"/proc/{stack.server.proc.pid}/cmdline").read_text().split("\0")[:-1]
    running = command[command.index("serve") + 1:]
    assert running == serving.cpu_argv(rendered, str(stack.model_dir), port=int(running[running.index("--port") + 1]),
                                       max_model_len=MAX_POSITIONS)
    assert "--enable-prefix-caching" in running  # the stack's vllmArgs
    assert "--api-key" not in running  # the key reaches vLLM as VLLM_API_KEY from the environment file


def test_health_answers_without_the_key(stack):
    assert stack.server.request("GET", serving.HEALTH_PATH, auth=False)[0] == 200


def test_models_needs_the_key_of_the_environment_file_and_lists_the_served_name(stack, client):
    status, body = stack.server.request("GET", "/v1/models", auth=False)
    assert status == 401, body
    with pytest.raises(openai.AuthenticationError):
        client.with_options(api_key="not-the-key").models.list()
    [model] = client.models.list().data
    assert model.id == stack.served_model_name == "codellama-70b-instruct"
    assert model.model_extra["max_model_len"] == min(4096, MAX_POSITIONS)  # the stack's, capped by cpu_argv


def test_completion(stack, client):
    reply = client.completions.create(model=stack.served_model_name, prompt="def fibonacci(n):", max_tokens=16,
                                      extra_body={"ignore_eos": True})  # random weights: exact token counts
    assert reply.usage.completion_tokens == 16
    assert reply.choices[0].finish_reason == "length" and reply.choices[0].text


def test_chat_completion_applies_the_chat_template(stack, client):
    content = "Write a function."
    reply = client.chat.completions.create(model=stack.served_model_name, max_tokens=8,
                                           messages=[{"role": "user", "content": content}],
                                           extra_body={"ignore_eos": True})
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage.completion_tokens == 8
    plain = client.completions.create(model=stack.served_model_name, prompt=content, max_tokens=1)
    # BOS, the role tags and the generation prompt around the content: the template's tokens
    assert reply.usage.prompt_tokens > plain.usage.prompt_tokens + 3


def test_a_streamed_completion_arrives_in_several_chunks(stack, client):
    chunks = list(client.completions.create(model=stack.served_model_name, prompt="import", max_tokens=12,
                                            stream=True, extra_body={"ignore_eos": True}))
    texts = [chunk.choices[0].text for chunk in chunks if chunk.choices and chunk.choices[0].text]
    assert len(texts) >= 2  # tokens arrive as they are generated, not in one piece
    assert chunks[-1].choices[0].finish_reason == "length"


def test_metrics_answers_prometheus_text_without_the_key(stack):
    status, body = stack.server.request("GET", "/metrics", auth=False)
    assert status == 200
    text = body.decode()
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert f"# TYPE {name} gauge" in text
    sample = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)( -?[0-9]+)?$")
    assert all(sample.match(line) for line in text.splitlines() if line and not line.startswith("#"))


def public_status(plan, path: str, stack: ServedStack) -> int:
    """What a client in allowedCidrs gets for `path` from the stack's load balancer as planned, with this real vLLM
    behind it: the balancer's own refusal, or vLLM's answer to the path the balancer sends on (no key)."""
    cloud = config_of(plan.name)["cloud"]
    if cloud == "aws":
        for rule in sorted(plan.resources("aws:lb/listenerRule:ListenerRule"), key=lambda r: r["priority"]):
            patterns = [value for condition in rule["conditions"]
                        for value in condition.get("pathPattern", {}).get("values", [])]
            if any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns):
                [action] = rule["actions"]
                return int(action["fixedResponse"]["statusCode"])
    elif cloud == "gcp":
        [armor] = plan.resources("gcp:compute/securityPolicy:SecurityPolicy")
        for rule in sorted(armor["rules"], key=lambda r: r["priority"]):
            expression = rule["match"].get("expr", {}).get("expression")
            prefixes = re.findall(r"request\.path\.startsWith\('([^']*)'\)", expression or "")
            if expression is None or any(path.startswith(prefix) for prefix in prefixes):
                if rule["action"] == "allow":  # an allowedCidrs rule: the client's address matches
                    break
                return int(re.fullmatch(r"deny\((\d+)\)", rule["action"])[1])
    elif cloud == "azure":
        [gateway] = plan.resources("azure-native:network:ApplicationGateway")
        [routing] = gateway["requestRoutingRules"]
        attached = routing.get("rewriteRuleSet", {}).get("id", "")
        for rule_set in gateway.get("rewriteRuleSets", []):
            if not attached.endswith(f"/rewriteRuleSets/{rule_set['name']}"):
                continue
            for rewrite in rule_set["rewriteRules"]:
                if all(re.search(c["pattern"], path, re.IGNORECASE if c.get("ignoreCase") else 0)
                       for c in rewrite["conditions"] if c["variable"] == "var_uri_path"):
                    path = rewrite["actionSet"]["urlConfiguration"]["modifiedPath"]
    else:
        raise AssertionError(f"{plan.name}: no load balancer model for cloud {cloud}")
    return stack.server.request("GET", path, auth=False)[0]


@pytest.mark.parametrize("other", stacks_of())
def test_every_stacks_public_endpoint_refuses_metrics(other, stack, plan_of):
    plan = plan_of(other)
    for prefix in serving.INTERNAL_PATH_PREFIXES:
        assert public_status(plan, prefix, stack) in (403, 404), f"{other}: {prefix} reaches vLLM from outside"
    # The same model lets the API through to vLLM, which asks for the key: it tells the two apart.
    assert public_status(plan, "/v1/models", stack) == 401
