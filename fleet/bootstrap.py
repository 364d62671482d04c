"""Renders a VM's cloud-init user-data from the templates in cloud-init/.

It knows nothing of any cloud beyond picking cloud-init/clouds/<cloud>.sh.j2, the file that holds how a cloud
finds its data disk, reads a secret and copies weights from a bucket. The cloud component tells it the rest
(`CloudBoot`): references to the exact secret versions the VMs read (ARNs, resource ids; never secret values),
how long its load balancer keeps idle connections, and any files only that cloud's VMs need.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import jinja2
import yaml

from . import lifecycle, serving, usage
from .metrics import Scrape
from .sizing import Sizing
from .spec import FleetSpec

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "cloud-init"

PATHS = {
    "cache_dir": serving.CACHE_DIR,
    "hf_home": f"{serving.CACHE_DIR}/huggingface",
    "venv": "/opt/vllm/venv",
    "uv_dir": "/opt/vllm/uv",  # uv itself, its managed Pythons and its cache: on the venv's filesystem
    "state_dir": "/var/lib/vllm-fleet",  # what the setup has done (root disk)
    "requirements": "/etc/vllm-fleet/vllm-requirements.txt",
    "api_keys": serving.API_KEYS_FILE,
    "apt_hold": "/etc/apt/apt.conf.d/51vllm-fleet-no-nvidia-upgrades",
    "cloud_lib": "/usr/local/lib/vllm-fleet/cloud.sh",
    "fetch_weights": "/usr/local/lib/vllm-fleet/fetch-weights.py",
    "setup": "/usr/local/sbin/vllm-fleet-setup",
    "launcher": "/usr/local/bin/vllm-fleet-serve",
    "health": "/usr/local/lib/vllm-fleet/health.py",
    "health_config": "/etc/vllm-fleet/health.json",
    "progress_dir": lifecycle.PROGRESS_DIR,
    "drain": "/usr/local/lib/vllm-fleet/drain.py",
    "drain_config": "/etc/vllm-fleet/drain.json",
    "usage_module": f"{usage.MODULE_DIR}/{usage.MODULE}.py",
    "usage_module_dir": usage.MODULE_DIR,
    "key_hashes": usage.KEY_HASHES_FILE,
    "rate_limits": usage.RATE_LIMITS_FILE,
}
# What the health endpoint watches grow while the setup runs: the weights cache disk, the vLLM install (uv's cache,
# its Pythons and the venv), apt's downloads.
WATCHED_DIRS = (PATHS["cache_dir"], PATHS["uv_dir"], PATHS["venv"], "/var/cache/apt/archives")
HEALTH_UNIT = "vllm-fleet-health.service"
DRAIN_UNIT = "vllm-fleet-drain.service"
# The stack's secrets a VM reads: apiKeys (a JSON object of name -> key) always, hfToken when set.
SECRETS = ("apiKeys", "hfToken")


@dataclass(frozen=True)
class CloudFile:
    """A file only one cloud's VMs get: its path on the VM, its template in cloud-init/, its mode."""

    path: str
    template: str
    permissions: str = "0644"


@dataclass(frozen=True)
class CloudBoot:
    """What a cloud's component tells the bootstrap of the VMs it boots."""

    # Stack secret name -> the cloud's reference to the exact version the VMs read (fleet_fetch_secret's argument).
    secret_refs: Mapping[str, str]
    # The longest the cloud's load balancer keeps an idle connection to a VM open (vLLM keeps them longer).
    edge_idle_timeout_seconds: int
    # The instance metadata service, where the drain watcher reads the cloud's notices.
    metadata_url: str
    # Values only cloud-init/clouds/<cloud>.sh.j2 uses (e.g. which VM identity reads the secrets), never secrets.
    vars: Mapping[str, object] = field(default_factory=dict)
    files: tuple[CloudFile, ...] = ()
    units: tuple[str, ...] = ()  # systemd units of `files` to enable and start
    # The health endpoint: where it listens (GCP's health checkers reach it from outside; elsewhere only the VM
    # asks), and from what uptime a VM still starting answers healthy (lifecycle.healthy_after_seconds).
    health_listen: str = "127.0.0.1"
    starting_healthy_after_seconds: int = 0
    # What the VM's metrics agent scrapes from vLLM (fleet/metrics.py), for the agent's files among `files`.
    scrape: Scrape | None = None


# A whole-line comment of a shell, Python, YAML or unit file (not a shebang, not a shellcheck directive).
_COMMENT_LINE = re.compile(r"^[ \t]*#(?!!)(?!.*shellcheck)")


