"""What every cloud's activator answers a request that reaches a sleeping fleet: 401 for a missing or wrong API key
(and nothing woken), else one wake (a second request while it wakes starts nothing more) and 503 with Retry-After
(the time the plan gives a VM to serve, at most what the openai client still retries after) in an OpenAI-style
error that says when it serves."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

WAKE_NAME = "vllm-fleet-wake"  # the wake's scheduled action, scaling schedule or profile, on every cloud
BEARER = "bearer "
# The openai client does not retry at all when Retry-After is longer than this (openai/_constants.py
# MAX_RETRY_AFTER_DELAY, 2 minutes; it waits Retry-After up to it): a longer time to serve is said in the message, and
# each retry before it is answered again.
RETRY_AFTER_MAX_S = 120


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        return json.dumps(self.body)


class Fleet(Protocol):
    """A cloud's group, as the activator sees it."""

    def waking(self) -> bool:
        """A wake (this one's, `make wake`'s or the window's) has already sized the group up."""

    def serving(self) -> bool:
        """A VM passes the load balancer's health check."""

    def wake(self, now: dt.datetime) -> None:
        """The wake's calls: the group to its office-hours sizes until the bounded end."""

    def open(self) -> None:
        """The API's route back to the VMs."""

    def asleep(self) -> bool:
        """The group is at its size outside office hours (a wake's hours are up)."""

    def close(self) -> None:
        """The API's route to the activator again."""


def settle(fleet: Fleet, in_hours: bool) -> bool:
    """After a VM left the group: once a wake's hours are up (outside office hours, the group at its off-hours
    size), the API's route goes back to the activator, so that the next keyed request wakes it again (else the
    load balancer would answer its own 503 until the next window's close). Whether it did."""
    if in_hours or not fleet.asleep():
        return False
    fleet.close()
    return True


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def valid_key(authorization: str | None, keys: Iterable[str]) -> bool:
    """`Authorization: Bearer <key>` with one of the stack's keys, compared in constant time (as digests, so that
    the length of a key says nothing either)."""
    if not authorization or not authorization.lower().startswith(BEARER):
        return False
    sent = _digest(authorization[len(BEARER):].strip())
    return any([hmac.compare_digest(sent, _digest(key)) for key in keys])


def _error(status: int, message: str, kind: str, code: str, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, {"error": {"message": message, "type": kind, "code": code}}, headers or {})


def answer(stack: str, authorization: str | None, keys: Callable[[], Iterable[str]], fleet: Fleet,
           time_to_serve_s: int, now: dt.datetime) -> Answer:
    if not valid_key(authorization, keys()):
        return _error(401, f"vllm-fleet {stack}: a valid API key (Authorization: Bearer <key>) wakes this sleeping "
                           "endpoint; this request woke nothing", "invalid_request_error", "invalid_api_key")
    if fleet.serving():
        fleet.open()
        return _error(503, f"vllm-fleet {stack} serves now: retry", "service_unavailable", "waking",
                      {"Retry-After": "1"})
    if not fleet.waking():
        fleet.wake(now)
    minutes = math.ceil(time_to_serve_s / 60)
    return _error(503, f"vllm-fleet {stack} was asleep and is starting: it serves in about {minutes} min (by "
                       f"{(now + dt.timedelta(seconds=time_to_serve_s)):%H:%M} UTC); retry then",
                  "service_unavailable", "waking", {"Retry-After": str(min(time_to_serve_s, RETRY_AFTER_MAX_S))})
