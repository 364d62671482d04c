"""The scheduled drift check of one stack: `pulumi refresh --preview-only --json` compares the stack's state with
what exists in the cloud (someone changed or deleted a resource by hand), without changing either. A drifted
stack gets an issue (opened, or updated on the next drifted run); once it is back in line, the issue is closed.

    GITHUB_TOKEN=... python .github/scripts/drift_check.py --stack codellama-prod

A stack that is locked (Pulumi Cloud's 409, a self-managed backend's lock) while one of the jobs that lock it
runs (`deploy <stack>`, `pulumi preview <stack>`) is checked on the next run. Locked with none of them running, the
lock is a stopped job's, and stays until someone releases it: the stack's issue says so (and closes with the next
check that runs), and the job fails, so that the check never goes quiet.

Exits 0 when the check ran (drifted or not: the issue tells) or the stack is busy, 1 when it could not run.
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
# The jobs that hold a stack's lock while they run: (workflow file, job name as GitHub shows it).
LOCKING_JOBS = (("deploy.yml", "deploy {stack}"), ("preview.yml", "pulumi preview {stack}"))
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


def lock_holder(github: GitHub, stack: str) -> str | None:
    """The URL of a running job that holds the stack's lock, or None when none runs."""
    repo = f"/repos/{github.repository}"
    for workflow, job_name in LOCKING_JOBS:
        runs = github.send("GET", f"{repo}/actions/workflows/{workflow}/runs?status=in_progress&per_page=100", None)
        for run in runs.get("workflow_runs") or []:
            jobs = github.send("GET", f"{repo}/actions/runs/{run['id']}/jobs?per_page=100", None)
            for job in jobs.get("jobs") or []:
                if job.get("name") == job_name.format(stack=stack) and job.get("status") == "in_progress":
                    return job.get("html_url") or run.get("html_url", "")
    return None


def locked_body(stack: str, run_url: str) -> str:
    return "\n".join([
        marker(stack),
        f"The scheduled drift check could not check stack `{stack}` ([run]({run_url})): the stack is locked and no "
        f"deploy or preview of it runs. A stopped job left its lock (the deploy job's cleanup step releases it when "
        f"it runs). Release it with `pulumi cancel -s {stack}`, after checking that nothing runs on it; then "
        f"`pulumi stack export -s {stack}` shows whether operations were left pending (docs/ci.md). This issue "
        f"closes itself once a check runs and finds no drift.",
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
    run_url = (f"{os.environ.get('GITHUB_SERVER_URL', 'https://github.com')}/{os.environ.get('GITHUB_REPOSITORY')}"
               f"/actions/runs/{os.environ.get('GITHUB_RUN_ID')}")
    if result.returncode != 0 and re.search(PULUMI_BUSY, result.stderr, re.I):
        github = GitHub.from_environment()
        holder = lock_holder(github, args.stack)
        if holder:
            print(f"::notice::{args.stack} is locked by a running job ({holder}): drift is checked on the next run")
            return 0
        done = github.upsert_issue(marker(args.stack), LABEL, f"Drift check blocked: vllm-fleet stack {args.stack} "
                                   f"is locked", locked_body(args.stack, run_url),
                                   again="Still locked, with no job of the stack running.")
        print(f"::error::{args.stack} is locked and no deploy or preview of it runs: a stopped job's lock "
              f"(issue {done})")
        return 1
    if result.returncode != 0 or not isinstance(document, dict):
        print(f"::error::the drift check of {args.stack} could not run: {result.stderr.strip()[-400:]}")
        return 1
    github = GitHub.from_environment()
    lines = drifted(document)
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
