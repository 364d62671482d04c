"""After `pulumi up`: `make check` against the stack's endpoint until every check passes, retrying while new VMs
install vLLM, load the model and turn healthy, for at most the stack's expected time to serve.

    python .github/scripts/post_deploy_check.py --stack codellama-prod

Reads the stack's outputs once (`endpoint`, `servedModelName`, `apiKey`, `timeToServe`) and masks the key in the
log before anything else is printed; `make check` gets the key in its environment (OPENAI_API_KEY), never on a
command line. Sets the step output `endpoint`. Exits 0 when the checks pass, 1 when they still fail at the deadline, 2 when the stack has no
endpoint to check.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ci_common import ROOT, mask, set_output

DEFAULT_TIME_TO_SERVE_SECONDS = 3600  # when the stack has no timeToServe output
RETRY_INTERVAL_SECONDS = 60


@dataclass(frozen=True)
class Target:
    url: str
    model: str
    api_key: str
    time_to_serve: int


def target_of(outputs: Mapping[str, Any]) -> Target:
    missing = [name for name in ("endpoint", "servedModelName", "apiKey") if not outputs.get(name)]
    if missing:
        raise LookupError(f"the stack has no output {', '.join(missing)}: did `pulumi up` finish?")
    seconds = (outputs.get("timeToServe") or {}).get("seconds")
    return Target(outputs["endpoint"], outputs["servedModelName"], outputs["apiKey"],
                  int(seconds) if seconds else DEFAULT_TIME_TO_SERVE_SECONDS)


def stack_outputs(stack: str) -> dict[str, Any]:
    result = subprocess.run(["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", stack], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise LookupError(f"pulumi stack output failed: {result.stderr.strip()[-400:]}")
    return json.loads(result.stdout)


def make_check(target: Target) -> int:
    """One run of `make check` against the endpoint; its PASS/FAIL lines go to the log."""
    environment = {**os.environ, "OPENAI_API_KEY": target.api_key}
    return subprocess.run(["make", "check", f"URL={target.url}", f"MODEL={target.model}"], cwd=ROOT,
                          env=environment).returncode


def check_until_served(target: Target, check: Callable[[Target], int] = make_check,
                       clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                       interval: int = RETRY_INTERVAL_SECONDS) -> int:
    deadline = clock() + target.time_to_serve
    attempt = 0
    while True:
        attempt += 1
        print(f"::group::make check, attempt {attempt}", flush=True)
        status = check(target)
        print("::endgroup::", flush=True)
        if status == 0:
            print(f"every check passed (attempt {attempt})")
            return 0
        if clock() + interval > deadline:
            print(f"::error::checks still fail after {target.time_to_serve} s, the stack's expected time for a "
                  f"new VM to serve (timeToServe): see the last attempt's FAIL lines")
            return 1
        print(f"not yet: retrying in {interval} s (new VMs may still be loading the model)", flush=True)
        sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--interval", type=int, default=RETRY_INTERVAL_SECONDS)
    args = parser.parse_args(argv)
    try:
        outputs = stack_outputs(args.stack)
        if outputs.get("apiKey"):
            mask(str(outputs["apiKey"]))
        target = target_of(outputs)
    except LookupError as error:
        print(f"::error::{error}")
        return 2
    set_output("endpoint", target.url)  # the environment's URL on GitHub
    print(f"checking {target.url} ({target.model}) for up to {target.time_to_serve} s", flush=True)
    return check_until_served(target, interval=args.interval)


if __name__ == "__main__":
    sys.exit(main())
