"""What every cloud's model of its own load balancer shares.

Each cloud's `edge.py` has `edge_answer(resources, method, path)`: what the stack's planned load balancer (its
resources as the plan records them: (type, inputs) pairs) answers a request itself, as an HTTP status, or None
where it may pass the request on to vLLM. The tests run every route the real vLLM registers through it: a route
the edge passes on must be one vLLM refuses without the API key.

The clouds document how their rules match (case, wildcards) but not all of them say whether the path is matched as
the client sent it or after percent-decoding, resolving `.`/`..` and merging `//`. A model therefore takes every
such reading of the path and passes the request on if any one reading would be passed on: it can only err towards
sending a request to vLLM, where the tests then demand that vLLM refuses it.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, Iterable, Sequence

Resources = Sequence[tuple[str, dict[str, Any]]]


def of_type(resources: Resources, type_: str) -> list[dict[str, Any]]:
    return [inputs for kind, inputs in resources if kind == type_]


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4."""
    output: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if len(output) > 0:
                output.pop()
        elif segment != ".":
            output.append(segment)
    trailing = "/" if path.endswith(("/.", "/..")) else ""
    return "/" + "/".join(output) + trailing


def path_readings(path: str) -> set[str]:
    """The paths a load balancer may match for a request-target: as sent, percent-decoded (once), with dot segments
    resolved and with repeated slashes merged, and their combinations. The query string is never part of it."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    readings = {path, urllib.parse.unquote(path)}
    for step in (_remove_dot_segments, lambda p: re.sub(r"/{2,}", "/", p)):
        readings |= {step(reading) for reading in readings if reading.startswith("/")}
    return readings


def strictest(outcomes: Iterable[int | None]) -> int | None:
    """The edge's answer over all readings of a path: None (passed on) if any reading is passed on."""
    outcomes = list(outcomes)
    return None if None in outcomes else outcomes[0]
