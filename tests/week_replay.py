"""A week of a plan's schedules as each cloud runs them, from the planned resources only:

- AWS: scheduled actions set the group's min/max/desired at a point in time (cron in the action's time zone; -1
  leaves a size as it is); EventBridge Scheduler schedules switch the API's listener rule (cron in the schedule's
  zone). Two actions on one thing in the same minute have no defined order: the replay refuses them.
- Azure: a recurring autoscale profile holds from its start until the next profile starts (recurrence in a Windows
  time zone, read here as its IANA zone by CLDR's mapping); the count is brought inside the profile's capacity.
- GCP: a scaling schedule holds its minimum from its cron start (local time) for durationSec absolute seconds;
  the group keeps the largest minimum of the schedules active and the autoscaler's own.

A local time the clocks skip or repeat (the hour of a daylight-saving change) is not modelled: the replay raises
`Unmodelled` rather than guess what a cloud does with it. Times are whole minutes; instants are UTC.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import zoneinfo
from dataclasses import dataclass
from typing import Any, Callable, Iterable

UTC = dt.timezone.utc
MINUTE = dt.timedelta(minutes=1)
WEEK_SPAN = dt.timedelta(days=7)
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # cron's day numbers: Sunday 0


class Unmodelled(Exception):
    """A schedule the replay cannot run without guessing a cloud's behaviour."""


# --- cron --------------------------------------------------------------------------------------------------
def _field(text: str, lo: int, hi: int, names: tuple[str, ...] = ()) -> frozenset[int] | None:
    """One cron field: `*` (or `?`) is None (any); else numbers or names, lists, ranges `a-b` and steps `/n`."""
    if text in ("*", "?"):
        return None
    values: set[int] = set()
    for part in text.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            first, last = lo, hi
        else:
            first_text, _, last_text = base.partition("-")
            first = _value(first_text, names)
            last = _value(last_text, names) if last_text else (hi if step else first)
        if not lo <= first <= last <= hi:
            raise ValueError(f"cron field {text!r}: {part!r} outside {lo}-{hi}")
        values.update(range(first, last + 1, int(step) if step else 1))
    return frozenset(values)


def _value(text: str, names: tuple[str, ...]) -> int:
    return names.index(text.upper()) if text.upper() in names else int(text)


@dataclass(frozen=True)
class Cron:
    """A cron expression's fields; days of the week as cron numbers (Sunday 0)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    month_days: frozenset[int] | None
    months: frozenset[int] | None
    week_days: frozenset[int] | None
    years: frozenset[int] | None = None

    @classmethod
    def standard(cls, text: str) -> "Cron":
        """minute hour day-of-month month day-of-week [year]: Vixie cron's five fields (Sunday 0 or 7), and the
        optional year of GCP's extended format."""
        fields = text.split()
        if len(fields) not in (5, 6):
            raise ValueError(f"cron {text!r}: five fields (or six with a year)")
        week_days = _field(fields[4], 0, 7, DAY_NAMES)
        return cls(_field(fields[0], 0, 59), _field(fields[1], 0, 23), _field(fields[2], 1, 31),
                   _field(fields[3], 1, 12),
                   None if week_days is None else frozenset(day % 7 for day in week_days),
                   _field(fields[5], 1970, 2199) if len(fields) == 6 else None)

    @classmethod
    def eventbridge(cls, text: str) -> "Cron":
        """`cron(minutes hours day-of-month month day-of-week year)`: day-of-week 1-7 from Sunday or SUN-SAT, and
        one of the two day fields `?`."""
        if not (text.startswith("cron(") and text.endswith(")")):
            raise ValueError(f"{text!r} is no EventBridge cron expression")
        fields = text[5:-1].split()
        if len(fields) != 6 or "?" not in (fields[2], fields[4]):
            raise ValueError(f"{text!r}: six fields, one day field `?`")
        week_days = _field(fields[4], 1, 7, ("",) + DAY_NAMES)  # numbers 1-7, names as their numbers
        return cls(_field(fields[0], 0, 59), _field(fields[1], 0, 23), _field(fields[2], 1, 31),
                   _field(fields[3], 1, 12), None if week_days is None else frozenset(d - 1 for d in week_days),
                   _field(fields[5], 1970, 2199))

    def matches_day(self, day: dt.date) -> bool:
        if self.months is not None and day.month not in self.months:
            return False
        if self.years is not None and day.year not in self.years:
            return False
        week_day = (day.weekday() + 1) % 7
        if self.month_days is not None and self.week_days is not None:  # Vixie cron: either day field
            return day.day in self.month_days or week_day in self.week_days
        return ((self.month_days is None or day.day in self.month_days)
                and (self.week_days is None or week_day in self.week_days))

    def local_times(self, day: dt.date) -> list[dt.datetime]:
        """The local (naive) times it fires on a day."""
        if not self.matches_day(day):
            return []
        hours = sorted(self.hours) if self.hours is not None else range(24)
        minutes = sorted(self.minutes) if self.minutes is not None else range(60)
        return [dt.datetime.combine(day, dt.time(hour, minute)) for hour in hours for minute in minutes]


