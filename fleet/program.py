"""The Pulumi program: stack config -> spec -> sizing -> the cloud's component -> stack outputs.

`pulumi preview/up` runs it through __main__.py; the offline plan runs that same __main__.py under mocks.
"""

from __future__ import annotations

import json

import pulumi

import components

from .outputs import stack_outputs
from .sizing import Sizing, capacity_warning, cheaper_elsewhere, cheaper_with_flags, size, with_sized_replicas
from .spec import DEFAULT_KEY_NAME, GENERATED_KEY_LENGTH, FleetSpec, parse_spec, read_pulumi_config


def _api_keys(spec: FleetSpec) -> pulumi.Output[dict[str, str]]:
    """Every API key vLLM accepts, by name: the stack's apiKeys and apiKey (named default), or one generated."""
    config = pulumi.Config()
    named = config.require_secret_object("apiKeys") if spec.named_api_keys else pulumi.Output.secret({})
    if spec.has_api_key:
        default = config.require_secret("apiKey")
    elif not spec.named_api_keys:
        import pulumi_random  # only stacks that let the project generate their key pay for the import

        default = pulumi_random.RandomPassword(f"{spec.name}-api-key", length=GENERATED_KEY_LENGTH,
                                               special=False).result
    else:
        return named
    return pulumi.Output.all(named, default).apply(lambda both: {**both[0], DEFAULT_KEY_NAME: both[1]})


def run() -> None:
    raw, secret_keys = read_pulumi_config()
    spec = parse_spec(pulumi.get_stack(), raw, secret_keys)
    cloud = components.load(spec.cloud)
    sizing = size(spec)
    spec = with_sized_replicas(spec, sizing)
    options = cloud.parse_options(spec, sizing)
    api_keys = _api_keys(spec)
    # What the VMs read from the cloud's secret store: one secret with every API key, and the Hugging Face token.
    secrets = {"apiKeys": pulumi.Output.secret(api_keys.apply(lambda keys: json.dumps(keys, sort_keys=True)))}
    if spec.has_hf_token:
        secrets["hfToken"] = pulumi.Config().require_secret("hfToken")
    warnings = _warnings(spec) + _sizing_warnings(spec, sizing)
    for warning in warnings:
        pulumi.log.warn(warning)
    fleet = cloud.Fleet(spec.name, spec, sizing, options, secrets)
    # The key `make check` and the examples use: the default one, else the first named one.
    client_key = api_keys.apply(lambda keys: keys.get(DEFAULT_KEY_NAME) or keys[sorted(keys)[0]])
    for key, value in stack_outputs(spec, sizing, fleet, client_key, warnings).items():
        pulumi.export(key, value)


def _warnings(spec: FleetSpec) -> list[str]:
    warnings = []
    if spec.arch.gated and not spec.has_hf_token:
        warnings.append(f"{spec.model} is gated on Hugging Face: set hfToken (pulumi config set --secret hfToken "
                        f"hf_...) or the VMs cannot download it")
    if not spec.model_is_bucket and not spec.pins_model:
        what = (f"modelRevision {spec.model_revision} is a branch or tag, not a commit" if spec.model_revision
                else "modelRevision is not set")
        branch = spec.model_revision or "main"
        warnings.append(f"{what}: each VM serves whatever {spec.model}'s {branch} holds when it boots, so two VMs "
                        f"may serve different weights. Pin a commit: pulumi config set modelRevision <sha> (the "
                        f"repository's Files and versions page or `hf api` shows it)")
    return warnings


def _sizing_warnings(spec: FleetSpec, sizing: Sizing) -> list[str]:
    warnings = ([warning for warning in [capacity_warning(spec, sizing)] if warning] + cheaper_elsewhere(spec, sizing)
                + cheaper_with_flags(spec, sizing))
    if sizing.price is not None and sizing.price.region != spec.region:
        warnings.append(f"catalog/prices.yaml records no price of {sizing.instance.name} in {spec.region}: the cost "
                        f"shown is {sizing.price.region}'s, and whether {spec.region} offers it is not checked "
                        f"(a maintainer refreshes the prices with make prices)")
    return warnings
