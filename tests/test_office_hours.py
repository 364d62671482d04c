"""Office hours: the `officeHours` key, the times each cloud's own scheduler gets (in the stack's time zone, across
daylight-saving changes), the warm pools, the cost, and bad values refused with a clear message."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import googleapiclient

import pytest
import yaml

from conftest import PlannedStack, config_of, run_plan, write_files
from fleet import catalog
from cli import wake
from fleet.errors import ConfigError
from fleet.outputs import HOURS_PER_MONTH
from fleet.schedule import WEEKS_PER_MONTH, Moment, lead_minutes, parse_office_hours
from fleet.sizing import size
from fleet.spec import parse_spec

BERLIN = {"timezone": "Europe/Berlin", "days": "Mon-Fri", "start": "08:00", "end": "19:00"}
UTC = dt.timezone.utc


def hours(value, replicas_min=1):
    return parse_office_hours(value, replicas_min)


# --- the key ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, key, words", [
    ({**BERLIN, "timezone": "Europe/Berln"}, "officeHours.timezone", "did you mean Europe/Berlin"),
    ({**BERLIN, "timezone": "CET+1"}, "officeHours.timezone", "an IANA time zone"),
    ({**BERLIN, "days": "Mon-Fir"}, "officeHours.days", "did you mean Fri"),
    ({**BERLIN, "days": "Mon\u2013Fri"}, "officeHours.days", "not an en or em dash"),
    ({**BERLIN, "timezone": "localtime"}, "officeHours.timezone", "a file of the machine that plans"),
    ({**BERLIN, "timezone": "/etc/localtime"}, "officeHours.timezone", "name the zone"),
    ({**BERLIN, "start": "19:00", "end": "08:00"}, "officeHours.end", "must be after start"),
    ({**BERLIN, "start": "8:00"}, "officeHours.start", 'HH:MM, from 00:00 to 24:00: write 08:00'),
    ({**BERLIN, "end": "25:00"}, "officeHours.end", 'HH:MM, from 00:00 to 24:00, e.g. 08:00'),
    ({**BERLIN, "offHoursReplicas": 2}, "officeHours.offHoursReplicas", "from 0 to 1"),
    ({**BERLIN, "weekends": True}, "officeHours.weekends", "is not an officeHours key"),
    ({"timezone": "UTC", "windows": [{"days": "Mon", "start": "08:00", "end": "12:00"},
                                     {"days": "Mon-Tue", "start": "11:00", "end": "13:00"}]},
     "officeHours.windows", "two windows overlap on Mon"),
    ({"timezone": "UTC", "windows": []}, "officeHours.windows", "a list of windows"),
    ("Mon-Fri 8-19", "officeHours", "must be a map"),
])
def test_bad_office_hours_are_refused_with_what_works(value, key, words):
    with pytest.raises(ConfigError) as caught:
        hours(value)
    assert caught.value.key == key and words in str(caught.value), str(caught.value)


def test_days_and_windows_in_every_form():
    assert hours(BERLIN).windows[0].days == (0, 1, 2, 3, 4)
    assert hours({**BERLIN, "days": ["Monday", "wed", "FRI"]}).windows[0].days == (0, 2, 4)
    assert hours({**BERLIN, "days": "Mon,Wed-Thu,Sun"}).windows[0].days == (0, 2, 3, 6)
    two = hours({"timezone": "America/New_York", "offHoursReplicas": 1, "windows": [
        {"days": "Mon-Fri", "start": "07:30", "end": "18:00"}, {"days": "Sat", "start": "10:00", "end": "24:00"}]},
        replicas_min=2)
    assert [w.describe() for w in two.windows] == ["Mon-Fri 07:30-18:00", "Sat 10:00-24:00"]
    assert two.off_hours_replicas == 1


def test_day_ranges_that_wrap_the_week_mean_what_they_say():
    assert hours({**BERLIN, "days": "Fri-Mon"}).windows[0].days == (0, 4, 5, 6)
    assert hours({**BERLIN, "days": "Sun-Thu"}).windows[0].days == (0, 1, 2, 3, 6)
    assert hours({**BERLIN, "days": "Sat-Sun"}).windows[0].days == (5, 6)
    assert hours({**BERLIN, "days": "Wed-Wed"}).windows[0].days == (2,)
    assert hours({**BERLIN, "days": "Tue-Mon"}).windows[0].days == (0, 1, 2, 3, 4, 5, 6)
    # Friday night into Monday: the scale-down is Tuesday's 00:00, the scale-up Thursday night's.
    weekend = hours({"timezone": "UTC", "days": "Fri-Mon", "start": "00:00", "end": "24:00"})
    assert (weekend.openings(10), weekend.closings(10)) == ([Moment((3,), 1430)], [Moment((1,), 0)])


@pytest.mark.parametrize("given, canonical", [
    ("US/Eastern", "America/New_York"), ("UTC", "Etc/UTC"), ("Europe/Kiev", "Europe/Kyiv"),
    ("Asia/Calcutta", "Asia/Kolkata"), ("Europe/Berlin", "Europe/Berlin"), ("America/Chicago", "America/Chicago")])
def test_time_zone_links_and_aliases_become_their_canonical_zone(given, canonical):
    office = hours({**BERLIN, "timezone": given})
    assert office.timezone == canonical and office.describe().endswith(f"({canonical})")


def test_localtime_is_refused_naming_the_zone_it_is_on_this_machine(monkeypatch):
    from fleet import schedule

    monkeypatch.setattr(schedule.Path, "resolve", lambda self: schedule.Path("/usr/share/zoneinfo/US/Central"))
    with pytest.raises(ConfigError) as caught:
        hours({**BERLIN, "timezone": "localtime"})
    assert caught.value.key == "officeHours.timezone" and "(America/Chicago on this machine)" in str(caught.value)


def test_windows_that_touch_or_overlap_once_the_lead_is_applied_are_one_stretch():
    """The overnight split, adjacent windows and a gap shorter than the lead: one scale-up and one scale-down, never
    a close at or after the next window's scale-up."""
    def two(first, second, days="Mon-Fri"):
        return hours({"timezone": "UTC", "windows": [{"days": days, "start": first[0], "end": first[1]},
                                                     {"days": days, "start": second[0], "end": second[1]}]})

    overnight = two(("22:00", "24:00"), ("00:00", "06:00"), days="Mon-Sun")
    assert overnight.openings(30) == [Moment(tuple(range(7)), 21 * 60 + 30)]
    assert overnight.closings(30) == [Moment(tuple(range(7)), 6 * 60)]
    adjacent = two(("08:00", "12:00"), ("12:00", "18:00"))
    assert (adjacent.openings(15), adjacent.closings(15)) == ([Moment(tuple(range(5)), 7 * 60 + 45)],
                                                              [Moment(tuple(range(5)), 18 * 60)])
    lunch = two(("08:00", "12:30"), ("13:30", "19:00"))
    assert len(lunch.openings(60)) == 1 and len(lunch.closings(60)) == 1  # the lead fills the break
    assert len(lunch.openings(55)) == 2 and lunch.closings(55)[0] == Moment(tuple(range(5)), 12 * 60 + 30)
    # The API (no lead) closes for the lunch break and opens again; touching windows never close it.
    assert [m.minute for m in lunch.closings(0)] == [12 * 60 + 30, 19 * 60]
    assert adjacent.closings(0) == [Moment(tuple(range(5)), 18 * 60)]
    assert lunch.hours_per_month(60) == pytest.approx(5 * 12 * WEEKS_PER_MONTH)  # the break is no extra lead


