"""The README's two commands on a machine that has none of the project's tools: `make plan` from a clean copy of
the repository, and what `make test` does first (scripts/system-tools.sh) with the Debian tools missing, as root,
with sudo and without. CI runs `.ci/run`, which is `make test` and nothing else, on a clean checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import vm_lock  # noqa: E402  (the lock's reader, scripts/vm_lock.py)

SCRIPT = ROOT / "scripts" / "system-tools.sh"
PACKAGES = "cloud-init systemd apt"


def machine(tmp_path: Path, *, uid: int, sudo: bool = False) -> dict[str, str]:
    """A PATH with none of the tools (not even /usr/bin): only stubs of id, apt-get and (maybe) sudo that record
    their calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {"id": f'echo {uid}', "apt-get": f'echo "apt-get $*" >>"{tmp_path}/calls"'}
    if sudo:
        stubs["sudo"] = f'echo "sudo $*" >>"{tmp_path}/calls"; [ "$1" = -n ] && shift; [ "$1" = true ] || "$@"'
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {"PATH": str(bin_dir)}


def run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls"
    return log.read_text().splitlines() if log.exists() else []


def test_as_root_the_missing_tools_are_installed_with_apt(tmp_path):
    result = run(machine(tmp_path, uid=0))
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path) == ["apt-get update -qq", f"apt-get install -y -qq --no-install-recommends {PACKAGES}"]


def test_with_sudo_that_asks_no_password_they_are_installed_through_it(tmp_path):
    result = run(machine(tmp_path, uid=1000, sudo=True))
    assert result.returncode == 0, result.stderr
    assert f"apt-get install -y -qq --no-install-recommends {PACKAGES}" in calls(tmp_path)
    assert f"sudo -n apt-get install -y -qq --no-install-recommends {PACKAGES}" in calls(tmp_path)


def test_without_root_or_sudo_one_line_says_the_command_and_it_fails(tmp_path):
    result = run(machine(tmp_path, uid=1000))
    assert result.returncode != 0 and calls(tmp_path) == []
    [line] = result.stderr.splitlines()
    assert line == (f"make test needs {PACKAGES} (Debian/Ubuntu): sudo apt-get update && "
                    f"sudo apt-get install -y -qq --no-install-recommends {PACKAGES}")


def test_with_the_tools_present_nothing_is_installed(tmp_path):
    env = machine(tmp_path, uid=0)
    for tool in ("cloud-init", "systemd-analyze", "systemctl", "apt-config"):
        (Path(env["PATH"]) / tool).write_text("#!/bin/bash\n")
        (Path(env["PATH"]) / tool).chmod(0o755)
    assert run(env).returncode == 0 and calls(tmp_path) == []


def test_ci_runs_exactly_the_readmes_test_command():
    lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[-1] == "exec make test" and not any("apt-get" in line or "install" in line for line in lines)
    assert "make test" in (ROOT / "README.md").read_text()


@pytest.mark.network
def test_make_plan_works_from_a_clean_copy_of_the_repository(tmp_path):
    """What a commit holds (tracked files and new ones git does not ignore), nothing installed: `make plan` creates
    .venv from PyPI and plans (about a minute; pip's cache helps)."""
    listed = subprocess.run(["bash", "-c", "git ls-files -z; git ls-files -z --others --exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    copy = tmp_path / "vllm-fleet"
    for name in filter(None, (entry.decode() for entry in listed)):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    assert not (copy / ".venv").exists()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VIRTUAL_ENV", "PYTHON"))}
    result = subprocess.run(["make", "plan", "STACK=codellama-dev"], cwd=copy, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "Resources:" in result.stdout and "Policies (policies/fleet_policies.py): all passed" in result.stdout


def test_the_venv_installs_only_pinned_packages():
    """.venv is requirements-dev.txt under requirements-dev.lock, which pins every package it installs: the lock
    agrees with each direct pin (a bump without `make dev-lock` fails here, not in pip), and the Makefile and CI's
    setup action install under it."""
    lock = vm_lock.pins_of((ROOT / "requirements-dev.lock").read_text())
    for name in ("requirements.txt", "requirements-dev.txt"):
        # a pin with extras (moto[autoscaling,...]) is its package's pin in the lock
        direct = {pkg.split("[")[0]: pin for pkg, pin in vm_lock.pins_of((ROOT / name).read_text()).items()}
        assert direct and {pkg: lock.get(pkg) for pkg in direct} == direct, name
    assert "-r requirements-dev.txt -c requirements-dev.lock" in (ROOT / "Makefile").read_text()
    assert "make .venv/.installed" in (ROOT / ".github/actions/setup-fleet/action.yml").read_text()

