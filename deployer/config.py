"""The deployer's stack config (`vllm-fleet-deployer:*`), validated, and the fleet stacks it serves."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from .github import GitHub, Reviewers

ROOT = Path(__file__).resolve().parent.parent
FLEET_STACKS = ROOT / "stacks"
NAMESPACE = "vllm-fleet-deployer"
_REPOSITORY = re.compile(r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$")
MAX_REVIEWERS = 6  # GitHub's limit of required reviewers (users and teams) per environment


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
    # A destroyed pool stays soft-deleted for 30 days and keeps its id: `gcloud iam workload-identity-pools
    # undelete` it, or name another one here.
    pool_id: str = "vllm-fleet-github"


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
    stacks: Mapping[str, FleetStack]
    protected_stacks: frozenset[str]  # their deploy environments need a reviewer's approval
    reviewers: Reviewers

    def github(self, cloud: str) -> GitHub:
        environments = tuple(sorted(stack for stack, fleet_stack in self.stacks.items() if fleet_stack.cloud == cloud))
        return GitHub(self.repository, self.default_branch, environments)


@dataclass(frozen=True)
class FleetStack:
    """What the deployer needs of a fleet stack's file."""
    cloud: str | None
    region: str | None
    model: str | None
    dns_zone: str | None
    # GCP: the existing network and subnetwork the stack uses instead of its own (vllm-fleet:gcp), by name
    gcp_existing: tuple[tuple[str, str], ...] = ()


def fleet_stacks(directory: Path | None = None) -> dict[str, FleetStack]:
    """Every fleet stack of stacks/."""
    stacks = {}
    for path in sorted((directory or FLEET_STACKS).glob("Pulumi.*.yaml")):
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        gcp = config.get("vllm-fleet:gcp") if isinstance(config.get("vllm-fleet:gcp"), dict) else {}
        existing = tuple((collection, str(gcp[key]).rsplit("/", 1)[-1])
                         for collection, key in (("networks", "network"), ("subnetworks", "subnetwork")) if gcp.get(key))
        stacks[path.name[len("Pulumi."):-len(".yaml")]] = FleetStack(
            config.get("vllm-fleet:cloud"), config.get("vllm-fleet:region"), config.get("vllm-fleet:model"),
            config.get("vllm-fleet:dnsZone"), existing)
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


def _reviewers(raw: Mapping[str, Any], stacks: Mapping[str, FleetStack]) -> tuple[frozenset[str], Reviewers]:
    section = _section(raw, "github", (), ("protectedStacks", "reviewers")) or {}
    protected = section.get("protectedStacks") or []
    unknown = [stack for stack in protected if stack not in stacks] if isinstance(protected, list) else [protected]
    if unknown:
        raise DeployerConfigError(f"{NAMESPACE}:github.protectedStacks lists {unknown[0]!r}, which is no stack the "
                                  f"deployer serves: list stacks of stacks/ (and of {NAMESPACE}:stacks)")
    given = section.get("reviewers")
    ids = {kind: (given.get(kind) or []) if isinstance(given, dict) else None for kind in ("users", "teams")}
    if (not isinstance(given, dict) or set(given) - set(ids)
            or not all(isinstance(v, list) and all(isinstance(i, int) for i in v) for v in ids.values())
            or not 1 <= sum(map(len, ids.values())) <= MAX_REVIEWERS):
        raise DeployerConfigError(
            f"{NAMESPACE}:github.reviewers = {given!r}: must be {{users: [...], teams: [...]}} with 1 to "
            f"{MAX_REVIEWERS} numeric GitHub ids in all (gh api users/<login> -q .id; gh api "
            f"orgs/<org>/teams/<slug> -q .id): they approve the preview of pull requests and the protected stacks")
    return frozenset(protected), Reviewers(tuple(ids["users"]), tuple(ids["teams"]))


def parse(raw: Mapping[str, Any], stacks: Mapping[str, FleetStack] | None = None) -> DeployerConfig:
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
    gcp = _section(raw, "gcp", ("project",), ("stateBucket", "secretsKeyId", "poolId"))
    azure = _section(raw, "azure", ("subscriptionId",), ("stateStorageAccountId", "secretsKeyVaultId"))
    if not (aws or gcp or azure):
        raise DeployerConfigError(f"set at least one of {NAMESPACE}:aws, :gcp, :azure (the clouds the fleet "
                                  f"deploys to)")
    protected, reviewers = _reviewers(raw, all_stacks)
    return DeployerConfig(
        repository=repository, default_branch=raw.get("defaultBranch", "main"), stacks=all_stacks,
        protected_stacks=protected, reviewers=reviewers,
        aws=AwsConfig(aws["region"], aws.get("oidcProviderArn"), aws.get("stateBucket"), aws.get("secretsKeyArn"))
        if aws else None,
        gcp=GcpConfig(gcp["project"], gcp.get("stateBucket"), gcp.get("secretsKeyId"),
                      gcp.get("poolId", GcpConfig.pool_id)) if gcp else None,
        azure=AzureConfig(azure["subscriptionId"], azure.get("stateStorageAccountId"),
                          azure.get("secretsKeyVaultId")) if azure else None,
    )