def test_a_week_without_time_off_is_always_on_and_costs_as_much():
    every_day = hours({"timezone": "UTC", "days": "Mon-Sun", "start": "00:00", "end": "24:00"})
    assert every_day.always_on(0) and every_day.openings(15) == every_day.closings(15) == []
    assert every_day.hours_per_month(15) == pytest.approx(24 * 7 * WEEKS_PER_MONTH)  # not 24.25 h a day
    # Gaps shorter than the lead leave no time off either.
    nearly = hours({"timezone": "UTC", "days": "Mon-Sun", "start": "00:20", "end": "24:00"})
    assert not nearly.always_on(15) and nearly.always_on(20)


def test_a_gcp_stretch_over_the_autumn_change_lasts_its_extra_hour():
    """durationSec is absolute: a stretch that holds a daylight-saving change is cut where the change is over and
    its first part lasts the extra hour of the night the clocks go back."""
    night = {"windows": [{"days": "Mon-Sun", "start": "22:00", "end": "24:00"},
                         {"days": "Mon-Sun", "start": "00:00", "end": "06:00"}]}
    for zone in ("Europe/Berlin", "America/Chicago"):
        stretches = hours({"timezone": zone, **night}).timed_stretches(30)
        assert stretches == [(Moment((6,), 3 * 60), 3 * 3600), (Moment((5,), 21 * 60 + 30), (5.5 + 1) * 3600),
                             (Moment((0, 1, 2, 3, 4, 6), 21 * 60 + 30), 8.5 * 3600)], zone
    assert hours({"timezone": "Etc/UTC", **night}).timed_stretches(30) == [
        (Moment(tuple(range(7)), 21 * 60 + 30), 8.5 * 3600)]
    assert hours(BERLIN).timed_stretches(30) == [(Moment(tuple(range(5)), 7 * 60 + 30), 11.5 * 3600)]


def test_scale_up_starts_early_by_the_time_to_serve_and_crosses_midnight_to_the_day_before():
    office = hours({"timezone": "UTC", "days": "Mon,Tue", "start": "00:30", "end": "09:00"})
    [opening] = office.openings(lead_minutes(45 * 60 + 1))  # 45 min and a second: 50 minutes early
    assert opening == Moment((0, 6), 23 * 60 + 40)  # Sunday and Monday at 23:40
    assert opening.cron == "40 23 * * 1,0"  # cron counts from Sunday, 0
    [closing] = hours({"timezone": "UTC", "days": "Fri", "start": "10:00", "end": "24:00"}).closings(5)
    assert closing == Moment((5,), 0)  # Saturday 00:00
    assert Moment((0, 1, 2, 3, 4), 7 * 60 + 35).cron == "35 7 * * 1,2,3,4,5"


