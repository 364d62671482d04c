"""The deploy job's Pulumi steps for one stack (deploy.yml), with the Pulumi CLI itself.

    python .github/scripts/deploy.py up --stack codellama-prod
    python .github/scripts/deploy.py cleanup --stack codellama-prod

`up`: `pulumi up --policy-pack policies --suppress-outputs`, once the checked-out commit is known to be what main
deploys. Not pulumi/actions: it writes every stack output, the decrypted API keys too, to the step's outputs
($GITHUB_OUTPUT, masked in the log only). Here no output of the stack reaches a step output: the only step output
is `deployed` (true/false). Before `pulumi up` it records the keys the VMs accept now (the apiKeys secret of the
state) for the post-deploy check, which proves that each removed one is refused (post_deploy_check.py).

Main's tip: the job checks out main as it is when the job starts (deploy.yml), so whichever run of the stack's
lock goes last deploys the newest main. Right before `pulumi up` main is asked again: if it moved on and the new
commits change the stack, the run of those commits (queued after this job started, so nothing of this job replaced
it) deploys them: this one stops with a notice. If they do not change the stack, this deploy is the tip's.
A stack file with no Pulumi stack in the backend (never `pulumi stack init`ed: e.g. an example stack in a fork) is
not deployed either: one notice says so.

`cleanup` (deploy.yml runs it when `pulumi up` was cancelled, timed out or failed): `pulumi cancel` releases the
stack's lock (the Pulumi Cloud lease, or a self-managed backend's lock object), then the state's pending operations
(resources Pulumi started to create, update or delete when it was stopped) are listed as errors with what to do:
whether a pending create made a resource only the cloud knows, so none is dropped or imported blindly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import affected_stacks
import post_deploy_check
from ci_common import PULUMI_NO_STACK, ROOT, add_summary, mask, set_output
from github_api import GitHub

MAIN = "main"
# GitHub's compare API lists at most 300 files: a longer list may hide a change to the stack.
COMPARE_FILES_MAX = 300


def pulumi(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["pulumi", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def up_command(stack: str) -> list[str]:
    return ["pulumi", "up", "--yes", "--non-interactive", "--policy-pack", "policies", "--suppress-outputs",
            "--stack", stack]


def main_tip(github: GitHub) -> str:
    return github.send("GET", f"/repos/{github.repository}/git/ref/heads/{MAIN}", None)["object"]["sha"]


def changed_between(github: GitHub, base: str, head: str) -> list[str] | None:
    """The paths that differ from `base` to `head` (a later main), or None when GitHub's list may be incomplete."""
    comparison = github.send("GET", f"/repos/{github.repository}/compare/{base}...{head}", None)
    files = comparison.get("files") or []
    if comparison.get("status") != "ahead" or len(files) >= COMPARE_FILES_MAX:
        return None
    return [path for entry in files for path in (entry["filename"], entry.get("previous_filename")) if path]


def stale(github: GitHub, stack: str, checked_out: str) -> str | None:
    """Why this job must not deploy (main moved on with a change to the stack), or None."""
    tip = main_tip(github)
    if tip == checked_out:
        return None
    changed = changed_between(github, checked_out, tip)
    if changed is not None and not affected_stacks.affected(changed, [stack]):
        print(f"::notice::main moved on to {tip[:12]}, with no change to {stack}: deploying {checked_out[:12]}, "
              f"which deploys the same")
        return None
    return (f"main moved on from {checked_out[:12]} to {tip[:12]}, which changes {stack}: the deploy run of those "
            f"commits (queued after this job started) deploys main's tip; this run deploys nothing")


def up(stack: str, github: GitHub, record: Path) -> int:
    checked_out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                                 text=True).stdout.strip()
    started_for = os.environ.get("GITHUB_SHA", checked_out)
    if started_for != checked_out:
        print(f"::notice::this run was started for {started_for[:12]}; main is at {checked_out[:12]} now: "
              f"deploying that")
    reason = stale(github, stack, checked_out)
    if reason:
        print(f"::notice::{reason}")
        add_summary(f"**{stack}**: not deployed here: {reason}.")
        set_output("deployed", "false")
        return 0
    try:
        keys = post_deploy_check.api_keys_in_state(post_deploy_check.export(stack, show_secrets=True))
    except LookupError as error:
        if re.search(PULUMI_NO_STACK, str(error), re.I):
            why = (f"there is no Pulumi stack {stack} in the state backend: `pulumi stack init {stack}` creates it "
                   f"(docs/ci.md, section 5), or delete stacks/Pulumi.{stack}.yaml if it is an example you do not "
                   f"deploy")
            print(f"::notice::{stack} not deployed: {why}")
            add_summary(f"**{stack}**: not deployed: {why}.")
            set_output("deployed", "false")
            return 0
        print(f"::error::{error}")
        set_output("deployed", "false")
        return 1
    for value in keys.values():
        mask(value)
    # For the post-deploy check only (the job's temporary folder, readable by this user alone).
    record.touch(mode=0o600)
    record.write_text(json.dumps({"startedAt": dt.datetime.now(dt.timezone.utc).isoformat(), "apiKeys": keys}))
    # The CLI's own output goes to the log (outputs suppressed); nothing of it to a step output.
    status = subprocess.run(up_command(stack), cwd=ROOT).returncode
    set_output("deployed", "true" if status == 0 else "false")
    add_summary(f"**{stack}**: `pulumi up` of {checked_out[:12]} {'done' if status == 0 else 'failed'}.")
    return status


def pending_operations(state: Mapping[str, Any]) -> list[str]:
    """One line per pending operation of an exported state: what Pulumi was doing to which resource."""
    return [f"{op.get('type', '?')} {op['resource']['urn']}"
            for op in (state.get("deployment") or {}).get("pending_operations") or []]


def cleanup(stack: str) -> int:
    cancelled = pulumi("cancel", "--yes", "--stack", stack)
    print(f"pulumi cancel: {(cancelled.stdout + cancelled.stderr).strip()[-400:] or 'done'}")
    if cancelled.returncode != 0:
        # Nothing to cancel (the update ended by itself) reads the same as a refusal: say it, and go on.
        print(f"::warning::pulumi cancel -s {stack} exited {cancelled.returncode}: the stack may still be locked")
    try:
        pending = pending_operations(post_deploy_check.export(stack))
    except LookupError as error:
        print(f"::error::{stack}: cannot read the state for pending operations: {error}")
        return 1
    if not pending:
        print(f"{stack}: no pending operations")
        return 0 if cancelled.returncode == 0 else 1
    for line in pending:
        print(f"::error::{stack}: interrupted while {line}")
    add_summary("\n".join([
        f"**{stack} has {len(pending)} pending operations** (the deploy was stopped mid-way):", "",
        *(f"- {line}" for line in pending), "",
        "Check in the cloud whether each happened, then `pulumi refresh -s " + stack + "`: it settles updates and "
        "deletes; for a create, `--import-pending-creates <urn> <id>` when the resource exists, else "
        "`--clear-pending-creates`. Until then each `pulumi up` warns and keeps them."]))
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "cleanup"))
    parser.add_argument("--stack", required=True)
    args = parser.parse_args(argv)
    if args.action == "cleanup":
        return cleanup(args.stack)
    return up(args.stack, GitHub.from_environment(), post_deploy_check.record_file(args.stack))


if __name__ == "__main__":
    sys.exit(main())
