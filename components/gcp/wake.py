"""`make wake` on GCP (cli/wake.py): the gcloud command that starts an office-hours group now. Not part of the
Pulumi program."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fleet.spec import FleetSpec
from cli.wake import WAKE_NAME

# Scaling schedules last at least 300 s.
MIN_SCHEDULE_SECONDS = 300


def wake_commands(spec: FleetSpec, target: dict[str, Any], start: dt.datetime, end: dt.datetime,
                  scale_down: bool) -> list[list[str]]:
    """A scaling schedule of the autoscaler that keeps replicas.desired VMs from the next minute to `end`, once:
    its cron names the year ("the extended cron format (with an optional year field) ... if the optional year is
    set, ... the scaling schedule runs once", the Compute API's AutoscalingPolicyScalingSchedule.schedule). The
    scale-down follows from its end; the schedule stays listed on the autoscaler until `pulumi up --refresh`
    (docs/office-hours.md)."""
    begins = start + dt.timedelta(minutes=1)  # a cron time to the minute, not in the past
    seconds = max(MIN_SCHEDULE_SECONDS, int((end - begins).total_seconds()))
    return [["gcloud", "compute", "instance-groups", "managed", "update-autoscaling", target["group"],
             "--project", target["project"], "--region", target["region"], f"--set-schedule={WAKE_NAME}",
             f"--schedule-cron={begins.minute} {begins.hour} {begins.day} {begins.month} * {begins.year}",
             f"--schedule-duration-sec={seconds}", f"--schedule-min-required-replicas={spec.replicas.desired}",
             f"--schedule-time-zone={spec.office_hours.timezone}",
             f"--schedule-description=make wake until {end.strftime('%Y-%m-%d %H:%M')}"]]