def test_the_schedule_keeps_to_local_time_across_daylight_saving_changes():
    """The clouds get local times and the time zone; in UTC the opening moves by an hour at the change, which
    next_opening (what the off-hours answer says) follows."""
    office = hours(BERLIN)
    before = office.next_opening(dt.datetime(2026, 3, 27, 20, tzinfo=UTC))  # Friday evening, CET
    after = office.next_opening(dt.datetime(2026, 3, 30, 12, tzinfo=UTC))  # Monday noon, CEST
    assert (before.hour, before.minute, before.weekday()) == (8, 0, 0)  # Monday 30 March, 08:00 local
    assert before.astimezone(UTC).hour == 6  # CEST: UTC+2, the first Monday after the change
    assert after.astimezone(UTC).hour == 6 and after.day == 31
    winter = office.next_opening(dt.datetime(2026, 10, 23, 20, tzinfo=UTC))  # after the change back
    assert winter.astimezone(UTC).hour == 7 and winter.day == 26
    assert office.is_open(dt.datetime(2026, 3, 30, 6, 30, tzinfo=UTC))  # 08:30 CEST
    assert not office.is_open(dt.datetime(2026, 3, 27, 6, 30, tzinfo=UTC))  # 07:30 CET
    assert not office.is_open(dt.datetime(2026, 3, 28, 10, tzinfo=UTC))  # Saturday


def test_hours_a_month_are_the_windows_times_the_weeks_of_an_average_month():
    office = hours(BERLIN)
    assert office.hours_per_month() == pytest.approx(5 * 11 * 365.25 / 7 / 12)  # 239.2 h, not 730
    assert office.hours_per_month(30) == pytest.approx(5 * 11.5 * 365.25 / 7 / 12)


# --- the plans: each cloud's own scheduler, pools and closed answer ----------------------------------------------
AWS, GCP, AZURE = "codellama-prod", "codellama-gcp", "qwen-coder-azure-dev"


def early(plan: PlannedStack) -> int:
    return plan.outputs["officeHours"]["scaleUpMinutesEarly"]


def test_aws_scales_with_scheduled_actions_in_the_stacks_time_zone(plan_of):
    plan = plan_of(AWS)
    actions = plan.named("aws:autoscaling/schedule:Schedule")
    lead = early(plan)
    budget = plan.outputs["timeToServe"]
    # The warm pool's instances only boot and load: the scale-up starts by that, not by a new instance's setup.
    assert lead == lead_minutes(budget["boot"] + budget["load"]) < lead_minutes(budget["seconds"])
    opening = 8 * 60 - lead
    assert actions["codellama-prod-open-0"] == {
        "autoscalingGroupName": "vllm-fleet-codellama-prod", "scheduledActionName": "vllm-fleet-open-0",
        "recurrence": f"{opening % 60} {opening // 60} * * 1,2,3,4,5", "timeZone": "America/New_York",
        "minSize": 1, "maxSize": 4, "desiredCapacity": 1}
    # Closing leaves maxSize as it is (-1): a size left out would be set to 0.
    assert actions["codellama-prod-close-0"] == {
        "autoscalingGroupName": "vllm-fleet-codellama-prod", "scheduledActionName": "vllm-fleet-close-0",
        "recurrence": "0 19 * * 1,2,3,4,5", "timeZone": "America/New_York",
        "minSize": 0, "maxSize": -1, "desiredCapacity": 0}
    # A `pulumi up` at night must not set the sizes back to the office-hours ones.
    assert {"minSize", "maxSize", "desiredCapacity"} <= set(plan.options_of("aws:autoscaling/group:Group")["ignoreChanges"])


def test_aws_keeps_a_warm_pool_of_stopped_instances_that_complete_their_launch_when_vllm_serves(plan_of):
    plan = plan_of(AWS)
    group = plan.one("aws:autoscaling/group:Group")
    assert group["name"] == "vllm-fleet-codellama-prod"
    assert group["warmPool"] == {"poolState": "Stopped", "minSize": 0, "maxGroupPreparedCapacity": 1,
                                 "instanceReusePolicy": {"reuseOnScaleIn": True}}
    heartbeat = min(plan.outputs["timeToServe"]["seconds"], 7200)
    hook = {"name": "vllm-fleet-ready", "lifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
            "defaultResult": "CONTINUE", "heartbeatTimeout": heartbeat}
    assert group["initialLifecycleHooks"] == [hook]
    assert plan.one("aws:autoscaling/lifecycleHook:LifecycleHook") == {**hook,
                                                                        "autoscalingGroupName": "vllm-fleet-codellama-prod"}
    # The instances may complete their own group's lifecycle actions, no other group's.
    policy = json.loads(plan.named("aws:iam/rolePolicy:RolePolicy")["codellama-prod-read-secrets"]["policy"])
    [complete] = [s for s in policy["Statement"] if s["Action"] == "autoscaling:CompleteLifecycleAction"]
    assert complete["Resource"] == ("arn:aws:autoscaling:us-east-1:*:autoScalingGroup:*:"
                                    "autoScalingGroupName/vllm-fleet-codellama-prod")
    files = write_files(plan.user_data)
    script = files["/usr/local/sbin/vllm-fleet-ready"]["content"]
    assert "fleet_complete_launch vllm-fleet-codellama-prod vllm-fleet-ready" in script
    assert "/health" in script and files["/usr/local/sbin/vllm-fleet-ready"]["permissions"] == "0755"
    assert f"RuntimeMaxSec={heartbeat}" in files["/etc/systemd/system/vllm-fleet-ready.service"]["content"]
    assert "vllm-fleet-ready.service" in yaml.safe_load(plan.user_data)["runcmd"][1]
    pool = plan.outputs["officeHours"]["standbyPool"]
    assert (pool["stoppedOffHours"], pool["stoppedInHours"]) == (1, 0)


