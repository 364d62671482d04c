"""Which fleet stacks a change affects, as the matrix of the preview and deploy jobs.

    python .github/scripts/affected_stacks.py --head <sha> --base <sha> [--merge-base] [--existing-only]
    python .github/scripts/affected_stacks.py --head <sha> --all | --only <stack>

A changed stacks/Pulumi.<stack>.yaml affects that stack; a change to the program (the code, the catalog, the
cloud-init templates, the policy pack, the requirements, Pulumi.yaml) affects every stack. Sets the step outputs
`stacks` (JSON: [{"stack", "cloud", "region", "removed"}]) and `count`.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterable

from ci_common import ROOT, parse_stack_config, set_output, stack_file

STACK_FILE = re.compile(r"^stacks/Pulumi\.(?P<stack>[^/]+)\.yaml$")
PROGRAM_DIRECTORIES = ("fleet/", "components/", "activator/", "cloud-init/", "catalog/", "policies/")
PROGRAM_FILES = re.compile(r"^(__main__\.py|Pulumi\.yaml|requirements[^/]*\.txt)$")
NO_COMMIT = "0" * 40  # `before` of a push that created the branch


def affected(changed: Iterable[str], stacks: Iterable[str]) -> list[str]:
    """The stacks (of `stacks`, the stack files of both sides) that the changed paths affect, sorted."""
    stacks = set(stacks)
    hit = set()
    for path in changed:
        match = STACK_FILE.match(path)
        if match:
            hit.add(match["stack"])
        elif path.startswith(PROGRAM_DIRECTORIES) or PROGRAM_FILES.match(path):
            return sorted(stacks)
    return sorted(hit & stacks)


def stacks_at(root: Path, commit: str) -> set[str]:
    listing = git(root, "ls-tree", "--name-only", commit, "stacks/")
    return {m["stack"] for line in listing.splitlines() if (m := STACK_FILE.match(line))}


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def describe(root: Path, base: str, stack: str) -> dict:
    """The matrix entry of a stack; a removed stack's cloud and region come from the base's file."""
    path = stack_file(root, stack)
    removed = not path.exists()
    text = git(root, "show", f"{base}:stacks/Pulumi.{stack}.yaml") if removed else path.read_text()
    config = parse_stack_config(text)
    return {"stack": stack, "cloud": config.get("cloud", ""), "region": config.get("region", ""),
            "removed": removed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--head", required=True, help="the commit checked out")
    chosen_by = parser.add_mutually_exclusive_group(required=True)
    chosen_by.add_argument("--base", help="the commit to compare with (a pull request's base, a push's before)")
    chosen_by.add_argument("--all", action="store_true", help="every stack of stacks/ (the drift check)")
    chosen_by.add_argument("--only", help="this one stack (a deploy started by hand)")
    parser.add_argument("--merge-base", action="store_true",
                        help="compare with the merge base of base and head (a pull request's own changes)")
    parser.add_argument("--existing-only", action="store_true",
                        help="leave out stacks whose file the change removed (a deploy does not destroy)")
    args = parser.parse_args(argv)

    head_stacks = stacks_at(ROOT, args.head)
    base = args.head
    if args.only:
        if args.only not in head_stacks:
            print(f"::error::no stack {args.only!r}: stacks/ has {', '.join(sorted(head_stacks))}")
            return 2
        chosen = [args.only]
    elif args.all or args.base == NO_COMMIT:
        chosen = sorted(head_stacks)
    else:
        base = git(ROOT, "merge-base", args.base, args.head).strip() if args.merge_base else args.base
        changed = git(ROOT, "diff", "--name-only", "--no-renames", base, args.head).splitlines()
        chosen = affected(changed, head_stacks | stacks_at(ROOT, base))
    entries = [describe(ROOT, base, stack) for stack in chosen]
    if args.existing_only:
        entries = [entry for entry in entries if not entry["removed"]]
    set_output("stacks", json.dumps(entries, separators=(",", ":")))
    set_output("count", str(len(entries)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
