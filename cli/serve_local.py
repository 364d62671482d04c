"""Serves a stack's model on this machine, from the launcher its plan renders for the VMs, with the CPU build of
vLLM (.venv-vllm): an OpenAI endpoint to try clients and `make check` on before a cloud exists.

    python -m cli.serve_local codellama-dev                        # the serving tests' tiny model (random weights)
    python -m cli.serve_local codellama-dev --model-dir ~/models/x  # a real model in a local directory

The offline plan renders the stack's user-data; its files (launcher, vllm.service) are written under the work
folder, the launcher is rendered again with fleet.serving.cpu_argv (the one place where a CPU run departs from a
VM: the local model, loopback, tensor parallel 1, no GPU-only flags) and started with the environment vllm.service
gives it. The API keys file the launcher's --config names is written here (a VM's setup script writes it from the
cloud's secret store), with --api-key or a generated key. The tiny model answers nonsense, fast: it proves the
client's wiring, not its answers. tests/serving/stack_on_cpu.py serves stacks the same way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
VLLM_VENV = Path(os.environ.get("VLLM_VENV", ROOT / ".venv-vllm"))
VLLM_BIN = VLLM_VENV / "bin" / "vllm"
# The serving tests' tiny Llama (random weights, a 2048-token context), built by .venv-vllm's Python.
TINY_MODEL_SCRIPT = ROOT / "tests" / "serving" / "tiny_model.py"
# What systemd hands every unit before the unit's own settings (`systemctl show-environment` on the VMs' Ubuntu).
SYSTEMD_ENVIRONMENT = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
# This machine's own settings for its processor, which any service on it would get too.
MACHINE_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# GiB of KV cache for the CPU build (its stand-in for --gpu-memory-utilization); VLLM_CPU_KVCACHE_SPACE overrides.
CPU_KV_CACHE_GIB = "1"


# --- a VM's files, as a stack's rendered user-data writes them -------------------------------------------------
def write_files(user_data: str) -> dict[str, dict]:
    return {f["path"]: f for f in yaml.safe_load(user_data)["write_files"]}


def materialize(user_data: str, root: Path) -> None:
    for path, entry in write_files(user_data).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(entry["content"])
        target.chmod(int(entry["permissions"], 8))


def launcher_argv(launcher: str) -> list[str]:
    """The arguments a rendered launcher (cloud-init/vllm-serve.sh.j2) passes to `vllm serve`."""
    command = shlex.split(launcher.split("exec ", 1)[1].replace("\\\n", " "))
    if command[1] != "serve":
        raise ValueError(f"not a vllm serve launcher: {command[:2]}")
    return command[2:]


def unit_setting(unit: str, key: str) -> list[str]:
    """The values of every `key=` line of a systemd unit, in order."""
    return re.findall(rf"^{key}=(.*)$", unit, flags=re.MULTILINE)


def unit_environment(unit: str) -> dict[str, str]:
    """The variables a unit's process gets from the unit: its Environment= assignments."""
    return dict(assignment.split("=", 1) for line in unit_setting(unit, "Environment")
                for assignment in shlex.split(line))


def launcher_of(root: Path) -> tuple[Path, str]:
    """The launcher vllm.service starts under `root`, and the unit's text."""
    unit = (root / "etc/systemd/system/vllm.service").read_text()
    [exec_start] = unit_setting(unit, "ExecStart")
    return root / exec_start.lstrip("/"), unit


def cpu_environment(unit: str, workdir: Path, root: Path) -> dict[str, str]:
    """What the launcher runs with on this machine: systemd's and the unit's variables, and what a CPU run changes:
    nothing under the VM's paths, and vLLM's CPU settings (serving-test/NOTES.md). The usage layer's module and
    files (fleet/usage.py), which the unit names by their VM paths, are read from under `root`."""
    from fleet import usage

    unit_env = unit_environment(unit)
    return {
        **SYSTEMD_ENVIRONMENT,
        **{name: os.environ[name] for name in MACHINE_VARIABLES if name in os.environ},
        **unit_env,
        "HOME": str(workdir / "home"),
        "HF_HOME": str(workdir / "huggingface"),
        "VLLM_HOST_IP": "127.0.0.1",  # else its message queue binds the machine's external address
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB),
        "VLLM_BIN": str(VLLM_BIN),  # the launcher's own hook for another vllm executable
        **{name: f"{root}{unit_env[name]}"
           for name in ("PYTHONPATH", usage.KEY_HASHES_VARIABLE, usage.RATE_LIMITS_VARIABLE)},
    }


