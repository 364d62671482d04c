"""What every cloud's edge shares: the shape of the paths it passes on to vLLM, and its model.

vLLM serves routes without the API key (/invocations, /tokenize, /metrics...), and its key guards only paths that
start with /v1 as vLLM reads them (percent-decoded, never normalised). No cloud documents for its rule matching
whether the path is matched as the client sent it or after percent-decoding, resolving `.`/`..` and merging `//`,
nor in what form it is forwarded. So the edge passes on only paths of the API's own shape (API_PATH): no dot
segments, no `//`, no `%` at all, no `\\`, no `;`. It is matched against the path as sent wherever that is the
documented reading, and a load balancer that normalises first only ever makes a path cleaner: the refusal never
relies on it. No `%` at all: the API's paths are ASCII words and ids (`/v1/chat/completions`,
`/v1/responses/resp_...`); percent-encoding is only ever needed for characters that none of them has.

Each cloud's `edge.py` has `edge_answers(resources, method, path)`: what the stack's planned load balancer (its
resources as the plan records them: (type, inputs) pairs) answers a request for each reading of its path that the
cloud's rules may match (path_readings, unless the cloud documents the reading): an HTTP status of its own, or
None where it passes the request on to vLLM. `edge_answer` is the strictest of them: it passes the request on if
any reading would, so it can only err towards sending a request to vLLM, where the serving proof then demands
that vLLM refuses it without the key.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, Callable, Iterable, Sequence

from fleet import serving

Resources = Sequence[tuple[str, dict[str, Any]]]
EdgeAnswers = Callable[[Resources, str, str], dict[str, "int | None"]]

# One path segment of the API: a letter, digit, `_`, `~` or `-` first (so never `.` or `..`), then dots too.
API_SEGMENT = "[A-Za-z0-9_~-][A-Za-z0-9._~-]*"
# The paths the edge passes on, as a regular expression in the subset AWS's listener rules, Cloud Armor (RE2) and
# Application Gateway share (no escapes, lookarounds or backreferences), anchored at both ends so that a whole-path
# match and a search mean the same: the API's prefix with one or more segments (a trailing `/` allowed), and the
# public paths exactly.
API_PATH = (f"^({serving.PUBLIC_API_PREFIX.rstrip('/')}(/{API_SEGMENT})+/?|"
            + "|".join(serving.PUBLIC_PATHS) + ")$")


def of_type(resources: Resources, type_: str) -> list[dict[str, Any]]:
    return [inputs for kind, inputs in resources if kind == type_]


def as_sent(path: str) -> str:
    """The path of a request-target as the client sent it: without the query string (and any fragment)."""
    return path.split("?", 1)[0].split("#", 1)[0]


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


# What a load balancer may do to a path before it matches it: percent-decode it, take `\` for `/` (as IIS does),
# resolve dot segments, merge repeated slashes.
_NORMALISATIONS = (urllib.parse.unquote, lambda p: p.replace("\\", "/"), _remove_dot_segments,
                   lambda p: re.sub(r"/{2,}", "/", p))


def path_readings(path: str) -> set[str]:
    """The paths a load balancer may match for a request-target: as sent and after any of the normalisations, in
    any order and repeated (a double decoding too). The query string is never part of it."""
    readings, new = set(), {as_sent(path)}
    while new:
        readings |= new
        new = {step(reading) for reading in new for step in _NORMALISATIONS
               if step is not _remove_dot_segments or reading.startswith("/")} - readings
    return readings


def strictest(outcomes: Iterable[int | None]) -> int | None:
    """The edge's answer over all readings of a path: None (passed on) if any reading is passed on."""
    outcomes = list(outcomes)
    return None if None in outcomes else outcomes[0]


def strictest_of(edge_answers: EdgeAnswers) -> Callable[[Resources, str, str], int | None]:
    """A cloud's `edge_answer`: the strictest of its `edge_answers`."""
    def edge_answer(resources: Resources, method: str, path: str) -> int | None:
        return strictest(edge_answers(resources, method, path).values())

    return edge_answer
