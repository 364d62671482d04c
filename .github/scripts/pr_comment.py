"""Puts a stack's preview report on its pull request: one comment per stack and part (the offline plan, the real
`pulumi preview`), edited in place on every push.

    GITHUB_TOKEN=... python .github/scripts/pr_comment.py --part plan --pr 12 --stack codellama-prod --body comment.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from github_api import GitHub
from preview_report import PARTS, marker

MAX_BODY = 65000  # GitHub refuses comments over 65,536 characters


def body_of(stack: str, report: str, part: str = "plan") -> str:
    if marker(stack, part) not in report:
        report = f"{marker(stack, part)}\n{report}"
    if len(report) > MAX_BODY:
        report = report[:MAX_BODY] + "\n\n… cut: the job summary has the whole report.\n"
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=PARTS, required=True)
    parser.add_argument("--pr", type=int, required=True)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--body", type=Path, required=True, help="the report preview_report.py wrote")
    args = parser.parse_args(argv)
    done = GitHub.from_environment().upsert_comment(args.pr, marker(args.stack, args.part),
                                                    body_of(args.stack, args.body.read_text(), args.part))
    print(f"comment for {args.stack} {done} on #{args.pr}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
