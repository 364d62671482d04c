"""The deployer program: the GitHub environments (with their rules) and the CI identities of each cloud the config
names, and the GitHub Actions variables that point the workflows of .github/workflows at them."""

from __future__ import annotations

import pulumi

from . import github, permissions
from .config import parse


def read_config() -> dict:
    config = pulumi.Config()
    raw = {key: config.get(key) for key in ("githubRepository", "defaultBranch")}
    raw.update({key: config.get_object(key) for key in ("stacks", "github", "aws", "gcp", "azure")})
    return {key: value for key, value in raw.items() if value is not None}


def run() -> None:
    config = parse(read_config())
    document = permissions.load()
    repository = github.manage(config.repository, config.default_branch, config.stacks, config.protected_stacks,
                               config.reviewers)
    # Per environment (None: the repository), what the workflows read as `vars.<NAME>`.
    variables: dict[str | None, dict[str, pulumi.Output]] = {}

    def add(identities: dict[str | None, dict[str, pulumi.Output]]) -> None:
        for environment, values in identities.items():
            variables.setdefault(environment, {}).update(values)

    if config.aws:
        from . import aws  # a provider SDK takes seconds to import: only the clouds in use

        add(aws.identities(config.aws, config.github("aws"), document))
    if config.gcp:
        from . import gcp

        add(gcp.identities(config.gcp, config.github("gcp"), document, repository.repository_id, config.stacks))
    if config.azure:
        from . import azure

        add(azure.identities(config.azure, config.github("azure"), document, config.stacks))
    for environment, values in variables.items():
        repository.set_variables(environment, values)
    pulumi.export("githubVariables", pulumi.Output.all(**{
        environment or "(repository)": pulumi.Output.all(**values) for environment, values in variables.items()}))
    pulumi.export("environments", sorted([*config.stacks, github.PREVIEW_ENVIRONMENT, github.DRIFT_ENVIRONMENT]))
