"""The metrics agents' configurations as a stack's VMs get them (their files in the planned user-data), read back
into what each keeps of vLLM's /metrics: shared by tests/test_metrics.py (their documented shape) and the serving
proof (tests/serving/test_metrics_exist.py: what they keep of the real server's scrape)."""

from __future__ import annotations

import json
import re
import tomllib

import yaml

from components.monitoring import CONFIG_DIR
from conftest import write_files


def agent_files(plan) -> dict[str, str]:
    """The agent's configuration files of a planned stack, by file name under CONFIG_DIR."""
    return {path.rsplit("/", 1)[1]: entry["content"] for path, entry in write_files(plan.user_data).items()
            if path.startswith(f"{CONFIG_DIR}/")}


def scrape_jobs(cloud: str, files: dict[str, str]) -> list[dict]:
    """The Prometheus scrape jobs of the cloud's agent (Telegraf, on Azure, has none: see kept_by)."""
    if cloud == "aws":
        return yaml.safe_load(files["cloudwatch-prometheus.yaml"])["scrape_configs"]
    if cloud == "gcp":
        return yaml.safe_load(files["ops-agent.yaml"])["metrics"]["receivers"]["vllm"]["config"]["scrape_configs"]
    raise ValueError(cloud)


def kept_by(cloud: str, files: dict[str, str], samples: set[str]) -> set[str]:
    """Which of `samples` (sample names of a scrape) the cloud's agent keeps and sends."""
    if cloud == "azure":
        telegraf = tomllib.loads(files["telegraf.conf"])
        return samples & set(telegraf["inputs"]["prometheus"][0]["fieldinclude"])
    [job] = scrape_jobs(cloud, files)
    [keep] = job["metric_relabel_configs"]
    assert keep["action"] == "keep" and keep["source_labels"] == ["__name__"]
    kept = {sample for sample in samples if re.fullmatch(keep["regex"], sample)}  # Prometheus anchors the regex
    if cloud == "aws":  # and the EMF processor turns into metrics only what its selectors match
        declaration = json.loads(files["cloudwatch-agent.json"])["logs"]["metrics_collected"]["prometheus"][
            "emf_processor"]["metric_declaration"]
        kept = {sample for sample in kept
                if any(re.search(selector, sample) for d in declaration for selector in d["metric_selectors"])}
    return kept


def _walk(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)
    else:
        yield value


def referenced_samples(cloud: str, plan) -> set[str]:
    """Every vLLM sample name (and per-key counter of fleet/usage.py) that the stack's planned policies, dashboard and
    alarms read, as the Prometheus sample it comes from: what must exist on the real server's /metrics."""
    from components.aws import monitoring as aws
    from components.azure import monitoring as azure
    from fleet import usage

    counters = {c.name for c in usage.KEY_COUNTERS}

    def azure_sample(name: str) -> str:
        return name if name in counters else "vllm:" + name.removeprefix("vllm_").removesuffix("_rate")

    found: set[str] = set()
    if cloud == "aws":
        def metric_names(value):  # {namespace, metricName} objects and the dashboard's [namespace, name, ...] rows
            if isinstance(value, dict):
                if value.get("namespace") == aws.NAMESPACE:
                    found.add(value["metricName"])
                for item in value.values():
                    metric_names(item)
            elif isinstance(value, list):
                if len(value) > 1 and value[0] == aws.NAMESPACE:
                    found.add(value[1])
                for item in value:
                    metric_names(item)

        for step in plan.steps:
            inputs = step["newState"]["inputs"]
            if step["type"] == "aws:cloudwatch/dashboard:Dashboard":
                # the per-key panels search the counters by name
                found.update(re.findall(r'MetricName="([^"]+)"', inputs["dashboardBody"].replace('\\"', '"')))
                inputs = json.loads(inputs["dashboardBody"])
            metric_names(inputs)
        return found
    for step in plan.steps:
        if step["type"] == "gcp:compute/instanceTemplate:InstanceTemplate":
            continue  # the agent's configuration in the user-data: kept_by reads it
        for text in _walk(step["newState"]["inputs"]):
            if not isinstance(text, str):
                continue
            if cloud == "gcp":
                found |= set(re.findall(r"(?<![\w:])vllm:[A-Za-z0-9_:]+", text))
                found |= {name for name in re.findall(r"\bvllm_fleet_key_[a-z_]+", text) if name in counters}
            elif cloud == "azure" and re.fullmatch(r"vllm_[a-z0-9_]+", text) and step["type"] != "azure-native:portal:Dashboard":
                found.add(azure_sample(text))
    if cloud == "azure":  # the dashboard's parts
        for board in plan.resources("azure-native:portal:Dashboard"):
            for part in board["properties"]["lenses"][0]["parts"]:
                for spec in part["metadata"].get("inputs", []):
                    for metric in spec.get("value", {}).get("chart", {}).get("metrics", []):
                        if metric["namespace"] == azure.NAMESPACE:
                            found.add(azure_sample(metric["name"]))
    return found
