"""The weekly check of the VMs' lock: `make vm-lock-check` resolves cloud-init/vllm-requirements.in again and asks
PyPI for each pinned file. When something moved, one issue says what (opened, or updated while it stays so), and it
is closed once the lock and the resolution agree again. It never blocks a merge: no test resolves.

    GITHUB_TOKEN=... python .github/scripts/vm_lock_issue.py

Exits 0 when the check ran (moved or not: the issue tells), 1 when it could not run.
"""

from __future__ import annotations

import os
import subprocess
import sys

from ci_common import ROOT, add_summary
from github_api import GitHub

LABEL = "vllm-fleet-vm-lock"
MARKER = "<!-- vllm-fleet-vm-lock -->"
TITLE = "The VMs' package lock no longer resolves as recorded"
MOVED = 1  # scripts/vm_lock.py check: 0 unchanged, 1 moved, 2 could not ask the index


def run_check() -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "vm-lock-check"], cwd=ROOT, capture_output=True, text=True, timeout=1200)


def main() -> int:
    result = run_check()
    run_url = (f"{os.environ.get('GITHUB_SERVER_URL', 'https://github.com')}/{os.environ.get('GITHUB_REPOSITORY')}"
               f"/actions/runs/{os.environ.get('GITHUB_RUN_ID')}")
    if result.returncode not in (0, MOVED):
        print(f"::error::make vm-lock-check could not run: {(result.stderr or result.stdout).strip()[-400:]}")
        return 1
    github = GitHub.from_environment()
    if result.returncode == MOVED:
        body = f"{MARKER}\n{result.stdout.strip()}\n\n([run]({run_url}); this issue closes itself once the lock and " \
               "the resolution agree again.)"
        done = github.upsert_issue(MARKER, LABEL, TITLE, body,
                                   again="Still moved: the description above is the latest check.")
    else:
        done = github.close_issue(MARKER, LABEL, f"The lock resolves as recorded again ([run]({run_url})).")
    add_summary(f"vm-lock-check: {'moved' if result.returncode == MOVED else 'unchanged'}; issue {done}.")
    print(f"vm-lock-check: {'moved' if result.returncode == MOVED else 'unchanged'}; issue {done}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
