"""Autoscaling on vLLM's signals (fleet/autoscaling.py): the `autoscaling` key's errors (one ConfigError naming the
key, the value and what works), the targets from the sizing, and each cloud's planned policies reading the metrics
its agent ships (components/<cloud>/monitoring.py) with those targets; the plan says how the fleet reacts."""

from __future__ import annotations

import pytest

from components.aws import monitoring as aws
from components.azure import monitoring as azure
from components.gcp import monitoring as gcp
from conftest import config_of, run_plan, stacks_of
from fleet import autoscaling, metrics
from fleet.sizing import size
from test_spec import error_of, parse

SCALED = {"replicas": {"min": 1, "desired": 1, "max": 4}}


@pytest.mark.parametrize("changes, key, words", [
    ({"autoscaling": {"requestsPerVm": 0}}, "autoscaling.requestsPerVm", "whole number from 1 to 10000"),
    ({"autoscaling": {"requestsPerVm": 2.5}}, "autoscaling.requestsPerVm", "whole number"),
    ({"autoscaling": {"kvCacheUsage": 80}}, "autoscaling.kvCacheUsage", "0.1 to 0.99"),
    ({"autoscaling": {"kvCacheUsage": True}}, "autoscaling.kvCacheUsage", "0.1 to 0.99"),
    ({"autoscaling": {"requestsPerVM": 4}}, "autoscaling", "must be a map {requestsPerVm, kvCacheUsage}"),
    ({"autoscaling": {}}, "autoscaling", "must be a map"),
    ({"autoscaling": 4}, "autoscaling", "must be a map"),
])
def test_bad_autoscaling_values_name_the_key_and_what_works(changes, key, words):
    error = error_of(**SCALED, **changes)
    assert error.key == key and words in error.expected


def test_autoscaling_on_a_fixed_size_fleet_is_refused():
    for replicas in ({"min": 2, "max": 2}, None):
        error = error_of(autoscaling={"requestsPerVm": 4}, **({"replicas": replicas} if replicas else {}))
        assert error.key == "autoscaling" and "replicas.min is below replicas.max" in error.expected


def test_target_requests_per_minute_no_longer_scales_and_says_what_does():
    error = error_of(replicas={"min": 1, "max": 3, "targetRequestsPerMinute": 60})
    assert error.key == "replicas.targetRequestsPerMinute" and "autoscaling.requestsPerVm" in error.expected
    # on GCP it remains the load balancer's balancing capacity of a VM
    parse(cloud="gcp", region="us-central1", gcp={"project": "my-project-123"},
          replicas={"min": 1, "max": 3, "targetRequestsPerMinute": 60})


def test_targets_come_from_the_sizing_unless_the_key_sets_them():
    spec = parse(**SCALED)
    sizing = size(spec)
    targets = autoscaling.targets(spec, sizing)
    assert targets.requests_per_vm == max(1, int(sizing.requests_per_replica * autoscaling.DEFAULT_SHARE))
    assert targets.kv_cache_usage == autoscaling.DEFAULT_KV_CACHE_USAGE
    spec = parse(**SCALED, autoscaling={"requestsPerVm": 7, "kvCacheUsage": 0.6})
    assert autoscaling.targets(spec, size(spec)) == autoscaling.Targets(7, 0.6, "autoscaling.requestsPerVm")


def _targets(plan) -> tuple[int, float]:
    scaling = plan.outputs["autoscaling"]
    return scaling["requestsPerVm"], scaling["kvCacheUsage"]


