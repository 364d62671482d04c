"""The usage layer (fleet/usage.py, cloud-init/fleet_usage.py.j2) in the real vLLM CPU server started from a stack's
rendered launcher (stack_on_cpu), with two named keys and a small rateLimits for one of them: the per-key counters
on /metrics equal, to the token, the usage vLLM returned to OpenAI's client, for plain and streamed completions and
chat completions (streams with and without a usage chunk); a key the VM does not hold is 401 and counted nowhere;
the limited key gets 429 with Retry-After and an OpenAI-style error while the other key is served.

Fails in CI (skips elsewhere) without .venv-vllm; one server for the module.
"""

from __future__ import annotations

import json
import re
import subprocess

import openai
import pytest
import yaml

from conftest import PlannedStack, config_of, run_plan, write_files
from fleet import bootstrap, usage
from stack_on_cpu import require_vllm, serve_stack_on_cpu
from vllm_server import VENV_PYTHON

KEYS = {"alice": "alice-key-0123456789abcdef", "ci": "ci-key-0123456789abcdef"}
CI_REQUESTS_PER_MINUTE = 3
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("usage")
    config = {**config_of("codellama-dev"),
              "apiKeys": {name: {"secure": f"v1:{name}"} for name in KEYS},
              "rateLimits": {"default": {"requestsPerMinute": 600},
                             "keys": {"ci": {"requestsPerMinute": CI_REQUESTS_PER_MINUTE}}}}
    path = work / "Pulumi.usage-on-cpu.yaml"
    path.write_text(yaml.safe_dump({"config": {f"vllm-fleet:{k}": v for k, v in config.items()}}))
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    plan = PlannedStack("usage-on-cpu", json.loads(result.stdout))
    with serve_stack_on_cpu(plan, work, api_keys=KEYS) as served:
        yield served


def client_of(stack, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=KEYS[name], timeout=60, max_retries=0)


def counters(stack) -> dict[tuple[str, ...], float]:
    """(counter name, label values...) -> value, for the usage layer's counters on /metrics."""
    status, body = stack.server.request("GET", "/metrics", auth=False)
    assert status == 200
    found = {}
    names = "|".join(c.name for c in usage.KEY_COUNTERS)
    for match in re.finditer(rf"^({names})\{{(.*)\}} ([0-9.e+]+)$", body.decode(), flags=re.MULTILINE):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
        found[(match[1], *labels.values())] = float(match[3])
    return found


def tokens(stack, name: str) -> tuple[float, float, float]:
    now = counters(stack)
    return (now.get((usage.REQUESTS.name, name), 0), now.get((usage.PROMPT_TOKENS.name, name), 0),
            now.get((usage.COMPLETION_TOKENS.name, name), 0))


def test_the_counters_equal_the_usage_the_client_received(stack):
    model = stack.served_model_name
    alice = client_of(stack, "alice")
    exact = {"extra_body": {"ignore_eos": True}}  # random weights: exactly max_tokens
    messages = [{"role": "user", "content": "Write a function."}]
    received = []  # the usage of each reply, as the client got it
    received.append(alice.completions.create(model=model, prompt="def fibonacci(n):", max_tokens=7, **exact).usage)
    received.append(alice.chat.completions.create(model=model, messages=messages, max_tokens=5, **exact).usage)
    chunks = list(alice.completions.create(model=model, prompt="import", max_tokens=6, stream=True,
                                           stream_options={"include_usage": True}, **exact))
    assert chunks[-1].usage is not None and not chunks[-1].choices  # the usage chunk the client asked for
    received.append(chunks[-1].usage)
    chunks = list(alice.chat.completions.create(model=model, messages=messages, max_tokens=4, stream=True,
                                                stream_options={"include_usage": True}, **exact))
    received.append(chunks[-1].usage)
    before = tokens(stack, "alice")
    assert before == (4, sum(u.prompt_tokens for u in received), sum(u.completion_tokens for u in received))
    assert before[2] == 7 + 5 + 6 + 4

    # A stream without a usage chunk: the client gets none (the layer changes nothing it receives), and the counters
    # grow by what vLLM reports for the same request, asked for again with the usage chunk.
    plain = list(alice.chat.completions.create(model=model, messages=messages, max_tokens=3, stream=True, **exact))
    assert all(chunk.usage is None for chunk in plain) and plain[-1].choices[0].finish_reason == "length"
    after = tokens(stack, "alice")
    [same] = [c.usage for c in alice.chat.completions.create(
        model=model, messages=messages, max_tokens=3, stream=True, stream_options={"include_usage": True},
        **exact) if c.usage]
    assert same.completion_tokens == 3
    assert after == (before[0] + 1, before[1] + same.prompt_tokens, before[2] + 3)

    # The other key's requests are its own.
    ci = client_of(stack, "ci")
    reply = ci.completions.create(model=model, prompt="hello", max_tokens=2, **exact)
    assert tokens(stack, "ci") == (1, reply.usage.prompt_tokens, 2)
    assert tokens(stack, "alice")[0] == after[0] + 1


