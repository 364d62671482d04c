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
