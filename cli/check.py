"""Checks an endpoint the way the serving test checks a stack served on CPU: one PASS or FAIL line a check, and a
non-zero exit status if any fails. The first thing to run after `pulumi up`, and what a pipeline runs after a deploy.

    python -m cli.check --stack codellama-prod
    python -m cli.check --url https://codellama.example.com --api-key KEY [--model NAME] [--direct]

Checks: /health answers; /v1/models refuses a request without the key (401) and lists the model with it; a
completion, a chat completion and a streamed completion (several chunks) come back; a chat request with a tool
(TOOL, tool_choice auto, as agentic clients send it) comes back as a parsed tool call: `tools` is skipped where the
server says it runs without a tool-call parser (vLLM's 400 for tool_choice auto); /invocations and /metrics,
which vLLM serves without the key, are refused by the load balancer (any 4xx/5xx of its own), and so are odd
spellings of paths (ODD_PATHS: dot segments, %, //, ;, backslashes), each sent byte for byte. --direct: the URL is
a vLLM server itself (a VM through a tunnel, a local server), with no load balancer in front, so those answer
there (/metrics with Prometheus text).
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Callable

import openai

from fleet import serving
from .endpoint import Endpoint, EndpointError, add_arguments, from_arguments

# Every request asks for exactly this many tokens (vLLM's ignore_eos): a model that stops early cannot make a
# streamed reply look like a single chunk.
MAX_TOKENS = 16


# Odd spellings of paths that vLLM serves without the key (or of the API), which the load balancer must refuse
# itself, however it reads them: dot segments, encoded dots and slashes, `//`, `;` and backslashes
# (components/edge_model.py). (method, request-target as sent, byte for byte.)
ODD_PATHS = [("POST", "/v1/../invocations"), ("POST", "/v1/%2e%2e/invocations"), ("POST", "/v1//../tokenize"),
             ("GET", "/v1/./models"), ("GET", "/v1/models;x"), ("GET", "/v1%2fmodels"), ("GET", "\\v1\\models"),
             ("GET", "/v1/models/.."), ("GET", "/v1/%2E%2E/metrics"), ("GET", "/v1/models%5c..%5c..%5cmetrics")]


# What vLLM itself answers a request without the key: its API-key middleware's 401 and FastAPI's 404/405, and
# uvicorn's 400 for a request-target it cannot parse (`\v1\models`). A refusal with one of these came from vLLM's
# server, not from the load balancer.
VLLM_REFUSALS = ({"error": "Unauthorized"}, {"detail": "Not Found"}, {"detail": "Method Not Allowed"})
UVICORN_INVALID_REQUEST = "Invalid HTTP request received."


class CheckFailed(Exception):
    pass


class CheckSkipped(Exception):
    """The check does not apply to this endpoint (the message says why)."""


# The tool the `tools` check offers, and what vLLM answers tool_choice auto without a parser
# (vllm/renderers/online_renderer.py).
TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
NO_TOOL_PARSER = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
# Room for a model that thinks before it calls (gpt-oss); one that calls at once stops much earlier.
TOOL_MAX_TOKENS = 512


@dataclass(frozen=True)
class Result:
    name: str
    passed: bool
    detail: str
    skipped: bool = False

    def line(self) -> str:
        return f"{'SKIP' if self.skipped else 'PASS' if self.passed else 'FAIL'}  {self.name:<10} {self.detail}"


def http_get(url: str, timeout: float, body: dict | None = None) -> tuple[int, str]:
    """Status and body of a plain GET (a POST of `body` as JSON) without any key."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def raw_request(url: str, method: str, target: str, timeout: float) -> tuple[int, str]:
    """Status and body of a request without any key whose request-target is `target` byte for byte (urllib would
    quote or resolve it): the odd spellings must reach the load balancer as written."""
    parts = urllib.parse.urlsplit(url)
    connection = (http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                              context=ssl.create_default_context())
                  if parts.scheme == "https" else http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout))
    try:
        body = b"{}" if method == "POST" else None
        connection.request(method, target, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def answered_by_vllm(status: int, body: str) -> bool:
    """Whether a response came from vLLM: anything but a refusal, or one of vLLM's own refusals."""
    if status < 400 or (status == 400 and body.strip() == UVICORN_INVALID_REQUEST):
        return True
    try:
        return json.loads(body) in VLLM_REFUSALS
    except ValueError:
        return False


class Checks:
    def __init__(self, endpoint: Endpoint, *, direct: bool, timeout: float) -> None:
        self.endpoint = endpoint
        self.direct = direct
        self.timeout = timeout
        self.model = endpoint.model
        # No retries: a check reports what the endpoint answers the first time.
        self.client = openai.OpenAI(base_url=endpoint.openai_base_url, api_key=endpoint.api_key, timeout=timeout,
                                    max_retries=0)

    def all(self) -> list[tuple[str, Callable[[], str]]]:
        return [("health", self.health), ("auth", self.auth), ("models", self.models),
                ("completion", self.completion), ("chat", self.chat), ("streaming", self.streaming),
                ("tools", self.tools), ("edge", self.edge), ("paths", self.paths), ("metrics", self.metrics)]

    def health(self) -> str:
        status, body = http_get(self.endpoint.url + serving.HEALTH_PATH, self.timeout)
        if status != 200:
            raise CheckFailed(f"GET {serving.HEALTH_PATH} answered {status}: {body[:200]}")
        return f"GET {serving.HEALTH_PATH} -> 200"

    def auth(self) -> str:
        status, body = http_get(f"{self.endpoint.openai_base_url}/models", self.timeout)
        if status != 401:
            raise CheckFailed(f"GET /v1/models without the key answered {status}, not 401: {body[:200]}")
        return "GET /v1/models without the key -> 401"

    def models(self) -> str:
        names = [model.id for model in self.client.models.list()]
        if self.model is None and names:
            self.model = names[0]
        if self.model not in names:
            raise CheckFailed(f"/v1/models lists {names}, not {self.model!r}")
        return f"/v1/models lists {self.model!r}"

    def _model(self) -> str:
        if self.model is None:
            raise CheckFailed("no model to ask: /v1/models did not name one")
        return self.model

    def completion(self) -> str:
        started = time.monotonic()
        reply = self.client.completions.create(model=self._model(), prompt="def fibonacci(n):",
                                               max_tokens=MAX_TOKENS, extra_body={"ignore_eos": True})
        if reply.usage.completion_tokens != MAX_TOKENS:
            raise CheckFailed(f"{reply.usage.completion_tokens} tokens instead of {MAX_TOKENS}")
        return f"{MAX_TOKENS} tokens in {time.monotonic() - started:.2f} s"

    def chat(self) -> str:
        started = time.monotonic()
        reply = self.client.chat.completions.create(
            model=self._model(), max_tokens=MAX_TOKENS, extra_body={"ignore_eos": True},
            messages=[{"role": "user", "content": "Write a Python function that reverses a string."}])
        message = reply.choices[0].message
        if message.role != "assistant" or reply.usage.completion_tokens != MAX_TOKENS:
            raise CheckFailed(f"a {message.role!r} reply of {reply.usage.completion_tokens} tokens")
        return f"assistant replied, {MAX_TOKENS} tokens in {time.monotonic() - started:.2f} s"

    def streaming(self) -> str:
        started = time.monotonic()
        arrivals = []
        for chunk in self.client.completions.create(model=self._model(), prompt="import", max_tokens=MAX_TOKENS,
                                                    stream=True, extra_body={"ignore_eos": True}):
            if chunk.choices and chunk.choices[0].text:
                arrivals.append(time.monotonic() - started)
        if len(arrivals) < 2:
            raise CheckFailed(f"{len(arrivals)} chunk(s) with text: is a proxy buffering the stream?")
        return f"{len(arrivals)} chunks, the first after {arrivals[0]:.2f} s"

    def tools(self) -> str:
        """What an agentic client (Continue's agent mode, Cline, the openai client's tools=) needs: vLLM parses the
        model's tool call into message.tool_calls, with JSON arguments."""
        started = time.monotonic()
        try:
            reply = self.client.chat.completions.create(
                model=self._model(), max_tokens=TOOL_MAX_TOKENS, tools=[TOOL], tool_choice="auto",
                messages=[{"role": "user", "content": "What is the weather in Berlin? Call get_weather to find out."}])
        except openai.BadRequestError as error:
            if NO_TOOL_PARSER in str(error):
                raise CheckSkipped("the server runs without a tool-call parser (vLLM refuses tool_choice auto): "
                                   "no agent mode for this model") from error
            raise
        choice = reply.choices[0]
        if not choice.message.tool_calls:
            raise CheckFailed(f"no parsed tool call (finish_reason {choice.finish_reason}): the model wrote "
                              f"{(choice.message.content or '')[:160]!r}; is --tool-call-parser the model's format?")
        call = choice.message.tool_calls[0].function
        try:
            arguments = json.loads(call.arguments)
        except ValueError:
            raise CheckFailed(f"{call.name} called with arguments that are not JSON: {call.arguments[:160]!r}") from None
        if call.name != TOOL["function"]["name"] or not isinstance(arguments, dict):
            raise CheckFailed(f"called {call.name}({call.arguments[:160]}), not {TOOL['function']['name']} with an "
                              f"object of arguments")
        return f"{call.name}({json.dumps(arguments)}) parsed in {time.monotonic() - started:.2f} s"

    def edge(self) -> str:
        """vLLM answers completions on /invocations without the key (its --api-key guards /v1/ only): the load
        balancer must let nothing but the API and /health through."""
        status, _ = http_get(self.endpoint.url + "/invocations", self.timeout,
                             body={"model": self.model or "", "prompt": "x", "max_tokens": 1})
        if self.direct:
            return f"POST /invocations without the key -> {status} on the server itself (--direct: no load balancer)"
        if status < 400:
            raise CheckFailed(f"POST /invocations without the key answered {status}: the load balancer must refuse "
                              f"every path but {serving.PUBLIC_API_PREFIX} and {serving.HEALTH_PATH}")
        return f"POST /invocations without the key -> {status}: refused at the load balancer"

    def paths(self) -> str:
        """Odd spellings (ODD_PATHS) must be refused by the load balancer itself, whatever vLLM would answer."""
        answers = {f"{method} {target}": raw_request(self.endpoint.url, method, target, self.timeout)
                   for method, target in ODD_PATHS}
        if self.direct:
            return f"{len(answers)} odd spellings sent to the server itself (--direct: no load balancer to refuse them)"
        reached = [f"{request} -> {status}" for request, (status, body) in answers.items()
                   if answered_by_vllm(status, body)]
        if reached:
            raise CheckFailed(f"{len(reached)} of {len(answers)} odd spellings reached vLLM: {'; '.join(reached)}")
        statuses = sorted({status for status, _ in answers.values()})
        return f"{len(answers)} odd spellings (dot segments, %, //, ;, \\) -> {statuses}: refused at the load balancer"

    def metrics(self) -> str:
        status, body = http_get(self.endpoint.url + "/metrics", self.timeout)
        if self.direct:
            if status != 200 or "vllm:num_requests_running" not in body:
                raise CheckFailed(f"GET /metrics on the server itself answered {status}, not Prometheus text")
            return "Prometheus text on the server itself (--direct: no load balancer in front to refuse it)"
        if status == 200:
            raise CheckFailed("GET /metrics answers anyone without the key: the load balancer must refuse it")
        if status < 400:
            raise CheckFailed(f"GET /metrics answered {status}, not a refusal")
        return f"GET /metrics without the key -> {status}: refused at the load balancer"


def run(checks: Checks) -> list[Result]:
    results = []
    for name, check in checks.all():
        try:
            results.append(Result(name, True, check()))
        except CheckFailed as failure:
            results.append(Result(name, False, str(failure)))
        except CheckSkipped as skipped:
            results.append(Result(name, True, str(skipped), skipped=True))
        except openai.AuthenticationError:
            results.append(Result(name, False, "401: the endpoint refuses the API key"))
        except (openai.APIError, OSError) as error:  # the server's refusal or the network's, in one line
            results.append(Result(name, False, f"{type(error).__name__}: {error}"))
        print(results[-1].line(), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.check", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--direct", action="store_true",
                        help="the URL is a vLLM server itself, not a stack's load balancer: /metrics must answer")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for each answer (default 120)")
    args = parser.parse_args(argv)
    try:
        endpoint = from_arguments(args)
    except EndpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"checking {endpoint.url}" + (f" ({endpoint.model})" if endpoint.model else ""), flush=True)
    results = run(Checks(endpoint, direct=args.direct, timeout=args.timeout))
    failed = [result.name for result in results if not result.passed]
    skipped = [result.name for result in results if result.skipped]
    if failed:
        print(f"FAILED: {len(failed)} of {len(results)} checks ({', '.join(failed)})")
        return 1
    print(f"OK: {len(results) - len(skipped)} checks passed, {len(skipped)} skipped ({', '.join(skipped)})" if skipped
          else f"OK: all {len(results)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