def test_a_key_the_vm_does_not_hold_is_refused_and_counted_nowhere(stack):
    before = counters(stack)
    revoked = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="alice-old-key-revoked", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        revoked.completions.create(model=stack.served_model_name, prompt="x", max_tokens=1)
    status, _ = stack.server.request("GET", "/v1/models", auth=False)
    assert status == 401
    assert counters(stack) == before
    assert not any("revoked" in label or "alice-old" in label for key in before for label in key)


def test_a_key_over_its_limit_gets_429_with_retry_after_while_the_other_is_served(stack):
    model = stack.served_model_name
    ci, alice = client_of(stack, "ci"), client_of(stack, "alice")
    served = tokens(stack, "ci")[0]  # the requests ci made in the last minute (the test before)
    for _ in range(CI_REQUESTS_PER_MINUTE - int(served)):
        ci.models.list()
    errors_before = counters(stack).get((usage.ERRORS.name, "ci", "429"), 0)
    with pytest.raises(openai.RateLimitError) as refused:
        ci.completions.create(model=model, prompt="hello", max_tokens=1)
    response = refused.value.response
    assert response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= 60
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "ci" in error["message"]
    # the other key is served meanwhile
    assert alice.completions.create(model=model, prompt="hello", max_tokens=1).usage.completion_tokens == 1
    now = counters(stack)
    assert now[(usage.ERRORS.name, "ci", "429")] == errors_before + 1
    assert now[(usage.REQUESTS.name, "ci")] == CI_REQUESTS_PER_MINUTE + 1


WINDOW_CHECK = """
import fleet_usage
window, limit = fleet_usage._Window(), {"requestsPerMinute": 3, "tokensPerMinute": 100}
assert window.wait(0.0, limit) == 0
window.starts.extend([0.0, 10.0])
window.tokens.extend([(1.0, 60), (12.0, 50)])
window.token_sum = 110
assert window.wait(20.0, limit) == 41.0, window.wait(20.0, limit)  # 110 tokens >= 100 until the 60 of t=1 expire
window.tokens.popleft(); window.token_sum = 50
window.starts.append(15.0)
assert window.wait(20.0, limit) == 40.0  # 3 requests in the window: until the one of t=0 leaves it
assert window.wait(61.0, limit) == 0  # the first request and the 60 tokens are out of the window
"""


def test_the_windows_limit_requests_and_tokens_per_minute(tmp_path, plan_of):
    """The rendered layer's window (its requests and tokens of the last 60 s), run by .venv-vllm's Python."""
    require_vllm()
    module = write_files(plan_of("codellama-dev").user_data)[bootstrap.PATHS["usage_module"]]["content"]
    (tmp_path / "fleet_usage.py").write_text(module)
    result = subprocess.run([str(VENV_PYTHON), "-c", WINDOW_CHECK], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
