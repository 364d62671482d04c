"""The deployer program: the CI identities of each cloud the config names, and the GitHub variables that point
the workflows of .github/workflows at them."""

from __future__ import annotations

import pulumi

from . import permissions
from .config import parse


def read_config() -> dict:
    config = pulumi.Config()
    raw = {key: config.get(key) for key in ("githubRepository", "defaultBranch")}
    raw.update({key: config.get_object(key) for key in ("stacks", "aws", "gcp", "azure")})
    return {key: value for key, value in raw.items() if value is not None}


def setup_commands(variables: dict[str, str]) -> str:
    """What to run once so that the workflows find the identities (repository variables: none is a secret)."""
    return "\n".join(f"gh variable set {name} --body '{value}'" for name, value in sorted(variables.items()))


def run() -> None:
    config = parse(read_config())
    document = permissions.load()
    variables: dict[str, pulumi.Output] = {}
    if config.aws:
        from . import aws  # a provider SDK takes seconds to import: only the clouds in use

        variables.update(aws.identities(config.aws, config.github("aws"), document))
    if config.gcp:
        from . import gcp

        variables.update(gcp.identities(config.gcp, config.github("gcp"), document))
    if config.azure:
        from . import azure

        variables.update(azure.identities(config.azure, config.github("azure"), document))
    collected = pulumi.Output.all(**variables)
    pulumi.export("githubVariables", collected)
    pulumi.export("setupCommands", collected.apply(setup_commands))
    pulumi.export("environments", sorted(config.stacks))
