"""Issue 18 point 7: the edge of every cloud refuses odd spellings of a path (dot segments, encoded dots and
slashes, `//`, `;`, backslashes) as the client sent them, without relying on the load balancer to normalise them,
and still passes the API on. Each cloud's planned rules are run through its model (components/<cloud>/edge.py)."""

from __future__ import annotations

import pytest

import components
from components.edge_model import API_PATH, as_sent, path_readings
from conftest import stacks_of
from fleet.check import ODD_PATHS

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
