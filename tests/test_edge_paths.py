"""Issue 18 point 7: the edge of every cloud refuses odd spellings of a path (dot segments, encoded dots and
slashes, `//`, `;`, backslashes) as the client sent them, without relying on the load balancer to normalise them,
and still passes the API on. Each cloud's planned rules are run through its model (components/<cloud>/edge.py)."""

from __future__ import annotations

import pytest

import components
from components.edge_model import API_PATH, as_sent, path_readings
from conftest import stacks_of
from cli.check import ODD_PATHS

CLOUDS = ["aws", "gcp", "azure"]
API = [("GET", "/v1/models"), ("POST", "/v1/completions"), ("POST", "/v1/chat/completions"),
       ("POST", "/v1/embeddings"), ("POST", "/v1/responses/resp_0a1b2c/cancel"), ("GET", "/v1/models?limit=1"),
       ("GET", "/health")]


def planned(plan_of, cloud: str):
    plan = plan_of(stacks_of(cloud)[0])
    return [(step["type"], step["newState"]["inputs"]) for step in plan.steps]


@pytest.mark.parametrize("cloud", CLOUDS)
def test_odd_spellings_are_refused_as_sent(cloud, plan_of):
    """A load balancer that matches the path as the client sent it refuses every odd spelling: the refusal needs no
    normalisation. Before: `/v1/*` let `/v1/../invocations` and `/v1/%2e%2e/invocations` through."""
    module, resources = components.load(cloud), planned(plan_of, cloud)
    for method, path in ODD_PATHS:
        answer = module.edge_answers(resources, method, path)[as_sent(path)]
        assert answer is not None and answer >= 400, (cloud, method, path, answer)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_a_reading_that_still_passes_is_one_of_the_apis_shape(cloud, plan_of):
    """Where a cloud's rules might see a normalised path, what they still pass on is a clean API path (which vLLM
    guards with the key; the serving proof sends each such reading to the real vLLM)."""
    import re

    module, resources = components.load(cloud), planned(plan_of, cloud)
    for method, path in ODD_PATHS:
        for reading, answer in module.edge_answers(resources, method, path).items():
            assert answer is not None or re.search(API_PATH, reading), (cloud, path, reading)


def test_azure_refuses_odd_spellings_however_the_gateway_reads_the_path(plan_of):
    """Application Gateway's rewrite looks at request_uri, documented as the original request-target: the refusal
    holds for every reading its path map may match."""
    module, resources = components.load("azure"), planned(plan_of, "azure")
    for method, path in ODD_PATHS:
        assert module.edge_answer(resources, method, path) == 502, path


@pytest.mark.parametrize("cloud", CLOUDS)
def test_the_api_and_health_still_pass(cloud, plan_of):
    module, resources = components.load(cloud), planned(plan_of, cloud)
    for method, path in API:
        assert module.edge_answer(resources, method, path) is None, (cloud, path)
        assert module.edge_answers(resources, method, path)[as_sent(path)] is None, (cloud, path)


def test_readings_combine_every_normalisation_in_any_order():
    """Merging `//` before resolving `..` turns /v1//../tokenize into /tokenize; resolving first gives /v1/tokenize."""
    assert {"/tokenize", "/v1/tokenize", "/v1/../tokenize"} <= path_readings("/v1//../tokenize")
    assert "/invocations" in path_readings("/v1/%252e%252e/invocations")  # decoded twice
    assert "/v1/models" in path_readings("\\v1\\models")
    assert path_readings("/v1/models?x=/../y") == {"/v1/models"}


def test_make_check_sends_each_odd_spelling_byte_for_byte_and_tells_vllms_refusals_from_the_edges():
    """cli.check's `paths` check: the request line a server receives holds the spelling as written (no client
    quoting or dot resolution), and a refusal is the load balancer's only when it is not one of vLLM's own."""
    import socket
    import threading

    from cli.check import answered_by_vllm, raw_request

    listener = socket.create_server(("127.0.0.1", 0))
    received = []

    def serve() -> None:
        for _ in ODD_PATHS:
            connection, _ = listener.accept()
            with connection:
                received.append(connection.recv(65536).split(b"\r\n", 1)[0].decode())
                connection.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 22\r\nConnection: close\r\n\r\n"
                                   b'{"detail":"Not Found"}')

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    answers = [raw_request(url, method, target, timeout=10) for method, target in ODD_PATHS]
    thread.join(10)
    listener.close()
    assert received == [f"{method} {target} HTTP/1.1" for method, target in ODD_PATHS]
    assert all(answered_by_vllm(*answer) for answer in answers)  # FastAPI's 404: vLLM answered
    assert answered_by_vllm(401, '{"error":"Unauthorized"}') and answered_by_vllm(200, "{}")
    assert answered_by_vllm(400, "Invalid HTTP request received.")  # uvicorn, for a target it cannot parse
    assert not answered_by_vllm(404, "<html>Google 404</html>") and not answered_by_vllm(502, "<html>502</html>")
    assert not answered_by_vllm(404, '{"error": {"message": "not found", "code": 404}}')  # the ALB's own answer
