"""The deployer's stack config (`vllm-fleet-deployer:*`), validated, and the fleet stacks it serves."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from .github import GitHub

ROOT = Path(__file__).resolve().parent.parent
FLEET_STACKS = ROOT / "stacks"
NAMESPACE = "vllm-fleet-deployer"
_REPOSITORY = re.compile(r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$")


class DeployerConfigError(Exception):
    """A config value the deployer cannot use; the message names the key and what works."""


@dataclass(frozen=True)
class AwsConfig:
    region: str
    oidc_provider_arn: str | None  # the account's existing GitHub OIDC provider (there can be one per account)
    state_bucket: str | None
    secrets_key_arn: str | None


@dataclass(frozen=True)
class GcpConfig:
    project: str
    state_bucket: str | None
    secrets_key_id: str | None  # projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>


@dataclass(frozen=True)
class AzureConfig:
    subscription_id: str
    state_storage_account_id: str | None
    secrets_key_vault_id: str | None


@dataclass(frozen=True)
class DeployerConfig:
    repository: str
    default_branch: str
    aws: AwsConfig | None
    gcp: GcpConfig | None
    azure: AzureConfig | None
    stacks: Mapping[str, str]  # fleet stack -> its cloud

    def github(self, cloud: str) -> GitHub:
        environments = tuple(sorted(stack for stack, stack_cloud in self.stacks.items() if stack_cloud == cloud))
        return GitHub(self.repository, self.default_branch, environments)


def fleet_stacks(directory: Path = FLEET_STACKS) -> dict[str, str]:
    """Every fleet stack of stacks/ and its cloud."""
    stacks = {}
    for path in sorted(directory.glob("Pulumi.*.yaml")):
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        stacks[path.name[len("Pulumi."):-len(".yaml")]] = config.get("vllm-fleet:cloud")
    return stacks


def _section(raw: Mapping[str, Any], key: str, required: tuple[str, ...], optional: tuple[str, ...]) -> dict | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DeployerConfigError(f"{NAMESPACE}:{key} must be a map with {', '.join(required + optional)}")
    unknown = sorted(set(value) - set(required) - set(optional))
    if unknown:
        raise DeployerConfigError(f"{NAMESPACE}:{key}.{unknown[0]} is not an option; known: "
                                  f"{', '.join(required + optional)}")
    for name in required:
        if not isinstance(value.get(name), str) or not value[name]:
            raise DeployerConfigError(f"{NAMESPACE}:{key}.{name} is required")
    return value


def parse(raw: Mapping[str, Any], stacks: Mapping[str, str] | None = None) -> DeployerConfig:
    """`raw`: the project's config keys without the namespace, structured values already parsed."""
    repository = raw.get("githubRepository")
    if not isinstance(repository, str) or not _REPOSITORY.match(repository):
        raise DeployerConfigError(f"{NAMESPACE}:githubRepository = {repository!r}: must be the repository that runs "
                                  f"the workflows, owner/name (e.g. my-org/vllm-fleet)")
    all_stacks = dict(fleet_stacks() if stacks is None else stacks)
    chosen = raw.get("stacks")
    if chosen is not None:
        unknown = [stack for stack in chosen if stack not in all_stacks]
        if unknown:
            raise DeployerConfigError(f"{NAMESPACE}:stacks lists {unknown[0]!r}, which stacks/ does not have; "
                                      f"stacks/ has {', '.join(all_stacks)}")
        all_stacks = {stack: all_stacks[stack] for stack in chosen}
    aws = _section(raw, "aws", ("region",), ("oidcProviderArn", "stateBucket", "secretsKeyArn"))
    gcp = _section(raw, "gcp", ("project",), ("stateBucket", "secretsKeyId"))
    azure = _section(raw, "azure", ("subscriptionId",), ("stateStorageAccountId", "secretsKeyVaultId"))
    if not (aws or gcp or azure):
        raise DeployerConfigError(f"set at least one of {NAMESPACE}:aws, :gcp, :azure (the clouds the fleet "
                                  f"deploys to)")
    return DeployerConfig(
        repository=repository, default_branch=raw.get("defaultBranch", "main"), stacks=all_stacks,
        aws=AwsConfig(aws["region"], aws.get("oidcProviderArn"), aws.get("stateBucket"), aws.get("secretsKeyArn"))
        if aws else None,
        gcp=GcpConfig(gcp["project"], gcp.get("stateBucket"), gcp.get("secretsKeyId")) if gcp else None,
        azure=AzureConfig(azure["subscriptionId"], azure.get("stateStorageAccountId"),
                          azure.get("secretsKeyVaultId")) if azure else None,
    )
