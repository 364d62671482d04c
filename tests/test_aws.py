"""Every AWS stack under Pulumi's mocks: the resource graph, its security posture and its outputs."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from components.edge_model import API_PATH
from conftest import config_of, run_plan, stacks_of, write_files

AWS_STACKS = stacks_of("aws")
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
GROUP = "aws:autoscaling/group:Group"




def test_both_issue_stacks_exist():
    assert {"codellama-prod", "codellama-dev"} <= set(AWS_STACKS)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_nothing_reaches_ssh_or_vllm_from_the_internet(stack, plan_of):
    plan = plan_of(stack)
    groups = plan.named(SG)
    assert set(groups) == {f"{stack}-lb", f"{stack}-instances"}
    lb_id, instances_id = f"{stack}-lb-id", f"{stack}-instances-id"
    for rule in plan.resources(INGRESS):
        assert not (rule["fromPort"] <= 22 <= rule["toPort"]), rule
        if rule["securityGroupId"] == instances_id:
            # vLLM only from the load balancer's group, never from a CIDR
            assert rule.get("referencedSecurityGroupId") == lb_id and "cidrIpv4" not in rule, rule
            assert rule["fromPort"] == rule["toPort"] == 8000
        else:
            assert rule["securityGroupId"] == lb_id
            assert rule["cidrIpv4"] in config_of(stack)["allowedCidrs"], rule
            assert rule["cidrIpv4"] != "0.0.0.0/0"
    lb_rules = [r for r in plan.resources(INGRESS) if r["securityGroupId"] == lb_id]
    assert sorted(r["cidrIpv4"] for r in lb_rules) == sorted(config_of(stack)["allowedCidrs"])
    https = "certificate" in config_of(stack) or "dnsZone" in config_of(stack)
    assert {r["fromPort"] for r in lb_rules} == {443 if https else 80}
    # the load balancer may only talk to the instances, on 8000
    lb_egress = [r for r in plan.resources(EGRESS) if r["securityGroupId"] == lb_id]
    assert lb_egress == [{**lb_egress[0], "referencedSecurityGroupId": instances_id, "fromPort": 8000, "toPort": 8000}]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_instances_require_imdsv2_encrypt_disks_and_boot_the_bootstrap(stack, plan_of):
    plan = plan_of(stack)
    template = plan.one(TEMPLATE)
    assert template["metadataOptions"]["httpTokens"] == "required"
    assert template["metadataOptions"]["httpPutResponseHopLimit"] == 1
    volumes = template["blockDeviceMappings"]
    assert len(volumes) == 2 and all(v["ebs"]["encrypted"] == "true" and v["ebs"]["volumeType"] == "gp3" for v in volumes)
    data = next(v for v in volumes if v["deviceName"] == "/dev/sdf")
    assert data["ebs"]["volumeSize"] >= 2 * plan.outputs["memory"]["weightsGib"]
    assert template["instanceType"] == plan.outputs["instanceType"]
    assert template["imageId"].startswith("ami-")  # from the pinned DLAMI's lookup
    assert "associatePublicIpAddress" not in json.dumps(template)
    assert plan.user_data.startswith("#cloud-config")


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_instance_role_reads_exactly_this_stacks_secrets(stack, plan_of):
    plan = plan_of(stack)
    secrets = plan.named("aws:secretsmanager/secret:Secret")
    assert set(secrets) == {f"{stack}-apiKeys"} | ({f"{stack}-hfToken"} if "hfToken" in config_of(stack) else set())
    for version in plan.resources("aws:secretsmanager/secretVersion:SecretVersion"):
        assert version["secretString"] == "[secret]"
    policy = json.loads(plan.named("aws:iam/rolePolicy:RolePolicy")[f"{stack}-read-secrets"]["policy"])
    read = next(s for s in policy["Statement"] if s["Action"] == "secretsmanager:GetSecretValue")
    region = config_of(stack)["region"]
    assert read["Resource"] == sorted(f"arn:aws:secretsmanager:{region}:123456789012:{name}" for name in secrets)
    assert "*" not in json.dumps(read)
    attachments = [a["policyArn"] for a in plan.resources("aws:iam/rolePolicyAttachment:RolePolicyAttachment")]
    assert attachments == ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]
    # the VMs get the secret's ARN and the version they read, never its value
    setup = write_files(plan.user_data)["/usr/local/sbin/vllm-fleet-setup"]["content"]
    assert re.search(rf"^readonly API_KEYS_REF='arn:aws:secretsmanager:{region}:123456789012:{stack}-apiKeys\\|"
                     rf"[0-9a-f-]{{36}}'$", setup, re.M)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_load_balancer_health_checks_and_timeouts(stack, plan_of):
    plan = plan_of(stack)
    target_group = plan.one("aws:lb/targetGroup:TargetGroup")
    assert target_group["port"] == 8000
    assert target_group["healthCheck"]["path"] == "/health" and target_group["healthCheck"]["port"] == "8000"
    assert target_group["deregistrationDelay"] >= 120  # in-flight generations finish on scale-in
    alb = plan.one("aws:lb/loadBalancer:LoadBalancer")
    assert alb["idleTimeout"] >= 600 and alb["dropInvalidHeaderFields"] is True
    listeners = plan.resources("aws:lb/listener:Listener")
    assert len(listeners) == 1
    # Only the API and /health are forwarded; the listener itself answers everything else with a 404
    (api,) = plan.resources("aws:lb/listenerRule:ListenerRule")
    assert api["conditions"] == [{"pathPattern": {"regexValues": [API_PATH]}}]
    [target_group_name] = plan.named("aws:lb/targetGroup:TargetGroup")
    [forward] = api["actions"]
    assert forward["type"] == "forward" and forward["targetGroupArn"].endswith(f":{target_group_name}")
    [default] = listeners[0]["defaultActions"]
    assert default["type"] == "fixed-response" and default["fixedResponse"]["statusCode"] == "404"
    assert default["fixedResponse"]["contentType"] == "application/json"
    assert len(default["fixedResponse"]["messageBody"]) <= 1024 and json.loads(default["fixedResponse"]["messageBody"])
    if "certificate" in config_of(stack):
        assert listeners[0]["protocol"] == "HTTPS" and listeners[0]["port"] == 443
        assert listeners[0]["certificateArn"] == config_of(stack)["certificate"]
        assert listeners[0]["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
        assert plan.outputs["endpoint"] == f"https://{config_of(stack)['domain']}"
    else:
        assert listeners[0]["protocol"] == "HTTP" and listeners[0]["port"] == 80
        assert any("plain HTTP" in w for w in plan.warnings)
        assert plan.outputs["endpoint"].startswith("http://")


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_auto_scaling_group_heals_refreshes_and_scales(stack, plan_of):
    plan = plan_of(stack)
    config = config_of(stack)
    group = plan.one(GROUP)
    replicas = config["replicas"]
    assert (group["minSize"], group["desiredCapacity"], group["maxSize"]) == (
        replicas["min"], replicas.get("desired", replicas["min"]), replicas["max"])
    assert group["healthCheckType"] == "ELB"
    # Grace and warm-up start after the launch lifecycle hook, which every launch waits in while it makes progress
    # and which completes once vLLM serves: not the setup again, however long it takes.
    grace = group["healthCheckGracePeriod"]
    assert grace == 120 == int(group["instanceRefresh"]["preferences"]["instanceWarmup"])
    assert group["defaultInstanceWarmup"] == 120
    assert group["waitForCapacityTimeout"] == "0"
    assert len(group["vpcZoneIdentifiers"]) >= 2
    refresh = group["instanceRefresh"]
    assert refresh["strategy"] == "Rolling" and refresh["preferences"]["minHealthyPercentage"] == 100
    assert group["instanceMaintenancePolicy"]["minHealthyPercentage"] == 100
    if config.get("spot"):
        mixed = group["mixedInstancesPolicy"]
        assert mixed["instancesDistribution"]["onDemandPercentageAboveBaseCapacity"] == 0
        assert mixed["instancesDistribution"]["onDemandBaseCapacity"] == config.get("onDemandBase", 0)
        types = [o["instanceType"] for o in mixed["launchTemplate"]["overrides"]]
        assert plan.outputs["instanceType"] in types
        assert "launchTemplate" not in group
    else:
        assert "mixedInstancesPolicy" not in group and group["launchTemplate"]["version"] == "1"
    policies = plan.resources("aws:autoscaling/policy:Policy")
    if replicas["min"] < replicas["max"]:
        # target tracking on vLLM's signals (tests/test_autoscaling.py), none on the load balancer's request count
        assert len(policies) == 2 and all("customizedMetricSpecification" in p["targetTrackingConfiguration"]
                                          for p in policies)
    else:
        assert policies == []


def test_new_vpc_spans_several_zones_with_private_instances(plan_of):
    plan = plan_of("codellama-prod")
    subnets = plan.named("aws:ec2/subnet:Subnet")
    private = {n: s for n, s in subnets.items() if "private" in n}
    assert len({s["availabilityZone"] for s in private.values()}) >= 2
    assert all(s["mapPublicIpOnLaunch"] is False for s in subnets.values())
    group = plan.one(GROUP)
    assert sorted(group["vpcZoneIdentifiers"]) == sorted(f"{n}-id" for n in private)


def test_prod_outputs_cost_quota_and_client_snippets(plan_of):
    outputs = plan_of("codellama-prod").outputs
    assert outputs["instanceType"] == "g6e.12xlarge" and outputs["gpuType"] == "L40S"
    assert outputs["gpuCount"] == outputs["tensorParallelSize"] == 4
    assert outputs["openaiBaseUrl"] == "https://codellama.example.com/v1"
    assert outputs["apiKey"] == "[secret]"
    cost = outputs["estimatedCost"]
    assert cost["usdPerHour"] == pytest.approx(10.49, abs=0.01)
    assert cost["usdPerMonth24x7"] == pytest.approx(10.49264 * 730, abs=1)  # officeHours: usdPerMonth is less
    assert cost["usdPerHourAtMaxReplicas"] == pytest.approx(4 * 10.49264, abs=0.01)
    (quota,) = outputs["quota"]
    assert quota["name"] == "Running On-Demand G and VT instances" and quota["code"] == "L-DB2E81BA"
    assert (quota["atDesired"], quota["atMax"]) == (48, 192)
    # An instance refresh at max replicas runs up to 200% of them; the warm pool's instance sets up next to the
    # office-hours one when it is created.
    assert (quota["duringUpdate"], quota["withPoolSetup"]) == (384, 96)
    assert "Authorization: Bearer $VLLM_API_KEY" in outputs["curlExample"]
    assert "https://codellama.example.com/v1/completions" in outputs["curlExample"]
    assert yaml.safe_load(outputs["continueConfig"])["models"][0]["apiBase"] == "https://codellama.example.com/v1"


def test_dev_is_one_spot_vm_counted_against_the_spot_quota(plan_of):
    outputs = plan_of("codellama-dev").outputs
    assert outputs["spot"] is True and outputs["replicas"] == {"min": 1, "desired": 1, "max": 1}
    assert outputs["gpuCount"] == 1
    assert [q["name"] for q in outputs["quota"]] == ["All G and VT Spot Instance Requests"]


def test_existing_vpc_is_used_instead_of_a_new_one(stack_file):
    path = stack_file({"cloud": "aws", "region": "us-east-1", "model": "codellama/CodeLlama-7b-Instruct-hf",
                       "maxModelLen": 8192, "allowedCidrs": ["10.0.0.0/8"],
                       "aws": {"vpcId": "vpc-0123456789abcdef0",
                               "publicSubnetIds": ["subnet-0000000a", "subnet-0000000b"],
                               "privateSubnetIds": ["subnet-0000000c", "subnet-0000000d"], "internal": True}})
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    steps = json.loads(result.stdout)["steps"]
    assert not [s for s in steps if s["type"] in ("aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/natGateway:NatGateway")]
    (alb,) = [s["newState"]["inputs"] for s in steps if s["type"] == "aws:lb/loadBalancer:LoadBalancer"]
    assert alb["internal"] is True and alb["subnets"] == ["subnet-0000000a", "subnet-0000000b"]


def test_dns_zone_issues_a_certificate_and_an_alias_record(stack_file):
    path = stack_file({"cloud": "aws", "region": "us-east-1", "model": "codellama/CodeLlama-7b-Instruct-hf",
                       "maxModelLen": 8192, "allowedCidrs": ["10.0.0.0/8"], "domain": "code.example.com",
                       "dnsZone": "Z0123456789ABCDEFGHIJ"})
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    steps = json.loads(result.stdout)["steps"]
    types = [s["type"] for s in steps]
    assert "aws:acm/certificate:Certificate" in types and "aws:acm/certificateValidation:CertificateValidation" in types
    records = [s["newState"]["inputs"] for s in steps if s["type"] == "aws:route53/record:Record"]
    assert any(r.get("aliases") and r["name"] == "code.example.com" for r in records)
    (listener,) = [s["newState"]["inputs"] for s in steps if s["type"] == "aws:lb/listener:Listener"]
    assert listener["protocol"] == "HTTPS"


@pytest.mark.parametrize("aws, key, words", [
    ({"vpcId": "vpc-0123456789abcdef0"}, "aws.publicSubnetIds", "at least two subnet-"),
    ({"publicSubnetIds": ["subnet-0000000a", "subnet-0000000b"]}, "aws.vpcId", "need the vpcId"),
    ({"azCount": 1}, "aws.azCount", "from 2 to 5: us-east-1 has 5 zones"),
    ({"azCount": 6}, "aws.azCount", "from 2 to 5: us-east-1 has 5 zones"),
    ({"amiName": "ubuntu-22.04"}, "aws.amiName", "release of the Deep Learning Base OSS Nvidia Driver GPU AMI"),
    ({"vpcCidr": "10.0.0.0/8"}, "aws.vpcCidr", "/16 to /20"),
    ({"amiId": "ubuntu"}, "aws.amiId", "ami-0123456789abcdef0"),
    ({"sshKey": "x"}, "aws.sshKey", "is not an AWS option"),
])
def test_bad_aws_options_are_refused(aws, key, words):
    from components.aws import parse_options
    from fleet.errors import ConfigError
    from fleet.sizing import size
    from fleet.spec import parse_spec

    spec = parse_spec("t", {"cloud": "aws", "region": "us-east-1", "model": "codellama/CodeLlama-7b-hf",
                            "allowedCidrs": '["10.0.0.0/8"]', "aws": json.dumps(aws)}, set())
    with pytest.raises(ConfigError) as caught:
        parse_options(spec, size(spec))
    assert caught.value.key == key and words in str(caught.value)


@pytest.mark.parametrize("extra, key, words", [
    ({"domain": "code.example.com"}, "certificate", "needs an ACM certificate ARN, or dnsZone"),
    ({"domain": "code.example.com", "certificate": "my-cert"}, "certificate", "ACM certificate ARN"),
    ({"domain": "code.example.com", "certificate": "arn:aws:acm:eu-west-1:123456789012:certificate/ab-12"},
     "certificate", "must be an ACM certificate in us-east-1"),
])
def test_tls_config_is_checked_before_anything_is_created(stack_file, extra, key, words):
    path = stack_file({"cloud": "aws", "region": "us-east-1", "model": "codellama/CodeLlama-7b-Instruct-hf",
                       "maxModelLen": 8192, "allowedCidrs": ["10.0.0.0/8"], **extra})
    result = run_plan(path)
    assert result.returncode == 2 and result.stdout == ""
    assert f"config vllm-fleet:{key}" in result.stderr and words in result.stderr


def test_autoscaling_owns_desired_capacity_after_the_first_up(plan_of, stack_file):
    """A later `pulumi up` (or one after a refresh) must not set desired back and terminate the VMs the scaling
    policy added; a fixed-size group has nothing to fight over. (With officeHours the schedules own all three
    sizes: tests/test_office_hours.py.) The launch lifecycle hook is its own resource too (initial hooks apply only
    when a group is created)."""
    around_the_clock = {k: v for k, v in config_of("codellama-prod").items() if k != "officeHours"}
    result = run_plan(stack_file(around_the_clock, "prod-24x7"))
    assert result.returncode == 0, result.stderr
    [group] = [s for s in json.loads(result.stdout)["steps"] if s["type"] == GROUP]
    assert group["options"]["ignoreChanges"] == ["desiredCapacity", "initialLifecycleHooks"]
    assert plan_of("codellama-dev").options_of(GROUP)["ignoreChanges"] == ["initialLifecycleHooks"]


def test_spot_with_an_on_demand_base_prefers_the_sized_type_and_asks_for_both_quotas(stack_file):
    path = stack_file({"cloud": "aws", "region": "us-east-1", "model": "Qwen/Qwen2.5-Coder-14B-Instruct",
                       "maxModelLen": 8192, "allowedCidrs": ["10.0.0.0/8"], "spot": True, "onDemandBase": 1,
                       "replicas": {"min": 1, "desired": 2, "max": 4}})
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    preview = json.loads(result.stdout)
    [group] = [s["newState"]["inputs"] for s in preview["steps"] if s["type"] == GROUP]
    mixed = group["mixedInstancesPolicy"]
    distribution = mixed["instancesDistribution"]
    assert distribution["onDemandAllocationStrategy"] == "prioritized"
    from fleet import catalog

    prices = {name: it.usd_per_hour for name, it in catalog.cloud("aws").instance_types.items()}
    overrides = [o["instanceType"] for o in mixed["launchTemplate"]["overrides"]]
    sized = preview["outputs"]["instanceType"]
    # the on-demand VM launches as the first override: the sized (cheapest fitting) type, then by price
    assert overrides[0] == sized and overrides[1:] == sorted(overrides[1:], key=prices.get)
    assert all(prices[name] <= 2 * prices[sized] for name in overrides) and len(overrides) > 1
    assert preview["outputs"]["instanceTypes"] == overrides
    quotas = {q["name"]: q for q in preview["outputs"]["quota"]}
    largest = max(catalog.cloud("aws").instance_types[name].vcpus for name in overrides)
    on_demand = quotas["Running On-Demand G and VT instances"]
    spot = quotas["All G and VT Spot Instance Requests"]
    assert (on_demand["atDesired"], on_demand["atMax"]) == (largest, largest)  # one on-demand VM
    assert (spot["atDesired"], spot["atMax"]) == (largest * 1, largest * 3)


@pytest.mark.parametrize("extra, key, words", [
    ({"tags": {"aws:team": "x"}}, "tags.aws:team", "AWS's own"),
    ({"allowedCidrs": [f"10.{i}.0.0/16" for i in range(61)]}, "allowedCidrs", "at most 60 inbound rules"),
])
def test_what_aws_itself_refuses_is_refused_first(extra, key, words):
    from components.aws import parse_options
    from fleet.errors import ConfigError
    from fleet.sizing import size
    from fleet.spec import parse_spec

    raw = {"cloud": "aws", "region": "us-east-1", "model": "codellama/CodeLlama-7b-hf", "allowedCidrs": '["10.0.0.0/8"]',
           **{k: json.dumps(v) for k, v in extra.items()}}
    spec = parse_spec("t", raw, set())
    with pytest.raises(ConfigError) as caught:
        parse_options(spec, size(spec))
    assert caught.value.key == key and words in str(caught.value)
