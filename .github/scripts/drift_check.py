"""The scheduled drift check of one stack: `pulumi refresh --preview-only --json` compares the stack's state with
what exists in the cloud (someone changed or deleted a resource by hand), without changing either. A drifted
stack gets an issue (opened, or updated on the next drifted run); once it is back in line, the issue is closed.

    GITHUB_TOKEN=... python .github/scripts/drift_check.py --stack codellama-prod

Exits 0 when the check ran (drifted or not: the issue tells), 1 when it could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from typing import Any, Mapping

import plan_diff
from ci_common import PULUMI_BUSY, ROOT, add_summary
from github_api import GitHub

LABEL = "vllm-fleet-drift"
UNCHANGED_OPS = {"same", "read"}
LISTED = 50


def marker(stack: str) -> str:
    return f"<!-- vllm-fleet-drift stack={stack} -->"


def drifted(document: Mapping[str, Any]) -> list[str]:
    """One line per resource whose cloud state differs from the stack's state; [] when none does. A refresh step
    counts as drifted when its result is an update or delete, or it carries a diff."""
    lines = []
    for step in document.get("steps") or []:
        op = step.get("op", "")
        keys = sorted(step.get("detailedDiff") or {}) or list(step.get("diffReasons") or [])
        if op in UNCHANGED_OPS or (op == "refresh" and not keys):
            continue
        shown = f"{op}: `{plan_diff.step_type(step)}` {plan_diff.resource_name(step['urn'])}"
        lines.append(shown + (f" ({', '.join(keys)})" if keys else ""))
    if not lines and any(count for op, count in (document.get("changeSummary") or {}).items()
                         if op not in UNCHANGED_OPS):
        lines.append(f"changes by operation: {json.dumps(document['changeSummary'])}")
    return lines


def issue_body(stack: str, lines: list[str], run_url: str) -> str:
    shown = lines[:LISTED] + ([f"… and {len(lines) - LISTED} more"] if len(lines) > LISTED else [])
    return "\n".join([
        marker(stack),
        f"The scheduled drift check found resources of stack `{stack}` that differ in the cloud from the stack's "
        f"state (`pulumi refresh --preview-only`, [run]({run_url})):", "",
        *(f"- {line}" for line in shown), "",
        "Either undo the change in the cloud, or adopt it (`pulumi refresh -s " + stack + "`) and then bring the "
        "code in line with a pull request: the next `pulumi up` otherwise reverts it. This issue closes itself "
        "once a check finds no drift.",
    ])


def refresh_preview(stack: str) -> subprocess.CompletedProcess:
    return subprocess.run(["pulumi", "refresh", "--preview-only", "--json", "--non-interactive", "--stack", stack],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True)
    args = parser.parse_args(argv)
    result = refresh_preview(args.stack)
    try:
        document = json.loads(result.stdout)
    except json.JSONDecodeError:
        document = None
    if result.returncode != 0 and re.search(PULUMI_BUSY, result.stderr, re.I):
        print(f"::notice::{args.stack} is being deployed right now: drift is checked on the next run")
        return 0
    if result.returncode != 0 or not isinstance(document, dict):
        print(f"::error::the drift check of {args.stack} could not run: {result.stderr.strip()[-400:]}")
        return 1
    run_url = (f"{os.environ.get('GITHUB_SERVER_URL', 'https://github.com')}/{os.environ.get('GITHUB_REPOSITORY')}"
               f"/actions/runs/{os.environ.get('GITHUB_RUN_ID')}")
    lines = drifted(document)
    github = GitHub.from_environment()
    if lines:
        done = github.upsert_issue(marker(args.stack), LABEL, f"Drift: vllm-fleet stack {args.stack}",
                                   issue_body(args.stack, lines, run_url))
        add_summary(f"**{args.stack} drifted** ({len(lines)} resources): issue {done}.")
    else:
        done = github.close_issue(marker(args.stack), LABEL, f"No drift any more ([run]({run_url})).")
        add_summary(f"{args.stack}: no drift (issue: {done}).")
    print(f"{args.stack}: {'drifted' if lines else 'no drift'}; issue {done}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
