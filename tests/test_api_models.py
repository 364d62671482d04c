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

from api_models import aws, azure, core, gcp
from conftest import ROOT, stack_cloud, STACK_FILES, stack_name

MODELS = {"aws": aws.AwsModel(core.autoname), "gcp": gcp.GcpModel(core.autoname),
          "azure": azure.AzureModel(azure.autoname)}
RESOURCES = {"aws": aws.RESOURCES, "gcp": gcp.RESOURCES, "azure": azure.RESOURCES}
UNMODELLED = {"azure": azure.UNMODELLED}  # types no API model of the called version describes, and why
TYPE_PREFIX = {"aws": "aws:", "gcp": "gcp:", "azure": "azure-native:"}  # each cloud's provider package
# Planned types that are no request to a cloud: the program's own components and random values made locally.
NOT_CLOUD = {"random:index/randomPassword:RandomPassword": "a value the random provider makes on this machine",
             "random:index/randomString:RandomString": "a value the random provider makes on this machine"}

AZURE_GROUP = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups"
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
                   "keys": {"alice": {"requestsPerMinute": 1200}}},
    "alerts": {"email": "oncall@example.com"}}  # the alarms' topic, notification channel, action group
GENERATED = {
    f"{LONG_NAME}-aws": {"cloud": "aws", "region": "us-east-1", **EVERY_OPTION, "onDemandBase": 1,
                         "domain": "llm.example.com", "dnsZone": "Z0123456789ABCDEFGHIJ", "wakeOnRequest": True},
    # GCP: standard VMs (autohealing, the standby pool's delay; stacks/ has a Spot stack), an own image
    f"{LONG_NAME}-gcp": {"cloud": "gcp", "region": "us-central1", **EVERY_OPTION, "spot": False,
                         "domain": "llm.example.com", "dnsZone": "example-com", "model": "gs://team-models/codellama-7b",
                         "modelParams": {"like": "codellama/CodeLlama-7b-Instruct-hf"},
                         "gcp": {"project": "my-gcp-project-123", "iapSsh": True,
                                 "zones": ["us-central1-a", "us-central1-b"],
                                 "image": "projects/my-gcp-project/global/images/family/vllm-gpu"}},
    # Azure: an existing resource group and virtual network, an own image, a Key Vault certificate, a DNS record
    f"{LONG_NAME}-azure": {
        "cloud": "azure", "region": "eastus", **EVERY_OPTION, "domain": "llm.example.com",
        "certificate": "https://platform-tls.vault.azure.net/secrets/llm-example-com",
        "dnsZone": f"{AZURE_GROUP}/dns/providers/Microsoft.Network/dnszones/example.com",
        "model": "az://teammodels/models/codellama-7b", "modelParams": {"like": "codellama/CodeLlama-7b-Instruct-hf"},
        "azure": {"certificateVaultId": f"{AZURE_GROUP}/platform-tls/providers/Microsoft.KeyVault/vaults/platform-tls",
                  "modelStorageAccountId":
                      f"{AZURE_GROUP}/models/providers/Microsoft.Storage/storageAccounts/teammodels",
                  "resourceGroupName": "platform-llm", "gatewaySubnetCidr": "10.20.1.0/24",
                  "vmSubnetCidr": "10.20.8.0/22",
                  "virtualNetworkId": f"{AZURE_GROUP}/net/providers/Microsoft.Network/virtualNetworks/hub",
                  "image": "canonical:ubuntu-24_04-lts:server:latest"}},
    "aws-existing-network": {
        "cloud": "aws", "region": "us-west-2", **EVERY_OPTION, "spot": False, "domain": "llm.example.com",
        "certificate": "arn:aws:acm:us-west-2:123456789012:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        "aws": {"vpcId": "vpc-0123456789abcdef0", "internal": True, "amiId": "ami-0123456789abcdef0",
                "publicSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
                "privateSubnetIds": ["subnet-0123456789abcdef2", "subnet-0123456789abcdef3"]}},
}


def cloud_of(preview: dict) -> str | None:
    return next((c for c in MODELS for s in preview["steps"] if s["type"].startswith(TYPE_PREFIX[c])), None)


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
        if step["type"] in UNMODELLED.get(cloud, {}):
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


def renamed(logical: str):
    return lambda step: step.update(urn=step["urn"].rsplit("::", 1)[0] + "::" + logical)


def inputs(change):
    return lambda step: change(step["newState"]["inputs"])


