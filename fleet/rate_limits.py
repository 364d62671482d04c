"""The rateLimits key: requests and tokens per minute per API key, enforced on the VMs (every cloud) and, for
requests, at the edge where the cloud can count per Authorization header (docs/usage.md).

    rateLimits:
      default: {requestsPerMinute: 600, tokensPerMinute: 400000}   # every key without its own entry
      keys:
        ci: {requestsPerMinute: 60}                                  # a key of apiKeys, by name

The VMs enforce each key's own limit exactly, per VM (cloud-init/fleet_usage.py.j2). The edge cannot tell which
key a bearer token is without the keys in its rules' plain configuration, so it counts per Authorization value at
the highest limit any key has (`edge_requests_per_minute`): a guard against any one token, the named keys' own
limits being the VMs'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from .errors import ConfigError
from .values import did_you_mean

KEY = "rateLimits"
FIELDS = {"requestsPerMinute": "requests_per_minute", "tokensPerMinute": "tokens_per_minute"}
# Large enough for any fleet, small enough that a typo of a few digits is refused.
HIGHEST = 100_000_000
DOCS = ("{default: {requestsPerMinute, tokensPerMinute}, keys: {<apiKeys name>: {...}}}: per-key limits per "
        "minute, enforced on each VM; requests also at the edge (docs/usage.md)")


@dataclass(frozen=True)
class Limit:
    requests_per_minute: int | None = None  # None: not limited
    tokens_per_minute: int | None = None

    def as_json(self) -> dict[str, int]:
        return {name: getattr(self, attr) for name, attr in FIELDS.items() if getattr(self, attr) is not None}


@dataclass(frozen=True)
class RateLimits:
    default: Limit = Limit()
    keys: Mapping[str, Limit] = field(default_factory=lambda: MappingProxyType({}))

    def of(self, name: str) -> Limit:
        return self.keys.get(name, self.default)

    def vm_file(self) -> str:
        """The file the VMs' middleware reads (fleet/usage.py RATE_LIMITS_FILE)."""
        return json.dumps({"default": self.default.as_json(),
                           "keys": {name: limit.as_json() for name, limit in sorted(self.keys.items())}},
                          indent=2, sort_keys=True) + "\n"

    def edge_requests_per_minute(self, key_names: tuple[str, ...]) -> int | None:
        """The limit the edge puts on each Authorization value: the highest requestsPerMinute of the keys; None
        (no edge rule) where some key has none."""
        limits = [self.of(name).requests_per_minute for name in key_names]
        return None if not limits or None in limits else max(limits)


def _limit(where: str, value: Any) -> Limit:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(where, value, "a map of requestsPerMinute and/or tokensPerMinute, e.g. "
                                        "{requestsPerMinute: 60, tokensPerMinute: 100000}")
    for name, number in value.items():
        if name not in FIELDS:
            raise ConfigError(f"{where}.{name}", number, f"is not a limit; known: {', '.join(FIELDS)}"
                                                         f"{did_you_mean(name, FIELDS)}")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= HIGHEST:
            raise ConfigError(f"{where}.{name}", number, f"a whole number from 1 to {HIGHEST:,} (per minute)")
    return Limit(**{FIELDS[name]: number for name, number in value.items()})


def parse_rate_limits(value: Any, key_names: tuple[str, ...]) -> RateLimits:
    """rateLimits of a stack whose API keys are `key_names` (FleetSpec.api_key_names)."""
    if value is None:
        return RateLimits()
    if not isinstance(value, Mapping) or not value or set(value) - {"default", "keys"}:
        raise ConfigError(KEY, value, DOCS)
    default = _limit(f"{KEY}.default", value["default"]) if "default" in value else Limit()
    keys = value.get("keys", {})
    if not isinstance(keys, Mapping) or not keys and "keys" in value:
        raise ConfigError(f"{KEY}.keys", keys, "a map of API key names (of apiKeys) to limits, e.g. "
                                               "{ci: {requestsPerMinute: 60}}")
    for name in keys:
        if name not in key_names:
            raise ConfigError(f"{KEY}.keys.{name}", keys[name],
                              f"names no API key of the stack; its keys: {', '.join(key_names)}"
                              f"{did_you_mean(name, key_names)}")
    return RateLimits(default, MappingProxyType({name: _limit(f"{KEY}.keys.{name}", limit)
                                                 for name, limit in keys.items()}))


def edge_error_body(requests_per_minute: int) -> str:
    """The OpenAI-style error the edge answers over its limit with, where the cloud lets it set a body (AWS WAF)."""
    return json.dumps({"error": {
        "message": f"over the endpoint's limit of {requests_per_minute} requests per minute for one API key; retry "
                   f"after a minute", "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}})
