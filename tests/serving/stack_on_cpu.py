"""A planned stack's VM, as far as serving goes, run for real on this CPU machine.

`serve_stack_on_cpu(plan, workdir)` takes the user-data the plan rendered for the stack, writes its files under
workdir/root, runs its setup script's install_api_keys step on a stubbed VM (tests/vm_world.py: the cloud's
secret store answers API_KEYS) to write the 0640 API keys file, re-renders the launcher with `serving.cpu_argv`
(the one documented place where the run departs from a VM) and starts that launcher with the environment
vllm.service gives it, its Environment= lines (cli/serve_local.py, which `make serve-local` runs, does the same).
vLLM thus reads the keys from the file the setup script wrote (--config), as on a VM; among them one full of
shell, YAML and JSON metacharacters. The usage layer's module and files (fleet/usage.py) are read from under the
same root.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from cli.serve_local import cpu_environment, launcher_of, unit_environment
from conftest import PlannedStack, launcher_argv, materialize, write_files
from fleet import bootstrap, serving
from tiny_model import MAX_POSITIONS, make_tiny_model
from vllm_server import VENV_PYTHON, VLLM_BIN, VllmServer, free_port
from vm_world import VmWorld

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


def tiny_model(out: Path, tool_call: dict | None = None) -> Path:
    """The tiny Llama (with `tool_call`: the one that answers chats with that call), built by this interpreter if it
    has the libraries, else by .venv-vllm's."""
    if all(importlib.util.find_spec(module) for module in ("numpy", "safetensors", "tokenizers")):
        return make_tiny_model(out, tool_call=tool_call)
    script = Path(__file__).resolve().parent / "tiny_model.py"
    subprocess.run([str(VENV_PYTHON), str(script), str(out), *([json.dumps(tool_call)] if tool_call else [])],
                   check=True, timeout=120)
    return out


@contextlib.contextmanager
def serve_stack_on_cpu(plan: PlannedStack, workdir: Path, tool_call: dict | None = None,
                       api_keys: dict[str, str] = API_KEYS, *, usage_layer: bool = True) -> Iterator[ServedStack]:
    """`tool_call`: serve the tiny model that answers every chat with that tool call (tiny_model.py). `api_keys`:
    what the stack's secret store holds (name -> key); the server's own requests use the first.
    `usage_layer=False` leaves out `--middleware` (fleet/usage.py): the baseline of bench_usage_layer.py."""
    require_vllm()
    files = write_files(plan.user_data)
    vm = VmWorld(workdir / "vm-world", files[bootstrap.PATHS["setup"]]["content"], gpus=plan.outputs["gpuCount"],
                 api_keys=api_keys)
    keys = vm.run("install_api_keys")
    assert keys.returncode == 0, keys.stderr
    root = vm.root
    materialize(plan.user_data, root)

    launcher, unit = launcher_of(root)
    stack_argv = launcher_argv(launcher.read_text())
    # The launcher renders back from its arguments alone, so the one written below differs only in them.
    assert bootstrap.render_launcher(stack_argv) == launcher.read_text()
    model_dir = tiny_model(workdir / "tiny-model", tool_call)
    port = free_port()
    argv = serving.cpu_argv(stack_argv, str(model_dir), port=port, max_model_len=MAX_POSITIONS, config_root=str(root))
    if not usage_layer:
        at = argv.index("--middleware")
        argv = argv[:at] + argv[at + 2:]
    launcher.write_text(bootstrap.render_launcher(argv))

    env = cpu_environment(unit, workdir, root)
    api_key = next(iter(api_keys.values()))
    server = VllmServer([str(launcher)], env=env, port=port, api_key=api_key, log_path=workdir / "vllm.log")
    with server:
        yield ServedStack(server, argv, api_key, plan.outputs["servedModelName"], model_dir, unit_environment(unit))
