"""Shared fixtures: every stack file planned once per session by the real offline plan (a subprocess, since
Pulumi's runtime is process-global), and helpers to look into a plan."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

# A VM's files, as a stack's rendered user-data writes them (cli/serve_local.py serves a stack on this machine so).
from cli.serve_local import launcher_argv, materialize, write_files  # noqa: F401 (the tests import them from here)

ROOT = Path(__file__).resolve().parent.parent
STACK_FILES = sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))
# The tests never ask the Hugging Face hub (fleet/hub.py): a model the catalog lacks fails at once, in this
# process and in the plans it runs; tests/data/configs/ holds recorded config.json files instead.
os.environ["HF_HUB_OFFLINE"] = "1"


def pytest_configure(config):
    missing = [tool for tool in ("cloud-init", "systemd-analyze", "systemctl", "apt-config")
               if shutil.which(tool) is None]
    if missing:
        raise pytest.UsageError(f"the tests run {', '.join(missing)}: run them with `make test` (or make "
                                f"test-offline), which installs them, or see scripts/system-tools.sh")


def stack_name(path: Path) -> str:
    return path.name[len("Pulumi."):-len(".yaml")]


def stack_cloud(path: Path) -> str:
    return yaml.safe_load(path.read_text())["config"]["vllm-fleet:cloud"]


def config_of(stack: str) -> dict[str, Any]:
    """A stack file's vllm-fleet keys, without the prefix."""
    raw = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("vllm-fleet:")}


def stacks_of(cloud: str | None = None) -> list[str]:
    return [stack_name(p) for p in STACK_FILES if cloud is None or stack_cloud(p) == cloud]


@dataclass
class PlannedStack:
    name: str
    preview: dict[str, Any]

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.preview["steps"]

    @property
    def outputs(self) -> dict[str, Any]:
        return self.preview["outputs"]

    @property
    def user_data(self) -> str:
        return self.preview["userData"]

    @property
    def warnings(self) -> list[str]:
        return [d["message"] for d in self.preview["diagnostics"] if d["severity"] == "warning"]

    def resources(self, type_: str) -> list[dict[str, Any]]:
        """The inputs of every resource of a type."""
        return [s["newState"]["inputs"] for s in self.steps if s["type"] == type_]

    def named(self, type_: str) -> dict[str, dict[str, Any]]:
        return {s["urn"].rsplit("::", 1)[1]: s["newState"]["inputs"] for s in self.steps if s["type"] == type_}

    def options_of(self, type_: str) -> dict[str, Any]:
        """The resource options (ignoreChanges, ...) the plan recorded for the one resource of a type."""
        [options] = [s["options"] for s in self.steps if s["type"] == type_]
        return options

    def one(self, type_: str) -> dict[str, Any]:
        found = self.resources(type_)
        assert len(found) == 1, f"expected one {type_}, found {len(found)}"
        return found[0]


def run_plan(target: str | Path, fmt: str = "json") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.plan", str(target), "--format", fmt],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


_plans: dict[str, PlannedStack] = {}


@pytest.fixture(scope="session")
def plan_of():
    def get(stack: str) -> PlannedStack:
        if stack not in _plans:
            result = run_plan(stack)
            assert result.returncode == 0, result.stderr
            _plans[stack] = PlannedStack(stack, json.loads(result.stdout))
        return _plans[stack]

    return get


@pytest.fixture
def stack_file(tmp_path):
    """Writes a stack file from a config dict (keys without the vllm-fleet: prefix) and returns its path."""

    def write(config: dict[str, Any], name: str = "case") -> Path:
        path = tmp_path / f"Pulumi.{name}.yaml"
        path.write_text(yaml.safe_dump({"config": {
            (k if ":" in k else f"vllm-fleet:{k}"): v for k, v in config.items()}}))
        return path

    return write

