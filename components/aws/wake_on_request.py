"""wakeOnRequest on AWS (docs/wake.md): while the fleet sleeps, the API's listener rule forwards to a Lambda target
group instead of answering a fixed 503; its function (activator/aws_function.py) checks the API key against the
stack's apiKeys secret, wakes the group once for the bounded hours and answers 503 with Retry-After, and switches
the rule back to the VMs once one is healthy. Its role may do that to this stack's group, rule and secret only."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
from pulumi_aws import cloudwatch, iam, lambda_, lb

from activator.aws import AUTOSCALING_EVENTS, VM_LEFT

from components.base import FleetComponent
from fleet.sizing import Sizing
from fleet.spec import FleetSpec
from fleet.wake_on_request import time_to_serve_s

from . import identity

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = "python3.12"
HANDLER = "activator.aws_function.handler"
# What the function ships: the activator and the office hours it computes a wake's end with (no Pulumi), and the
# stack's time zone (a Lambda runtime has no tz database; zoneinfo reads PYTHONTZPATH).
SHIPPED = ("activator/__init__.py", "activator/core.py", "activator/aws.py", "activator/aws_function.py",
           "fleet/__init__.py", "fleet/errors.py", "fleet/values.py", "fleet/schedule.py")
TZ_DIR = "zoneinfo"
TIMEOUT_S, MEMORY_MB = 30, 256
# Names of the role, the function and the target group: at most 64, 64 and 32 characters, of which autonaming
# takes 8.
ROLE_NAME_MAX, FUNCTION_NAME_MAX, TARGET_GROUP_NAME_MAX, AUTONAME_SUFFIX = 64, 64, 32, 8


def sizes(spec: FleetSpec) -> dict[str, int]:
    """The group's office-hours sizes and its size outside them: what a wake sets and goes back to."""
    return {"min": spec.replicas.min, "max": spec.replicas.max, "desired": spec.replicas.desired,
            "offHours": spec.office_hours.off_hours_replicas}


def code(timezone: str) -> pulumi.AssetArchive:
    import tzdata  # the tz database as a package: the same file on every machine that plans

    zone_file = Path(tzdata.__file__).parent / "zoneinfo" / timezone
    return pulumi.AssetArchive({**{path: pulumi.FileAsset(str(ROOT / path)) for path in SHIPPED},
                                f"{TZ_DIR}/{timezone}": pulumi.FileAsset(str(zone_file))})


def activator(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, group, api_rule, target_group,
              keys_secret_arn) -> lb.TargetGroup:
    """The function and its Lambda target group: what the closed rule forwards to; EventBridge tells the function
    of each VM that leaves the group, so that it takes the rule back once a wake's hours are up."""
    hours = spec.office_hours
    role = identity.service_role(
        fleet, spec, fleet.short_child("activator", ROLE_NAME_MAX - AUTONAME_SUFFIX), "lambda.amazonaws.com",
        description=f"vllm-fleet {spec.stack}: a keyed request wakes the sleeping fleet")

    def policy(arns: list[str]) -> str:
        group_arn, rule_arn, secret_arn = arns
        return json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["autoscaling:UpdateAutoScalingGroup",
                                           "autoscaling:PutScheduledUpdateGroupAction"], "Resource": group_arn},
            {"Effect": "Allow", "Action": "elasticloadbalancing:ModifyRule", "Resource": rule_arn},
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn},
            # Describe calls take no resource (Auto Scaling and ELB authorize them on "*" only).
            {"Effect": "Allow", "Action": ["autoscaling:DescribeAutoScalingGroups",
                                           "elasticloadbalancing:DescribeTargetHealth"], "Resource": "*"}]})

    allowed = iam.RolePolicy(fleet.child("activator"), role=role.id, policy=pulumi.Output.all(
        group.arn, api_rule.arn, keys_secret_arn).apply(policy), opts=fleet.opts)
    targets = lb.TargetGroup(fleet.short_child("wake", TARGET_GROUP_NAME_MAX - AUTONAME_SUFFIX),
                             target_type="lambda", lambda_multi_value_headers_enabled=False,  # one value a header
                             opts=fleet.opts)
    wake = pulumi.Output.json_dumps({
        "stack": spec.stack, "hours": spec.wake_on_request.hours,
        "timeToServeSeconds": time_to_serve_s(sizing.time_to_serve, fleet.standby_pool is not None),
        "target": {"group": group.name, "apiRuleArn": api_rule.arn, "targetGroupArn": target_group.arn,
                   "activatorTargetGroupArn": targets.arn},
        "sizes": sizes(spec),
        "officeHours": {"timezone": hours.timezone, "offHoursReplicas": hours.off_hours_replicas, "windows": [
            {"days": list(w.days), "start": w.start, "end": w.end} for w in hours.windows]}})
    function = lambda_.Function(
        fleet.short_child("activator", FUNCTION_NAME_MAX - AUTONAME_SUFFIX), runtime=RUNTIME, handler=HANDLER,
        role=role.arn, code=code(hours.timezone),
        timeout=TIMEOUT_S, memory_size=MEMORY_MB,
        description=f"vllm-fleet {spec.stack}: wakes the sleeping fleet on a keyed request",
        environment=lambda_.FunctionEnvironmentArgs(variables={
            "WAKE": wake, "KEYS_SECRET": keys_secret_arn, "PYTHONTZPATH": f"/var/task/{TZ_DIR}"}),
        opts=fleet.child_opts(depends_on=[allowed]))
    invoke = lambda_.Permission(fleet.child("activator"), action="lambda:InvokeFunction", function=function.name,
                                principal="elasticloadbalancing.amazonaws.com", source_arn=targets.arn,
                                opts=fleet.opts)
    lb.TargetGroupAttachment(fleet.child("activator"), target_group_arn=targets.arn, target_id=function.arn,
                             opts=fleet.child_opts(depends_on=[invoke]))
    vm_left = cloudwatch.EventRule(
        fleet.child("vm-left"), description=f"vllm-fleet {spec.stack}: a VM left the group (wakeOnRequest)",
        event_pattern=pulumi.Output.json_dumps({"source": [AUTOSCALING_EVENTS], "detail-type": [VM_LEFT],
                                                "detail": {"AutoScalingGroupName": [group.name]}}),
        opts=fleet.opts)
    told = lambda_.Permission(fleet.child("vm-left"), action="lambda:InvokeFunction", function=function.name,
                              principal="events.amazonaws.com", source_arn=vm_left.arn, opts=fleet.opts)
    cloudwatch.EventTarget(fleet.child("vm-left"), rule=vm_left.name, arn=function.arn,
                           opts=fleet.child_opts(depends_on=[told]))
    return targets
