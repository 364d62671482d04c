"""`make wake` on AWS (cli/wake.py): the AWS CLI commands that start an office-hours group now. Not part of the
Pulumi program."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fleet.spec import FleetSpec
from cli.wake import WAKE_NAME


def wake_commands(spec: FleetSpec, target: dict[str, Any], start: dt.datetime, end: dt.datetime,
                  scale_down: bool) -> list[list[str]]:
    """The group to its office-hours sizes, the API's listener rule back to forwarding and, where no window's
    close will, a one-off scheduled action that scales it down at `end`."""
    region, group, replicas = target["region"], target["group"], spec.replicas
    commands = [
        ["aws", "autoscaling", "update-auto-scaling-group", "--region", region, "--auto-scaling-group-name", group,
         "--min-size", str(replicas.min), "--max-size", str(replicas.max), "--desired-capacity", str(replicas.desired)],
        ["aws", "elbv2", "modify-rule", "--region", region, "--rule-arn", target["apiRuleArn"],
         "--actions", f"Type=forward,TargetGroupArn={target['targetGroupArn']}"],
    ]
    if scale_down:
        off = str(spec.office_hours.off_hours_replicas)
        commands.append(["aws", "autoscaling", "put-scheduled-update-group-action", "--region", region,
                         "--auto-scaling-group-name", group, "--scheduled-action-name", WAKE_NAME,
                         "--start-time", end.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "--min-size", off, "--desired-capacity", off])
    return commands
