"""Renders a VM's cloud-init user-data from the templates in cloud-init/.

It knows nothing of any cloud beyond picking cloud-init/clouds/<cloud>.sh.j2, the file that holds how a cloud
finds its data disk, reads a secret and copies weights from a bucket. The cloud component tells it the rest
(`CloudBoot`): references to the exact secret versions the VMs read (ARNs, resource ids; never secret values),
how long its load balancer keeps idle connections, and any files only that cloud's VMs need.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import jinja2
import yaml

from . import serving, usage
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
    "usage_module": f"{usage.MODULE_DIR}/{usage.MODULE}.py",
    "usage_module_dir": usage.MODULE_DIR,
    "key_hashes": usage.KEY_HASHES_FILE,
    "rate_limits": usage.RATE_LIMITS_FILE,
}
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
    # Values only cloud-init/clouds/<cloud>.sh.j2 uses (e.g. which VM identity reads the secrets), never secrets.
    vars: Mapping[str, str] = field(default_factory=dict)
    files: tuple[CloudFile, ...] = ()
    units: tuple[str, ...] = ()  # systemd units of `files` to enable and start


_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # shell and YAML, not HTML: values are quoted with the `sh` filter instead
)
_templates.filters["sh"] = lambda value: shlex.quote(str(value))


def render_launcher(argv: list[str]) -> str:
    """The script that execs `vllm serve` with `argv`."""
    return _templates.get_template("vllm-serve.sh.j2").render(argv=argv, paths=PATHS)


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
