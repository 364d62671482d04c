"""What the CI scripts share: the repository's stack files, and GitHub Actions' step outputs, job summary and log
masking (https://docs.github.com/actions/reference/workflow-commands-for-github-actions)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "vllm-fleet"
# What Pulumi answers an operation on a stack that another one (a deploy) holds: Pulumi Cloud's 409, a self-managed
# backend's lock object.
PULUMI_BUSY = r"another update is currently in progress|\[409\] Conflict|the stack is currently locked by"
# What the Pulumi CLI answers for a stack that was never created in the state backend (`pulumi stack init`).
PULUMI_NO_STACK = r"no stack named"


def stack_file(root: Path, stack: str) -> Path:
    return root / "stacks" / f"Pulumi.{stack}.yaml"


def stack_config(path: Path) -> dict[str, Any]:
    """A stack file's vllm-fleet keys, without the prefix; {} when the file is missing."""
    return parse_stack_config(path.read_text()) if path.exists() else {}


def parse_stack_config(text: str) -> dict[str, Any]:
    """The vllm-fleet keys of a stack file's text, without the prefix; {} when it is not YAML."""
    try:
        config = (yaml.safe_load(text) or {}).get("config") or {}
    except yaml.YAMLError:
        return {}
    prefix = f"{PROJECT}:"
    return {key[len(prefix):]: value for key, value in config.items() if key.startswith(prefix)}


def set_output(name: str, value: str) -> None:
    """A step output for later steps and jobs (single-line values only)."""
    if "\n" in value:
        raise ValueError(f"step output {name} must be one line")
    path = os.environ.get("GITHUB_OUTPUT")
    if path:
        with open(path, "a", encoding="utf-8") as output:
            output.write(f"{name}={value}\n")
    print(f"{name}={value}")


def add_summary(markdown: str) -> None:
    """Appends to the job's summary page (what fork pull requests get instead of a comment)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as summary:
            summary.write(markdown + "\n")


def mask(value: str) -> None:
    """Tells GitHub Actions to replace the value with *** in every later line of the job's log."""
    for line in value.splitlines():
        if line.strip():
            print(f"::add-mask::{line}", flush=True)
