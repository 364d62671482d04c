"""`make wake STACK=... [HOURS=2]`: starts an office-hours stack's fleet now, for someone working late, with the
cloud's own CLI, and lets it go back to its schedule afterwards.

It reads the stack's config (as the plan does) and its outputs (`pulumi stack output --json`, for the names the
cloud gave the group), prints the commands and runs them (`--dry-run` only prints them):

Each cloud's commands are components/<cloud>/wake.py's:

- AWS: the group to its office-hours sizes, the API's listener rule back to forwarding, and a one-off scheduled
  action that scales it down again when the hours are up;
- GCP: a scaling schedule of the autoscaler that keeps replicas.desired VMs for the hours (the next `pulumi up`
  removes it);
- Azure: a fixed-date autoscale profile for the hours, which comes before the recurring ones (the next
  `pulumi up` removes it).

Where the hours reach into the next window, the fleet simply stays up into it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import shlex
import subprocess
import sys
from typing import Any

from fleet.errors import ConfigError
from fleet.schedule import OfficeHours
from fleet.spec import FleetSpec
from fleet.wake_on_request import MAX_HOURS


def _office_hours(spec: FleetSpec) -> OfficeHours:
    if not spec.office_hours:
        raise ConfigError("officeHours", None, f"{spec.stack} has no office hours: its fleet serves around the clock")
    return spec.office_hours


def commands(spec: FleetSpec, target: dict[str, Any], now: dt.datetime, hours_awake: float) -> list[list[str]]:
    """The cloud CLI commands that start the fleet at `now` for `hours_awake` hours; the scale-down is left to
    the schedule where the next window opens before that."""
    office = _office_hours(spec)
    if not 0 < hours_awake <= MAX_HOURS:
        raise ConfigError("HOURS", hours_awake, f"how long to keep the fleet up: more than 0 and at most "
                                                f"{MAX_HOURS:g} hours")
    span = office.wake_span(now, hours_awake)
    if span is None:
        return []  # it serves now, and its window's close scales it down
    cloud = importlib.import_module(f"components.{target['cloud']}.wake")
    return cloud.wake_commands(spec, target, *span)


def _stack(stack: str) -> tuple[FleetSpec, dict[str, Any]]:
    from .plan import stack_spec

    spec = stack_spec(stack)  # with the replicas the program gave the group
    _office_hours(spec)
    try:
        shown = subprocess.run(["pulumi", "stack", "output", "--json", "-s", stack], capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit("make wake: it reads the deployed stack's outputs with the Pulumi CLI, which is not on "
                         "PATH (https://www.pulumi.com/docs/install/)") from None
    if shown.returncode:
        raise SystemExit(f"make wake: `pulumi stack output -s {stack}` failed (is the stack deployed?): "
                         f"{shown.stderr.strip()}")
    target = (json.loads(shown.stdout).get("officeHours") or {}).get("wakeTarget")
    if not target:
        raise SystemExit(f"make wake: {stack}'s outputs name no group to wake: `pulumi up` it with officeHours first")
    return spec, target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make wake", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack")
    parser.add_argument("--hours", type=float, default=2.0, help="how long to keep it up (default 2)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--at", type=dt.datetime.fromisoformat, default=None,
                        help="with --dry-run: what a wake at this time (ISO 8601 with its offset) would run")
    args = parser.parse_args(argv)
    if args.at and not (args.dry_run and args.at.tzinfo):
        parser.error("--at takes a time with its UTC offset, and only with --dry-run")
    try:
        spec, target = _stack(args.stack)
        planned = commands(spec, target, args.at or dt.datetime.now(dt.timezone.utc), args.hours)
    except ConfigError as error:
        print(f"make wake: {error}", file=sys.stderr)
        return 2
    if not planned:
        print(f"make wake: {args.stack} is in its office hours ({spec.office_hours.describe()}): it serves now")
    for command in planned:
        print("+ " + shlex.join(command))
        if not args.dry_run and subprocess.run(command).returncode:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
