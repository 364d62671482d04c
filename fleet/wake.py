"""`make wake STACK=... [HOURS=2]`: starts an office-hours stack's fleet now, for someone working late, with the
cloud's own CLI, and lets it go back to its schedule afterwards.

It reads the stack's config (as the plan does) and its outputs (`pulumi stack output --json`, for the names the
cloud gave the group), prints the commands and runs them (`--dry-run` only prints them):

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
import json
import shlex
import subprocess
import sys
import zoneinfo
from typing import Any

from .errors import PROJECT, ConfigError
from .schedule import OfficeHours
from .spec import FleetSpec

WAKE_NAME = "vllm-fleet-wake"
# GCP scaling schedules last at least 300 s.
MIN_SCHEDULE_SECONDS = 300


def _aws(spec: FleetSpec, target: dict[str, Any], now: dt.datetime, until: dt.datetime | None) -> list[list[str]]:
    region, group, replicas = target["region"], target["group"], spec.replicas
    commands = [
        ["aws", "autoscaling", "update-auto-scaling-group", "--region", region, "--auto-scaling-group-name", group,
         "--min-size", str(replicas.min), "--max-size", str(replicas.max), "--desired-capacity", str(replicas.desired)],
        ["aws", "elbv2", "modify-rule", "--region", region, "--rule-arn", target["apiRuleArn"],
         "--actions", f"Type=forward,TargetGroupArn={target['targetGroupArn']}"],
    ]
    if until:
        off = str(spec.office_hours.off_hours_replicas)
        commands.append(["aws", "autoscaling", "put-scheduled-update-group-action", "--region", region,
                         "--auto-scaling-group-name", group, "--scheduled-action-name", WAKE_NAME,
                         "--start-time", until.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "--min-size", off, "--desired-capacity", off])
    return commands


def _gcp(spec: FleetSpec, target: dict[str, Any], now: dt.datetime, until: dt.datetime | None) -> list[list[str]]:
    hours = spec.office_hours
    start = now.astimezone(zoneinfo.ZoneInfo(hours.timezone)) + dt.timedelta(minutes=1)
    end = until or hours.next_opening(now) + dt.timedelta(minutes=5)
    seconds = max(MIN_SCHEDULE_SECONDS, int((end - start).total_seconds()))
    return [["gcloud", "compute", "instance-groups", "managed", "update-autoscaling", target["group"],
             "--project", target["project"], "--region", target["region"], f"--set-schedule={WAKE_NAME}",
             f"--schedule-cron={start.minute} {start.hour} {start.day} {start.month} *",
             f"--schedule-duration-sec={seconds}", f"--schedule-min-required-replicas={spec.replicas.desired}",
             f"--schedule-time-zone={hours.timezone}",
             f"--schedule-description=make wake until {end.strftime('%Y-%m-%d %H:%M')}"]]


def _azure(spec: FleetSpec, target: dict[str, Any], now: dt.datetime, until: dt.datetime | None) -> list[list[str]]:
    hours, replicas = spec.office_hours, spec.replicas
    zone = zoneinfo.ZoneInfo(hours.timezone)
    end = (until or hours.next_opening(now) + dt.timedelta(minutes=5)).astimezone(zone)
    return [["az", "monitor", "autoscale", "profile", "create", "--resource-group", target["resourceGroup"],
             "--autoscale-name", target["autoscaleSetting"], "--name", WAKE_NAME, "--copy-rules", "replicas",
             "--timezone", target["timezone"], "--start", now.astimezone(zone).strftime("%Y-%m-%dT%H:%M"),
             "--end", end.strftime("%Y-%m-%dT%H:%M"), "--min-count", str(replicas.min),
             "--max-count", str(replicas.max), "--count", str(replicas.desired)]]


CLOUDS = {"aws": _aws, "gcp": _gcp, "azure": _azure}


def _office_hours(spec: FleetSpec) -> OfficeHours:
    if not spec.office_hours:
        raise ConfigError("officeHours", None, f"{spec.stack} has no office hours: its fleet serves around the clock")
    return spec.office_hours


def commands(spec: FleetSpec, target: dict[str, Any], now: dt.datetime, hours_awake: float) -> list[list[str]]:
    """The cloud CLI commands that start the fleet at `now` for `hours_awake` hours; the scale-down is left to
    the schedule where the next window opens before that."""
    office = _office_hours(spec)
    if not 0 < hours_awake <= 24:
        raise ConfigError("HOURS", hours_awake, "how long to keep the fleet up: more than 0 and at most 24 hours")
    if office.is_open(now):
        return []  # it serves now, and its window's close scales it down
    until = now + dt.timedelta(hours=hours_awake)
    if until >= office.next_opening(now):
        until = None  # it stays up into the next window, whose close scales it down
    return CLOUDS[target["cloud"]](spec, target, now, until)


def _stack(stack: str) -> tuple[FleetSpec, dict[str, Any]]:
    from .plan import stack_config, stack_file
    from .sizing import size, with_sized_replicas
    from .spec import parse_spec

    config, secret_keys = stack_config(stack_file(stack))
    prefix = f"{PROJECT}:"
    spec = parse_spec(stack, {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)},
                      {k[len(prefix):] for k in secret_keys})
    spec = with_sized_replicas(spec, size(spec))  # the replicas the program gave the group
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
