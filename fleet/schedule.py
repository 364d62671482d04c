"""Office hours: when a stack's fleet serves, as the stack config says it (`officeHours`), and what follows from it
that is no cloud's business: the times the group is scaled up and down in the stack's time zone, the hours it
serves a month, whether it is open at a moment and when it opens next. Each cloud's component turns the times into
its own scheduler's (AWS scheduled actions, GCP scaling schedules, Azure autoscale profiles), which all take a time
zone and keep to local time across daylight-saving changes; nothing here converts to UTC but `next_opening`.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .values import did_you_mean, whole_number

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
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


@dataclass(frozen=True)
class OfficeHours:
    timezone: str
    windows: tuple[Window, ...]
    off_hours_replicas: int
    warm_pool: bool = True  # keep stopped VMs with their disks for the morning, where the cloud can

    @property
    def openings_per_week(self) -> int:
        return sum(len(w.days) for w in self.windows)

    def describe(self) -> str:
        return f"{', '.join(w.describe() for w in self.windows)} ({self.timezone})"

    def openings(self, lead_minutes: int) -> list[Moment]:
        """When to scale up: each window's start, `lead_minutes` early (so that new VMs serve at the start), on
        the day before where that is before midnight."""
        moments = []
        for window in self.windows:
            minute, shift = window.start - lead_minutes, 0
            while minute < 0:
                minute, shift = minute + 1440, shift + 1
            moments.append(Moment(tuple(sorted((day - shift) % 7 for day in window.days)), minute))
        return moments

    def closings(self) -> list[Moment]:
        """When to scale down: each window's end (midnight at the end of a day is 00:00 of the next)."""
        return [Moment(tuple(sorted((day + w.end // 1440) % 7 for day in w.days)), w.end % 1440)
                for w in self.windows]

    def open_minutes_per_week(self, lead_minutes: int = 0) -> int:
        return sum(len(w.days) * (w.end - w.start + lead_minutes) for w in self.windows)

    def hours_per_month(self, lead_minutes: int = 0) -> float:
        """Hours a month the group runs its office-hours size (the lead included): weeks in an average month."""
        return self.open_minutes_per_week(lead_minutes) / 60 * WEEKS_PER_MONTH

    def is_open(self, when: dt.datetime) -> bool:
        local = when.astimezone(zoneinfo.ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        return any(local.weekday() in w.days and w.start <= minute < w.end for w in self.windows)

    def next_opening(self, when: dt.datetime) -> dt.datetime:
        """The next window start after `when`, in the stack's time zone (its UTC offset that day's)."""
        zone = zoneinfo.ZoneInfo(self.timezone)
        local = when.astimezone(zone)
        for days_ahead in range(8):
            day = (local + dt.timedelta(days=days_ahead)).date()
            starts = sorted(w.start for w in self.windows if day.weekday() in w.days)
            for start in starts:
                opening = dt.datetime.combine(day, dt.time(start // 60, start % 60), tzinfo=zone)
                if opening > local:
                    return opening
        raise ValueError("office hours without a window")


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _days_text(days: tuple[int, ...]) -> str:
    if len(days) > 2 and days == tuple(range(days[0], days[-1] + 1)):
        return f"{DAY_NAMES[days[0]]}-{DAY_NAMES[days[-1]]}"
    return ",".join(DAY_NAMES[d] for d in days)


@functools.cache
def time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _day(key: str, text: str) -> int:
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
            lo, hi = _day(key, first), _day(key, last)
            if hi < lo:
                raise ConfigError(key, item, "a range of days runs forwards within a week, e.g. Mon-Fri")
            days.update(range(lo, hi + 1))
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
    timezone = value.get("timezone")
    if not isinstance(timezone, str) or timezone not in time_zones():
        raise ConfigError("officeHours.timezone", timezone, f"an IANA time zone, e.g. Europe/Berlin, America/New_York "
                                                            f"or UTC{did_you_mean(timezone, time_zones())}")
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
