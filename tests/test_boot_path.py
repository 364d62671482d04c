"""A VM's boot path, run: every stack's rendered vllm-fleet-setup on a stubbed VM (tests/vm_world.py) through a
first boot, network failures, a reboot and a secret full of shell metacharacters; its units as systemd reads
them; and the pinned packages it installs."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_plan, stacks_of, write_files
from fleet.bootstrap import PATHS
from vm_world import VmWorld

SETUP = PATHS["setup"]
# A key with everything a shell, YAML or JSON would read as something else.
NASTY_KEY = "k3y-$(reboot)`id`'\"\\;#&|<>*?!~{}[],:%@=+^"


def unit(plan, name: str) -> str:
    return write_files(plan.user_data)[f"/etc/systemd/system/{name}"]["content"]


def world(plan, tmp_path: Path, **keys: str) -> VmWorld:
    return VmWorld(tmp_path, write_files(plan.user_data)[SETUP]["content"], gpus=plan.outputs["gpuCount"],
                   api_keys=keys or {"default": "test-default-key-0123456789"})


@pytest.mark.parametrize("stack", stacks_of())
def test_first_boot_does_every_step_and_a_reboot_touches_no_network(stack, plan_of, tmp_path):
    vm = world(plan_of(stack), tmp_path, default="default-key-0123456789", alice=NASTY_KEY)
    first = vm.run()
    assert first.returncode == 0, first.stderr
    network = vm.network(vm.calls())
    assert any(call.startswith("network pip install --quiet uv==") for call in network), network
    assert any(call.startswith("network uv pip install") for call in network), network
    assert any(call.startswith("network fleet_fetch_secret") and "apiKeys" in call for call in network), network
    assert any(call.startswith(("network fetch-weights", "network fleet_fetch_weights")) for call in network), network

    keys_file = vm.path("api_keys")
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o640
    # The secret arrives intact in the file vLLM reads (its --config reads it with yaml.safe_load).
    assert yaml.safe_load(keys_file.read_text()) == {"api-key": [NASTY_KEY, "default-key-0123456789"]}  # by name

    reboot = vm.run()
    assert reboot.returncode == 0, reboot.stderr
    assert vm.network(vm.calls()) == []  # no PyPI, no secret store, no hub
    assert "are on the cache disk" in reboot.stderr


@pytest.mark.parametrize("stack", ["codellama-prod", "codellama-gcp", "codellama-azure"])
def test_network_steps_that_fail_twice_then_succeed_are_retried(stack, plan_of, tmp_path):
    vm = world(plan_of(stack), tmp_path)
    result = vm.run(FAIL_pip="2", FAIL_uv="2", FAIL_fetch_secret="2", FAIL_fetch_weights="2", MISSING_PACKAGES="1",
                    FAIL_apt_get="2")
    assert result.returncode == 0, result.stderr
    for step in ("installing uv", "creating the Python 3.12 venv", "reading the API keys", "downloading",
                 "apt-get update"):
        assert re.search(rf"{step}[^:]*: failed \(attempt 2\), again in", result.stderr), (step, result.stderr)
    assert vm.path("api_keys").exists()


def test_a_step_that_keeps_failing_gives_up_and_the_next_run_resumes_without_reinstalling(plan_of, tmp_path):
    plan = plan_of("codellama-dev")
    vm = world(plan, tmp_path)
    # Past the retry deadline: the first failure of the download is the last of this run.
    failed = vm.run("SECONDS=$((RETRY_SECONDS + 1)); main", FAIL_fetch_weights="1")
    assert failed.returncode != 0
    assert "giving up; systemd starts vllm-fleet-setup again" in failed.stderr
    vm.calls()
    # systemd starts the unit again (Restart=on-failure, no start limit); the install is not done twice.
    setup_unit = unit(plan, "vllm-fleet-setup.service")
    assert "Restart=on-failure" in setup_unit and "StartLimitIntervalSec=0" in setup_unit.split("[Service]")[0]
    again = vm.run()
    assert again.returncode == 0, again.stderr
    network = vm.network(vm.calls())
    assert [call.split()[1] for call in network] == ["fetch-weights"], network


def test_the_hf_token_reaches_the_download_only(stack_file, tmp_path):
    path = stack_file({"cloud": "aws", "region": "us-east-1", "model": "meta-llama/Llama-3.1-8B-Instruct",
                       "maxModelLen": 8192, "allowedCidrs": ["10.0.0.0/8"], "modelRevision": "0e9e39f",
                       "hfToken": {"secure": "AAABAKw0cWl5ZWtleQ=="}})
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    user_data = json.loads(result.stdout)["userData"]
    files = write_files(user_data)
    vm = VmWorld(tmp_path, files[SETUP]["content"], gpus=1, api_keys={"default": "test-default-key-0123456789"},
                 hf_token="hf_AbCdEf0123456789")
    assert vm.run().returncode == 0
    [download] = [call for call in vm.network(vm.calls()) if call.startswith("network fetch-weights")]
    assert download.endswith("meta-llama/Llama-3.1-8B-Instruct 0e9e39f HF_TOKEN=hf_AbCdEf0123456789")
    service = files["/etc/systemd/system/vllm.service"]["content"]
    assert "HF_TOKEN" not in service and "EnvironmentFile" not in service
    assert "HF_HUB_OFFLINE=1" in service


@pytest.mark.parametrize("stack", ["codellama-prod", "codellama-dev"])
def test_a_vm_with_fewer_gpus_than_the_tensor_parallel_size_stops(stack, plan_of, tmp_path):
    plan = plan_of(stack)
    vm = world(plan, tmp_path)
    vm.gpus = plan.outputs["gpuCount"] - 1 or 2
    result = vm.run()
    assert result.returncode != 0
    assert f"expected {plan.outputs['gpuCount']} GPUs (tensor parallel size)" in result.stderr


@pytest.mark.parametrize("stack", stacks_of())
def test_uvm_device_nodes_are_made_as_root_and_vllm_installs_pinned_with_bytecode(stack, plan_of, tmp_path):
    vm = world(plan_of(stack), tmp_path)
    assert vm.run().returncode == 0
    calls = vm.calls()
    assert "nvidia-modprobe -u -c=0" in calls
    [install] = [call for call in calls if call.startswith("network uv pip install")]
    assert f"--compile-bytecode --python {vm.path('venv')}/bin/python --requirement {vm.path('requirements')}" in install
    # uv's cache on the venv's filesystem (/opt/vllm), so that it hardlinks instead of copying ~6 GB
    assert f"UV_CACHE_DIR={vm.path('uv_dir')}/cache" in install


@pytest.mark.parametrize("stack", stacks_of())
def test_vms_install_the_pinned_requirements_and_keep_nvidia_packages_from_unattended_upgrades(stack, plan_of,
                                                                                                tmp_path):
    files = write_files(plan_of(stack).user_data)
    # every pin as the lock has it (the user-data carries the files without their comment lines: EC2's 16 KB)
    shipped = files[PATHS["requirements"]]["content"].splitlines()
    locked = (ROOT / "cloud-init/vllm-requirements.txt").read_text().splitlines()
    assert shipped == [line for line in locked if not line.lstrip().startswith("#")] and len(shipped) > 100
    # apt reads the file as the VM's apt would, beside the image's own unattended-upgrades list
    parts = tmp_path / "apt.conf.d"
    parts.mkdir()
    (parts / "50unattended-upgrades").write_text('Unattended-Upgrade::Package-Blacklist { "image-own"; };\n')
    (parts / Path(PATHS["apt_hold"]).name).write_text(files[PATHS["apt_hold"]]["content"])
    (tmp_path / "apt.conf").write_text(f'Dir::Etc::main "/dev/null";\nDir::Etc::parts "{parts}";\n')
    dump = subprocess.run(["apt-config", "dump"], env={**os.environ, "APT_CONFIG": str(tmp_path / "apt.conf")},
                          capture_output=True, text=True, check=True).stdout
    held = re.findall(r'^Unattended-Upgrade::Package-Blacklist:: "(.*)";$', dump, flags=re.M)
    assert {"image-own", "nvidia-", "libnvidia-", "cuda-", "linux-image-"} <= set(held)


@pytest.mark.parametrize("stack", stacks_of())
def test_setup_unit_is_retried_and_starts_vllm_and_its_timeout_covers_install_and_download(stack, plan_of):
    plan = plan_of(stack)
    setup_unit = unit(plan, "vllm-fleet-setup.service")
    budget = plan.outputs["timeToServe"]
    assert "ExecStartPost=/usr/bin/systemctl --no-block start vllm.service" in setup_unit
    timeout = int(re.search(r"^TimeoutStartSec=(\d+)$", setup_unit, re.M)[1])
    assert timeout >= budget["install"] + budget["download"]
    script = write_files(plan.user_data)[SETUP]["content"]
    retry_seconds = int(re.search(r"^readonly RETRY_SECONDS=(\d+)$", script, re.M)[1])
    assert retry_seconds < timeout  # the script gives up before systemd kills it


def test_the_cloud_libraries_read_the_exact_secret_version(plan_of, tmp_path):
    """Each cloud's fleet_fetch_secret, run with its CLI or curl stubbed, asks for the version the user-data names."""
    cases = {"codellama-prod": "aws", "codellama-gcp": "curl", "codellama-azure": "curl"}
    for stack, tool in cases.items():
        files = write_files(plan_of(stack).user_data)
        ref = re.search(r"^readonly API_KEYS_REF=(\S+)$", files[SETUP]["content"], re.M)[1].strip("'")
        bin_dir = tmp_path / stack
        bin_dir.mkdir()
        (bin_dir / tool).write_text(f'#!/bin/bash\necho "$@" >>"{bin_dir}/args"\n'
                                    'echo \'{"access_token": "t", "payload": {"data": "e30="}, "value": "{}"}\'\n')
        (bin_dir / tool).chmod(0o755)
        lib = tmp_path / f"{stack}.sh"
        lib.write_text(files[PATHS["cloud_lib"]]["content"])
        result = subprocess.run(["bash", "-c", f'source "{lib}" && fleet_fetch_secret "$0"', ref],
                                env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
                                capture_output=True, text=True)
        assert result.returncode == 0, (stack, result.stderr)
        asked = (bin_dir / "args").read_text()
        if tool == "aws":
            arn, version = ref.split("|")
            assert f"--secret-id {arn} --version-id {version}" in asked
        elif stack == "codellama-gcp":
            assert re.search(r"secretmanager\.googleapis\.com/v1/projects/\d+/secrets/[\w-]+/versions/\d+:access", asked)
        else:
            assert re.search(r"vault\.azure\.net/secrets/apiKeys/[0-9a-f]{32}\?api-version=", asked)