def test_the_aws_model_refuses_what_aws_refuses(plans):
    """The check can fail: each mutation below is one the real API refuses, and the model says so."""
    plan = plans["codellama-prod"]
    assert problems_of(plan) == []
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
    assert changed(plan, schedule, renamed("s" * 56)) == []
    assert any("autonamed: scheduler CreateSchedule.Name" in p and "over its maximum 64" in p for p in changed(
        plan, schedule, renamed("s" * 57)))
    # a pattern: an IAM role name takes no spaces
    assert any("RoleName" in p and "does not match" in p for p in changed(
        plan, "aws:iam/role:Role", renamed("gpu role")))
    # a required member: a schedule without its expression
    assert any("CreateSchedule.ScheduleExpression is required" in p for p in changed(
        plan, schedule, inputs(lambda i: i.pop("scheduleExpression"))))
    # an input nobody mapped: a new input forces the question of where it goes
    assert any("input loadBalancingCrossZoneEnabled has no mapping" in p for p in changed(
        plan, "aws:lb/targetGroup:TargetGroup", inputs(lambda i: i.update(loadBalancingCrossZoneEnabled=True))))
    # a resource type nobody mapped
    assert any("no mapping of this resource type" in p for p in changed(
        plan, "aws:lb/listenerRule:ListenerRule", lambda s: s.update(type="aws:lb/listenerRule:NewRule")))


def test_the_gcp_model_refuses_what_gcp_refuses(plans):
    """As for AWS: each mutation is one Compute Engine, IAM or Secret Manager refuses, and the model says so."""
    plan = plans["codellama-gcp"]
    assert problems_of(plan) == []
    template = "gcp:compute/instanceTemplate:InstanceTemplate"
    group = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
    # an enum: the VMs' provisioning model
    assert any("scheduling.provisioningModel = 'PREEMPTIBLE' is none of" in p for p in changed(
        plan, template, inputs(lambda i: i["scheduling"].update(provisioningModel="PREEMPTIBLE"))))
    # a range: an int32 field
    assert any("updatePolicy.maxSurge.fixed = 2147483648, over its maximum" in p for p in changed(
        plan, group, inputs(lambda i: i["updatePolicy"].update(maxSurgeFixed=2**31))))
    # an int64 field (a decimal string on the wire) takes whole numbers only
    assert any("initializeParams.diskSizeGb wants an integer" in p for p in changed(
        plan, template, inputs(lambda i: i["disks"][0].update(diskSizeGb=150.5))))
    # a name one character too long: Compute Engine names are RFC 1035, at most 63 (autonamed: + 8)
    check = "gcp:compute/healthCheck:HealthCheck"
    assert changed(plan, check, renamed("h" * 55)) == []
    assert any("autonamed: compute healthChecks/insert.name" in p and "over its maximum 63" in p
               for p in changed(plan, check, renamed("h" * 56)))
    assert any("does not match [a-z]" in p for p in changed(plan, check, renamed("Health")))
    # what only the description says: a service account id is 6-30 characters
    assert any("accountId 'vllm' has 4 characters, under its minimum 6" in p for p in changed(
        plan, "gcp:serviceaccount/account:Account", inputs(lambda i: i.update(accountId="vllm"))))
    # and a Secret Manager secret id of at most 255 characters
    assert any("create parameters.secretId" in p and "over its maximum 255" in p for p in changed(
        plan, "gcp:secretmanager/secret:Secret", inputs(lambda i: i.update(secretId="k" * 256))))
    # a URL parameter's pattern: the region
    assert any("parameters.region 'US-central1' does not match" in p for p in changed(
        plan, "gcp:compute/subnetwork:Subnetwork", inputs(lambda i: i.update(region="US-central1"))))
    # a required member, and an output-only one
    assert any("regionInstanceGroupManagers/insert.targetSize is required" in p for p in changed(
        plan, group, inputs(lambda i: i.pop("targetSize"))))
    assert any("networks/insert.selfLink is read-only" in p for p in changed(
        plan, "gcp:compute/network:Network", inputs(lambda i: i.update(selfLink="x"))))
    # what only the descriptions say: autohealing waits at most 3600 s, a schedule lasts at least 300 s, a firewall
    # priority is at most 65535, a named port's name complies with RFC 1035
    assert any("autoHealingPolicies[].initialDelaySec = 3601, over its maximum 3600" in p for p in changed(
        plan, group, inputs(lambda i: i.update(autoHealingPolicies={"healthCheck": "x", "initialDelaySec": 3601}))))
    assert any("scalingSchedules{}.durationSec = 299, under its minimum 300" in p for p in changed(
        plan, "gcp:compute/regionAutoscaler:RegionAutoscaler",
        inputs(lambda i: i["autoscalingPolicy"]["scalingSchedules"][0].update(durationSec=299))))
    assert any("firewalls/insert.priority = 65536, over its maximum 65535" in p for p in changed(
        plan, "gcp:compute/firewall:Firewall", inputs(lambda i: i.update(priority=65536))))
    assert any("setNamedPorts.namedPorts[].name 'HTTP' does not match" in p for p in changed(
        plan, group, inputs(lambda i: i["namedPorts"][0].update(name="HTTP"))))
    # a changed value is walked where it goes: the scaling schedules become a map of schedules
    assert any("scalingSchedules{}.durationSec wants an integer" in p for p in changed(
        plan, "gcp:compute/regionAutoscaler:RegionAutoscaler",
        inputs(lambda i: i["autoscalingPolicy"]["scalingSchedules"][0].update(durationSec="12h"))))
    # the custom metrics the autoscaler follows, and the dashboard's JSON, walked as the request they become
    assert any("customMetricUtilizations[].utilizationTargetType = 'GAUGES' is none of" in p for p in changed(
        plan, "gcp:compute/regionAutoscaler:RegionAutoscaler",
        inputs(lambda i: i["autoscalingPolicy"]["metrics"][0].update(type="GAUGES"))))

    def plot_type(i):
        board = json.loads(i["dashboardJson"])
        board["mosaicLayout"]["tiles"][0]["widget"]["xyChart"]["dataSets"][0]["plotType"] = "LINES"
        i["dashboardJson"] = json.dumps(board)
    assert any("dataSets[].plotType = 'LINES' is none of" in p for p in changed(
        plan, "gcp:monitoring/dashboard:Dashboard", inputs(plot_type)))
    assert any("alertPolicies/create.combiner = 'ANY' is none of" in p for p in changed(
        plan, "gcp:monitoring/alertPolicy:AlertPolicy", inputs(lambda i: i.update(combiner="ANY"))))
    # an input nobody mapped
    assert any("input waitForInstancesTimeout has no mapping" in p for p in changed(
        plan, group, inputs(lambda i: i.update(waitForInstancesTimeout="30m"))))