@pytest.mark.parametrize("stack", stacks_of("aws"))
def test_aws_tracks_requests_in_hand_and_kv_cache_of_the_groups_average(stack, plan_of):
    plan = plan_of(stack)
    policies = plan.named("aws:autoscaling/policy:Policy")
    replicas = config_of(stack).get("replicas", {})
    if replicas.get("min", 1) == replicas.get("max", 1):
        assert policies == {} and "autoscaling" not in plan.outputs
        return
    requests, kv = _targets(plan)
    [group] = plan.resources("aws:autoscaling/group:Group")
    assert set(policies) == {f"{stack}-vllm-requests", f"{stack}-vllm-kv-cache"}
    tracking = policies[f"{stack}-vllm-requests"]["targetTrackingConfiguration"]
    assert tracking["targetValue"] == requests
    stats = {m["id"]: m for m in tracking["customizedMetricSpecification"]["metrics"]}
    assert stats["inhand"] == {"id": "inhand", "expression": "waiting + running", "returnData": True,
                               "label": "vLLM requests waiting + running, average a VM"}
    for id_, key in (("waiting", "requests_waiting"), ("running", "requests_running")):
        metric = stats[id_]["metricStat"]["metric"]
        assert stats[id_]["metricStat"]["stat"] == "Average" and not stats[id_]["returnData"]
        assert metric == {"namespace": aws.NAMESPACE, "metricName": aws.metric_name(metrics.metric(key)),
                          "dimensions": [{"name": aws.DIMENSION, "value": group["name"]}]}
    kv_tracking = policies[f"{stack}-vllm-kv-cache"]["targetTrackingConfiguration"]
    assert kv_tracking["targetValue"] == kv
    assert kv_tracking["customizedMetricSpecification"]["metricName"] == "vllm:kv_cache_usage_perc"
    assert "predefinedMetricSpecification" not in tracking  # the request-rate policy is gone
    assert "desiredCapacity" in plan.options_of("aws:autoscaling/group:Group")["ignoreChanges"]


@pytest.mark.parametrize("stack", stacks_of("gcp"))
def test_gcp_scales_on_per_group_metrics_of_the_stacks_job(stack, plan_of):
    plan = plan_of(stack)
    [autoscaler] = plan.resources("gcp:compute/regionAutoscaler:RegionAutoscaler") or [None]
    if autoscaler is None or "autoscaling" not in plan.outputs:
        return
    requests, kv = _targets(plan)
    policy = autoscaler["autoscalingPolicy"]
    assert "loadBalancingUtilization" not in policy
    assert {(m["name"], m["singleInstanceAssignment"]) for m in policy["metrics"]} == {
        (gcp.metric_type(metrics.metric("requests_running")), requests),
        (gcp.metric_type(metrics.metric("requests_waiting")), requests),
        (gcp.metric_type(metrics.metric("kv_cache_usage")), kv)}
    assert all(m["filter"] == f'resource.type = "prometheus_target" AND resource.labels.job = "vllm-fleet-{stack}"'
               for m in policy["metrics"])


@pytest.mark.parametrize("stack", stacks_of("azure"))
def test_azure_rules_read_the_scale_sets_custom_metrics(stack, plan_of):
    plan = plan_of(stack)
    setting = plan.one("azure-native:monitor:AutoscaleSetting")
    [default] = [p for p in setting["profiles"] if p["name"] == "replicas"]
    if "autoscaling" not in plan.outputs:
        assert default["rules"] == []
        return
    requests, kv = _targets(plan)
    triggers = [(r["metricTrigger"], r["scaleAction"]["direction"]) for r in default["rules"]]
    assert {t["metricNamespace"] for t, _ in triggers} == {azure.NAMESPACE}
    assert {t["metricResourceUri"] for t, _ in triggers} == {setting["targetResourceUri"]}
    out = {t["metricName"]: t["threshold"] for t, direction in triggers if direction == "Increase"}
    assert out == {azure.metric_name(metrics.metric("requests_running")): requests,
                   azure.metric_name(metrics.metric("requests_waiting")): 1,
                   azure.metric_name(metrics.metric("kv_cache_usage")): kv}
    assert {t["metricName"] for t, direction in triggers if direction == "Decrease"} == set(out)


def test_the_plan_says_period_targets_warmup_and_time_to_capacity(stack_file):
    result = run_plan(stack_file({**config_of("codellama-dev"), "replicas": {"min": 1, "max": 3},
                                  "autoscaling": {"requestsPerVm": 5}}), "text")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "Autoscaling on vLLM's signals: requests waiting + running at 5 a VM (autoscaling.requestsPerVm)" in text
    assert "metric period 60 s" in text and "warm-up" in text and "adds serving capacity in ~" in text
