"""Every planned input checked against the cloud's own API model (docs/api-models.md): for every stack of stacks/
and generated stacks (the longest names, every option set), each input of each resource is mapped to the request
field it becomes (tests/api_models/) and its value checked against that field: required members, lengths,
patterns, enums, numeric ranges, list sizes. An input with no mapping fails, so a new input forces the question.
What the models cannot express stays in tests/test_cloud_limits.py."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from api_models import aws, core
from conftest import ROOT, stack_cloud, STACK_FILES, stack_name

MODELS = {"aws": aws.AwsModel(aws.autoname)}
RESOURCES = {"aws": aws.RESOURCES}
# Planned types that are no request to a cloud: the program's own components and random values made locally.
NOT_CLOUD = {"random:index/randomPassword:RandomPassword": "a value the random provider makes on this machine",
             "random:index/randomString:RandomString": "a value the random provider makes on this machine"}

LONG_NAME = "team-platform-" + "x" * 60 + "-us-central1-production"  # Pulumi takes stack names up to 100
EVERY_OPTION = {
    "model": "codellama/CodeLlama-7b-Instruct-hf", "maxModelLen": 8192, "allowedCidrs": ["10.0.0.0/8", "192.0.2.0/24"],
    "replicas": {"min": 1, "desired": 2, "max": 3}, "spot": True,
    "officeHours": {"timezone": "Asia/Kolkata", "offHoursReplicas": 1, "windows": [
        {"days": "Mon-Fri", "start": "07:00", "end": "12:00"}, {"days": "Mon-Fri", "start": "13:00", "end": "19:00"},
        {"days": "Sat", "start": "09:00", "end": "13:00"}]},
    "tags": {"team": "platform", "cost-center": "x" * 60},
    "apiKeys": {"alice": {"secure": "v1:a"}, "bob": {"secure": "v1:b"}}, "hfToken": {"secure": "v1:h"},
    "rateLimits": {"default": {"requestsPerMinute": 600, "tokensPerMinute": 400000},
                   "keys": {"alice": {"requestsPerMinute": 1200}}}}
GENERATED = {
    f"{LONG_NAME}-aws": {"cloud": "aws", "region": "us-east-1", **EVERY_OPTION, "onDemandBase": 1,
                         "domain": "llm.example.com", "dnsZone": "Z0123456789ABCDEFGHIJ"},
    "aws-existing-network": {
        "cloud": "aws", "region": "us-west-2", **EVERY_OPTION, "spot": False, "domain": "llm.example.com",
        "certificate": "arn:aws:acm:us-west-2:123456789012:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        "aws": {"vpcId": "vpc-0123456789abcdef0", "internal": True, "amiId": "ami-0123456789abcdef0",
                "publicSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
                "privateSubnetIds": ["subnet-0123456789abcdef2", "subnet-0123456789abcdef3"]}},
}


def cloud_of(preview: dict) -> str | None:
    return next((c for c in MODELS for s in preview["steps"] if s["type"].startswith(f"{c}:")), None)


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> dict[str, dict]:
    """Every stack of stacks/ of a cloud with a model, and the generated ones, planned at once (in parallel)."""
    folder = tmp_path_factory.mktemp("stacks")
    targets = {stack_name(p): stack_name(p) for p in STACK_FILES if stack_cloud(p) in MODELS}
    for name, config in GENERATED.items():
        path = folder / f"Pulumi.{name}.yaml"
        path.write_text(json.dumps({"config": {f"vllm-fleet:{k}": v for k, v in config.items()}}))
        targets[name] = str(path)
    running = {name: subprocess.Popen([sys.executable, "-m", "cli.plan", target, "--format", "json"], cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, target in targets.items()}
    done = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, f"{name}: {err}"
        done[name] = json.loads(out)
    return done


def problems_of(preview: dict) -> list[str]:
    cloud = cloud_of(preview)
    found = []
    for step in preview["steps"]:
        if not step["newState"]["custom"] or step["type"] in NOT_CLOUD:
            continue
        resource = RESOURCES[cloud].get(step["type"])
        if resource is None:
            found.append(f"{step['type']}: no mapping of this resource type to its API (tests/api_models/{cloud}.py)")
            continue
        inputs = step["newState"]["inputs"]
        if step["type"].startswith("pulumi:providers:"):  # a provider's object inputs arrive as JSON text
            inputs = {k: json.loads(v) if isinstance(v, str) and v.startswith("{") else v for k, v in inputs.items()}
        found += core.check_resource(MODELS[cloud], resource, step["type"], step["urn"].rsplit("::", 1)[1],
                                     inputs).problems
    return found


@pytest.mark.parametrize("stack", [*(stack_name(p) for p in STACK_FILES if stack_cloud(p) in MODELS), *GENERATED])
def test_every_planned_input_is_what_the_clouds_model_accepts(stack, plans):
    assert stack in plans
    assert problems_of(plans[stack]) == []


@pytest.mark.parametrize("cloud", sorted(MODELS))
def test_every_mapping_names_a_field_of_the_model(cloud):
    """A misspelt API path would map an input to nothing: each explicit target must be a field of the model."""
    model = MODELS[cloud]
    missing = []
    for type_, resource in RESOURCES[cloud].items():
        paths = [resource.api, *([resource.name] if resource.name else []), *resource.supplied]
        for target in resource.fields.values():
            paths += {core.Pairs: lambda t: [t.key, t.value], core.Sent: lambda t: [t.path],
                      core.Attribute: lambda t: [f"{t.item}.{t.key_member}", f"{t.item}.{t.value_member}"],
                      core.Calls: lambda t: [t.api], str: lambda t: [t]}.get(type(target), lambda t: [])(target)
        missing += [f"{type_}: {p}" for p in paths if model.field(core.absolute(resource, p)) is None]
    assert missing == []


def changed(preview: dict, type_: str, change) -> list[str]:
    broken = copy.deepcopy(preview)
    step = next(s for s in broken["steps"] if s["type"] == type_)
    change(step)
    return problems_of(broken)


def test_the_aws_model_refuses_what_aws_refuses(plans):
    """The check can fail: each mutation below is one the real API refuses, and the model says so."""
    plan = plans["codellama-prod"]
    assert problems_of(plan) == []

    def inputs(change):
        return lambda step: change(step["newState"]["inputs"])

    # an enum: the warm pool's state
    assert any("PutWarmPool.PoolState = 'Sleeping' is none of" in p for p in changed(
        plan, "aws:autoscaling/group:Group", inputs(lambda i: i["warmPool"].update(poolState="Sleeping"))))
    # an enum: the target group's protocol
    assert any("CreateTargetGroup.Protocol = 'HTTPX' is none of" in p for p in changed(
        plan, "aws:lb/targetGroup:TargetGroup", inputs(lambda i: i.update(protocol="HTTPX"))))
    # a numeric range: the health check interval is 5-300 s
    assert any("HealthCheckIntervalSeconds = 301, over its maximum 300" in p for p in changed(
        plan, "aws:lb/targetGroup:TargetGroup", inputs(lambda i: i["healthCheck"].update(interval=301))))
    # a name one character too long: EventBridge Scheduler names are at most 64 (autonamed: + 8)
    schedule = "aws:scheduler/schedule:Schedule"
    assert changed(plan, schedule, lambda s: s.update(urn=s["urn"].rsplit("::", 1)[0] + "::" + "s" * 56)) == []
    assert any("autonamed: scheduler CreateSchedule.Name" in p and "over its maximum 64" in p for p in changed(
        plan, schedule, lambda s: s.update(urn=s["urn"].rsplit("::", 1)[0] + "::" + "s" * 57)))
    # a pattern: an IAM role name takes no spaces
    assert any("RoleName" in p and "does not match" in p for p in changed(
        plan, "aws:iam/role:Role", lambda s: s.update(urn=s["urn"].rsplit("::", 1)[0] + "::" + "gpu role")))
    # a required member: a schedule without its expression
    assert any("CreateSchedule.ScheduleExpression is required" in p for p in changed(
        plan, schedule, inputs(lambda i: i.pop("scheduleExpression"))))
    # an input nobody mapped: a new input forces the question of where it goes
    assert any("input loadBalancingCrossZoneEnabled has no mapping" in p for p in changed(
        plan, "aws:lb/targetGroup:TargetGroup", inputs(lambda i: i.update(loadBalancingCrossZoneEnabled=True))))
    # a resource type nobody mapped
    assert any("no mapping of this resource type" in p for p in changed(
        plan, "aws:lb/listenerRule:ListenerRule", lambda s: s.update(type="aws:lb/listenerRule:NewRule")))
