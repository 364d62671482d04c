"""What the real providers and cloud APIs refuse, which Pulumi's mocks accept: every bounded input a stack sets,
checked against the documented range, for the repository's stacks, for the largest model the catalog sizes on each
cloud, and for the longest stack names. Each rule names where it is documented.

Names: Pulumi autonames a resource `<logical name>` + a random suffix (AWS and GCP: "-" and 7 hex digits; Azure
Native: 8 hex digits) and never shortens it; the suffix counts against the cloud's limit.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from typing import Any, Callable

import pytest

from conftest import PlannedStack, run_plan, stacks_of

SUFFIX = {"aws": 8, "gcp": 8, "azure": 8}
BIGGEST = "mistralai/Mixtral-8x22B-Instruct-v0.1"  # 263 GiB of weights: the longest time to serve
# officeHours with as many windows as it takes: each cloud's scheduler's limits at their fullest.
MOST_WINDOWS = {"timezone": "Asia/Kolkata", "windows": [
    {"days": "Mon-Fri", "start": "07:00", "end": "12:00"}, {"days": "Mon-Fri", "start": "13:00", "end": "19:00"},
    {"days": "Sat", "start": "09:00", "end": "13:00"}, {"days": "Sun", "start": "10:00", "end": "12:00"},
    *({"days": day, "start": "20:00", "end": "22:30"} for day in ("Mon", "Tue", "Wed", "Thu"))]}
LONG_NAME = "team-platform-" + "x" * 60 + "-us-central1-production"  # Pulumi takes stack names up to 100


def logical(step: dict) -> str:
    return step["urn"].rsplit("::", 1)[1]


def autonamed(step: dict, cloud: str) -> str:
    """The name the provider gives a resource that sets none: the longest it can be."""
    return logical(step) + "x" * SUFFIX[cloud]


Rule = Callable[[PlannedStack], list[str]]


def each(type_: str, check: Callable[[dict, dict], str | None]) -> Rule:
    def rule(plan: PlannedStack) -> list[str]:
        return [f"{type_} {logical(step)}: {problem}" for step in plan.steps if step["type"] == type_
                if (problem := check(step, step["newState"]["inputs"]))]
    return rule


def within(value: Any, lo: float, hi: float, what: str) -> str | None:
    return None if value is not None and lo <= float(value) <= hi else f"{what} = {value!r}, not in {lo}..{hi}"


def name_rule(pattern: str, most: int, cloud: str, source: str) -> Callable[[dict, dict], str | None]:
    def check(step: dict, inputs: dict) -> str | None:
        name = autonamed(step, cloud)
        if len(name) > most or not re.fullmatch(pattern, name):
            return f"autonamed {name!r} ({len(name)}) breaks {pattern} / {most} ({source})"
        return None
    return check


# --- AWS ---------------------------------------------------------------------------------------------------
ALB_NAME = r"(?!internal-)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
AWS_RULES: list[Rule] = [
    # CreateLoadBalancer / CreateTargetGroup: 32, alphanumerics and hyphens, not starting or ending with "-"
    each("aws:lb/loadBalancer:LoadBalancer", name_rule(ALB_NAME, 32, "aws", "API_CreateLoadBalancer")),
    each("aws:lb/targetGroup:TargetGroup", name_rule(ALB_NAME, 32, "aws", "API_CreateTargetGroup")),
    each("aws:iam/role:Role", name_rule(r"[\w+=,.@-]+", 64, "aws", "IAM quotas: role names 64")),
    each("aws:iam/instanceProfile:InstanceProfile", name_rule(r"[\w+=,.@-]+", 128, "aws", "IAM quotas")),
    each("aws:ec2/launchTemplate:LaunchTemplate", name_rule(r"[0-9A-Za-z()./_-]{3,}", 125, "aws",
                                                             "terraform-provider-aws ValidLaunchTemplateName")),
    # ELBv2 LoadBalancerAttribute idle_timeout.timeout_seconds: 1-4000
    each("aws:lb/loadBalancer:LoadBalancer", lambda s, i: within(i["idleTimeout"], 1, 4000, "idleTimeout")),
    # TargetGroup: deregistration 0-3600, health check interval 5-300, timeout 2-120, thresholds 2-10
    each("aws:lb/targetGroup:TargetGroup", lambda s, i: within(i["deregistrationDelay"], 0, 3600, "deregistration")
         or within(i["healthCheck"]["interval"], 5, 300, "interval") or within(i["healthCheck"]["timeout"], 2, 120,
         "timeout") or within(i["healthCheck"]["healthyThreshold"], 2, 10, "healthy")
         or within(i["healthCheck"]["unhealthyThreshold"], 2, 10, "unhealthy")),
    # Listener rules: priority 1-50000; a path-pattern condition holds at most 3 values (patterns or regular
    # expressions) of at most 128 characters
    each("aws:lb/listenerRule:ListenerRule", lambda s, i: within(i["priority"], 1, 50000, "priority") or next(
        (f"path-pattern {values}" for c in i["conditions"] if "pathPattern" in c
         for values in [c["pathPattern"].get("values", []) + c["pathPattern"].get("regexValues", [])]
         if len(values) > 3 or max(map(len, values)) > 128), None)),
    # FixedResponseActionConfig: 2XX/4XX/5XX, five content types, a body of at most 1024 characters
    each("aws:lb/listener:Listener", lambda s, i: next(
        (f"fixed response {a['fixedResponse']}" for a in i["defaultActions"] if a["type"] == "fixed-response" and (
            not re.fullmatch(r"[245]\d\d", a["fixedResponse"]["statusCode"])
            or a["fixedResponse"]["contentType"] not in ("text/plain", "text/css", "text/html",
                                                         "application/javascript", "application/json")
            or len(a["fixedResponse"].get("messageBody", "")) > 1024)), None)),
    # Amazon EC2 Auto Scaling: default instance warmup 0-3600; refresh min 0-100, max 100-200, at most 100 apart
    each("aws:autoscaling/group:Group", lambda s, i: within(i["defaultInstanceWarmup"], 0, 3600, "warmup")
         or within(i["instanceRefresh"]["preferences"]["minHealthyPercentage"], 0, 100, "min healthy")
         or within(i["instanceRefresh"]["preferences"]["maxHealthyPercentage"], 100, 200, "max healthy")
         or within(i["maxSize"], i["minSize"], 10000, "maxSize")
         or (None if len((i.get("mixedInstancesPolicy") or {}).get("launchTemplate", {}).get("overrides", [])) <= 40
             else "more than 40 instance types")),
    # gp3: 125-2000 MiB/s at most 0.25 MiB/s per IOPS; 3000-80000 IOPS at most 500 per GiB
    each("aws:ec2/launchTemplate:LaunchTemplate", lambda s, i: next(
        (f"gp3 {m['ebs']}" for m in i["blockDeviceMappings"] if not (
            125 <= m["ebs"]["throughput"] <= min(2000, 0.25 * m["ebs"]["iops"])
            and 3000 <= m["ebs"]["iops"] <= min(80000, 500 * m["ebs"]["volumeSize"]))), None)),
    # EC2 user data: 16 KB before base64
    each("aws:ec2/launchTemplate:LaunchTemplate",
         lambda s, i: None if len(base64.b64decode(i["userData"])) <= 16384 else "user data over 16 KB"),
    # Office hours. Scheduled actions: at most 125 a group (Auto Scaling quotas); a size of -1 keeps it (only the
    # provider's sentinel), else 0-10000. Lifecycle hooks: heartbeat 30-7200 s (LifecycleHookSpecification). Warm
    # pools: Stopped, Running or Hibernated (PutWarmPool).
    lambda plan: [] if len(plan.resources("aws:autoscaling/schedule:Schedule")) <= 125 else ["over 125 actions"],
    each("aws:autoscaling/schedule:Schedule", lambda s, i: next(
        (f"{k} = {i[k]}" for k in ("minSize", "maxSize", "desiredCapacity") if not -1 <= i[k] <= 10000), None)
         or (None if len(i["recurrence"].split()) == 5 and len(i["scheduledActionName"]) <= 255
             else f"recurrence {i['recurrence']!r}")),
    each("aws:autoscaling/lifecycleHook:LifecycleHook", lambda s, i: within(i["heartbeatTimeout"], 30, 7200,
                                                                              "heartbeatTimeout")),
    each("aws:autoscaling/group:Group", lambda s, i: next(
        (f"hook {h}" for h in i.get("initialLifecycleHooks") or [] if not 30 <= h["heartbeatTimeout"] <= 7200), None)
         or (None if (i.get("warmPool") or {}).get("poolState", "Stopped") in ("Stopped", "Running", "Hibernated")
             else "warm pool state")
         or (None if len(i.get("name", "x")) <= 255 else "group name over 255")),
    # EventBridge Scheduler (botocore's scheduler model): names 1-64 of [0-9a-zA-Z-_.], descriptions at most 512,
    # time zones at most 50; cron() of six fields with ? for one of the days; target input a JSON document; a fixed
    # response body at most 1024 characters (FixedResponseActionConfig)
    each("aws:scheduler/schedule:Schedule", name_rule(r"[0-9A-Za-z._-]+", 64, "aws", "scheduler CreateSchedule")),
    each("aws:scheduler/schedule:Schedule", lambda s, i: None if re.fullmatch(
        r"cron\(\S+ \S+ \? \* \S+ \*\)", i["scheduleExpression"]) and all(
        len(a.get("FixedResponseConfig", {}).get("MessageBody", "")) <= 1024
        for a in json.loads(i["target"]["input"])["Actions"]) and len(i.get("description", "")) <= 512
        and len(i["scheduleExpressionTimezone"]) <= 50 else f"schedule {i['scheduleExpression']}"),
    # VPC quotas: 60 inbound rules per security group
    lambda plan: [] if sum(1 for r in plan.resources("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
                           if r["securityGroupId"].endswith("-lb-id")) <= 60 else ["more than 60 inbound rules"],
]

# --- GCP ---------------------------------------------------------------------------------------------------
GCP_NAME = r"[a-z](?:[-a-z0-9]*[a-z0-9])?"
GCP_AUTONAMED = ("gcp:compute/", )
GCP_RULES: list[Rule] = [
    # Compute Engine resource names: RFC 1035, 1-63 lower-case characters
    lambda plan: [f"{s['type']} {logical(s)}: autonamed {autonamed(s, 'gcp')!r}" for s in plan.steps
                  if s["type"].startswith(GCP_AUTONAMED) and "name" not in s["newState"]["inputs"]
                  and not (len(autonamed(s, "gcp")) <= 63 and re.fullmatch(GCP_NAME, autonamed(s, "gcp")))],
    # Service accounts: 6-30 characters, [a-z]([-a-z0-9]*[a-z0-9])
    each("gcp:serviceaccount/account:Account", lambda s, i: None if re.fullmatch(GCP_NAME, i["accountId"])
         and 6 <= len(i["accountId"]) <= 30 else f"accountId {i['accountId']!r}"),
    # Secret Manager secret ids: 1-255 of [A-Za-z0-9_-]
    each("gcp:secretmanager/secret:Secret",
         lambda s, i: None if re.fullmatch(r"[\w-]{1,255}", i["secretId"]) else f"secretId {i['secretId']!r}"),
    # Autohealing initial delay 0-3600; autoscaler cool-down at most 3600 (its initialization period)
    each("gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager",
         lambda s, i: within(i["autoHealingPolicies"]["initialDelaySec"], 0, 3600, "initialDelaySec")
         if "autoHealingPolicies" in i else None),
    each("gcp:compute/regionAutoscaler:RegionAutoscaler",
         lambda s, i: within(i["autoscalingPolicy"]["cooldownPeriod"], 15, 3600, "cooldownPeriod")),
    # Cloud Armor: priority 0-2147483647, descriptions at most 64 characters, at most 10 ranges in a basic rule, at
    # most 5 subexpressions in an advanced one
    each("gcp:compute/securityPolicy:SecurityPolicy", lambda s, i: next(
        (f"rule {r}" for r in i["rules"] if not (
            0 <= r["priority"] <= 2147483647 and len(r.get("description", "")) <= 64
            and len(r["match"].get("config", {}).get("srcIpRanges", [])) <= 10
            and len(re.findall(r"request\.\w+", r["match"].get("expr", {}).get("expression", ""))) <= 5)), None)),
    # Backend service timeout 1-2147483647; labels: at most 64, keys and values at most 63
    each("gcp:compute/backendService:BackendService", lambda s, i: within(i["timeoutSec"], 1, 2**31 - 1, "timeout")),
    # Standby pools: initial delay 0-3600 s. Scaling schedules: at most 128, each at least 300 s, names RFC 1035;
    # the autoscaler's minimum at least 0
    each("gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager",
         lambda s, i: within(i["standbyPolicy"]["initialDelaySec"], 0, 3600, "standby initialDelaySec")
         if "initialDelaySec" in i.get("standbyPolicy", {}) else None),
    each("gcp:compute/regionAutoscaler:RegionAutoscaler", lambda s, i: (
        None if len(i["autoscalingPolicy"].get("scalingSchedules", [])) <= 128 else "over 128 schedules") or next(
        (f"schedule {x}" for x in i["autoscalingPolicy"].get("scalingSchedules", [])
         if x["durationSec"] < 300 or not re.fullmatch(GCP_NAME, x["name"]) or len(x["name"]) > 63), None)
        or within(i["autoscalingPolicy"]["minReplicas"], 0, i["autoscalingPolicy"]["maxReplicas"], "minReplicas")),
    # Cloud Storage bucket names: 3-63 of lower-case letters, digits, - _ ., not containing "google"
    each("gcp:storage/bucket:Bucket", lambda s, i: None if re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]",
                                                                        autonamed(s, "gcp"))
         and "google" not in autonamed(s, "gcp") else f"bucket {autonamed(s, 'gcp')!r}"),
    each("gcp:compute/instanceTemplate:InstanceTemplate", lambda s, i: next(
        (f"labels {d['labels']}" for d in i["disks"] if len(d["labels"]) > 64
         or any(len(k) > 63 or len(v) > 63 for k, v in d["labels"].items())), None)
         or (None if len(i["metadata"]["user-data"].encode()) <= 262144 else "user-data over 256 KiB")),
]

# --- Azure -------------------------------------------------------------------------------------------------
def _documented_time_zones() -> frozenset[str]:
    """The Windows time zones the azure-native SDK's RecurrentSchedule documents as valid (from its docstring)."""
    import inspect

    from pulumi_azure_native.monitor import _inputs

    text = inspect.getsource(_inputs.RecurrentScheduleArgs).split("Some examples of valid time zones are: ")[1]
    return frozenset(zone.strip() for zone in text.split("\n")[0].split(","))


