"""wakeOnRequest: the key's validation, and the AWS activator's handler against moto's emulated Auto Scaling,
ELBv2 and Secrets Manager APIs (the calls it makes are the ones `make wake` renders)."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest
from moto import mock_aws

from activator import aws_function
from fleet.errors import ConfigError
from fleet.wake_on_request import parse_wake_on_request

REGION = "us-east-1"
KEY = "sk-the-developers-key"
FRIDAY_EVENING = dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.timezone.utc)  # Friday 20:00 in New York


@pytest.mark.parametrize("value, hours", [(None, None), (False, None), (True, 2.0), ({"hours": 3}, 3.0),
                                          ({"hours": 24}, 24.0), ({}, 2.0)])
def test_wake_on_request_values(value, hours):
    parsed = parse_wake_on_request(value, "aws", True)
    assert (parsed.hours if parsed else None) == hours


@pytest.mark.parametrize("value, cloud, office, key, says", [
    ({"hours": 0}, "aws", True, "wakeOnRequest.hours", "more than 0"),
    ({"hours": 25}, "aws", True, "wakeOnRequest.hours", "at most 24"),
    ({"hours": "2"}, "aws", True, "wakeOnRequest.hours", "hours"),
    ({"hour": 2}, "aws", True, "wakeOnRequest", "{hours: N}"),
    ("yes", "aws", True, "wakeOnRequest", "true, false"),
    (True, "aws", False, "wakeOnRequest", "needs officeHours"),
    (True, "gcp", True, "wakeOnRequest", "docs/wake.md"),
    (True, "azure", True, "wakeOnRequest", "make wake"),
])
def test_wake_on_request_refuses_with_one_clear_error(value, cloud, office, key, says):
    with pytest.raises(ConfigError) as refused:
        parse_wake_on_request(value, cloud, office)
    assert refused.value.key == key and says in str(refused.value)


@pytest.fixture
def sleeping(monkeypatch):
    """A closed office-hours stack in moto: its group at 0, its API rule answering 503, its keys' secret."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        ec2, elb = boto3.client("ec2"), boto3.client("elbv2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{z}")[
            "Subnet"]["SubnetId"] for i, z in enumerate("ab")]
        alb = elb.create_load_balancer(Name="alb", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
        vms = elb.create_target_group(Name="vllm", Protocol="HTTP", Port=8000, VpcId=vpc)["TargetGroups"][0][
            "TargetGroupArn"]
        listener = elb.create_listener(LoadBalancerArn=alb, Protocol="HTTP", Port=80, DefaultActions=[
            {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])["Listeners"][0]["ListenerArn"]
        activator = elb.create_target_group(Name="wake", TargetType="lambda")["TargetGroups"][0]["TargetGroupArn"]
        rule = elb.create_rule(ListenerArn=listener, Priority=100, Conditions=[
            {"Field": "path-pattern", "Values": ["/v1/*"]}], Actions=[
            {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}])["Rules"][0]["RuleArn"]
        template = ec2.create_launch_template(LaunchTemplateName="vm", LaunchTemplateData={
            "ImageId": "ami-12c6146b", "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
        scaling = boto3.client("autoscaling")
        scaling.create_auto_scaling_group(AutoScalingGroupName="vllm-fleet-codellama-prod", MinSize=0, MaxSize=4,
                                          DesiredCapacity=0, VPCZoneIdentifier=",".join(subnets),
                                          LaunchTemplate={"LaunchTemplateId": template}, TargetGroupARNs=[vms])
        secret = boto3.client("secretsmanager").create_secret(
            Name="keys", SecretString=json.dumps({"default": KEY, "ci": "sk-other"}))["ARN"]
        monkeypatch.setenv("KEYS_SECRET", secret)
        monkeypatch.setenv("WAKE", json.dumps({
            "stack": "codellama-prod", "hours": 3.0, "timeToServeSeconds": 840,
            "target": {"group": "vllm-fleet-codellama-prod", "apiRuleArn": rule, "targetGroupArn": vms,
                       "activatorTargetGroupArn": activator},
            "sizes": {"min": 1, "max": 4, "desired": 1, "offHours": 0},
            "officeHours": {"timezone": "America/New_York", "windows": [
                {"days": [0, 1, 2, 3, 4], "start": 480, "end": 1140}], "offHoursReplicas": 0}}))
        monkeypatch.setattr(aws_function.dt, "datetime", type("At", (dt.datetime,), {
            "now": classmethod(lambda cls, tz=None: FRIDAY_EVENING)}))
        yield {"scaling": scaling, "elb": elb, "rule": rule, "vms": vms, "ec2": ec2, "activator": activator}


def _request(authorization: str | None) -> dict:
    headers = {"host": "api.example.com"} | ({"authorization": authorization} if authorization else {})
    return aws_function.handler({"httpMethod": "POST", "path": "/v1/chat/completions", "headers": headers})


def _group(world) -> dict:
    return world["scaling"].describe_auto_scaling_groups()["AutoScalingGroups"][0]


@pytest.mark.parametrize("authorization", [None, "Bearer sk-wrong", f"Basic {KEY}", "Bearer "])
def test_an_invalid_key_gets_401_and_wakes_nothing(sleeping, authorization):
    answer = _request(authorization)
    assert answer["statusCode"] == 401
    assert json.loads(answer["body"])["error"]["code"] == "invalid_api_key"
    assert _group(sleeping)["DesiredCapacity"] == 0
    assert sleeping["scaling"].describe_scheduled_actions()["ScheduledUpdateGroupActions"] == []


def test_a_keyed_request_wakes_the_group_once_for_the_bounded_hours(sleeping):
    answer = _request(f"Bearer {KEY}")
    # 14 minutes to serve: the message says so; Retry-After is the openai client's most (it would not retry at all).
    assert answer["statusCode"] == 503 and answer["headers"]["Retry-After"] == "120"
    body = json.loads(answer["body"])["error"]
    assert body["type"] == "service_unavailable" and "about 14 min (by 01:14 UTC)" in body["message"]
    group = _group(sleeping)
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (1, 4, 1)
    [down] = sleeping["scaling"].describe_scheduled_actions()["ScheduledUpdateGroupActions"]
    assert down["ScheduledActionName"] == "vllm-fleet-wake" and down["DesiredCapacity"] == 0
    assert down["StartTime"] == dt.datetime(2026, 11, 28, 4, 0, tzinfo=dt.timezone.utc)  # 3 hours later
    # While it wakes (moto's VM stopped: not healthy yet), a second request starts nothing more: the scale-down
    # stays where the first wake put it.
    [vm] = [instance["InstanceId"] for instance in group["Instances"]]
    sleeping["ec2"].stop_instances(InstanceIds=[vm])
    sleeping["scaling"].delete_scheduled_action(AutoScalingGroupName=group["AutoScalingGroupName"],
                                                ScheduledActionName="vllm-fleet-wake")
    again = _request(f"Bearer {KEY}")
    assert again["statusCode"] == 503 and again["headers"]["Retry-After"] == "120"
    assert sleeping["scaling"].describe_scheduled_actions()["ScheduledUpdateGroupActions"] == []
    # The rule still answers from the function until a VM is healthy.
    [rule] = sleeping["elb"].describe_rules(RuleArns=[sleeping["rule"]])["Rules"]
    assert rule["Actions"][0]["Type"] == "fixed-response"
    # Once one is, the next request switches the rule back to forwarding to the VMs, and is told to retry now.
    sleeping["ec2"].start_instances(InstanceIds=[vm])
    answer = _request(f"Bearer {KEY}")
    assert answer["statusCode"] == 503 and answer["headers"]["Retry-After"] == "1"
    [rule] = sleeping["elb"].describe_rules(RuleArns=[sleeping["rule"]])["Rules"]
    assert rule["Actions"][0]["Type"] == "forward" and rule["Actions"][0]["TargetGroupArn"] == sleeping["vms"]
    # When the wake's hours are up the group scales down; EventBridge tells the function of each VM that leaves,
    # and once the group is at its off-hours size outside the hours, the rule comes back to the function.
    vm_left = {"source": "aws.autoscaling", "detail-type": "EC2 Instance Terminate Successful",
               "detail": {"AutoScalingGroupName": group["AutoScalingGroupName"]}}
    assert aws_function.handler(vm_left) == {"closed": False}  # still at its office-hours size
    sleeping["scaling"].update_auto_scaling_group(AutoScalingGroupName=group["AutoScalingGroupName"], MinSize=0,
                                                  DesiredCapacity=0)
    # Auto Scaling deregisters a VM from the target group before it terminates it (moto keeps the registration).
    sleeping["elb"].deregister_targets(TargetGroupArn=sleeping["vms"], Targets=[{"Id": vm}])
    assert aws_function.handler(vm_left) == {"closed": True}
    [rule] = sleeping["elb"].describe_rules(RuleArns=[sleeping["rule"]])["Rules"]
    assert rule["Actions"][0]["TargetGroupArn"] == sleeping["activator"]
    assert _request(f"Bearer {KEY}")["headers"]["Retry-After"] == "120"  # the next keyed request wakes it again
    assert _group(sleeping)["DesiredCapacity"] == 1


@pytest.fixture(scope="module")
def woken_plan(tmp_path_factory):
    """codellama-prod (AWS, office hours) with wakeOnRequest for 3 hours, by the real offline plan."""
    import subprocess
    import sys

    import yaml

    from conftest import ROOT, PlannedStack, config_of

    path = tmp_path_factory.mktemp("wake") / "Pulumi.woken.yaml"
    path.write_text(yaml.safe_dump({"config": {f"vllm-fleet:{k}": v for k, v in {
        **config_of("codellama-prod"), "wakeOnRequest": {"hours": 3}}.items()}}))
    planned = subprocess.run([sys.executable, "-m", "cli.plan", str(path), "--format", "json"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert planned.returncode == 0, planned.stderr
    text = subprocess.run([sys.executable, "-m", "cli.plan", str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    return PlannedStack("woken", json.loads(planned.stdout)), text.stdout


def test_aws_plans_the_activator_behind_the_closed_rule_with_only_its_own_permissions(woken_plan):
    plan, _ = woken_plan
    target = plan.outputs["officeHours"]["wakeTarget"]
    function = plan.one("aws:lambda/function:Function")
    assert function["runtime"] == "python3.12" and function["handler"] == "activator.aws_function.handler"
    wake = json.loads(function["environment"]["variables"]["WAKE"])
    [wake_group] = [name for name, g in plan.named("aws:lb/targetGroup:TargetGroup").items()
                    if g.get("targetType") == "lambda"]
    wake_arn = f"arn:aws:lb:us-east-1:123456789012:{wake_group}"
    assert wake["target"] == {"group": target["group"], "apiRuleArn": target["apiRuleArn"],
                              "targetGroupArn": target["targetGroupArn"], "activatorTargetGroupArn": wake_arn}
    assert wake["hours"] == 3 and wake["sizes"] == {"min": 1, "max": 4, "desired": 1, "offHours": 0}
    assert wake["timeToServeSeconds"] == plan.outputs["officeHours"]["wakeCost"]["secondsToServe"]
    # The keys stay in Secrets Manager: the function gets the secret's ARN, never a key.
    [keys] = [s for name, s in plan.named("aws:secretsmanager/secret:Secret").items() if name.endswith("apiKeys")]
    assert function["environment"]["variables"]["KEYS_SECRET"].endswith("-apiKeys")
    # The closed schedule forwards to the function's target group instead of a fixed 503; the open one to the VMs.
    close = plan.named("aws:scheduler/schedule:Schedule")["woken-close-api-0"]
    assert json.loads(close["target"]["input"])["Actions"] == [{"Type": "forward", "TargetGroupArn": wake_arn}]
    invoke, told = (plan.named("aws:lambda/permission:Permission")[f"woken-{name}"] for name in ("activator", "vm-left"))
    assert (invoke["principal"], invoke["sourceArn"], invoke["action"]) == (
        "elasticloadbalancing.amazonaws.com", wake_arn, "lambda:InvokeFunction")
    # EventBridge tells it of the VMs that leave this group, and may invoke it for that rule only.
    vm_left = plan.one("aws:cloudwatch/eventRule:EventRule")
    assert json.loads(vm_left["eventPattern"]) == {
        "source": ["aws.autoscaling"], "detail-type": ["EC2 Instance Terminate Successful"],
        "detail": {"AutoScalingGroupName": [target["group"]]}}
    assert (told["principal"], told["sourceArn"]) == ("events.amazonaws.com",
                                                      "arn:aws:cloudwatch:us-east-1:123456789012:woken-vm-left")
    assert plan.one("aws:cloudwatch/eventTarget:EventTarget")["arn"].endswith(":woken-activator")
    assert plan.one("aws:lb/targetGroupAttachment:TargetGroupAttachment")["targetGroupArn"] == wake_arn
    policy = json.loads(plan.named("aws:iam/rolePolicy:RolePolicy")["woken-activator"]["policy"])
    scoped = {(tuple(s["Action"]) if isinstance(s["Action"], list) else (s["Action"],)): s["Resource"]
              for s in policy["Statement"]}
    assert scoped == {
        ("autoscaling:UpdateAutoScalingGroup", "autoscaling:PutScheduledUpdateGroupAction"):
            "arn:aws:autoscaling:us-east-1:123456789012:woken-gpu",
        ("elasticloadbalancing:ModifyRule",): target["apiRuleArn"],
        ("secretsmanager:GetSecretValue",): function["environment"]["variables"]["KEYS_SECRET"],
        ("autoscaling:DescribeAutoScalingGroups", "elasticloadbalancing:DescribeTargetHealth"): "*"}
    assert keys


def test_the_function_runs_from_what_it_ships_without_pulumi(woken_plan, tmp_path):
    """The archive's files alone (no Pulumi, the stack's zone from the archive, not the machine's) import the
    handler and compute a wake's end."""
    import shutil
    import subprocess
    import sys

    from conftest import ROOT

    plan, _ = woken_plan
    archive = plan.one("aws:lambda/function:Function")["code"]["archive"]
    for name, asset in archive.items():
        source = ROOT / asset["file"] if (ROOT / asset["file"]).exists() else next(
            p for p in map(__import__("pathlib").Path, sys.path) if (p / asset["file"]).exists()) / asset["file"]
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, tmp_path / name)
    probe = ("import datetime as dt; sys.modules['pulumi'] = None; sys.modules['tzdata'] = None\n"
             "from activator import aws_function\n"
             "hours = aws_function.office_hours({'timezone': 'America/New_York', 'offHoursReplicas': 0, "
             "'windows': [{'days': [0, 1, 2, 3, 4], 'start': 480, 'end': 1140}]})\n"
             "print(hours.wake_span(dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.timezone.utc), 3)[1].isoformat())")
    ran = subprocess.run([sys.executable, "-c", f"import sys; sys.path[:1] = [{str(tmp_path)!r}]\n{probe}"],
                         cwd=tmp_path, capture_output=True, text=True, env={"PYTHONTZPATH": str(tmp_path / "zoneinfo")})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "2026-11-27T23:00:00-05:00"


def test_the_plan_says_what_a_wake_costs_and_takes(woken_plan):
    plan, text = woken_plan
    cost = plan.outputs["officeHours"]["wakeCost"]
    assert cost["onRequest"] and cost["hours"] == 3 and cost["gpuHours"] == 12  # 1 VM of 4 GPUs for 3 h
    assert ("Wake on request: a request with a valid API key while it sleeps starts 1 VM(s) for 3 h: 12 GPU hours"
            in text)
    assert f"serves ~{-(-cost['secondsToServe'] // 60)} min later ({cost['secondsToServe']} s)" in text
