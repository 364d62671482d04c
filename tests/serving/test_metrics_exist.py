"""The real vLLM server's /metrics (the CPU build of the release the VMs install, started as codellama-prod's VM is)
has every metric of fleet/metrics.py with the type the clouds assume, each cloud's planned agent keeps exactly the
samples of the metrics that cloud ships, and every vLLM name that a stack's scaling policies, dashboard and alarms
read is a sample of the server's: a vLLM release that renames or retypes one fails here. ~30 s to start."""

from __future__ import annotations

import re

import pytest

from components.aws import monitoring as aws
from components.azure import monitoring as azure
from components.gcp import monitoring as gcp
from conftest import stacks_of
from fleet import metrics
from metrics_configs import agent_files, kept_by, referenced_samples
from stack_on_cpu import ServedStack, serve_stack_on_cpu

STACK = "codellama-prod"
SHIPPED = {"aws": aws.SHIPPED, "gcp": gcp.SHIPPED, "azure": azure.SHIPPED}
pytestmark = pytest.mark.timeout(300)
_TYPE = re.compile(r"^# TYPE (\S+) (\S+)$")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]")


@pytest.fixture(scope="module")
def scrape(plan_of, tmp_path_factory) -> tuple[dict[str, str], set[str]]:
    """(family -> its # TYPE, every sample name) of /metrics once the server has served a completion and a stream."""
    with serve_stack_on_cpu(plan_of(STACK), tmp_path_factory.mktemp("metrics")) as served:
        _serve_some(served)
        status, body = served.server.request("GET", metrics.METRICS_PATH, auth=False)
    assert status == 200
    lines = body.decode().splitlines()
    types = {m[1]: m[2] for line in lines if (m := _TYPE.match(line))}
    samples = {m[1] for line in lines if not line.startswith("#") and (m := _SAMPLE.match(line))}
    return types, samples


def _serve_some(served: ServedStack) -> None:
    for stream in (False, True):
        status, _ = served.server.request("POST", "/v1/completions", {
            "model": served.served_model_name, "prompt": "def fibonacci(n):", "max_tokens": 8, "stream": stream})
        assert status == 200


@pytest.mark.parametrize("metric", metrics.METRICS, ids=lambda m: m.key)
def test_each_metric_exists_with_the_type_the_clouds_assume(metric, scrape):
    types, samples = scrape
    assert types.get(metric.exposed) == metric.type, (metric.exposed, types.get(metric.exposed))
    assert set(metric.samples) <= samples, sorted(set(metric.samples) - samples)


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_each_clouds_agent_keeps_exactly_the_samples_of_what_it_ships(cloud, scrape, plan_of):
    _, samples = scrape
    wanted = {sample for m in SHIPPED[cloud] for sample in m.samples}
    for stack in stacks_of(cloud):
        assert kept_by(cloud, agent_files(plan_of(stack)), samples) == wanted, stack


def test_the_clouds_metric_names_are_of_samples_the_server_has(scrape):
    _, samples = scrape
    assert {aws.metric_name(m) for m in aws.SHIPPED} <= samples
    assert {re.fullmatch(r"prometheus\.googleapis\.com/(.+)/(gauge|counter|histogram)", gcp.metric_type(m))[1]
            for m in gcp.SHIPPED} <= {m.family for m in metrics.METRICS} | samples
    assert {azure.metric_name(m).removesuffix("_rate") for m in azure.SHIPPED} <= {s.replace(":", "_") for s in samples}


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_every_name_the_policies_dashboards_and_alarms_read_is_a_sample_of_the_server(cloud, scrape, plan_of):
    types, samples = scrape
    shipped = {sample for m in SHIPPED[cloud] for sample in m.samples}
    for stack in stacks_of(cloud):
        read = referenced_samples(cloud, plan_of(stack))
        assert read, stack  # every stack has a dashboard at least
        assert read <= samples & shipped, (stack, sorted(read - samples), sorted(read - shipped))
        # and each read as its type: a histogram only through its buckets, a counter as its _total
        for sample in read:
            family = next(m for m in metrics.METRICS if sample in m.samples)
            assert family.type != "histogram" or sample.endswith("_bucket"), sample
            assert types[family.exposed] == family.type