def test_the_ready_script_completes_only_a_pending_launch(tmp_path, plan_of):
    """fleet_complete_launch, run for real with the aws CLI and the metadata service stubbed: CONTINUE for this
    instance in this group; 'No active Lifecycle Action' (a reboot in service) is no failure; other errors are."""
    library = write_files(plan_of(AWS).user_data)["/usr/local/lib/vllm-fleet/cloud.sh"]["content"]
    (tmp_path / "cloud.sh").write_text(library)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text('#!/bin/bash\ncase "$*" in *api/token*) echo token;; *instance-id*) echo i-0abc;; '
                                  '*) exit 7;; esac\n')
    (bin_dir / "aws").write_text('#!/bin/bash\necho "$*" >>"$CALLS"\ncase "$ANSWER" in ok) exit 0;; '
                                 'none) echo "An error occurred (ValidationError): No active Lifecycle Action found '
                                 'with instance ID i-0abc" >&2; exit 254;; *) echo "AccessDenied" >&2; exit 254;; esac\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)

    def run(answer: str) -> int:
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls"), "ANSWER": answer}
        return subprocess.run(["bash", "-c", f". {tmp_path}/cloud.sh && fleet_complete_launch my-group my-hook"],
                              env=env, capture_output=True, text=True).returncode

    assert run("ok") == 0
    assert (tmp_path / "calls").read_text().split("\n")[0] == (
        "autoscaling complete-lifecycle-action --region us-east-1 --auto-scaling-group-name my-group "
        "--lifecycle-hook-name my-hook --instance-id i-0abc --lifecycle-action-result CONTINUE")
    assert run("none") == 0
    assert run("denied") != 0


def test_aws_answers_a_clear_503_outside_hours_with_eventbridge_scheduler(plan_of):
    from components.aws.edge import edge_answer

    plan = plan_of(AWS)
    schedules = plan.named("aws:scheduler/schedule:Schedule")
    rule_arn = plan.outputs["officeHours"]["wakeTarget"]["apiRuleArn"]
    close, reopen = schedules["codellama-prod-close-api-0"], schedules["codellama-prod-open-api-0"]
    assert close["scheduleExpression"] == "cron(0 19 ? * MON,TUE,WED,THU,FRI *)"
    assert reopen["scheduleExpression"] == "cron(0 8 ? * MON,TUE,WED,THU,FRI *)"  # at the window's start
    assert {close["scheduleExpressionTimezone"], reopen["scheduleExpressionTimezone"]} == {"America/New_York"}
    assert close["target"]["arn"] == "arn:aws:scheduler:::aws-sdk:elasticloadbalancingv2:modifyRule"
    closed = json.loads(close["target"]["input"])
    assert closed["RuleArn"] == rule_arn
    [action] = closed["Actions"]
    body = json.loads(action["FixedResponseConfig"]["MessageBody"])
    assert action["FixedResponseConfig"]["StatusCode"] == "503" and body["error"]["code"] == 503
    assert "Mon-Fri 08:00-19:00 (America/New_York)" in body["error"]["message"]
    assert json.loads(reopen["target"]["input"])["Actions"] == [
        {"Type": "forward", "TargetGroupArn": plan.outputs["officeHours"]["wakeTarget"]["targetGroupArn"]}]
    # The scheduler's role may modify that one rule.
    switch = json.loads(plan.named("aws:iam/rolePolicy:RolePolicy")["codellama-prod-switch-api"]["policy"])
    assert switch["Statement"] == [{"Effect": "Allow", "Action": "elasticloadbalancing:ModifyRule", "Resource": rule_arn}]
    # The schedules own the rule's action; a new target group replaces the rule, else its delete would fail in use.
    assert plan.options_of("aws:lb/listenerRule:ListenerRule") == {
        "ignoreChanges": ["actions"], "deleteBeforeReplace": True,
        "replacementTrigger": plan.outputs["officeHours"]["wakeTarget"]["targetGroupArn"]}
    # Only schedules of this account may use it (confused deputy).
    [trust] = [json.loads(role["assumeRolePolicy"])["Statement"] for name, role in plan.named(
        "aws:iam/role:Role").items() if "switch-api" in name]
    assert trust == [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "scheduler.amazonaws.com"},
                      "Condition": {"StringEquals": {"aws:SourceAccount": rule_arn.split(":")[4]}}}]
    # The rule as the closing schedule leaves it: the API answers 503, every other path still the listener's 404.
    resources = [(step["type"], json.loads(json.dumps(step["newState"]["inputs"]))) for step in plan.steps]
    [rule] = [inputs for kind, inputs in resources if kind == "aws:lb/listenerRule:ListenerRule"]
    assert edge_answer(resources, "GET", "/v1/models") is None
    rule["actions"] = [{"type": "fixed-response", "fixedResponse": {"statusCode": a["FixedResponseConfig"]["StatusCode"]}}
                       for a in closed["Actions"]]
    assert edge_answer(resources, "GET", "/v1/models") == 503 and edge_answer(resources, "GET", "/metrics") == 404
    # `pulumi up` at night leaves the rule as the schedule set it.
    assert plan.options_of("aws:lb/listenerRule:ListenerRule")["ignoreChanges"] == ["actions"]


