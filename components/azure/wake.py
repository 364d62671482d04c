"""`make wake` on Azure (cli/wake.py): the az command that starts an office-hours scale set now. Not part of the
Pulumi program."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fleet.spec import FleetSpec
from cli.wake import WAKE_NAME

from .time_zones import CLI, windows_name


def wake_commands(spec: FleetSpec, target: dict[str, Any], start: dt.datetime, end: dt.datetime,
                  scale_down: bool) -> list[list[str]]:
    """A fixed-date autoscale profile from `start` to `end` (local times of the stack's zone), which comes before the
    recurring ones and expires at its end (`pulumi up --refresh` removes it); the scale-down follows from its end
    either way. The zone is named as the CLI's own list has it (time_zones.py), which may differ from the profiles'
    name for it ("UTC" is not on it)."""
    replicas = spec.replicas
    return [["az", "monitor", "autoscale", "profile", "create", "--resource-group", target["resourceGroup"],
             "--autoscale-name", target["autoscaleSetting"], "--name", WAKE_NAME, "--copy-rules", "replicas",
             "--timezone", windows_name(spec.office_hours.timezone, CLI), "--start", start.strftime("%Y-%m-%dT%H:%M"),
             "--end", end.strftime("%Y-%m-%dT%H:%M"), "--min-count", str(replicas.min),
             "--max-count", str(replicas.max), "--count", str(replicas.desired)]]
