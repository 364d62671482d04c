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


def time_to_serve_s(time_to_serve: Any, standby_pool: bool) -> int:
    """What a woken VM takes to serve, as the plan says it (fleet/sizing.TimeToServe): a stopped VM of the
    standby pool, or a new one; the activator's Retry-After."""
    return time_to_serve.warm_seconds if standby_pool else time_to_serve.seconds


def summary(wake: WakeOnRequest | None, vms: int, gpus_per_vm: int, usd_per_vm_hour: float,
            seconds_to_serve: int) -> dict[str, Any]:
    """What one wake costs and takes (the plan's officeHours.wakeCost): the desired VMs for the bounded hours (a
    wake that reaches into the next window ends earlier, at its close), `make wake`'s default where the stack has no
    wakeOnRequest."""
    hours = wake.hours if wake else DEFAULT_HOURS
    return {"onRequest": wake is not None, "hours": hours, "vms": vms, "gpuHours": round(vms * gpus_per_vm * hours, 1),
            "usd": round(vms * usd_per_vm_hour * hours, 2), "secondsToServe": seconds_to_serve}
