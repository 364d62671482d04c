"""A wake on AWS as Auto Scaling and ELBv2 API calls (operation, parameters in the API's own names): the group to
its office-hours sizes, a one-off scheduled action that scales it down at the end where no window's close will, and
the API's listener rule back to forwarding (and, once the wake is over, to the activator again). `make wake` (components/aws/wake.py) renders them as AWS CLI commands;
the activator's function (aws_function.py) runs them with boto3."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .core import WAKE_NAME

Call = tuple[str, str, dict[str, Any]]  # (service, operation, parameters)
# The EventBridge events of the group that the function settles on: a VM has left it.
AUTOSCALING_EVENTS, VM_LEFT = "aws.autoscaling", "EC2 Instance Terminate Successful"


def scale_calls(target: dict[str, Any], sizes: dict[str, int], end: dt.datetime, scale_down: bool) -> list[Call]:
    group = target["group"]
    calls: list[Call] = [("autoscaling", "UpdateAutoScalingGroup", {
        "AutoScalingGroupName": group, "MinSize": sizes["min"], "MaxSize": sizes["max"],
        "DesiredCapacity": sizes["desired"]})]
    if scale_down:
        off = sizes["offHours"]
        calls.append(("autoscaling", "PutScheduledUpdateGroupAction", {
            "AutoScalingGroupName": group, "ScheduledActionName": WAKE_NAME,
            "StartTime": end.astimezone(dt.timezone.utc).replace(microsecond=0), "MinSize": off,
            "DesiredCapacity": off}))
    return calls


def _forward(target: dict[str, Any], to: str) -> Call:
    return ("elbv2", "ModifyRule", {"RuleArn": target["apiRuleArn"],
                                    "Actions": [{"Type": "forward", "TargetGroupArn": target[to]}]})


def open_call(target: dict[str, Any]) -> Call:
    """The API's rule forwards to the VMs."""
    return _forward(target, "targetGroupArn")


def close_call(target: dict[str, Any]) -> Call:
    """The API's rule forwards to the activator's Lambda target group (wakeOnRequest only)."""
    return _forward(target, "activatorTargetGroupArn")
