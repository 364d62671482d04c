"""The user-data every stack's VMs boot with, taken from the planned resources themselves, checked by the real
tools: cloud-init's schema, shellcheck, systemd-analyze verify; and the secrets step run for real."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import config_of, launcher_argv, materialize, stacks_of, write_files
from components.aws.fleet import READY_SCRIPT
from components.monitoring import METRICS_SCRIPT, METRICS_UNIT
from fleet.bootstrap import PATHS
from cli.plan import SECRET_STAND_IN

SHELLCHECK = str(Path(sys.executable).parent / "shellcheck")
# Programs the units run that the VM image has (Ubuntu 22.04), not the user-data.
IMAGE_COMMANDS = ("/usr/bin/systemctl", "/usr/bin/python3")


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
    # the setup script, the launcher and the cloud's library; on AWS the ready script (its launch lifecycle hook)
    ready = [READY_SCRIPT] if config_of(stack)["cloud"] == "aws" else []
    # and the script that installs and starts the cloud's metrics agent (components/monitoring.py)
    assert set(scripts) == {PATHS["setup"], PATHS["launcher"], PATHS["cloud_lib"], METRICS_SCRIPT, *ready}, sorted(files)
    for path, entry in scripts.items():
        script = tmp_path / Path(path).name
        script.write_text(entry["content"])
        result = subprocess.run([SHELLCHECK, "--severity=style", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path}:\n{result.stdout}"


@pytest.mark.parametrize("stack", stacks_of())
def test_the_python_files_a_vm_gets_compile_as_their_sources_do(stack, plan_of):
    """The user-data carries its files without comment lines and docstrings (EC2's 16 KB): each Python file is
    still a module with the same code, down to the names it defines."""
    import ast

    from fleet.bootstrap import _without_docstrings

    shipped = {path: file["content"] for path, file in write_files(plan_of(stack).user_data).items()
               if path.endswith(".py")}
    assert len(shipped) >= 4, sorted(shipped)  # health, drain, fetch-weights, the usage layer
    for path, content in shipped.items():
        tree = ast.parse(content, path)
        assert not any(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                       and isinstance(node.value.value, str) for node in ast.walk(tree)), path
        assert _without_docstrings(content) == content


def test_a_docstring_alone_in_a_body_leaves_pass_and_code_is_kept():
    from fleet.bootstrap import _without_docstrings

    source = 'def f():\n    """Only a docstring."""\n\n\ndef g(x):\n    """Doc."""\n    return "x"  # kept\n'
    stripped = _without_docstrings(source)
    namespace: dict = {}
    exec(compile(stripped, "case", "exec"), namespace)
    assert namespace["f"]() is None and namespace["g"](1) == "x" and '"""' not in stripped


@pytest.mark.parametrize("stack", stacks_of())
def test_units_pass_systemd_analyze_verify(stack, plan_of, tmp_path):
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    materialize(plan_of(stack).user_data, root)
    for command in IMAGE_COMMANDS:  # verify checks that every Exec*= program exists
        (root / command.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / command.lstrip("/")).write_text("")
        (root / command.lstrip("/")).chmod(0o755)
    units = sorted(p.name for p in (root / "etc/systemd/system").glob("*.service"))
    cloud_units = ["vllm-fleet-ready.service"] if config_of(stack)["cloud"] == "aws" else []
    assert units == sorted(["vllm-fleet-setup.service", "vllm.service", "vllm-fleet-health.service",
                            "vllm-fleet-drain.service", METRICS_UNIT, *cloud_units])
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
def test_no_secret_reaches_the_vm_and_vllm_reads_the_keys_from_a_file(stack, plan_of):
    plan = plan_of(stack)
    user_data = plan.user_data
    assert SECRET_STAND_IN not in user_data  # what the plan gives the program for every secret
    files = write_files(user_data)
    unit = files["/etc/systemd/system/vllm.service"]["content"]
    assert "EnvironmentFile" not in unit and "VLLM_API_KEY" not in unit
    assert "Restart=on-failure" in unit
    argv = launcher_argv(files[PATHS["launcher"]]["content"])
    assert "--api-key" not in argv  # never on a command line: vLLM reads the keys with --config
    assert argv[argv.index("--config") + 1] == PATHS["api_keys"]


@pytest.mark.parametrize("stack", stacks_of())
def test_vllm_keeps_idle_connections_longer_than_the_load_balancer(stack, plan_of):
    """A load balancer that reuses a connection vLLM has just closed answers 502: vLLM's keep-alive (5 s by
    default) must outlast every idle timeout the stack's edge keeps."""
    plan = plan_of(stack)
    unit = write_files(plan.user_data)["/etc/systemd/system/vllm.service"]["content"]
    keep_alive = int(re.search(r"^Environment=VLLM_HTTP_TIMEOUT_KEEP_ALIVE=(\d+)$", unit, re.M)[1])
    cloud = config_of(stack)["cloud"]
    if cloud == "aws":
        edge = [plan.one("aws:lb/loadBalancer:LoadBalancer")["idleTimeout"]]
    elif cloud == "gcp":
        from components.gcp.edge import BACKEND_KEEPALIVE_SECONDS  # fixed by Google, not an input

        edge = [BACKEND_KEEPALIVE_SECONDS]
    else:
        edge = [s["requestTimeout"] for s in plan.one("azure-native:network:ApplicationGateway")[
            "backendHttpSettingsCollection"]]
    assert keep_alive > max(edge), (keep_alive, edge)


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