AZURE_TIME_ZONES = _documented_time_zones()
AZURE_RULES: list[Rule] = [
    # Key Vault names: 3-24, a letter first, letters, digits and single hyphens, no hyphen last
    each("azure-native:keyvault:Vault", name_rule(r"[a-zA-Z](?!.*--)[a-zA-Z0-9-]{1,22}[a-zA-Z0-9]", 24, "azure",
                                                  "Key Vault naming rules")),
    each("azure-native:network:ApplicationGateway",
         lambda s, i: None if len(i["applicationGatewayName"]) <= 80 else "gateway name over 80"),
    # Public IP DNS labels: ^[a-z][a-z0-9-]{1,61}[a-z0-9]$
    each("azure-native:network:PublicIPAddress", lambda s, i: None if "dnsSettings" not in i or re.fullmatch(
        r"[a-z][a-z0-9-]{1,61}[a-z0-9]", i["dnsSettings"]["domainNameLabel"]) else f"label {i['dnsSettings']}"),
    each("azure-native:compute:VirtualMachineScaleSet", lambda s, i: (
        # computer name prefix: VMs are named prefix + 6 characters, within 15
        None if len(i["virtualMachineProfile"]["osProfile"]["computerNamePrefix"]) <= 9 else "computer name prefix")
        # automatic repairs grace period: PT10M-PT90M
        or within(int(re.fullmatch(r"PT(\d+)M", i["automaticRepairsPolicy"]["gracePeriod"])[1]), 10, 90, "repairs")
        # Application Health extension: interval 5-60, probes 1-24, grace period at most 14400
        or next((f"health {e['settings']}" for e in i["virtualMachineProfile"]["extensionProfile"]["extensions"]
                 if not (5 <= e["settings"]["intervalInSeconds"] <= 60 and 1 <= e["settings"]["numberOfProbes"] <= 24
                         and e["settings"].get("gracePeriod", 0) <= 14400)), None)
        # custom data: at most 65535 bytes before base64
        or (None if len(base64.b64decode(i["virtualMachineProfile"]["osProfile"]["customData"])) <= 65535
            else "custom data over 64 KB")),
    each("azure-native:network:ApplicationGateway", lambda s, i: next(
        (f"requestTimeout {h['requestTimeout']}" for h in i["backendHttpSettingsCollection"]
         if not 1 <= h["requestTimeout"] <= 86400), None)),
    # Storage account names: 3-24 lower-case letters and digits
    each("azure-native:storage:StorageAccount",
         lambda s, i: None if re.fullmatch(r"[a-z0-9]{3,24}", i["accountName"]) else f"account {i['accountName']!r}"),
    # Autoscale: at most 20 profiles; a recurrence is weekly, hours 0-23, minutes 0-59, a Windows time zone the
    # API documents
    each("azure-native:monitor:AutoscaleSetting", lambda s, i: (
        None if len(i["profiles"]) <= 20 else "over 20 profiles") or next(
        (f"profile {p['name']}" for p in i["profiles"] if "recurrence" in p and not (
            p["recurrence"]["frequency"] == "Week" and all(0 <= h <= 23 for h in p["recurrence"]["schedule"]["hours"])
            and all(0 <= m <= 59 for m in p["recurrence"]["schedule"]["minutes"])
            and p["recurrence"]["schedule"]["timeZone"] in AZURE_TIME_ZONES)), None)),
    # Tags: at most 50; names at most 512 without < > % & \ ? /; values at most 256
    lambda plan: [f"{s['type']} tags {tags}" for s in plan.steps if (tags := s["newState"]["inputs"].get("tags"))
                  and isinstance(tags, dict) and (len(tags) > 50 or any(
                      len(k) > 512 or re.search(r"[<>%&\\?/]", k) or len(str(v)) > 256 for k, v in tags.items()))],
]

