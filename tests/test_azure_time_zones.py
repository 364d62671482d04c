"""Azure's Windows time zone names for officeHours.timezone: on the autoscale API's list for the profiles and on the
Azure CLI's for `make wake`, each keeping the zone's clocks (components/azure/time_zones.py), or a clear refusal."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import zoneinfo

import pytest

from components.azure import time_zones
from components.azure.time_zones import API, CLI, windows_name
from fleet.errors import ConfigError
from fleet.schedule import _zone_database


def test_the_api_list_is_the_one_the_provider_documents():
    """The profiles' list is the autoscale API model's, as the installed pulumi-azure-native documents it."""
    from pulumi_azure_native import monitor

    for args in (monitor.RecurrentScheduleArgs, monitor.TimeWindowArgs):
        text = inspect.getdoc(args.time_zone.fget).split("Some examples of valid time zones are: ", 1)[1]
        assert list(time_zones.listed(API)) == [name.strip() for name in text.split(",")]
    data = json.loads(time_zones.NAMES.read_text())
    assert {which: bool(data[which]["source"]) for which in (API, CLI)} == {API: True, CLI: True}
    # The CLI's list (azure-cli 2.91.0's AUTOSCALE_TIMEZONES) lacks names the API documents, and the other way.
    assert "UTC" in time_zones.listed(API) and "UTC" not in time_zones.listed(CLI)
    assert "Coordinated Universal Time" in time_zones.listed(CLI) and "Coordinated Universal Time" not in \
        time_zones.listed(API)


def _hourly(zone: str) -> list[dt.timedelta]:
    """The zone's UTC offset every hour of this year and the next: a check independent of time_zones._clocks."""
    tz, start = zoneinfo.ZoneInfo(zone), dt.datetime(dt.date.today().year, 1, 1, tzinfo=dt.timezone.utc)
    return [(start + dt.timedelta(hours=h)).astimezone(tz).utcoffset() for h in range(0, 2 * 365 * 24, 1)]


def test_every_zone_gets_a_listed_name_with_its_clocks_or_a_clear_refusal():
    """Every canonical IANA zone CLDR maps to Windows: on each list a name whose zone keeps the same clocks, or a
    ConfigError. Where the list has the zone's own Windows name, that is the one."""
    from tzlocal.windows_tz import tz_win, win_tz

    zones, _ = _zone_database()
    refused, renamed = {API: [], CLI: []}, {API: [], CLI: []}
    for zone in sorted(set(tz_win) & zones):
        for which in (API, CLI):
            try:
                name = windows_name(zone, which)
            except ConfigError as error:
                assert error.key == "officeHours.timezone" and "fixed list" in str(error)
                refused[which].append(zone)
                continue
            assert name in time_zones.listed(which)
            if name != tz_win[zone]:
                assert tz_win[zone] not in time_zones.listed(which)
                renamed[which].append((zone, name))
    for which in (API, CLI):
        for zone, name in renamed[which]:
            assert _hourly(win_tz[name]) == _hourly(zone), (which, zone, name)
    # What the lists lack: the API's has no Aleutian, Chatham or Lord Howe clocks; the CLI's none for Israel's.
    assert {"America/Adak", "Pacific/Chatham", "Australia/Lord_Howe"} <= set(refused[API])
    assert {"Asia/Jerusalem", "Asia/Gaza"} <= set(refused[CLI]) and "Asia/Jerusalem" not in refused[API]
    assert len(refused[API]) < 25 and len(refused[CLI]) < 10


@pytest.mark.parametrize("zone, api, cli", [
    ("Europe/Berlin", "W. Europe Standard Time", "W. Europe Standard Time"),
    # CLDR says "British Columbia Standard Time", which neither list has; Pacific Standard Time keeps its clocks.
    ("America/Vancouver", "Pacific Standard Time", "Pacific Standard Time"),
    # The CLI's list has no "UTC": Greenwich Standard Time (Atlantic/Reykjavik) is UTC all year too.
    ("Etc/UTC", "UTC", "Greenwich Standard Time"),
    # A POSIX-rule zone without a Windows name of its own: New York's clocks.
    ("EST5EDT", "Eastern Standard Time", "Eastern Standard Time"),
    ("Europe/Moscow", "Russian Standard Time", "Arab Standard Time"),
])
def test_names_as_each_list_has_them(zone, api, cli):
    assert (windows_name(zone, API), windows_name(zone, CLI)) == (api, cli)
