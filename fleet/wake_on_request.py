"""`wakeOnRequest`: outside office hours, a request with a valid API key starts the fleet for a bounded number of
hours (what `make wake` does) and is answered 503 with Retry-After; an invalid key wakes nothing (docs/wake.md).
Each cloud's serverless activator (activator/) does it behind the load balancer's closed rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

DEFAULT_HOURS = 2.0
MAX_HOURS = 24.0
# The clouds whose load balancer can hand the closed traffic to a function (docs/wake.md says why the others not).
CLOUDS = ("aws",)
KEY_DOCS = (f"outside officeHours, a request with a valid API key starts the fleet for a bounded time and is "
            f"answered 503 with Retry-After: true ({DEFAULT_HOURS:g} hours) or {{hours: N}} (more than 0, at most "
            f"{MAX_HOURS:g}); off by default; AWS only (docs/wake.md)")


@dataclass(frozen=True)
class WakeOnRequest:
    hours: float  # how long a wake keeps the fleet up, as `make wake HOURS=...`


def parse_wake_on_request(value: Any, cloud: str, has_office_hours: bool) -> WakeOnRequest | None:
    if value is None or value is False:
        return None
    if value is True:
        hours: Any = DEFAULT_HOURS
    elif isinstance(value, dict) and set(value) <= {"hours"}:
        hours = value.get("hours", DEFAULT_HOURS)
    else:
        raise ConfigError("wakeOnRequest", value, f"true, false or {{hours: N}} with N more than 0 and at most "
                                                  f"{MAX_HOURS:g}")
    if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not 0 < hours <= MAX_HOURS:
        raise ConfigError("wakeOnRequest.hours", hours, f"how long a wake keeps the fleet up: more than 0 and at "
                                                        f"most {MAX_HOURS:g} hours")
    if not has_office_hours:
        raise ConfigError("wakeOnRequest", value, "needs officeHours: without them the fleet serves around the clock "
                                                  "and there is nothing to wake")
    if cloud not in CLOUDS:
        raise ConfigError("wakeOnRequest", value, f"works on {', '.join(CLOUDS)} only: the {cloud} load balancer "
                                                  f"cannot hand closed traffic to a function (docs/wake.md); use "
                                                  f"`make wake` there")
    return WakeOnRequest(float(hours))
