"""A planned stack's VM, as far as serving goes, run for real on this CPU machine.

`serve_stack_on_cpu(plan, workdir)` takes the user-data the plan rendered for the stack, writes its files under
workdir/root, runs its setup script's install_api_keys step on a stubbed VM (tests/vm_world.py: the cloud's
secret store answers API_KEYS) to write the 0640 API keys file, re-renders the launcher with `serving.cpu_argv`
(the one documented place where the run departs from a VM) and starts that launcher with the environment
vllm.service gives it, its Environment= lines. vLLM thus reads the keys from the file the setup script wrote
(--config), as on a VM; among them one full of shell, YAML and JSON metacharacters. The usage layer's module and
files (fleet/usage.py) are read from under the same root.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from conftest import PlannedStack, launcher_argv, materialize, write_files
from fleet import bootstrap, serving, usage
from tiny_model import MAX_POSITIONS, make_tiny_model
from vllm_server import VENV_PYTHON, VLLM_BIN, VllmServer, free_port
from vm_world import VmWorld

# What systemd hands every unit before the unit's own settings (`systemctl show-environment` on the VMs' Ubuntu).
SYSTEMD_ENVIRONMENT = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
# This machine's own settings for its processor, which any service on it would get too.
MACHINE_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# The stack's API keys, as the cloud's secret store gives them to the VM: the default one the tests use, and one
# with every character a shell, YAML or JSON would read as something else.
API_KEYS = {"default": "test-default-key-0123456789", "nasty": "k3y-$(reboot)`id`'\"\\;#&|<>*?!~{}[],:%@=+^"}


@dataclass(frozen=True)
class ServedStack:
    server: VllmServer
    argv: list[str]  # what the launcher passed to `vllm serve`: cpu_argv of the stack's arguments
    api_key: str  # the default key of the API keys file
    served_model_name: str
    model_dir: Path
    environment: dict[str, str]  # what vllm.service's Environment= lines give the server

    @property
    def base_url(self) -> str:
        return self.server.base_url


def require_vllm() -> None:
    """`make test` (and CI) must run the serving tests, so there a missing .venv-vllm fails them
    (FLEET_REQUIRE_SERVING=1, or CI=true); a bare `pytest` elsewhere skips them."""
    if VLLM_BIN.exists():
        return
    message = f"{VLLM_BIN} is missing: run serving-test/install.sh (or make test)"
    if os.environ.get("FLEET_REQUIRE_SERVING") == "1" or os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def tiny_model(out: Path) -> Path:
    """The tiny Llama, built by this interpreter if it has the libraries, else by .venv-vllm's."""
    if all(importlib.util.find_spec(module) for module in ("numpy", "safetensors", "tokenizers")):
        return make_tiny_model(out)
    script = Path(__file__).resolve().parent / "tiny_model.py"
    subprocess.run([str(VENV_PYTHON), str(script), str(out)], check=True, timeout=120)
    return out


def unit_setting(unit: str, key: str) -> list[str]:
    """The values of every `key=` line of a systemd unit, in order."""
    return re.findall(rf"^{key}=(.*)$", unit, flags=re.MULTILINE)


def unit_environment(unit: str) -> dict[str, str]:
    """The variables a unit's process gets from the unit: its Environment= assignments."""
    return dict(assignment.split("=", 1) for line in unit_setting(unit, "Environment")
                for assignment in shlex.split(line))


@contextlib.contextmanager
def serve_stack_on_cpu(plan: PlannedStack, workdir: Path, api_keys: dict[str, str] = API_KEYS, *,
                       usage_layer: bool = True) -> Iterator[ServedStack]:
    """`api_keys`: what the stack's secret store holds (name -> key); the server's own requests use the first.
    `usage_layer=False` leaves out `--middleware` (fleet/usage.py): the baseline of bench_usage_layer.py."""
    require_vllm()
    files = write_files(plan.user_data)
    vm = VmWorld(workdir / "vm-world", files[bootstrap.PATHS["setup"]]["content"], gpus=plan.outputs["gpuCount"],
                 api_keys=api_keys)
    keys = vm.run("install_api_keys")
    assert keys.returncode == 0, keys.stderr
    root = vm.root
    materialize(plan.user_data, root)

    unit = (root / "etc/systemd/system/vllm.service").read_text()
    [exec_start] = unit_setting(unit, "ExecStart")
    launcher = root / exec_start.lstrip("/")
    stack_argv = launcher_argv(launcher.read_text())
    # The launcher renders back from its arguments alone, so the one written below differs only in them.
    assert bootstrap.render_launcher(stack_argv) == launcher.read_text()
    model_dir = tiny_model(workdir / "tiny-model")
    port = free_port()
    argv = serving.cpu_argv(stack_argv, str(model_dir), port=port, max_model_len=MAX_POSITIONS, config_root=str(root))
    if not usage_layer:
        at = argv.index("--middleware")
        argv = argv[:at] + argv[at + 2:]
    launcher.write_text(bootstrap.render_launcher(argv))

    unit_env = unit_environment(unit)
    env = {
        **SYSTEMD_ENVIRONMENT,
        **{name: os.environ[name] for name in MACHINE_VARIABLES if name in os.environ},
        **unit_env,
        # What the CPU run changes: nothing under the VM's paths, and vLLM's CPU settings (serving-test/NOTES.md).
        "HOME": str(workdir / "home"),
        "HF_HOME": str(workdir / "huggingface"),
        "VLLM_HOST_IP": "127.0.0.1",  # else its message queue binds the machine's external address
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache; the CPU build's stand-in for --gpu-memory-utilization
        "VLLM_BIN": str(VLLM_BIN),  # the launcher's own hook for another vllm executable
        # The usage layer's module and files (vllm.service's paths), as user-data and the setup wrote them: under root.
        **{name: f"{root}{unit_env[name]}"
           for name in ("PYTHONPATH", usage.KEY_HASHES_VARIABLE, usage.RATE_LIMITS_VARIABLE)},
    }
    api_key = next(iter(api_keys.values()))
    server = VllmServer([str(launcher)], env=env, port=port, api_key=api_key, log_path=workdir / "vllm.log")
    with server:
        yield ServedStack(server, argv, api_key, plan.outputs["servedModelName"], model_dir, unit_env)
