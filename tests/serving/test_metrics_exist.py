"""The real vLLM server's /metrics (the CPU build of the release the VMs install, started as codellama-prod's VM is)
has every metric of fleet/metrics.py with the type the clouds assume, and the usage layer's per-key counters
(fleet/usage.py) with their labels, each cloud's planned agent keeps exactly the samples of the metrics that cloud
ships and of the counters, and every vLLM name that a stack's scaling policies, dashboard and alarms
read is a sample of the server's: a vLLM release that renames or retypes one fails here. ~30 s to start."""

from __future__ import annotations

import re

import pytest

from components.aws import monitoring as aws
from components.azure import monitoring as azure
from components.gcp import monitoring as gcp
from conftest import stacks_of
from fleet import metrics, usage
from metrics_configs import agent_files, kept_by, referenced_samples
from stack_on_cpu import ServedStack, serve_stack_on_cpu

STACK = "codellama-prod"
SHIPPED = {"aws": aws.SHIPPED, "gcp": gcp.SHIPPED, "azure": azure.SHIPPED}
pytestmark = pytest.mark.timeout(300)
_TYPE = re.compile(r"^# TYPE (\S+) (\S+)$")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@pytest.fixture(scope="module")
def scrape(plan_of, tmp_path_factory) -> tuple[dict[str, str], set[str], dict[str, list[dict[str, str]]]]:
    """(family -> its # TYPE, every sample name, sample name -> the labels of each of its series) of /metrics once
    the server has served a completion and a stream, and refused a bad request, with the stack's API key."""
    with serve_stack_on_cpu(plan_of(STACK), tmp_path_factory.mktemp("metrics")) as served:
        _serve_some(served)
        status, body = served.server.request("GET", metrics.METRICS_PATH, auth=False)
    assert status == 200
    lines = body.decode().splitlines()
    types = {m[1]: m[2] for line in lines if (m := _TYPE.match(line))}
    series: dict[str, list[dict[str, str]]] = {}
    for line in lines:
        if not line.startswith("#") and (m := _SAMPLE.match(line)):
            series.setdefault(m[1], []).append(dict(_LABEL.findall(m[2] or "")))
    return types, set(series), series


def _serve_some(served: ServedStack) -> None:
    for stream in (False, True):
        status, _ = served.server.request("POST", "/v1/completions", {
            "model": served.served_model_name, "prompt": "def fibonacci(n):", "max_tokens": 8, "stream": stream})
        assert status == 200
    # an error with the key: the per-key errors counter's series (its status label) exists too
    status, _ = served.server.request("POST", "/v1/completions", {
        "model": served.served_model_name, "prompt": "x", "max_tokens": -1})
    assert status == 400


@pytest.mark.parametrize("metric", metrics.METRICS, ids=lambda m: m.key)
def test_each_metric_exists_with_the_type_the_clouds_assume(metric, scrape):
    types, samples, _ = scrape
    assert types.get(metric.exposed) == metric.type, (metric.exposed, types.get(metric.exposed))
    assert set(metric.samples) <= samples, sorted(set(metric.samples) - samples)


@pytest.mark.parametrize("counter", usage.KEY_COUNTERS, ids=lambda c: c.name)
def test_each_per_key_counter_exists_as_a_counter_with_its_labels(counter, scrape):
    """What the agents ship as the counters' dimensions (fleet/usage.py MONITORING) are these labels."""
    types, _, series = scrape
    assert types.get(counter.name) == "counter", (counter.name, types.get(counter.name))
    assert series.get(counter.name), sorted(s for s in series if s.startswith("vllm_fleet"))
    assert all(set(labels) == set(counter.labels) for labels in series[counter.name]), series[counter.name]
    assert {labels["key"] for labels in series[counter.name]} == {"default"}  # the key's name, never the key
    if counter is usage.ERRORS:
        assert {labels["status"] for labels in series[counter.name]} == {"400"}


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_each_clouds_agent_keeps_exactly_the_samples_of_what_it_ships(cloud, scrape, plan_of):
    _, samples, _ = scrape
    wanted = {sample for m in SHIPPED[cloud] for sample in m.samples} | {c.name for c in usage.KEY_COUNTERS}
    for stack in stacks_of(cloud):
        assert kept_by(cloud, agent_files(plan_of(stack)), samples) == wanted, stack


def test_the_clouds_metric_names_are_of_samples_the_server_has(scrape):
    _, samples, _ = scrape
    assert {aws.metric_name(m) for m in aws.SHIPPED} <= samples
    assert {re.fullmatch(r"prometheus\.googleapis\.com/(.+)/(gauge|counter|histogram)", gcp.metric_type(m))[1]
            for m in gcp.SHIPPED} <= {m.family for m in metrics.METRICS} | samples
    assert {azure.metric_name(m).removesuffix("_rate") for m in azure.SHIPPED} <= {s.replace(":", "_") for s in samples}


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_every_name_the_policies_dashboards_and_alarms_read_is_a_sample_of_the_server(cloud, scrape, plan_of):
    types, samples, _ = scrape
    counters = {c.name for c in usage.KEY_COUNTERS}
    shipped = {sample for m in SHIPPED[cloud] for sample in m.samples} | counters
    for stack in stacks_of(cloud):
        read = referenced_samples(cloud, plan_of(stack))
        assert read, stack  # every stack has a dashboard at least
        assert read <= samples & shipped, (stack, sorted(read - samples), sorted(read - shipped))
        assert {usage.PROMPT_TOKENS.name, usage.COMPLETION_TOKENS.name} <= read, stack  # the tokens-by-key panels
        # and each read as its type: a histogram only through its buckets, a counter as its _total
        for sample in read - counters:
            family = next(m for m in metrics.METRICS if sample in m.samples)
            assert family.type != "histogram" or sample.endswith("_bucket"), sample
            assert types[family.exposed] == family.type
