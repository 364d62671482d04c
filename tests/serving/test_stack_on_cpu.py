"""codellama-prod's VM for real on this CPU machine: the launcher, vllm.service's environment and the 0640 API keys
file that the stack's rendered setup script writes start vLLM 0.32.0 (the CPU build of the release the VMs install)
on a tiny Llama made here, with the arguments changed only by serving.cpu_argv. Checked through OpenAI's client and
plain HTTP, as cli.check checks a deployed endpoint; and every route this vLLM registers is run through every
stack's planned load balancer (components/<cloud>/edge.py edge_answer) to show that none answers without the key.

Fails in CI (skips elsewhere) when serving-test/install.sh has not made .venv-vllm. One server for the module:
~25-35 s to ready on 2 cores, ~2.6 GiB of memory.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
from pathlib import Path

import openai
import pytest

import components
from conftest import config_of, launcher_argv, stacks_of, write_files
from fleet import bootstrap, serving
from cli.check import ODD_PATHS, raw_request
from stack_on_cpu import API_KEYS, ServedStack, serve_stack_on_cpu
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
    config_root = running[running.index("--config") + 1].removesuffix(serving.API_KEYS_FILE)
    assert running == serving.cpu_argv(rendered, str(stack.model_dir), port=int(running[running.index("--port") + 1]),
                                       max_model_len=MAX_POSITIONS, config_root=config_root)
    assert "--enable-prefix-caching" in running  # the stack's vllmArgs
    assert "--api-key" not in running  # the keys reach vLLM in the file --config names, never on a command line


def test_health_answers_without_the_key(stack):
    assert stack.server.request("GET", serving.HEALTH_PATH, auth=False)[0] == 200


def test_models_needs_one_of_the_keys_of_the_keys_file_and_lists_the_served_name(stack, client):
    status, body = stack.server.request("GET", "/v1/models", auth=False)
    assert status == 401, body
    with pytest.raises(openai.AuthenticationError):
        client.with_options(api_key="not-the-key").models.list()
    [model] = client.models.list().data
    assert model.id == stack.served_model_name == "codellama-70b-instruct"
    assert model.model_extra["max_model_len"] == min(4096, MAX_POSITIONS)  # the stack's, capped by cpu_argv
    # every named key works, the one full of shell and YAML metacharacters too: it arrived intact
    for key in API_KEYS.values():
        assert [m.id for m in client.with_options(api_key=key).models.list().data] == [stack.served_model_name]


def test_idle_connections_outlive_vllms_default_keep_alive(stack):
    """vLLM closes an idle connection after VLLM_HTTP_TIMEOUT_KEEP_ALIVE (default 5 s); the unit raises it above the
    load balancer's idle timeout. A connection idle for longer than the default still serves the next request."""
    assert int(stack.environment["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"]) > 600
    connection = http.client.HTTPConnection("127.0.0.1", int(stack.base_url.rsplit(":", 1)[1]), timeout=30)
    connection.request("GET", serving.HEALTH_PATH)
    assert connection.getresponse().read() is not None
    socket_before = connection.sock
    time.sleep(7)
    connection.request("GET", serving.HEALTH_PATH)
    assert connection.getresponse().status == 200
    assert connection.sock is socket_before  # the same connection: vLLM did not close it after 5 s
    connection.close()


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


HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
# FastAPI's own pages, which its schema does not list.
FASTAPI_PAGES = ["/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"]


def registered_routes(stack: ServedStack) -> list[tuple[str, str]]:
    """(method, path) of every route the running vLLM registers, read from its own /openapi.json (path parameters
    filled in): a route a newer vLLM adds is tested without anyone listing it."""
    status, body = stack.server.request("GET", "/openapi.json", auth=False)
    assert status == 200
    paths = json.loads(body)["paths"]
    routes = [(method.upper(), re.sub(r"\{[^}]+\}", "x", path)) for path, item in paths.items()
              for method in item if method in HTTP_METHODS]
    return routes + [("GET", page) for page in FASTAPI_PAGES]


def spellings(path: str) -> list[str]:
    """The same path as a client may write it to slip past a load balancer's rules: other case, percent-encoded,
    with a double slash, with dot segments behind /v1/, with a trailing slash, and make check's odd spellings."""
    first = path[1:2]
    return [path, path.upper(), f"/%{ord(first):02X}{path[2:]}" if first else path, f"/{path}",
            f"{serving.PUBLIC_API_PREFIX}..{path}", f"{serving.PUBLIC_API_PREFIX}%2e%2e{path}",
            f"{serving.PUBLIC_API_PREFIX}/..{path}", f"{path}/", f"{path};x", f"{path}?x=1"]


def test_no_route_answers_without_the_key_through_any_stacks_load_balancer(stack, plan_of):
    """For every route of the real server, in every spelling (and make check's odd ones), through every stack's
    planned edge: the load balancer refuses it under every reading of its path, or it reaches vLLM and vLLM refuses
    it without the key (401, or 404 for no such route) in every form it may arrive in: as sent, and as each reading
    under which the edge passed it on (a load balancer that decoded or normalised the path to match it may forward
    what it matched). Only the health check answers anyone, by design."""
    routes = registered_routes(stack)
    assert len(routes) >= 20 and ("POST", "/invocations") in routes and ("POST", "/v1/completions") in routes
    requests = [(method, path) for method, route in routes for path in spellings(route)] + ODD_PATHS
    answers: dict[tuple[str, str], int] = {}

    def vllm(method: str, path: str) -> int:
        if (method, path) not in answers:
            answers[method, path] = raw_request(stack.base_url, method, path, timeout=60)[0]
        return answers[method, path]

    def public(method: str, path: str) -> bool:  # the health check, as vLLM reads the path (percent-decoded)
        return method == "GET" and urllib.parse.unquote(path.split("?", 1)[0]) in serving.PUBLIC_PATHS

    for name in stacks_of():
        plan = plan_of(name)
        edge = components.load(config_of(name)["cloud"]).edge_answers
        resources = [(step["type"], step["newState"]["inputs"]) for step in plan.steps]
        passed_on = []
        for method, path in requests:
            by_reading = edge(resources, method, path)
            passed = [reading for reading, refused in by_reading.items() if refused is None]
            assert all(refused >= 400 for refused in by_reading.values() if refused is not None), (name, path)
            for arrives_as in dict.fromkeys([path, *passed]) if passed else []:
                passed_on.append(arrives_as)
                status = vllm(method, arrives_as)
                if public(method, arrives_as):
                    assert status == 200
                else:
                    # 400: uvicorn refuses a request-target it cannot parse (`\v1\models`) before any route
                    assert status in (400, 401, 404), (
                        f"{name}: {method} {path} passes the load balancer (as {passed}) and vLLM answers "
                        f"{method} {arrives_as} with {status} without the key")
        # the API itself gets through, and so does the health check
        assert "/v1/completions" in passed_on and serving.HEALTH_PATH in passed_on, name