def api_keys_file(keys: dict[str, str]) -> str:
    """The `vllm serve --config` file of the keys, as the VMs' setup script writes it (vllm-fleet-setup.sh.j2)."""
    return "api-key: [" + ", ".join(json.dumps(key) for _, key in sorted(keys.items())) + "]\n"


def key_hashes_file(keys: dict[str, str]) -> str:
    """The usage layer's key names by the sha256 of each key, as the VMs' setup script writes them."""
    return json.dumps({name: hashlib.sha256(key.encode()).hexdigest() for name, key in sorted(keys.items())}) + "\n"


def max_positions(model_dir: Path) -> int:
    """The context a local model holds (its config.json), which caps --max-model-len."""
    config = json.loads((model_dir / "config.json").read_text())
    return int(config.get("max_position_embeddings") or config["text_config"]["max_position_embeddings"])


# --- the command ---------------------------------------------------------------------------------------------------
class ServeLocalError(Exception):
    """Why the stack cannot be served here; the message is for the user."""


def prepare(stack: str, workdir: Path, model_dir: Path | None, port: int,
            api_key: str) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """(the launcher's command, its environment, the plan's outputs) for the stack served from `workdir`."""
    from . import plan as offline_plan
    from fleet import bootstrap, serving, usage

    planned = offline_plan.run(stack)
    if not planned.user_data:
        raise ServeLocalError(f"the plan of {stack} renders no user-data")
    root = workdir / "root"
    materialize(planned.user_data, root)
    keys_file = root / serving.API_KEYS_FILE.lstrip("/")
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    keys_file.write_text(api_keys_file({"default": api_key}))
    keys_file.chmod(0o600)
    hashes_file = root / usage.KEY_HASHES_FILE.lstrip("/")
    hashes_file.write_text(key_hashes_file({"default": api_key}))
    hashes_file.chmod(0o600)
    launcher, unit = launcher_of(root)
    if model_dir is None:
        model_dir = workdir / "tiny-model"
        if not (model_dir / "config.json").exists():
            subprocess.run([str(VLLM_VENV / "bin" / "python"), str(TINY_MODEL_SCRIPT), str(model_dir)], check=True,
                           timeout=300)
    elif not (model_dir / "config.json").exists():
        raise ServeLocalError(f"--model-dir {model_dir}: no config.json there (a Hugging Face model's folder, e.g. "
                              f"`hf download <id> --local-dir DIR`)")
    argv = serving.cpu_argv(launcher_argv(launcher.read_text()), str(model_dir.resolve()), port=port,
                            max_model_len=max_positions(model_dir), config_root=str(root))
    launcher.write_text(bootstrap.render_launcher(argv))
    return [str(launcher)], cpu_environment(unit, workdir, root), planned.outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make serve-local", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml) or path to a stack file")
    parser.add_argument("--model-dir", type=Path, help="a local model folder to serve (default: the tiny model)")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"),
                        help="the key clients send (default: $OPENAI_API_KEY, else a generated one)")
    parser.add_argument("--workdir", type=Path,
                        help="where the VM's files, the tiny model and the caches go (default: a folder of /tmp)")
    args = parser.parse_args(argv)
    if not VLLM_BIN.exists():
        print(f"error: {VLLM_BIN} is missing: run serving-test/install.sh (make serve-local does)", file=sys.stderr)
        return 2
    workdir = (args.workdir or Path(tempfile.gettempdir()) / f"vllm-fleet-serve-local-{Path(args.stack).stem}")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    api_key = args.api_key or secrets.token_hex(16)

    from fleet.errors import ConfigError
    from .plan import PlanError

    try:
        command, env, outputs = prepare(args.stack, workdir, args.model_dir, args.port, api_key)
    except (ConfigError, PlanError, ServeLocalError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    url = f"http://127.0.0.1:{args.port}"
    print(f"serving {outputs['servedModelName']} ({args.model_dir or 'the tiny model'}) at {url}/v1 with the "
          f"stack's vllm serve arguments, on this CPU; ready when {url}/health answers (a minute or so)\n"
          f"  make check URL={url} KEY={api_key} DIRECT=1   (DIRECT: no load balancer in front)\n"
          f"  files and log: {workdir}; Ctrl-C stops it", flush=True)
    try:
        return subprocess.run(command, env=env).returncode
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
