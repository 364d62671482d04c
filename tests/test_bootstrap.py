"""The user-data every stack's VMs boot with, taken from the planned resources themselves, checked by the real
tools: cloud-init's schema, shellcheck, systemd-analyze verify; and the secrets step run for real."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import launcher_argv, materialize, run_write_secrets, stacks_of, write_files

SHELLCHECK = str(Path(sys.executable).parent / "shellcheck")
# The secret values the offline plan gives the program; none may appear in what a VM is given.
PLAN_SECRET_VALUES = ("offline-plan-placeholder", "offline-plan-generated-api-key")


@pytest.mark.parametrize("stack", stacks_of())
def test_user_data_passes_cloud_init_schema(stack, plan_of, tmp_path):
    user_data = plan_of(stack).user_data
    assert user_data.startswith("#cloud-config\n")
    path = tmp_path / "user-data"
    path.write_text(user_data)
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_cloud_init_schema_rejects_a_broken_document(tmp_path):
    """The schema check above can fail: a wrong type in a module's config is reported."""
    path = tmp_path / "user-data"
    path.write_text("#cloud-config\npackages: curl\nwrite_files:\n  - path: /x\n    permissions: 644\n")
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert result.returncode != 0


@pytest.mark.parametrize("stack", stacks_of())
def test_scripts_pass_shellcheck(stack, plan_of, tmp_path):
    files = write_files(plan_of(stack).user_data)
    scripts = {p: f for p, f in files.items() if f["content"].startswith(("#!/bin/bash", "# shellcheck shell=bash"))}
    # the setup script, the launcher and the cloud's library
    assert len(scripts) == 3, sorted(files)
    for path, entry in scripts.items():
        script = tmp_path / Path(path).name
        script.write_text(entry["content"])
        result = subprocess.run([SHELLCHECK, "--severity=style", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path}:\n{result.stdout}"


@pytest.mark.parametrize("stack", stacks_of())
def test_units_pass_systemd_analyze_verify(stack, plan_of, tmp_path):
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    materialize(plan_of(stack).user_data, root)
    units = sorted(p.name for p in (root / "etc/systemd/system").glob("*.service"))
    assert units == ["vllm-fleet-setup.service", "vllm.service"]
    # Boot as the VM does after the first boot: our units enabled (runcmd), cloud-init's target pulled into
    # multi-user.target (cloud-init's generator), so that ordering cycles with cloud-init show up.
    subprocess.run(["systemctl", f"--root={root}", "--quiet", "enable", *units], check=True)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    (wants / "cloud-init.target").symlink_to("/usr/lib/systemd/system/cloud-init.target")
    subprocess.run(["systemctl", f"--root={root}", "--quiet", "enable", "cloud-final.service"], check=True)
    for unit in [f"/etc/systemd/system/{unit}" for unit in units] + ["multi-user.target"]:
        result = subprocess.run(["systemd-analyze", "verify", f"--root={root}", unit], capture_output=True, text=True)
        # verify exits 0 on unknown keys, bad values and ordering cycles too, and only says so: any output fails.
        assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


@pytest.mark.parametrize("stack", stacks_of())
def test_no_secret_reaches_the_vm_and_the_unit_reads_them_from_a_file(stack, plan_of):
    plan = plan_of(stack)
    user_data = plan.user_data
    for value in PLAN_SECRET_VALUES:
        assert value not in user_data
    files = write_files(user_data)
    unit = files["/etc/systemd/system/vllm.service"]["content"]
    assert "EnvironmentFile=/etc/vllm/vllm.env" in unit
    assert "Restart=on-failure" in unit
    launcher = files["/usr/local/bin/vllm-fleet-serve"]["content"]
    assert "--api-key" not in launcher  # vLLM reads VLLM_API_KEY from the environment file


@pytest.mark.parametrize("stack", stacks_of())
def test_launcher_serves_the_sized_model_on_8000(stack, plan_of):
    plan = plan_of(stack)
    launcher = write_files(plan.user_data)["/usr/local/bin/vllm-fleet-serve"]["content"]
    argv = launcher_argv(launcher)

    def value(flag):
        return argv[argv.index(flag) + 1]

    assert value("--port") == "8000" and value("--host") == "0.0.0.0"
    assert value("--tensor-parallel-size") == str(plan.outputs["tensorParallelSize"]) == str(plan.outputs["gpuCount"])
    assert value("--served-model-name") == plan.outputs["servedModelName"]
    assert value("--max-model-len") == str(plan.outputs["memory"]["maxModelLen"])


@pytest.mark.parametrize("stack", stacks_of())
def test_secrets_step_writes_a_0600_env_file(stack, plan_of, tmp_path):
    """Runs the rendered setup script's write_secrets for real, with the cloud's secret read answered locally."""
    root = tmp_path / "root"
    materialize(plan_of(stack).user_data, root)
    stub = tmp_path / "cloud.sh"
    stub.write_text('fleet_fetch_secret() { printf "value-of-%s" "$(basename "$1")"; }\n')
    env_file = tmp_path / "etc/vllm/vllm.env"
    result = run_write_secrets(root, env_file, stub)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    variables = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert variables["VLLM_API_KEY"].startswith("value-of-")
    assert set(variables) <= {"VLLM_API_KEY", "HF_TOKEN"}
