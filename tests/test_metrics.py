"""vLLM's metrics into each cloud's monitoring (fleet/metrics.py, components/<cloud>/monitoring.py), as every
stack plans them: the agents' configurations in their documented shape (the CloudWatch agent's JSON and Prometheus
scrape file, the Ops Agent's config.yaml, Telegraf's TOML), the VMs' identity allowed to publish exactly that, and
/metrics still refused at every edge. The serving proof (tests/serving/test_metrics_exist.py) runs the same
configurations against the real server's /metrics."""

from __future__ import annotations

import json
import re
import tomllib

import pytest
import yaml

import components
from components.aws import monitoring as aws
from components.azure import monitoring as azure
from components.gcp import monitoring as gcp
from components.monitoring import METRICS_SCRIPT, METRICS_UNIT
from conftest import config_of, stacks_of, write_files
from fleet import metrics, serving, usage
from metrics_configs import agent_files, scrape_jobs


def test_the_list_names_each_metric_once_with_a_known_type():
    assert len({m.key for m in metrics.METRICS}) == len({m.family for m in metrics.METRICS}) == len(metrics.METRICS)
    assert all(m.type in metrics.TYPES and m.family.startswith("vllm:") for m in metrics.METRICS)
    assert {"requests_waiting", "requests_running", "kv_cache_usage", "ttft", "tpot", "prompt_tokens",
            "generation_tokens", "preemptions"} <= set(metrics.BY_KEY)


def test_the_monitoring_names_the_counters_labels_as_the_vms_label_them():
    """The agents keep each Prometheus label as the dimension of the same name: what make usage reads as `key` and
    `status` is the counters' own labels."""
    labels = {label for counter in usage.KEY_COUNTERS for label in counter.labels}
    assert labels == {"key", "status"}
    for names in usage.MONITORING.values():
        assert all(names[label] == label for label in labels)


def test_a_scrape_keeps_a_sample_only_by_its_whole_name():
    regex = metrics.samples_regex()
    assert re.fullmatch(regex, "vllm:num_requests_waiting")
    assert re.fullmatch(regex, "vllm:time_to_first_token_seconds_bucket")
    for other in ("vllm:num_requests_waiting_by_reason", "vllm:prompt_tokens_cached_total", "vllm:prompt_tokens"):
        assert not re.fullmatch(regex, other), other


@pytest.mark.parametrize("stack", stacks_of())
def test_each_vm_runs_its_clouds_agent_apart_from_serving(stack, plan_of):
    plan = plan_of(stack)
    files = write_files(plan.user_data)
    unit = files[f"/etc/systemd/system/{METRICS_UNIT}"]["content"]
    assert f"ExecStart={METRICS_SCRIPT}" in unit and "Restart=on-failure" in unit
    assert "vllm" not in re.findall(r"^(?:Requires|Before|RequiredBy)=(.*)$", unit, re.M)  # serving never waits
    assert files[METRICS_SCRIPT]["permissions"] == "0755"
    for job in scrape_jobs(config_of(stack)["cloud"], agent_files(plan)) if config_of(stack)["cloud"] != "azure" else []:
        assert job["job_name"] == f"vllm-fleet-{stack}"
        assert job["metrics_path"] == metrics.METRICS_PATH
        assert job["static_configs"][0]["targets"] == [f"127.0.0.1:{serving.SERVE_PORT}"]
        assert job["scrape_interval"] == f"{metrics.SCRAPE_SECONDS}s"


