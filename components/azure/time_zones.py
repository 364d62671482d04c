"""The Windows time zone names Azure autoscale takes for officeHours.timezone (an IANA zone).

Two lists of names differ (components/azure/autoscale-time-zones.json says where each comes from): the autoscale
API's model names those its profiles take, and the Azure CLI's `az monitor autoscale profile create --timezone`
(`make wake`) takes only the names of its own fixed list, which lacks "UTC", "Russian Standard Time" and others.
CLDR's mapping (as tzlocal ships it) gives some zones a Windows name newer than both (America/Vancouver is
"British Columbia Standard Time"). For each list: the zone's own Windows name where the list has it, else a name on
the list whose zone keeps the same clocks (the same UTC offset at every hour of this year and the next), else a
ConfigError."""

from __future__ import annotations

import datetime as dt
import functools
import json
import zoneinfo
from pathlib import Path

from fleet.errors import ConfigError

NAMES = Path(__file__).with_name("autoscale-time-zones.json")
API, CLI = "autoscaleApi", "azureCli"
_WHAT = {API: "Azure autoscale profiles take", CLI: "`az monitor autoscale profile create --timezone` (make wake) takes"}


@functools.cache
def listed(which: str) -> tuple[str, ...]:
    return tuple(json.loads(NAMES.read_text())[which]["names"])


def _offset(tz: zoneinfo.ZoneInfo, hours: int) -> dt.timedelta:
    return (dt.datetime(dt.date.today().year, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=hours)).astimezone(
        tz).utcoffset()


@functools.cache
def _clocks(zone: str) -> tuple:
    """The zone's UTC offset on 1 January of this year and each change of it to the end of the next year, to the
    hour: the days whose offset at 00:00 UTC differs from the next day's, each searched for its hour."""
    tz, changes = zoneinfo.ZoneInfo(zone), []
    for day in range(2 * 366):
        lo, hi = day * 24, day * 24 + 24
        if _offset(tz, lo) == _offset(tz, hi):
            continue
        while hi - lo > 1:
            middle = (lo + hi) // 2
            lo, hi = (middle, hi) if _offset(tz, middle) == _offset(tz, lo) else (lo, middle)
        changes.append((hi, _offset(tz, hi)))
    return _offset(tz, 0), tuple(changes)


def windows_name(zone: str, which: str) -> str:
    """The name on list `which` (API or CLI) for the IANA zone `zone`."""
    from tzlocal.windows_tz import tz_win, win_tz  # only for office hours

    own = tz_win.get(zone)
    names = listed(which)
    if own in names:
        return own
    known = sorted(name for name in names if name in win_tz)
    same = [name for name in known if _clocks(win_tz[name]) == _clocks(zone)]
    if same:
        return same[0]
    near = sorted({win_tz[name] for name in known if _clocks(win_tz[name])[0] == _clocks(zone)[0]})[:3]
    raise ConfigError("officeHours.timezone", zone,
                      f"{_WHAT[which]} Windows time zones of a fixed list ({NAMES.name}), and {zone} "
                      f"({own or 'no Windows name'}) keeps clocks that no zone on it keeps"
                      + (f"; zones on it at the same UTC offset in January: {', '.join(near)}" if near else ""))