def instant(local: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """A local time as the UTC instant it names; Unmodelled where the clocks skip or repeat it."""
    first, second = local.replace(tzinfo=zone, fold=0), local.replace(tzinfo=zone, fold=1)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local:
        raise Unmodelled(f"{local:%Y-%m-%d %H:%M} in {zone.key} does not happen (the clocks go forward)")
    if first.utcoffset() != second.utcoffset():
        raise Unmodelled(f"{local:%Y-%m-%d %H:%M} in {zone.key} happens twice (the clocks go back)")
    return first.astimezone(UTC)


def firings(cron: Cron, zone: str, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """The instants in [start, end) at which a cron fires in a time zone."""
    tz = zoneinfo.ZoneInfo(zone)
    day, last = start.astimezone(tz).date() - dt.timedelta(days=1), end.astimezone(tz).date() + dt.timedelta(days=1)
    found = []
    while day <= last:
        found += [at for local in cron.local_times(day) if start <= (at := instant(local, tz)) < end]
        day += dt.timedelta(days=1)
    return sorted(found)


# --- what the fleet does ----------------------------------------------------------------------------------
@dataclass
class Timeline:
    """A value that changes at instants: `initial` before the first."""

    initial: Any
    changes: list[tuple[dt.datetime, Any]]

    def __post_init__(self):
        self._instants = [at for at, _ in self.changes]

    def at(self, when: dt.datetime) -> Any:
        index = bisect.bisect_right(self._instants, when)
        return self.changes[index - 1][1] if index else self.initial


def _steps(preview: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [step["newState"]["inputs"] for step in preview["steps"] if step["type"] == type_]


def _point_in_time(events: list[tuple[dt.datetime, str, Any]], what: str) -> list[tuple[dt.datetime, Any]]:
    events.sort(key=lambda event: event[0])
    for (at, first, _), (again, second, _) in zip(events, events[1:]):
        if at == again:
            raise AssertionError(f"{what}: {first} and {second} both at {at:%Y-%m-%d %H:%M} UTC, in no defined order")
    return [(at, value) for at, _, value in events]


def aws_group_size(preview: dict[str, Any], start: dt.datetime, end: dt.datetime) -> Timeline:
    """The Auto Scaling group's desired capacity, as its scheduled actions set it from `start` on."""
    [group] = _steps(preview, "aws:autoscaling/group:Group")
    sizes = {"minSize": int(group["minSize"]), "maxSize": int(group["maxSize"]),
             "desiredCapacity": int(group["desiredCapacity"])}
    events = []
    for action in _steps(preview, "aws:autoscaling/schedule:Schedule"):
        cron = Cron.standard(action["recurrence"])
        for at in firings(cron, action.get("timeZone", "Etc/UTC"), start, end):
            events.append((at, action["scheduledActionName"], action))
    changes = []
    for at, action in _point_in_time(events, "scheduled actions of the group"):
        for key in sizes:
            if int(action.get(key, 0)) != -1:  # a size left out is 0 (the provider's default); -1 keeps it
                sizes[key] = int(action.get(key, 0))
        if not sizes["minSize"] <= sizes["desiredCapacity"] <= sizes["maxSize"]:
            raise AssertionError(f"{action['scheduledActionName']} leaves sizes AWS refuses: {sizes}")
        changes.append((at, sizes["desiredCapacity"]))
    return Timeline(int(group["desiredCapacity"]), changes)


def aws_api_open(preview: dict[str, Any], start: dt.datetime, end: dt.datetime) -> Timeline:
    """Whether the API's listener rule forwards to vLLM (True) or answers its fixed 503, as EventBridge Scheduler
    switches it."""
    [rule] = _steps(preview, "aws:lb/listenerRule:ListenerRule")
    events = []
    for schedule in _steps(preview, "aws:scheduler/schedule:Schedule"):
        if schedule["flexibleTimeWindow"]["mode"] != "OFF":
            raise Unmodelled("a flexible time window fires at no fixed time")
        [action] = json.loads(schedule["target"]["input"])["Actions"]
        cron = Cron.eventbridge(schedule["scheduleExpression"])
        for at in firings(cron, schedule.get("scheduleExpressionTimezone", "Etc/UTC"), start, end):
            events.append((at, schedule.get("description", "a schedule"), action["Type"] == "forward"))
    return Timeline(rule["actions"][0]["type"] == "forward", _point_in_time(events, "schedules of the API rule"))


def azure_count(preview: dict[str, Any], start: dt.datetime, end: dt.datetime) -> Timeline:
    """The scale set's count, created at `start` with the profile without recurrence's default: each recurring
    profile holds from its start until the next profile's, and brings the count inside its capacity. A weekly
    profile has always started, a week ago at the latest: the one that started last holds at `start` already (the
    profile without recurrence only where none recurs)."""
    from tzlocal.windows_tz import win_tz

    [setting] = _steps(preview, "azure-native:monitor:AutoscaleSetting")
    [default] = [p for p in setting["profiles"] if "recurrence" not in p and "fixedDate" not in p]
    events = []
    for profile in setting["profiles"]:
        if "fixedDate" in profile:
            raise Unmodelled("fixed-date profiles")
        if "recurrence" not in profile:
            continue
        recurrence = profile["recurrence"]
        if recurrence["frequency"] != "Week":
            raise Unmodelled(f"a {recurrence['frequency']} recurrence")
        schedule = recurrence["schedule"]
        days = ",".join(name[:3].upper() for name in schedule["days"])
        cron = Cron.standard(f"{','.join(str(int(m)) for m in schedule['minutes'])} "
                             f"{','.join(str(int(h)) for h in schedule['hours'])} * * {days}")
        for at in firings(cron, win_tz[schedule["timeZone"]], start - WEEK_SPAN, end):
            events.append((at, profile["name"], profile["capacity"]))
    def inside(count: int, capacity: dict[str, str]) -> int:
        return min(max(count, int(capacity["minimum"])), int(capacity["maximum"]))

    ordered = _point_in_time(events, "recurring autoscale profiles")
    started = [capacity for at, capacity in ordered if at < start]
    count = created = int(default["capacity"]["default"])
    if started:
        count = created = inside(created, started[-1])
    changes = []
    for at, capacity in ordered:
        if at >= start:
            count = inside(count, capacity)
            changes.append((at, count))
    return Timeline(created, changes)


def gcp_minimum(preview: dict[str, Any], start: dt.datetime, end: dt.datetime) -> Timeline:
    """The group's least size: the largest minRequiredReplicas of the scaling schedules active (from each cron
    start for durationSec absolute seconds), or the autoscaler's minReplicas."""
    [autoscaler] = _steps(preview, "gcp:compute/regionAutoscaler:RegionAutoscaler")
    policy = autoscaler["autoscalingPolicy"]
    floor = int(policy.get("minReplicas", 1))
    active = []
    for schedule in policy.get("scalingSchedules", []):
        if schedule.get("disabled"):
            continue
        duration = dt.timedelta(seconds=int(schedule["durationSec"]))
        cron = Cron.standard(schedule["schedule"])
        active += [(at, at + duration, int(schedule["minRequiredReplicas"]))
                   for at in firings(cron, schedule.get("timeZone", "Etc/UTC"), start - duration, end)]

    def size(when: dt.datetime) -> int:
        return max([floor] + [replicas for begin, until, replicas in active if begin <= when < until])

    edges = sorted({edge for begin, until, _ in active for edge in (begin, until)})
    return Timeline(size(start), [(edge, size(edge)) for edge in edges])


# --- weeks and what the config asks for ---------------------------------------------------------------------
def change_dates(zone: str, year: int) -> list[dt.date]:
    """The days the zone's UTC offset changes in a year."""
    tz = zoneinfo.ZoneInfo(zone)
    day, found = dt.date(year, 1, 1), []
    while day.year == year:
        noon = dt.datetime.combine(day, dt.time(12), tzinfo=tz)
        if dt.datetime.combine(day - dt.timedelta(days=1), dt.time(12), tzinfo=tz).utcoffset() != noon.utcoffset():
            found.append(day)
        day += dt.timedelta(days=1)
    return found


def week_of(day: dt.date, zone: str) -> tuple[dt.datetime, dt.datetime]:
    """Monday 00:00 of the week a day is in, to Tuesday 00:00 a week later (Sunday night runs into Monday)."""
    tz = zoneinfo.ZoneInfo(zone)
    monday = day - dt.timedelta(days=day.weekday())
    return (dt.datetime.combine(monday, dt.time(0), tzinfo=tz).astimezone(UTC),
            dt.datetime.combine(monday + dt.timedelta(days=8), dt.time(0), tzinfo=tz).astimezone(UTC))


@dataclass(frozen=True)
class Window:
    days: tuple[int, ...]  # 0 is Monday
    start: int  # minutes after local midnight
    end: int  # 1440: midnight at the end of the day


def up_stretches(windows: Iterable[Window], zone: str, lead_minutes: int, start: dt.datetime,
                 end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """Each window's occurrences around [start, end) as UTC instants, from `lead_minutes` before it opens."""
    tz = zoneinfo.ZoneInfo(zone)
    day, last = start.astimezone(tz).date() - dt.timedelta(days=2), end.astimezone(tz).date() + dt.timedelta(days=1)
    found = []
    while day <= last:
        midnight = dt.datetime.combine(day, dt.time(0))
        for window in windows:
            if day.weekday() in window.days:
                opens = instant(midnight + dt.timedelta(minutes=window.start), tz)
                closes = instant(midnight + dt.timedelta(minutes=window.end), tz)
                found.append((opens - dt.timedelta(minutes=lead_minutes), closes))
        day += dt.timedelta(days=1)
    return found


def mismatches(timeline: Timeline, expected: Callable[[dt.datetime], Any], start: dt.datetime,
               end: dt.datetime) -> list[tuple[dt.datetime, Any, Any]]:
    """Every minute in [start, end) where the timeline differs from what is expected: (when, expected, got)."""
    found, when = [], start
    while when < end:
        want, got = expected(when), timeline.at(when)
        if want != got:
            found.append((when, want, got))
        when += MINUTE
    return found


def inside(stretches: list[tuple[dt.datetime, dt.datetime]]) -> Callable[[dt.datetime], bool]:
    """Whether an instant is in any of the stretches."""
    merged: list[list[dt.datetime]] = []
    for begin, until in sorted(stretches):
        if merged and begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], until)
        else:
            merged.append([begin, until])
    begins = [begin for begin, _ in merged]

    def test(when: dt.datetime) -> bool:
        index = bisect.bisect_right(begins, when)
        return bool(index) and when < merged[index - 1][1]

    return test
