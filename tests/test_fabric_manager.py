"""8-GPU A100/H100 machines (NVSwitch): the setup installs nvidia-fabricmanager at the driver's exact version where
the image lacks it, starts it and waits for the fabric before vLLM starts; a VM of another type skips the step. The
rendered script of a planned stack of each cloud, run on a stubbed VM (tests/vm_world.py) and passed by shellcheck.
On GCP, A3 VMs get a gVNIC."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import PlannedStack, config_of, run_plan, write_files
from fleet import catalog
from fleet.bootstrap import PATHS
from test_bootstrap import SHELLCHECK
from vm_world import VmWorld

SETUP = PATHS["setup"]
NVSWITCH_STACKS = {  # a stack of each cloud on an HGX machine, from an example stack
    "aws": ("codellama-prod", "p4de.24xlarge"),
    "gcp": ("codellama-gcp", "a3-highgpu-8g"),
    "azure": ("codellama-azure", "Standard_ND96amsr_A100_v4"),
}


def test_the_catalog_marks_exactly_the_8_gpu_a100_and_h100_machines():
    marked = {name for cloud in ("aws", "gcp", "azure")
              for name, itype in catalog.cloud(cloud).instance_types.items() if itype.nvswitch}
    assert marked == {"p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge", "a2-highgpu-8g", "a2-ultragpu-8g",
                      "a3-highgpu-8g", "Standard_ND96asr_v4", "Standard_ND96amsr_A100_v4",
                      "Standard_ND96isr_H100_v5"} & {name for cloud in ("aws", "gcp", "azure")
                                                     for name in catalog.cloud(cloud).instance_types}
    assert {"p5.48xlarge", "a3-highgpu-8g", "Standard_ND96isr_H100_v5"} <= marked


@pytest.fixture(scope="module")
def nvswitch_plans(tmp_path_factory) -> dict[str, PlannedStack]:
    folder, plans = tmp_path_factory.mktemp("nvswitch"), {}
    for cloud, (base, instance) in NVSWITCH_STACKS.items():
        config = {**config_of(base), "instanceType": instance}
        config.pop("officeHours", None)
        path = folder / f"Pulumi.nvswitch-{cloud}.yaml"
        path.write_text(yaml.safe_dump({"config": {f"vllm-fleet:{k}": v for k, v in config.items()}}))
        result = run_plan(path)
        assert result.returncode == 0, result.stderr
        plans[cloud] = PlannedStack(f"nvswitch-{cloud}", json.loads(result.stdout))
    return plans


def setup_script(plan: PlannedStack) -> str:
    return write_files(plan.user_data)[SETUP]["content"]


@pytest.mark.parametrize("cloud", NVSWITCH_STACKS)
def test_the_setup_of_an_nvswitch_machine_runs_the_fabric_step_and_passes_shellcheck(cloud, nvswitch_plans, tmp_path):
    script = setup_script(nvswitch_plans[cloud])
    assert "readonly NVSWITCH=1" in script
    path = tmp_path / "vllm-fleet-setup"
    path.write_text(script)
    result = subprocess.run([SHELLCHECK, "--severity=style", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_other_machines_skip_the_fabric_step(plan_of, tmp_path):
    script = setup_script(plan_of("codellama-prod"))  # g6e.12xlarge: four L40S on PCIe
    assert "readonly NVSWITCH=0" in script
    vm = VmWorld(tmp_path, script, gpus=4, api_keys={"default": "test-default-key-0123456789"})
    assert vm.run("main").returncode == 0
    assert not [call for call in vm.calls() if call.startswith(("nv-fabricmanager", "systemctl", "apt-cache"))]


def vm_of(plan: PlannedStack, tmp_path: Path) -> VmWorld:
    return VmWorld(tmp_path, setup_script(plan), gpus=plan.outputs["gpuCount"],
                   api_keys={"default": "test-default-key-0123456789"})


@pytest.mark.parametrize("cloud", NVSWITCH_STACKS)
def test_an_image_with_the_drivers_fabric_manager_only_starts_it(cloud, nvswitch_plans, tmp_path):
    vm = vm_of(nvswitch_plans[cloud], tmp_path)
    result = vm.run("ensure_fabric_manager", FABRIC_MANAGER="580.126.16")
    assert result.returncode == 0, result.stderr
    calls = vm.calls()
    assert "systemctl enable --now nvidia-fabricmanager.service" in calls
    assert vm.network(calls) == [] and not [c for c in calls if c.startswith("apt-get")]
    assert "NVSwitch fabric up" in result.stderr


@pytest.mark.parametrize("installed", ["", "550.54.15"])
def test_a_missing_or_other_fabric_manager_is_installed_at_the_drivers_exact_version(installed, nvswitch_plans,
                                                                                     tmp_path):
    vm = vm_of(nvswitch_plans["aws"], tmp_path)
    result = vm.run("ensure_fabric_manager", FABRIC_MANAGER=installed)
    assert result.returncode == 0, result.stderr
    calls = vm.calls()
    [install] = [c for c in calls if c.startswith("apt-get") and " install " in c]
    assert install.endswith("install nvidia-fabricmanager-580=580.126.16-1")  # not 580.95.05-1, nor the newest
    assert calls.index(install) < calls.index("systemctl enable --now nvidia-fabricmanager.service")


def test_no_fabric_manager_of_the_drivers_version_anywhere_stops_the_setup(nvswitch_plans, tmp_path):
    vm = vm_of(nvswitch_plans["gcp"], tmp_path)
    result = vm.run("ensure_fabric_manager", NO_FABRIC_PACKAGE="1")
    assert result.returncode == 1
    assert "adding NVIDIA's CUDA repository" in result.stderr and "no nvidia-fabricmanager-580 at the driver's " \
        "version 580.126.16" in result.stderr
    assert not [c for c in vm.calls() if c.startswith("systemctl")]


def test_a_fabric_that_does_not_come_up_stops_the_setup_before_vllm(nvswitch_plans, tmp_path):
    vm = vm_of(nvswitch_plans["azure"], tmp_path)
    result = vm.run("ensure_fabric_manager", FABRIC_MANAGER="580.126.16", FABRIC_STATE="In Progress",
                    FABRIC_STATUS="N/A", FLEET_FABRIC_WAIT_SECONDS="0")
    assert result.returncode == 1
    assert "the NVSwitch fabric is not up" in result.stderr
    # A100s report no fabric state (N/A): the running service is enough.
    assert vm.run("ensure_fabric_manager", FABRIC_MANAGER="580.126.16", FABRIC_STATE="N/A",
                  FABRIC_STATUS="N/A").returncode == 0


def test_a3_vms_get_a_gvnic_and_other_gcp_vms_the_default(nvswitch_plans, plan_of):
    [a3] = [s["newState"]["inputs"] for s in nvswitch_plans["gcp"].preview["steps"]
            if s["type"] == "gcp:compute/instanceTemplate:InstanceTemplate"]
    assert [nic.get("nicType") for nic in a3["networkInterfaces"]] == ["GVNIC"]
    g2 = plan_of("codellama-gcp").one("gcp:compute/instanceTemplate:InstanceTemplate")
    assert [nic.get("nicType") for nic in g2["networkInterfaces"]] == [None]
