"""Office hours: when a stack's fleet serves, as the stack config says it (`officeHours`), and what follows from it
that is no cloud's business: the times the group is scaled up and down in the stack's time zone, the hours it
serves a month, whether it is open at a moment and when it opens next. Each cloud's component turns the times into
its own scheduler's (AWS scheduled actions, GCP scaling schedules, Azure autoscale profiles), which all take a time
zone and keep to local time across daylight-saving changes.

What the group does is the week's stretches at the office-hours size: each window from the scale-up lead before it
opens, and windows whose stretches touch or overlap as one (a close inside the next window's lead, or at its start,
would take down the VMs coming up for it, and two actions in the same minute run in no defined order). A week
without time off is no schedule at all: the fleet serves around the clock.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.resources
import math
from pathlib import Path
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .values import did_you_mean, whole_number

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY = 1440
WEEK = 7 * DAY
WEEKS_PER_MONTH = 365.25 / 7 / 12
MAX_WINDOWS = 8
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
KEY_DOCS = ("{timezone: Europe/Berlin, days: Mon-Fri, start: \"08:00\", end: \"19:00\"} (or windows: [{days, start, "
            "end}, ...] for several), offHoursReplicas (default 0), warmPool (default true: keep stopped VMs with "
            "their disks where the cloud can)")


@dataclass(frozen=True)
class Window:
    days: tuple[int, ...]  # 0 is Monday
    start: int  # minutes after local midnight
    end: int  # minutes after local midnight, after start; 1440 is midnight at the end of the day

    def describe(self) -> str:
        return f"{_days_text(self.days)} {_clock(self.start)}-{_clock(self.end)}"


@dataclass(frozen=True)
class Moment:
    """A recurring local time: the days of the week it happens on and the minute of the day."""

    days: tuple[int, ...]
    minute: int

    @property
    def hour_and_minute(self) -> tuple[int, int]:
        return divmod(self.minute, 60)

    @property
    def cron(self) -> str:
        """Standard cron (minute hour day-of-month month day-of-week, Sunday 0), as AWS scheduled actions and GCP
        scaling schedules read it in the time zone they are given."""
        hour, minute = self.hour_and_minute
        return f"{minute} {hour} * * {','.join(str((day + 1) % 7) for day in self.days)}"

    def describe(self) -> str:
        return f"{_days_text(self.days)} {_clock(self.minute)}"

    @property
    def day_names(self) -> list[str]:
        return [dt.date(2024, 1, 1 + day).strftime("%A") for day in self.days]  # 2024-01-01 was a Monday


def _moments(minutes_of_week) -> list[Moment]:
    """Minutes of the week as recurring moments, one a time of day with the days it happens on."""
    days: dict[int, set[int]] = {}
    for minute in minutes_of_week:
        days.setdefault(minute % DAY, set()).add(minute // DAY % 7)
    return [Moment(tuple(sorted(days[minute])), minute) for minute in sorted(days)]


@dataclass(frozen=True)
class Span:
    """A stretch of the week in local time, in minutes from Monday 00:00; `end` passes the week's end where it
    runs from Sunday into Monday. (0, WEEK) is the whole week."""

    start: int
    end: int


def _merged(spans: list[tuple[int, int]]) -> tuple[Span, ...]:
    """Stretches of the week that touch or overlap, as one (the week wraps from Sunday to Monday)."""
    merged: list[list[int]] = []
    for start, end in sorted((start % WEEK, start % WEEK + end - start) for start, end in spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    while len(merged) > 1 and merged[-1][1] >= merged[0][0] + WEEK:
        first = merged.pop(0)
        merged[-1][1] = max(merged[-1][1], first[1] + WEEK)
    if any(end - start >= WEEK for start, end in merged):
        return (Span(0, WEEK),)
    return tuple(Span(start, end) for start, end in merged)


@dataclass(frozen=True)
class OfficeHours:
    timezone: str
    windows: tuple[Window, ...]
    off_hours_replicas: int
    warm_pool: bool = True  # keep stopped VMs with their disks for the morning, where the cloud can

    def describe(self) -> str:
        return f"{', '.join(w.describe() for w in self.windows)} ({self.timezone})"

    def scaled_up(self, lead_minutes: int) -> tuple[Span, ...]:
        """The stretches of the week the group keeps its office-hours size: each window from `lead_minutes` before
        it opens (so that new VMs serve at its start), stretches that touch or overlap as one."""
        return _merged([(day * DAY + w.start - lead_minutes, day * DAY + w.end)
                        for w in self.windows for day in w.days])

    def serving(self) -> tuple[Span, ...]:
        """The stretches of the week the endpoint serves: the windows, those that touch as one."""
        return self.scaled_up(0)

    def always_on(self, lead_minutes: int) -> bool:
        """No time off once the lead is applied: the fleet serves around the clock and no schedule is made."""
        return self.scaled_up(lead_minutes) == (Span(0, WEEK),)

    def openings(self, lead_minutes: int) -> list[Moment]:
        """When to scale up: where each stretch of scaled_up starts; none when always on."""
        if self.always_on(lead_minutes):
            return []
        return _moments(span.start for span in self.scaled_up(lead_minutes))

    def closings(self, lead_minutes: int) -> list[Moment]:
        """When to scale down: where each stretch of scaled_up ends (midnight at the end of a day is 00:00 of the
        next); none when always on."""
        if self.always_on(lead_minutes):
            return []
        return _moments(span.end for span in self.scaled_up(lead_minutes))

    def openings_per_week(self, lead_minutes: int) -> int:
        return 0 if self.always_on(lead_minutes) else len(self.scaled_up(lead_minutes))

    def timed_stretches(self, lead_minutes: int) -> list[tuple[Moment, int]]:
        """scaled_up for a scheduler that takes a local start and a duration in absolute seconds (GCP's scaling
        schedules): a stretch over a daylight-saving change would end an hour early on the night the clocks go
        back. Such a stretch is cut where the change is over (the first local time after it that occurs once);
        the part before lasts as long as it takes on the night the clocks go back, and on other nights overlaps
        the part after. Each (start, seconds) with the days it recurs on; none when always on."""
        if self.always_on(lead_minutes):
            return []
        changes = _offset_changes(self.timezone)
        parts: dict[tuple[int, int], set[int]] = {}
        for span in self.scaled_up(lead_minutes):
            start = span.start
            for cut, back in _cuts(span, changes):
                parts.setdefault((start % DAY, (cut - start + back) * 60), set()).add(start // DAY % 7)
                start = cut
            parts.setdefault((start % DAY, (span.end - start) * 60), set()).add(start // DAY % 7)
        return [(Moment(tuple(sorted(days)), minute), seconds) for (minute, seconds), days in sorted(parts.items())]

    def open_minutes_per_week(self, lead_minutes: int = 0) -> int:
        return sum(span.end - span.start for span in self.scaled_up(lead_minutes))

    def hours_per_month(self, lead_minutes: int = 0) -> float:
        """Hours a month the group runs its office-hours size (the lead included): weeks in an average month."""
        return self.open_minutes_per_week(lead_minutes) / 60 * WEEKS_PER_MONTH

    def is_open(self, when: dt.datetime) -> bool:
        local = when.astimezone(zoneinfo.ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        return any(local.weekday() in w.days and w.start <= minute < w.end for w in self.windows)

    def scaled_up_at(self, when: dt.datetime, lead_minutes: int) -> bool:
        """Whether the group has its office-hours size at `when`: in a window, or in the lead before one."""
        minute = _minute_of_week(when.astimezone(zoneinfo.ZoneInfo(self.timezone)))
        return any(span.start <= m < span.end for span in self.scaled_up(lead_minutes) for m in (minute, minute + WEEK))

    def next_opening(self, when: dt.datetime) -> dt.datetime:
        """The next start of a serving stretch after `when`, in the stack's time zone (its UTC offset that
        day's)."""
        zone = zoneinfo.ZoneInfo(self.timezone)
        local = when.astimezone(zone)
        starts = _moments(span.start for span in self.serving())
        for days_ahead in range(8):
            day = (local + dt.timedelta(days=days_ahead)).date()
            for moment in starts:
                opening = dt.datetime.combine(day, dt.time(*moment.hour_and_minute), tzinfo=zone)
                if day.weekday() in moment.days and opening > local:
                    return opening
        raise ValueError("office hours without time off have no opening")