def test_aws_spot_groups_get_no_warm_pool_and_start_early_by_the_whole_time_to_serve(stack_file):
    path = stack_file({**config_of("codellama-dev"), "officeHours": BERLIN}, "spot-hours")
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    plan = PlannedStack("spot-hours", json.loads(result.stdout))
    group = plan.one("aws:autoscaling/group:Group")
    assert "warmPool" not in group and "initialLifecycleHooks" not in group
    assert plan.resources("aws:autoscaling/lifecycleHook:LifecycleHook") == []
    assert "vllm-fleet-ready" not in plan.user_data
    hours_out = plan.outputs["officeHours"]
    assert hours_out["standbyPool"] is None and "spot" in hours_out["standbyNote"]
    assert early(plan) == lead_minutes(plan.outputs["timeToServe"]["seconds"])


def test_gcp_scales_with_scaling_schedules_and_keeps_a_standby_pool(plan_of, stack_file):
    # A 7B model: a standby VM's setup fits GCP's 3600 s standby delay (codellama-gcp's 70B does not).
    plan = plan_of(str(stack_file({**config_of(GCP), "model": "codellama/CodeLlama-7b-Instruct-hf",
                                   "servedModelName": "codellama-7b-instruct"}, GCP)))
    policy = plan.one("gcp:compute/regionAutoscaler:RegionAutoscaler")["autoscalingPolicy"]
    lead = early(plan)
    budget = plan.outputs["timeToServe"]
    assert lead == lead_minutes(budget["boot"] + budget["load"])
    opening = 8 * 60 - lead
    assert policy["minReplicas"] == 0 and policy["maxReplicas"] == 4
    assert policy["scalingSchedules"] == [{
        "name": "office-hours-0", "minRequiredReplicas": 1, "timeZone": "America/Chicago",
        "schedule": f"{opening % 60} {opening // 60} * * 1,2,3,4,5", "durationSec": (11 * 60 + lead) * 60,
        "description": "vllm-fleet codellama-gcp: Mon-Fri 08:00-19:00"}]
    # Scale-in control would take hours to empty the group in the evening.
    assert "scaleInControl" not in policy
    group = plan.one("gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager")
    delay = budget["seconds"] + budget["download"]  # the weights at half the assumed rate
    assert delay <= 3600
    assert group["standbyPolicy"] == {"mode": "SCALE_OUT_POOL", "initialDelaySec": delay}
    assert group["targetStoppedSize"] == 1
    assert plan.options_of("gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager")["ignoreChanges"] == [
        "targetSize"]


def test_gcp_answers_its_503_with_a_json_object_that_says_when_it_serves(plan_of):
    plan = plan_of(GCP)
    url_map = plan.one("gcp:compute/uRLMap:URLMap")
    backend_bucket = plan.one("gcp:compute/backendBucket:BackendBucket")
    policy = url_map["defaultCustomErrorResponsePolicy"]
    assert policy == {"errorService": "codellama-gcp-closed-id", "errorResponseRules": [
        {"matchResponseCodes": ["503"], "path": "/vllm-fleet-closed.json", "overrideResponseCode": 503}]}
    [bucket] = plan.resources("gcp:storage/bucket:Bucket")
    assert bucket["uniformBucketLevelAccess"] and backend_bucket["bucketName"].startswith("codellama-gcp-closed")
    closed = plan.one("gcp:storage/bucketObject:BucketObject")
    assert (closed["name"], closed["contentType"]) == ("vllm-fleet-closed.json", "application/json")
    assert "Mon-Fri 08:00-19:00 (America/Chicago)" in json.loads(closed["source"]["asset"])["error"]["message"]
    # Public: the one bucket that holds the one object.
    [reader] = plan.resources("gcp:storage/bucketIAMMember:BucketIAMMember")
    assert (reader["role"], reader["member"]) == ("roles/storage.objectViewer", "allUsers")