RULES = {"aws": AWS_RULES, "gcp": GCP_RULES, "azure": AZURE_RULES}
CLOUD_CONFIG = {"aws": {"region": "us-east-1"}, "gcp": {"region": "us-central1", "gcp": {"project": "my-project-123"}},
                "azure": {"region": "eastus"}}


def broken(plan: PlannedStack, cloud: str) -> list[str]:
    return [problem for rule in RULES[cloud] for problem in rule(plan)]


@pytest.mark.parametrize("stack", stacks_of())
def test_every_stack_sets_only_what_its_cloud_accepts(stack, plan_of):
    plan = plan_of(stack)
    cloud = next(c for c in RULES if any(s["type"].startswith(f"{c}:") or s["type"].startswith(f"{c}-native:")
                                         for s in plan.steps))
    assert broken(plan, cloud) == []


@pytest.mark.parametrize("cloud", sorted(RULES))
@pytest.mark.parametrize("case", ["largest model", "longest stack name"])
def test_the_largest_model_and_the_longest_stack_name_set_only_what_the_cloud_accepts(cloud, case, tmp_path):
    config = {"cloud": cloud, **CLOUD_CONFIG[cloud], "allowedCidrs": ["10.0.0.0/8"],
              "replicas": {"min": 1, "max": 3}, "spot": False, "officeHours": MOST_WINDOWS}
    if case == "largest model":
        config.update(model=BIGGEST, maxModelLen=16384, dataDiskGb=2000)
        name = "big"
    else:
        config.update(model="codellama/CodeLlama-7b-Instruct-hf", maxModelLen=8192,
                      tags={"team": "platform", "cost-center": "x" * 60})
        name = LONG_NAME
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(json.dumps({"config": {f"vllm-fleet:{k}": v for k, v in config.items()}}))
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    plan = PlannedStack(name, json.loads(result.stdout))
    assert broken(plan, cloud) == []
    if case == "largest model":
        assert plan.outputs["timeToServe"]["seconds"] > 3600  # the clamps above were needed


