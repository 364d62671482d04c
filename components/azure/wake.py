"""`make wake` on Azure (cli/wake.py): the az command that starts an office-hours scale set now. Not part of the
Pulumi program."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fleet.spec import FleetSpec
from cli.wake import WAKE_NAME


def wake_commands(spec: FleetSpec, target: dict[str, Any], start: dt.datetime, end: dt.datetime,
                  scale_down: bool) -> list[list[str]]:
    """A fixed-date autoscale profile from `start` to `end`, which comes before the recurring ones (the next
    `pulumi up` removes it); the scale-down follows from its end either way."""
    replicas = spec.replicas
    return [["az", "monitor", "autoscale", "profile", "create", "--resource-group", target["resourceGroup"],
             "--autoscale-name", target["autoscaleSetting"], "--name", WAKE_NAME, "--copy-rules", "replicas",
             "--timezone", target["timezone"], "--start", start.strftime("%Y-%m-%dT%H:%M"),
             "--end", end.strftime("%Y-%m-%dT%H:%M"), "--min-count", str(replicas.min),
             "--max-count", str(replicas.max), "--count", str(replicas.desired)]]