def test_azure_switches_recurring_autoscale_profiles_in_the_windows_time_zone(plan_of):
    plan = plan_of(AZURE)
    profiles = {p["name"]: p for p in plan.one("azure-native:monitor:AutoscaleSetting")["profiles"]}
    lead = early(plan)
    assert lead == lead_minutes(plan.outputs["timeToServe"]["seconds"])  # no standby pool on Azure
    opening = 8 * 60 - lead
    office = profiles["office-hours-0"]
    assert office["recurrence"] == {"frequency": "Week", "schedule": {
        "timeZone": "W. Europe Standard Time", "days": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
        "hours": [opening // 60], "minutes": [opening % 60]}}
    assert office["capacity"] == profiles["replicas"]["capacity"] == {"minimum": "1", "default": "1", "maximum": "1"}
    off = profiles["off-hours-0"]
    assert off["recurrence"]["schedule"]["hours"] == [19] and off["recurrence"]["schedule"]["minutes"] == [0]
    assert off["capacity"] == {"minimum": "0", "default": "0", "maximum": "0"} and off["rules"] == []
    assert "Flexible" in plan.outputs["officeHours"]["standbyNote"]


def test_azure_shows_a_closed_page_for_its_502(plan_of):
    plan = plan_of(AZURE)
    gateway = plan.one("azure-native:network:ApplicationGateway")
    [error] = gateway["customErrorConfigurations"]
    account = plan.one("azure-native:storage:StorageAccount")
    page = plan.one("azure-native:storage:Blob")
    content = page["source"]["asset"]
    # The gateway downloads the page once and never again: a new page must be a new blob, named by its content.
    name = f"vllm-fleet-closed-{hashlib.sha256(content.encode()).hexdigest()[:16]}.html"
    assert page["blobName"] == name
    assert error == {"statusCode": "HttpStatus502",
                     "customErrorPageUrl": f"https://{account['accountName']}.z13.web.core.windows.net/{name}"}
    assert account["minimumTlsVersion"] == "TLS1_2" and account["allowBlobPublicAccess"] is False
    assert (page["containerName"], page["contentType"]) == ("$web", "text/html")
    assert "Mon-Fri 08:00-19:00 (Europe/Berlin)" in content


def test_azure_closed_page_of_other_hours_is_another_blob(stack_file, plan_of):
    """Other hours are another page, so another blob name and URL: the gateway then downloads the new page."""
    config = config_of(AZURE)
    config["officeHours"] = {**config["officeHours"], "end": "18:00"}
    other = run_plan(stack_file(config, AZURE))
    assert other.returncode == 0, other.stderr
    [blob] = [s["newState"]["inputs"] for s in json.loads(other.stdout)["steps"]
              if s["type"] == "azure-native:storage:Blob"]
    assert "08:00-18:00" in blob["source"]["asset"]
    assert blob["blobName"] != plan_of(AZURE).one("azure-native:storage:Blob")["blobName"]


@pytest.mark.parametrize("stack", [AWS, GCP, AZURE])
def test_the_monthly_cost_follows_the_schedule_and_the_pool(stack, plan_of):
    plan = plan_of(stack)
    cost = plan.outputs["estimatedCost"]
    spec = parse_spec(stack, {k.split(":", 1)[1]: v if isinstance(v, str) else json.dumps(v)
                              for k, v in yaml.safe_load(open(f"stacks/Pulumi.{stack}.yaml"))["config"].items()},
                      set())
    sizing = size(spec)
    hourly = catalog.cloud(spec.cloud).price(sizing.instance, spec.region).usd_per_hour
    open_hours = 5 * (11 + early(plan) / 60) * WEEKS_PER_MONTH  # Mon-Fri 08:00-19:00 and the lead
    pool = plan.outputs["officeHours"]["standbyPool"]
    pool_cost = 0.0
    if pool:
        stopped_hours = pool["stoppedInHours"] * open_hours + pool["stoppedOffHours"] * (HOURS_PER_MONTH - open_hours)
        pool_cost = pool["diskUsdPerStoppedVmMonth"] / HOURS_PER_MONTH * stopped_hours
        if stack == GCP:  # each morning's scale-up empties the pool; new VMs run their setup, then stop
            pool_cost += 5 * WEEKS_PER_MONTH * hourly * min(plan.outputs["timeToServe"]["seconds"], 3600) / 3600
    assert cost["usdPerMonth"] == pytest.approx(hourly * open_hours + pool_cost, abs=1)
    assert cost["standbyPoolUsdPerMonth"] == pytest.approx(pool_cost, abs=1)
    assert cost["usdPerMonth24x7"] == pytest.approx(hourly * HOURS_PER_MONTH, abs=1)
    assert cost["savingPercent"] == round(100 * (1 - cost["usdPerMonth"] / cost["usdPerMonth24x7"]))
    assert 55 <= cost["savingPercent"] <= 70  # 55 working hours of 168
    assert f"${cost['usdPerMonth']:.0f}/month as scheduled" in run_plan(stack, "text").stdout


def test_off_hours_replicas_run_around_the_clock_and_need_no_pool(stack_file):
    config = {**config_of(AWS), "replicas": {"min": 2, "max": 4},
              "officeHours": {**BERLIN, "offHoursReplicas": 2}}
    result = run_plan(stack_file(config, "two-at-night"))
    assert result.returncode == 0, result.stderr
    plan = PlannedStack("two-at-night", json.loads(result.stdout))
    cost = plan.outputs["estimatedCost"]
    assert cost["usdPerMonth"] == pytest.approx(cost["usdPerMonth24x7"], abs=1)
    assert plan.outputs["officeHours"]["standbyPool"] is None
    assert "offHoursReplicas" in plan.outputs["officeHours"]["standbyNote"]


@pytest.mark.parametrize("cloud_config, key, words", [
    ({"officeHours": {**BERLIN, "timezone": "Pacific/Chatham"}}, "officeHours.timezone", "Windows time zones"),
    ({"officeHours": {**BERLIN, "warmPool": "maybe"}}, "officeHours.warmPool", "true"),
    ({"officeHours": {**BERLIN, "days": "Mon-Fir"}}, "officeHours.days", "did you mean Fri"),
])
def test_bad_office_hours_stop_the_plan_before_anything_is_created(cloud_config, key, words, stack_file):
    result = run_plan(stack_file({**config_of(AZURE), **cloud_config}, "bad-hours"))
    assert result.returncode == 2, result.stderr
    assert key in result.stderr and words in result.stderr and "Traceback" not in result.stderr


# --- make wake ---------------------------------------------------------------------------------------------
BERLIN_FRIDAY_NIGHT = dt.datetime(2026, 11, 27, 20, 0, tzinfo=UTC)  # 21:00 in Berlin


def spec_of(stack: str):
    raw = {k.split(":", 1)[1]: v if isinstance(v, str) else json.dumps(v)
           for k, v in yaml.safe_load(open(f"stacks/Pulumi.{stack}.yaml"))["config"].items()}
    return parse_spec(stack, raw, set())


def test_wake_on_aws_starts_the_group_opens_the_api_and_scales_down_when_the_hours_are_up(plan_of):
    target = plan_of(AWS).outputs["officeHours"]["wakeTarget"]
    spec = spec_of(AWS)
    friday_evening = dt.datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # Friday 20:00 in New York
    up, api, down = wake.commands(spec, target, friday_evening, 3)
    assert up == ["aws", "autoscaling", "update-auto-scaling-group", "--region", "us-east-1",
                  "--auto-scaling-group-name", "vllm-fleet-codellama-prod", "--min-size", "1", "--max-size", "4",
                  "--desired-capacity", "1"]
    assert api[:4] == ["aws", "elbv2", "modify-rule", "--region"] and target["apiRuleArn"] in api
    assert f"Type=forward,TargetGroupArn={target['targetGroupArn']}" in api
    assert down[down.index("--start-time") + 1] == "2026-11-28T04:00:00Z"
    assert down[down.index("--desired-capacity") + 1] == "0"
    # Hours that reach into Monday's window: it stays up, and that window's close scales it down.
    sunday_night = dt.datetime(2026, 11, 30, 4, 0, tzinfo=UTC)  # Sunday 23:00 in New York
    assert len(wake.commands(spec, target, sunday_night, 10)) == 2
    # In office hours there is nothing to wake.
    assert wake.commands(spec, target, dt.datetime(2026, 11, 25, 15, 0, tzinfo=UTC), 2) == []


def test_wake_on_gcp_adds_a_scaling_schedule_for_the_hours(plan_of):
    target = plan_of(GCP).outputs["officeHours"]["wakeTarget"]
    [command] = wake.commands(spec_of(GCP), target, dt.datetime(2026, 11, 28, 2, 0, tzinfo=UTC), 2)  # 20:00 Chicago
    assert command[:6] == ["gcloud", "compute", "instance-groups", "managed", "update-autoscaling", target["group"]]
    assert "--schedule-cron=1 20 27 11 * 2026" in command and "--schedule-duration-sec=7140" in command
    assert "--schedule-min-required-replicas=1" in command and "--schedule-time-zone=America/Chicago" in command
    assert ["--project", "my-gcp-project"] == command[6:8]


def test_a_gcp_wake_fires_once_not_every_year(plan_of):
    """GCP's scaling schedules read the extended cron format, "with an optional year field ... if the optional year
    is set, ... the scaling schedule runs once" (the Compute API's own model says so): without the year, a wake on
    27 November would start the fleet on every 27 November."""
    from week_replay import Cron, firings

    discovery = json.loads((Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" /
                            "compute.v1.json").read_text())
    assert "runs once" in discovery["schemas"]["AutoscalingPolicyScalingSchedule"]["properties"]["schedule"][
        "description"]
    target = plan_of(GCP).outputs["officeHours"]["wakeTarget"]
    now = dt.datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
    [command] = wake.commands(spec_of(GCP), target, now, 2)
    [cron] = [arg.split("=", 1)[1] for arg in command if arg.startswith("--schedule-cron=")]
    [zone] = [arg.split("=", 1)[1] for arg in command if arg.startswith("--schedule-time-zone=")]
    assert firings(Cron.standard(cron), zone, now, now + dt.timedelta(days=3 * 366)) == [
        dt.datetime(2026, 11, 28, 2, 1, tzinfo=UTC)]


def test_wake_on_azure_adds_a_fixed_date_profile_for_the_hours(plan_of):
    target = plan_of(AZURE).outputs["officeHours"]["wakeTarget"]
    [command] = wake.commands(spec_of(AZURE), target, BERLIN_FRIDAY_NIGHT, 2)
    assert command[:5] == ["az", "monitor", "autoscale", "profile", "create"]
    assert command[command.index("--autoscale-name") + 1] == target["autoscaleSetting"]
    assert command[command.index("--timezone") + 1] == "W. Europe Standard Time"
    assert (command[command.index("--start") + 1], command[command.index("--end") + 1]) == (
        "2026-11-27T21:00", "2026-11-27T23:00")
    assert command[command.index("--count") + 1] == "1"
    with pytest.raises(ConfigError, match="HOURS"):
        wake.commands(spec_of(AZURE), target, BERLIN_FRIDAY_NIGHT, 30)


def test_wake_on_azure_names_the_zone_as_the_cli_lists_it(plan_of):
    """`az monitor autoscale profile create --timezone` takes only its own list's names: Etc/UTC is "UTC" in the
    profiles, "Greenwich Standard Time" (UTC all year) for the CLI; a zone the CLI's list has no clocks for is
    refused by make wake with the key, not by az after the plan."""
    target = plan_of(AZURE).outputs["officeHours"]["wakeTarget"]
    spec = spec_of(AZURE)
    utc = dataclasses.replace(spec, office_hours=dataclasses.replace(spec.office_hours, timezone="Etc/UTC"))
    [command] = wake.commands(utc, target, dt.datetime(2026, 11, 27, 21, 0, tzinfo=UTC), 2)
    assert command[command.index("--timezone") + 1] == "Greenwich Standard Time"
    israel = dataclasses.replace(spec, office_hours=dataclasses.replace(spec.office_hours, timezone="Asia/Jerusalem"))
    with pytest.raises(ConfigError, match="make wake") as refused:
        wake.commands(israel, target, dt.datetime(2026, 11, 27, 21, 0, tzinfo=UTC), 2)
    assert refused.value.key == "officeHours.timezone"


def test_make_wake_reads_the_stacks_outputs_and_prints_the_commands(tmp_path, plan_of):
    """The CLI end to end, with `pulumi stack output` answered by a stand-in that prints the plan's outputs."""
    outputs = plan_of(AZURE).outputs
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    (tmp_path / "pulumi").write_text(f'#!/bin/bash\n[ "$*" = "stack output --json -s {AZURE}" ] && '
                                     f'cat {tmp_path}/outputs.json\n')
    (tmp_path / "pulumi").chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path)}
    def wake_at(when: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.wake", AZURE, "--hours", "1", "--dry-run", "--at", when],
                              env=env, capture_output=True, text=True)

    night = wake_at("2026-11-27T21:00:00+01:00")
    assert night.returncode == 0, night.stderr
    assert night.stdout.startswith("+ az monitor autoscale profile create --resource-group vllm-fleet-qwen-coder-azure-dev "
                                   "--autoscale-name qwen-coder-azure-dev-replicas --name vllm-fleet-wake")
    assert "--start 2026-11-27T21:00 --end 2026-11-27T22:00" in night.stdout
    day = wake_at("2026-11-27T10:00:00+01:00")
    assert day.returncode == 0 and "is in its office hours" in day.stdout and "+ az" not in day.stdout
    around_the_clock = subprocess.run([sys.executable, "-m", "cli.wake", "codellama-dev", "--dry-run"], env=env,
                                      capture_output=True, text=True)
    assert around_the_clock.returncode == 2 and "codellama-dev has no office hours" in around_the_clock.stderr


def test_a_setup_longer_than_a_lifecycle_hook_waits_is_clamped_and_said(stack_file):
    """A lifecycle hook waits at most 7200 s: a model whose download takes longer gets that, and a warning."""
    config = {**config_of(AWS), "model": "acme/private-coder-290b", "maxModelLen": 8192, "instanceType": "p4de.24xlarge",
              "modelParams": {"params_b": 290, "layers": 80, "heads": 64, "kv_heads": 8, "head_dim": 128,
                              "max_len": 8192}}
    config.pop("servedModelName", None)
    result = run_plan(stack_file(config, "huge"))
    assert result.returncode == 0, result.stderr
    plan = PlannedStack("huge", json.loads(result.stdout))
    assert plan.outputs["timeToServe"]["seconds"] > 7200
    assert plan.one("aws:autoscaling/lifecycleHook:LifecycleHook")["heartbeatTimeout"] == 7200
    assert any("a lifecycle hook waits at most 7200 s" in w for w in plan.warnings)