def test_the_rules_catch_what_they_are_for(plan_of):
    """A rule that could not fail would prove nothing: break the inputs it reads and watch it fail."""
    plan = plan_of("codellama-prod")
    steps = json.loads(json.dumps(plan.steps))
    broken_plan = PlannedStack(plan.name, {**plan.preview, "steps": steps})
    group = next(s for s in steps if s["type"] == "aws:autoscaling/group:Group")
    group["newState"]["inputs"]["defaultInstanceWarmup"] = 4680
    alb = next(s for s in steps if s["type"] == "aws:lb/loadBalancer:LoadBalancer")
    alb["urn"] = alb["urn"].rsplit("::", 1)[0] + "::" + "a" * 25
    template = next(s for s in steps if s["type"] == "aws:ec2/launchTemplate:LaunchTemplate")
    template["newState"]["inputs"]["userData"] = base64.b64encode(gzip.compress(b"x" * 99) + b"y" * 17000).decode()
    problems = broken(broken_plan, "aws")
    assert any("warmup" in p for p in problems) and any("aaaaa" in p for p in problems)
    assert any("user data over 16 KB" in p for p in problems)


def test_the_office_hours_rules_catch_what_they_are_for(plan_of):
    def broken_copy(stack: str, type_: str, change: Callable[[dict], None]) -> list[str]:
        plan = plan_of(stack)
        steps = json.loads(json.dumps(plan.steps))
        change(next(s for s in steps if s["type"] == type_)["newState"]["inputs"])
        cloud = {"codellama-prod": "aws", "codellama-gcp": "gcp", "qwen-coder-azure-dev": "azure"}[stack]
        return broken(PlannedStack(plan.name, {**plan.preview, "steps": steps}), cloud)

    assert any("heartbeatTimeout" in p for p in broken_copy(
        "codellama-prod", "aws:autoscaling/lifecycleHook:LifecycleHook", lambda i: i.update(heartbeatTimeout=9000)))
    assert any("schedule cron(0 19 * * 1-5)" in p for p in broken_copy(
        "codellama-prod", "aws:scheduler/schedule:Schedule", lambda i: i.update(scheduleExpression="cron(0 19 * * 1-5)")))
    assert any("standby initialDelaySec" in p for p in broken_copy(
        "codellama-gcp", "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager",
        lambda i: i["standbyPolicy"].update(initialDelaySec=4000)))
    assert any("profile office-hours-0" in p for p in broken_copy(
        "qwen-coder-azure-dev", "azure-native:monitor:AutoscaleSetting",
        lambda i: i["profiles"][1]["recurrence"]["schedule"].update(timeZone="Europe/Berlin")))