def test_the_azure_model_refuses_what_azure_refuses(plans):
    """As for AWS: each mutation is one Azure Resource Manager refuses, and the model says so."""
    plan = plans["codellama-azure"]
    assert problems_of(plan) == []
    scale_set = "azure-native:compute:VirtualMachineScaleSet"
    # an enum, whatever its case (Azure's enums are case-insensitive)
    assert changed(plan, scale_set, inputs(lambda i: i["upgradePolicy"].update(mode="rolling"))) == []
    assert any("upgradePolicy.mode = 'Rollin' is none of Automatic, Manual, Rolling" in p for p in changed(
        plan, scale_set, inputs(lambda i: i["upgradePolicy"].update(mode="Rollin"))))
    # a URL parameter's pattern: Key Vault secret names
    assert any("URL secretName 'api_keys' does not match" in p for p in changed(
        plan, "azure-native:keyvault:Secret", inputs(lambda i: i.update(secretName="api_keys"))))
    # an autonamed name one character too long: vault names are 3-24 (azure-native adds 8)
    vault = "azure-native:keyvault:Vault"
    assert changed(plan, vault, renamed("kv-" + "v" * 13)) == []
    assert any("URL vaultName" in p and "does not match" in p for p in changed(plan, vault, renamed("kv-" + "v" * 14)))
    # an ISO 8601 duration
    assert any("scaleAction.cooldown '15m' does not match" in p for p in changed(
        plan, "azure-native:monitor:AutoscaleSetting",
        inputs(lambda i: i["profiles"][0]["rules"][0]["scaleAction"].update(cooldown="15m"))))
    # a required member, and a read-only one
    assert any("VirtualMachineScaleSet.location is required" in p for p in changed(
        plan, scale_set, inputs(lambda i: i.pop("location"))))
    assert any("properties.provisioningState is read-only" in p for p in changed(
        plan, scale_set, inputs(lambda i: i.update(provisioningState="Succeeded"))))
    # a metric alert's criteria, checked as the subtype their odata.type names, and that discriminator required
    alert = "azure-native:monitor:MetricAlert"
    assert any("criteria.allOf[].operator = 'Below' is none of" in p for p in changed(
        plan, alert, inputs(lambda i: i["criteria"]["allOf"][0].update(operator="Below"))))
    assert any("MetricAlertResource.criteria.odata.type is required" in p for p in changed(
        plan, alert, inputs(lambda i: i["criteria"].pop("odataType"))))
    # an input nobody mapped
    assert any("input orchestrationModes has no mapping" in p for p in changed(
        plan, scale_set, inputs(lambda i: i.update(orchestrationModes="Uniform"))))
