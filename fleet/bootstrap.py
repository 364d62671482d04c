"""Renders a VM's cloud-init user-data from the templates in cloud-init/.

It knows nothing of any cloud beyond picking cloud-init/clouds/<cloud>.sh.j2, the file that holds how a cloud
finds its data disk, reads a secret and copies weights from a bucket. The cloud component passes the secret
references (ARNs, resource ids): never secret values.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Mapping

import jinja2
import yaml

from . import serving
from .sizing import Sizing
from .spec import FleetSpec

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "cloud-init"

PATHS = {
    "cache_dir": serving.CACHE_DIR,
    "hf_home": f"{serving.CACHE_DIR}/huggingface",
    "venv": "/opt/vllm/venv",
    "env_file": "/etc/vllm/vllm.env",
    "cloud_lib": "/usr/local/lib/vllm-fleet/cloud.sh",
    "setup": "/usr/local/sbin/vllm-fleet-setup",
    "launcher": "/usr/local/bin/vllm-fleet-serve",
}
# Environment variable on the VM -> which secret of the stack holds it.
SECRET_VARIABLES = {"VLLM_API_KEY": "apiKey", "HF_TOKEN": "hfToken"}

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


def render_user_data(spec: FleetSpec, sizing: Sizing, secret_refs: Mapping[str, str],
                     cloud_vars: Mapping[str, str] | None = None) -> str:
    """`secret_refs` maps a stack secret name (apiKey, hfToken) to the cloud's reference to it; `cloud_vars` are
    values only cloud-init/clouds/<cloud>.sh.j2 uses (e.g. which VM identity reads the secrets), never secrets."""
    unknown = set(secret_refs) - set(SECRET_VARIABLES.values())
    if unknown:
        raise ValueError(f"unknown secrets {sorted(unknown)}")
    text = _templates.get_template("user-data.yaml.j2").render(
        spec=spec,
        sizing=sizing,
        argv=serving.serve_argv(spec, sizing),
        paths=PATHS,
        model_dir=serving.model_dir(spec),
        versions={"vllm": serving.VLLM_VERSION, "python": serving.VM_PYTHON_VERSION, "uv": serving.UV_VERSION},
        secret_refs={var: secret_refs[name] for var, name in SECRET_VARIABLES.items() if name in secret_refs},
        cloud_vars=dict(cloud_vars or {}),
    )
    yaml.safe_load(text)  # a template bug must fail here, not on a VM
    return text