@pytest.mark.parametrize("stack", stacks_of("aws"))
def test_aws_cloudwatch_agent_config_and_the_role_that_lets_it_publish(stack, plan_of):
    plan = plan_of(stack)
    files = agent_files(plan)
    config = json.loads(files[aws.AGENT_CONFIG])
    assert set(config) == {"agent", "logs"} and config["agent"]["region"] == config_of(stack)["region"]
    prometheus = config["logs"]["metrics_collected"]["prometheus"]
    assert set(prometheus) == {"log_group_name", "prometheus_config_path", "emf_processor"}
    assert prometheus["prometheus_config_path"].endswith(aws.PROMETHEUS_CONFIG)
    [group] = plan.resources("aws:cloudwatch/logGroup:LogGroup")
    assert prometheus["log_group_name"] == group["name"] and group["retentionInDays"] == aws.LOG_RETENTION_DAYS
    emf = prometheus["emf_processor"]
    assert emf["metric_namespace"] == aws.NAMESPACE
    declaration, *per_key = emf["metric_declaration"]
    assert all(set(d) == {"source_labels", "label_matcher", "dimensions", "metric_selectors"}
               for d in emf["metric_declaration"])
    assert declaration["dimensions"] == [[aws.DIMENSION]]
    [job] = scrape_jobs("aws", files)
    assert all(re.fullmatch(d["label_matcher"], job["job_name"]) for d in emf["metric_declaration"])
    # the dimension's value is the group's name, which the policies and alarms name; the stack's is make usage's
    [asg] = plan.resources("aws:autoscaling/group:Group")
    assert job["static_configs"][0]["labels"] == {aws.DIMENSION: asg["name"], aws.NAMES["stack"]: stack}
    # each per-key counter under the name and the dimensions make usage reads (cli/usage.py: fleet/usage.py)
    names = usage.MONITORING["aws"]
    assert emf["metric_namespace"] == names["namespace"]
    dimensions = {usage.metric_name("aws", counter): d["dimensions"] for counter in usage.KEY_COUNTERS
                  for d in per_key if any(re.search(sel, counter.name) for sel in d["metric_selectors"])}
    assert dimensions == {usage.metric_name("aws", c): [[names["stack"], *(names[label] for label in c.labels)]]
                          for c in usage.KEY_COUNTERS}
    assert dimensions[usage.metric_name("aws", usage.ERRORS)] == [["Stack", "key", "status"]]
    assert all(re.fullmatch(job["metric_relabel_configs"][0]["regex"], c.name) for c in usage.KEY_COUNTERS)
    [publish] = [p for name, p in plan.named("aws:iam/rolePolicy:RolePolicy").items() if name.endswith("-publish-metrics")]
    [statement] = json.loads(publish["policy"])["Statement"]
    assert statement["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    assert all(arn.startswith("arn:aws:logs:") and group["name"] in arn for arn in statement["Resource"])


@pytest.mark.parametrize("stack", stacks_of("gcp"))
def test_gcp_ops_agent_config_and_the_metric_writer_grant(stack, plan_of):
    plan = plan_of(stack)
    config = yaml.safe_load(agent_files(plan)[gcp.AGENT_CONFIG])
    assert set(config) == {"logging", "metrics"}
    assert config["logging"]["service"]["pipelines"] == {"default_pipeline": {"receivers": []}}
    assert config["metrics"]["receivers"]["vllm"]["type"] == "prometheus"
    assert config["metrics"]["service"]["pipelines"] == {"default_pipeline": {"receivers": []},
                                                         "vllm": {"receivers": ["vllm"]}}
    # the per-key counters kept, their labels metric labels, and the stack's name the label make usage filters on
    [job] = scrape_jobs("gcp", agent_files(plan))
    assert job["static_configs"][0]["labels"] == {usage.MONITORING["gcp"]["stack"]: stack}
    assert all(re.fullmatch(job["metric_relabel_configs"][0]["regex"], c.name) for c in usage.KEY_COUNTERS)
    assert "metric_relabel_configs" in job and len(job["metric_relabel_configs"]) == 1  # no label dropped
    assert {usage.metric_name("gcp", c) for c in usage.KEY_COUNTERS} == {
        f"prometheus.googleapis.com/{c.name}/counter" for c in usage.KEY_COUNTERS}  # the receiver's naming
    [grant] = plan.resources("gcp:projects/iAMMember:IAMMember")
    assert grant["role"] == "roles/monitoring.metricWriter" and grant["member"].startswith("serviceAccount:")


@pytest.mark.parametrize("stack", stacks_of("azure"))
def test_azure_telegraf_config_and_the_publisher_role_on_the_scale_set(stack, plan_of):
    plan = plan_of(stack)
    telegraf = tomllib.loads(agent_files(plan)[azure.AGENT_CONFIG])
    [scrape] = telegraf["inputs"]["prometheus"]
    assert scrape["urls"] == [f"http://127.0.0.1:{serving.SERVE_PORT}{metrics.METRICS_PATH}"]
    assert scrape["metric_version"] == 2
    assert telegraf["outputs"]["azure_monitor"][0]["namespace_prefix"] == azure.NAMESPACE_PREFIX
    # the per-key counters: kept, their labels not excluded (tags are dimensions), as increases, in the namespace
    # and under the names make usage reads
    assert {c.name for c in usage.KEY_COUNTERS} <= set(scrape["fieldinclude"])
    assert not {label for c in usage.KEY_COUNTERS for label in c.labels} & set(scrape["tagexclude"])
    assert azure.NAMESPACE_PREFIX + azure.MEASUREMENT == usage.MONITORING["azure"]["namespace"]
    [increases] = telegraf["processors"]["starlark"]
    assert increases["namepass"] == [azure.MEASUREMENT]
    assert f"INCREASES = {json.dumps([usage.metric_name('azure', c) for c in usage.KEY_COUNTERS])}" in increases[
        "source"]
    assert [usage.metric_name("azure", c) for c in usage.KEY_COUNTERS] == [c.name for c in usage.KEY_COUNTERS]
    [rates] = telegraf["aggregators"]["derivative"]
    assert {f"{field}{rates['suffix']}" for field in rates["fieldinclude"]} == {
        azure.metric_name(m) for m in azure.SHIPPED if m.type == "counter"}
    [publish] = [a for name, a in plan.named("azure-native:authorization:RoleAssignment").items()
                 if name.endswith("-publish-metrics")]
    assert publish["roleDefinitionId"].endswith(azure.MONITORING_METRICS_PUBLISHER)
    # the scale set itself, whose id the autoscale setting targets
    assert publish["scope"] == plan.one("azure-native:monitor:AutoscaleSetting")["targetResourceUri"]


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_metrics_stays_refused_at_the_edge(cloud, plan_of):
    plan = plan_of(stacks_of(cloud)[0])
    resources = [(step["type"], step["newState"]["inputs"]) for step in plan.steps]
    answer = components.load(cloud).edge_answer(resources, "GET", metrics.METRICS_PATH)
    assert answer is not None and answer >= 400


def test_a_gcp_deploy_account_may_grant_only_the_metric_writer_role_in_the_project():
    """The project-level grant (gcp:projects/iAMMember) needs setIamPolicy on the project: the deploy account's
    condition lets it through only when every role it changes is the VMs' metric writer."""
    from deployer.gcp import stack_condition
    from fleet.iam_names import GCP_METRIC_WRITER_ROLE

    condition = stack_condition("codellama-gcp", "123456789012", "my-gcp-project", None)
    assert (f"(resource.type != 'cloudresourcemanager.googleapis.com/Project' || api.getAttribute("
            f"'iam.googleapis.com/modifiedGrantsByRole', []).hasOnly(['{GCP_METRIC_WRITER_ROLE}']))") in condition
    assert GCP_METRIC_WRITER_ROLE == gcp.METRIC_WRITER