def _without_docstrings(source: str) -> str:
    """Python source without its docstrings (a body that is only one keeps `pass`); as it is where it does not
    parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    lines = source.splitlines(keepends=True)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            continue
        doc = body[0]
        first, last = doc.lineno - 1, doc.end_lineno - 1
        if lines[first][:doc.col_offset].strip() or lines[last][doc.end_col_offset:].strip():
            continue  # shares a line with other code
        lines[first:last + 1] = [" " * doc.col_offset + "pass\n" if len(body) == 1 else ""] + [""] * (last - first)
    return "".join(lines)


class _ShippedLoader(jinja2.FileSystemLoader):
    """The files a VM gets, without their whole-line comments and Python docstrings: those explain the source to its
    readers, and EC2 takes 16 KB of user-data. The user-data's own template keeps its lines (#cloud-config, block
    scalars)."""

    def get_source(self, environment: jinja2.Environment, template: str):
        source, filename, uptodate = super().get_source(environment, template)
        if template != "user-data.yaml.j2":
            source = "".join(line for line in source.splitlines(keepends=True) if not _COMMENT_LINE.match(line))
        if template.endswith((".py", ".py.j2")):
            source = _without_docstrings(source)
        return source, filename, uptodate


_templates = jinja2.Environment(
    loader=_ShippedLoader(TEMPLATE_DIR),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # shell and YAML, not HTML: values are quoted with the `sh` filter instead
)
_templates.filters["sh"] = lambda value: shlex.quote(str(value))


def render_launcher(argv: list[str]) -> str:
    """The script that execs `vllm serve` with `argv`."""
    return _templates.get_template("vllm-serve.sh.j2").render(argv=argv, paths=PATHS)


def health_config(sizing: Sizing, boot: CloudBoot) -> dict:
    """The health endpoint's configuration (cloud-init/vllm-fleet-health.py reads it from PATHS["health_config"])."""
    return {"listen": boot.health_listen, "port": lifecycle.HEALTH_PORT, "path": lifecycle.HEALTH_PATH,
            "vllm_health_url": f"http://127.0.0.1:{serving.SERVE_PORT}{serving.HEALTH_PATH}",
            "progress_dir": PATHS["progress_dir"], "watched_dirs": list(WATCHED_DIRS),
            "stall_seconds": lifecycle.STALL_SECONDS, "load_seconds": lifecycle.load_seconds(sizing),
            "starting_healthy_after_seconds": boot.starting_healthy_after_seconds}


def drain_config(spec: FleetSpec, boot: CloudBoot) -> dict:
    """The drain watcher's configuration (cloud-init/vllm-fleet-drain.py reads it from PATHS["drain_config"])."""
    return {"cloud": spec.cloud, "metadata_url": boot.metadata_url, "progress_dir": PATHS["progress_dir"],
            "vllm_port": serving.SERVE_PORT, "vllm_health_path": serving.HEALTH_PATH,
            "metrics_url": f"http://127.0.0.1:{serving.SERVE_PORT}/metrics",
            "edge_notice_seconds": lifecycle.EDGE_NOTICE_SECONDS}


def render_user_data(spec: FleetSpec, sizing: Sizing, boot: CloudBoot) -> str:
    if set(boot.secret_refs) - set(SECRETS) or "apiKeys" not in boot.secret_refs:
        raise ValueError(f"secret references {sorted(boot.secret_refs)}: apiKeys is needed, hfToken optional")
    text = _templates.get_template("user-data.yaml.j2").render(
        spec=spec,
        sizing=sizing,
        time_to_serve=sizing.time_to_serve,
        argv=serving.serve_argv(spec, sizing),
        paths=PATHS,
        model_dir=serving.model_dir(spec),
        versions={"vllm": serving.VLLM_VERSION, "python": serving.VM_PYTHON_VERSION, "uv": serving.UV_VERSION},
        secret_refs={name: boot.secret_refs.get(name) for name in SECRETS},
        edge_idle_timeout=boot.edge_idle_timeout_seconds,
        keep_alive=serving.keep_alive_seconds(boot.edge_idle_timeout_seconds),
        cloud_vars=dict(boot.vars),
        cloud_files=boot.files,
        cloud_units=boot.units,
        health_config=json.dumps(health_config(sizing, boot)),
        health_unit=HEALTH_UNIT,
        drain_config=json.dumps(drain_config(spec, boot)),
        drain_unit=DRAIN_UNIT,
        stop_timeout=lifecycle.stop_timeout_seconds(spec),
        scrape=boot.scrape,
        usage={
            "counters": [[c.name, c.help, list(c.labels)] for c in usage.KEY_COUNTERS],
            "guarded_prefix": serving.PUBLIC_API_PREFIX.rstrip("/"),
            "key_hashes_variable": usage.KEY_HASHES_VARIABLE,
            "rate_limits_variable": usage.RATE_LIMITS_VARIABLE,
            "rate_limits": spec.rate_limits.vm_file(),
        },
    )
    yaml.safe_load(text)  # a template bug must fail here, not on a VM
    return text