@functools.cache
def _offset_changes(timezone: str) -> tuple[tuple[int, int, int, int], ...]:
    """The zone's UTC offset changes this year and the next, as minutes of the week: (the earlier and the later
    of the local times at the change, the minutes the clocks go back, and forward)."""
    zone = zoneinfo.ZoneInfo(timezone)
    year = dt.date.today().year
    moment, end = dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(year + 2, 1, 1, tzinfo=dt.timezone.utc)
    changes = set()
    hour, minute = dt.timedelta(hours=1), dt.timedelta(minutes=1)
    while moment < end:
        if (moment + hour).astimezone(zone).utcoffset() != moment.astimezone(zone).utcoffset():
            change = next(moment + n * minute for n in range(1, 61)
                          if (moment + n * minute).astimezone(zone).utcoffset() != moment.astimezone(zone).utcoffset())
            before, after = (change - minute).astimezone(zone).utcoffset(), change.astimezone(zone).utcoffset()
            readings = sorted(_minute_of_week((change + offset).replace(tzinfo=None)) for offset in (before, after))
            shift = int((after - before).total_seconds() // 60)
            changes.add((readings[0], readings[0] + abs(shift), max(0, -shift), max(0, shift)))
        moment += hour
    return tuple(sorted(changes))


def _minute_of_week(local: dt.datetime) -> int:
    return local.weekday() * DAY + local.hour * 60 + local.minute


def _cuts(span: Span, changes) -> list[tuple[int, int]]:
    """Where to cut a stretch over offset changes: where each change inside it is over, unless that local time is
    inside another change's hour (Chicago's autumn change ends at 02:00, inside its spring gap), and at least 5
    minutes before the end (GCP's shortest schedule). Each cut with how many minutes longer the part before it
    takes on the night the clocks go back."""
    cuts, previous = [], span.start
    for week in (0, WEEK):
        for later in sorted({later for _, later, _, _ in changes}):
            cut = later + week
            if not previous < cut < span.end - 5 or any(e <= later < l for e, l, _, _ in changes):
                continue
            cuts.append((cut, max(back for e, l, back, _ in changes if previous < l + week <= cut)))
            previous = cut
    return cuts


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _days_text(days: tuple[int, ...]) -> str:
    if len(days) > 2 and days == tuple(range(days[0], days[-1] + 1)):
        return f"{DAY_NAMES[days[0]]}-{DAY_NAMES[days[-1]]}"
    return ",".join(DAY_NAMES[d] for d in days)


@functools.cache
def _zone_database() -> tuple[frozenset[str], dict[str, str]]:
    """The IANA database's zones and its links (old and alias names) to them, from the pinned tzdata package's
    tzdata.zi (`Z name ...` a zone, `L zone link` a link), the same on every machine that plans."""
    lines = importlib.resources.files("tzdata").joinpath("zoneinfo", "tzdata.zi").read_text().splitlines()
    zones = frozenset(line.split()[1] for line in lines if line.startswith("Z "))
    links = {line.split()[2]: line.split()[1] for line in lines if line.startswith("L ")}
    return zones, links


def canonical_zone(key: str, value: Any) -> str:
    """officeHours.timezone as the clouds take it: a canonical IANA zone; a link (US/Eastern, Europe/Kiev, UTC) is
    its zone (America/New_York, Europe/Kyiv, Etc/UTC)."""
    zones, links = _zone_database()
    if isinstance(value, str) and value in zones:
        return value
    if isinstance(value, str) and value in links:
        return links[value]
    if value == "localtime" or isinstance(value, str) and value.startswith("/"):
        here = _machine_zone()
        raise ConfigError(key, value, "is a file of the machine that plans, not a zone the clouds know: name the "
                                      "zone" + (f" ({here} on this machine)" if here else ", e.g. Europe/Berlin"))
    offset = re.fullmatch(r"(?:GMT|UTC)([+-])(\d{1,2})", value) if isinstance(value, str) else None
    if offset and 0 < int(offset[2]) <= 14:
        # POSIX signs: Etc/GMT-2 is two hours ahead of UTC. A near spelling (GMT+0) would be hours off.
        etc = f"Etc/GMT{'-' if offset[1] == '+' else '+'}{int(offset[2])}"
        raise ConfigError(key, value, f"an IANA time zone: {value} is {etc} there (POSIX signs are inverted), which "
                                      f"keeps no daylight saving; a city's zone (e.g. Europe/Berlin) follows its "
                                      f"clocks")
    raise ConfigError(key, value, f"an IANA time zone, e.g. Europe/Berlin, America/New_York or "
                                  f"Etc/UTC{did_you_mean(value, zones | set(links))}")


def _machine_zone() -> str | None:
    """The zone /etc/localtime links to, where it is a link into a zoneinfo folder."""
    target = str(Path("/etc/localtime").resolve())
    name = target.split("/zoneinfo/", 1)[1] if "/zoneinfo/" in target else None
    zones, links = _zone_database()
    return links.get(name, name) if name in zones or name in links else None


def _day(key: str, text: str) -> int:
    if "\u2013" in text or "\u2014" in text:
        raise ConfigError(key, text, "a range of days takes a hyphen (Mon-Fri), not an en or em dash")
    for index, name in enumerate(DAY_NAMES):
        if text.strip().lower() in (name.lower(), dt.date(2024, 1, 1 + index).strftime("%A").lower()):
            return index
    raise ConfigError(key, text, f"days are Mon, Tue, Wed, Thu, Fri, Sat, Sun, as a range (Mon-Fri) or a list "
                                 f"(Mon,Wed,Fri){did_you_mean(text.strip().capitalize(), DAY_NAMES)}")


def _days(key: str, value: Any) -> tuple[int, ...]:
    items = value if isinstance(value, list) else str(value).split(",") if isinstance(value, str) else None
    if not items or not all(isinstance(item, str) and item.strip() for item in items):
        raise ConfigError(key, value, "days as a range (Mon-Fri), a list (Mon,Wed,Fri) or one day (Sat)")
    days: set[int] = set()
    for item in items:
        first, _, last = item.partition("-")
        if last:
            # A range runs forwards and wraps the week's end: Fri-Mon is Friday to Monday.
            lo, hi = _day(key, first), _day(key, last)
            days.update(day % 7 for day in range(lo, hi + 1 if hi >= lo else hi + 8))
        else:
            days.add(_day(key, first))
    return tuple(sorted(days))


def _time(key: str, value: Any) -> int:
    if not isinstance(value, str) or not _TIME.match(value):
        # The Pulumi CLI reads an unquoted 08:00 as text already (fleet/stack_yaml.py): the hint is the value
        # written as HH:MM where it is one, never what the file says.
        parts = re.fullmatch(r"(\d{1,2})(?::?(\d{2}))?", str(value)) if not isinstance(value, bool) else None
        fixed = f"{int(parts[1]):02d}:{parts[2] or '00'}" if parts else None
        hint = f': write {fixed}' if fixed and _TIME.match(fixed) and fixed != value else ", e.g. 08:00"
        raise ConfigError(key, value, f"a time of day as HH:MM, from 00:00 to 24:00{hint}")
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def _window(key: str, value: Any) -> Window:
    if not isinstance(value, dict) or set(value) - {"days", "start", "end"} or not {"days", "start", "end"} <= set(value):
        raise ConfigError(key, value, 'a window is {days: Mon-Fri, start: "08:00", end: "19:00"}')
    days, start, end = _days(f"{key}.days", value["days"]), _time(f"{key}.start", value["start"]), \
        _time(f"{key}.end", value["end"])
    if end <= start:
        raise ConfigError(f"{key}.end", value["end"], f"must be after start ({value['start']}); a window over "
                                                      f"midnight is two: one to \"24:00\", one from \"00:00\"")
    if end - start < 5:
        raise ConfigError(f"{key}.end", value["end"], "a window lasts at least 5 minutes (GCP's shortest schedule)")
    return Window(days, start, end)


def parse_office_hours(value: Any, replicas_min: int) -> OfficeHours | None:
    """The `officeHours` key: None where it is not set."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError("officeHours", value, f"must be a map: {KEY_DOCS}")
    single = {"days", "start", "end"} & set(value)
    allowed = {"timezone", "offHoursReplicas", "warmPool"} | ({"days", "start", "end"} if single else {"windows"})
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"officeHours.{unknown[0]}", value[unknown[0]],
                          f"is not an officeHours key (one window's days/start/end, or windows); {KEY_DOCS}")
    timezone = canonical_zone("officeHours.timezone", value.get("timezone"))
    if single:
        windows = (_window("officeHours", {k: value.get(k) for k in ("days", "start", "end")}),)
    else:
        listed = value.get("windows")
        if not isinstance(listed, list) or not listed:
            raise ConfigError("officeHours.windows", listed, "a list of windows {days, start, end}")
        windows = tuple(_window(f"officeHours.windows[{i}]", item) for i, item in enumerate(listed))
        if len(windows) > MAX_WINDOWS:
            raise ConfigError("officeHours.windows", f"{len(windows)} windows", f"at most {MAX_WINDOWS} (Azure takes "
                                                                                f"20 autoscale profiles, two a window)")
    for day in range(7):
        spans = sorted((w.start, w.end) for w in windows if day in w.days)
        if any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])):
            raise ConfigError("officeHours.windows", value.get("windows"),
                              f"two windows overlap on {DAY_NAMES[day]}: make them one")
    off = whole_number("officeHours.offHoursReplicas", value.get("offHoursReplicas", 0), 0, replicas_min)
    warm_pool = value.get("warmPool", True)
    if isinstance(warm_pool, str) and warm_pool.lower() in ("true", "false"):
        warm_pool = warm_pool.lower() == "true"
    if not isinstance(warm_pool, bool):
        raise ConfigError("officeHours.warmPool", warm_pool, "true (keep stopped VMs for the morning, where the cloud "
                                                             "can) or false")
    return OfficeHours(timezone, windows, off, warm_pool)


@dataclass(frozen=True)
class StandbyPool:
    """Stopped VMs a cloud keeps with their disks (vLLM installed, the weights cached), which it starts instead of
    creating VMs: what a cloud's component says of the pool it made, for the plan and the cost."""

    kind: str  # what it is, in the cloud's words
    stopped_in_hours: int  # stopped VMs it holds while the fleet serves
    stopped_off_hours: int  # and outside office hours
    disk_usd_per_vm_month: float  # what one stopped VM's disks cost a month
    # VMs the cloud creates again after each morning's scale-up to fill the pool, and how long each runs (on GPU
    # prices) before it is stopped; 0 where the VMs go back to the pool.
    refilled_per_opening: int = 0
    refill_seconds: int = 0
    note: str = ""


def lead_minutes(seconds: int) -> int:
    """How early to scale up for VMs that take `seconds` to serve: whole five minutes."""
    return math.ceil(seconds / 300) * 5


def standby_vms(hours: OfficeHours | None, desired: int, spot: bool) -> tuple[int, str]:
    """How many stopped VMs a cloud's pool keeps for the morning (the office-hours VMs that do not run at night),
    or 0 and why none: what is the same on every cloud that has pools. Pools hold on-demand VMs only (AWS warm
    pools do; vllm-fleet keeps GCP's so too)."""
    if not hours:
        return 0, ""
    if hours.always_on(0):
        return 0, "no stopped VMs are kept: the windows cover the whole week, so the fleet serves around the clock"
    if not hours.warm_pool:
        return 0, "no stopped VMs are kept (officeHours.warmPool is false): each morning creates new VMs"
    if spot:
        return 0, ("no stopped VMs are kept for spot VMs (pools hold on-demand VMs): each morning creates new ones "
                   "(its scale-up starts the whole time to serve early)")
    if desired == hours.off_hours_replicas:
        return 0, "no stopped VMs are kept: offHoursReplicas keeps every office-hours VM running"
    return desired - hours.off_hours_replicas, ""


def closed_answer(stack: str, hours: OfficeHours) -> dict[str, Any]:
    """What the load balancer answers while no VM serves (outside office hours, or before the morning's VMs are
    up): an OpenAI-style error that says when the endpoint serves and how to start it early."""
    return {"error": {"message": f"vllm-fleet {stack} has no VM serving: it serves {hours.describe()} and is "
                                 f"stopped outside those hours; `make wake STACK={stack}` starts it now",
                      "type": "service_unavailable", "code": 503}}
