"""`make wake` on AWS (cli/wake.py): the AWS CLI commands that start an office-hours group now, rendered from the
API calls activator/aws.py makes of a wake (the activator's function runs the same calls). Not part of the Pulumi
program."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from activator import aws
from fleet.spec import FleetSpec

from .wake_on_request import sizes


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def _value(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, list):  # the CLI's shorthand of a list of flat structures
        return " ".join(",".join(f"{k}={v}" for k, v in item.items()) for item in value)
    return str(value)


def command(region: str, call: aws.Call) -> list[str]:
    """An API call as the AWS CLI's command: operation and parameters in kebab case."""
    service, operation, params = call
    rendered = ["aws", service, _kebab(operation), "--region", region]
    for name, value in params.items():
        rendered += [f"--{_kebab(name)}", _value(value)]
    return rendered


def wake_commands(spec: FleetSpec, target: dict[str, Any], start: dt.datetime, end: dt.datetime,
                  scale_down: bool) -> list[list[str]]:
    """The group to its office-hours sizes, the API's listener rule back to forwarding and, where no window's
    close will, a one-off scheduled action that scales it down at `end`."""
    up, *down = aws.scale_calls(target, sizes(spec), end, scale_down)
    return [command(target["region"], call) for call in (up, aws.open_call(target), *down)]
