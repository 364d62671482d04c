"""The Pulumi program: stack config -> spec -> sizing -> the cloud's component -> stack outputs.

`pulumi preview/up` runs it through __main__.py; the offline plan runs that same __main__.py under mocks.
"""

from __future__ import annotations

import pulumi

import components

from .sizing import size
from .spec import parse_spec, read_pulumi_config
from .outputs import stack_outputs


def _secrets(spec, name: str) -> dict[str, pulumi.Output[str]]:
    config = pulumi.Config()
    secrets = {}
    if spec.has_api_key:
        secrets["apiKey"] = config.require_secret("apiKey")
    else:
        import pulumi_random  # only stacks that let the project generate their key pay for the import

        secrets["apiKey"] = pulumi_random.RandomPassword(f"{name}-api-key", length=48, special=False).result
    if spec.has_hf_token:
        secrets["hfToken"] = config.require_secret("hfToken")
    elif spec.arch.gated:
        pulumi.log.warn(f"{spec.model} is gated on Hugging Face: set hfToken "
                        f"(pulumi config set --secret hfToken hf_...) or the VMs cannot download it")
    return secrets


def run() -> None:
    raw, secret_keys = read_pulumi_config()
    spec = parse_spec(pulumi.get_stack(), raw, secret_keys)
    cloud = components.load(spec.cloud)
    sizing = size(spec)
    options = cloud.parse_options(spec, sizing)
    secrets = _secrets(spec, spec.name)
    fleet = cloud.Fleet(spec.name, spec, sizing, options, secrets)
    for key, value in stack_outputs(spec, sizing, fleet.endpoint, secrets["apiKey"], fleet.warnings).items():
        pulumi.export(key, value)
