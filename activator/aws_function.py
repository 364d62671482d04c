"""The activator on AWS: a Lambda function, the target of the API's listener rule while the fleet sleeps
(components/aws/wake_on_request.py), and of EventBridge's events of the group's VMs leaving it. Its environment: WAKE (JSON: the stack, its wake target, sizes, hours, office
hours and time to serve) and KEYS_SECRET (the stack's apiKeys secret, read with the function's own role)."""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

import boto3

from fleet.schedule import OfficeHours, Window

from . import aws, core


def _call(clients: dict[str, Any], call: aws.Call) -> dict[str, Any]:
    service, operation, params = call
    client = clients.setdefault(service, boto3.client(service))
    return getattr(client, "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_"))(**params)


def office_hours(config: dict[str, Any]) -> OfficeHours:
    return OfficeHours(config["timezone"], tuple(Window(tuple(w["days"]), w["start"], w["end"])
                                                 for w in config["windows"]), config["offHoursReplicas"])


class AwsFleet:
    def __init__(self, config: dict[str, Any]):
        self.config, self.target, self.clients = config, config["target"], {}

    def _group(self) -> dict[str, Any]:
        [group] = _call(self.clients, ("autoscaling", "DescribeAutoScalingGroups", {
            "AutoScalingGroupNames": [self.target["group"]]}))["AutoScalingGroups"]
        return group

    def waking(self) -> bool:
        return self._group()["DesiredCapacity"] >= self.config["sizes"]["desired"]

    def serving(self) -> bool:
        health = _call(self.clients, ("elbv2", "DescribeTargetHealth", {
            "TargetGroupArn": self.target["targetGroupArn"]}))["TargetHealthDescriptions"]
        return any(target["TargetHealth"]["State"] == "healthy" for target in health)

    def wake(self, now: dt.datetime) -> None:
        span = office_hours(self.config["officeHours"]).wake_span(now, self.config["hours"])
        if span is not None:  # in a window the schedule has sized it up already
            _, end, scale_down = span
            for call in aws.scale_calls(self.target, self.config["sizes"], end, scale_down):
                _call(self.clients, call)

    def open(self) -> None:
        _call(self.clients, aws.open_call(self.target))

    def asleep(self) -> bool:
        return self._group()["DesiredCapacity"] <= self.config["sizes"]["offHours"]

    def close(self) -> None:
        _call(self.clients, aws.close_call(self.target))


def _keys(clients: dict[str, Any]) -> list[str]:
    secret = _call(clients, ("secretsmanager", "GetSecretValue", {"SecretId": os.environ["KEYS_SECRET"]}))
    return list(json.loads(secret["SecretString"]).values())


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """An ALB's Lambda event (header names in lower case) in, an ALB's Lambda answer out; or EventBridge's event
    of a VM that left the group (EC2 Instance Terminate Successful), after which the rule may go back to this
    function (core.settle)."""
    config = json.loads(os.environ["WAKE"])
    fleet = AwsFleet(config)
    now = dt.datetime.now(dt.timezone.utc)
    if event.get("source") == aws.AUTOSCALING_EVENTS:
        return {"closed": core.settle(fleet, office_hours(config["officeHours"]).is_open(now))}
    reply = core.answer(config["stack"], (event.get("headers") or {}).get("authorization"),
                        lambda: _keys(fleet.clients), fleet, config["timeToServeSeconds"], now)
    return {"statusCode": reply.status, "statusDescription": f"{reply.status} {_REASONS[reply.status]}",
            "isBase64Encoded": False, "headers": {"Content-Type": "application/json", **reply.headers},
            "body": reply.text()}


_REASONS = {401: "Unauthorized", 503: "Service Unavailable"}
