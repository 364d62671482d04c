"""Who may use the deployer identities: GitHub Actions' OIDC tokens of one repository, told apart by their `sub`
claim, and the GitHub side that makes a `sub` mean something: the repository's customised `sub` template (with the
ref) and the environments whose protection rules GitHub enforces before a job gets a token.

The deployer customises the repository's `sub` to `repo:<owner>/<name>:<context>:ref:<ref>` (OIDC_CLAIM_KEYS), where
the context of a job in an environment is `environment:<name>`. A cloud identity trusts only subjects of
environments that the deployer itself creates with their rules (GitHub creates a missing environment without
rules when a workflow names it): every fleet stack's deploy environment (`main` only, reviewers where protected),
the preview environment (reviewers, pull requests' merge refs) and the drift environment (`main` only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import pulumi

ISSUER = "https://token.actions.githubusercontent.com"
ISSUER_HOST = "token.actions.githubusercontent.com"
PREVIEW_ENVIRONMENT = "vllm-fleet-preview"
DRIFT_ENVIRONMENT = "vllm-fleet-drift"
OIDC_CLAIM_KEYS = ("repo", "context", "ref")
# A pull request's job runs on its merge ref, refs/pull/<number>/merge: `*` stands for the number.
PULL_REQUEST_REF = "refs/pull/*/merge"


@dataclass(frozen=True)
class GitHub:
    repository: str  # owner/name
    default_branch: str
    environments: tuple[str, ...]  # the fleet stacks of one cloud: one deploy environment (and identity) each

    def _subject(self, environment: str, ref: str) -> str:
        return f"repo:{self.repository}:environment:{environment}:ref:{ref}"

    def deploy_subject(self, stack: str) -> str:
        """The deploy job of one stack: its environment, on the default branch (exact)."""
        return self._subject(stack, f"refs/heads/{self.default_branch}")

    @property
    def preview_subject_pattern(self) -> str:
        """The approved real preview of a pull request, `*` for the pull request's number."""
        return self._subject(PREVIEW_ENVIRONMENT, PULL_REQUEST_REF)

    @property
    def drift_subject(self) -> str:
        """The scheduled drift check on the default branch (exact)."""
        return self._subject(DRIFT_ENVIRONMENT, f"refs/heads/{self.default_branch}")


@dataclass(frozen=True)
class Reviewers:
    """GitHub's numeric ids (`gh api users/<login> -q .id`, `gh api orgs/<org>/teams/<slug> -q .id`)."""
    users: tuple[int, ...]
    teams: tuple[int, ...]


@dataclass(frozen=True)
class Repository:
    """The managed repository: its numeric id (GCP's pool admits it: a deleted and re-created owner/name is
    someone else) and where the workflows find the identities."""
    repository_id: pulumi.Output[int]
    name: str
    opts: pulumi.ResourceOptions

    def set_variables(self, environment: str | None, variables: Mapping[str, pulumi.Input[str]]) -> None:
        """Actions variables (none is a secret) of one environment, or of the repository (None)."""
        import pulumi_github as github

        for variable, value in sorted(variables.items()):
            if environment is None:
                github.ActionsVariable(variable, repository=self.name, variable_name=variable, value=value,
                                       opts=self.opts)
            else:
                github.ActionsEnvironmentVariable(f"{environment}-{variable}", repository=self.name,
                                                  environment=environment, variable_name=variable, value=value,
                                                  opts=self.opts)


def manage(repository: str, default_branch: str, stacks: Iterable[str], protected: frozenset[str],
           reviewers: Reviewers) -> Repository:
    """The repository's `sub` template and every environment a cloud identity trusts, with its rules."""
    import pulumi_github as github  # imported where used: only the deployer program needs this provider

    owner, name = repository.split("/", 1)
    provider = github.Provider("github", owner=owner)
    opts = pulumi.ResourceOptions(provider=provider)
    github.ActionsRepositoryOidcSubjectClaimCustomizationTemplate(
        "oidc-subject", repository=name, use_default=False, include_claim_keys=list(OIDC_CLAIM_KEYS), opts=opts)
    required = [github.RepositoryEnvironmentReviewerArgs(users=list(reviewers.users), teams=list(reviewers.teams))]
    created = {}

    def environment(environment_name: str, *, needs_review: bool, main_only: bool) -> None:
        created[environment_name] = github.RepositoryEnvironment(
            environment_name, repository=name, environment=environment_name, can_admins_bypass=False,
            prevent_self_review=needs_review, reviewers=required if needs_review else None,
            deployment_branch_policy=github.RepositoryEnvironmentDeploymentBranchPolicyArgs(
                protected_branches=False, custom_branch_policies=True) if main_only else None, opts=opts)
        if main_only:
            github.RepositoryEnvironmentDeploymentPolicy(
                environment_name, repository=name, environment=created[environment_name].environment,
                branch_pattern=default_branch, opts=opts)

    for stack in sorted(stacks):
        environment(stack, needs_review=stack in protected, main_only=True)
    # Pull requests' merge refs are no branch a policy could name: the reviewers are the gate (they approve
    # running the pull request's code with the preview identity), and the clouds trust only merge refs.
    environment(PREVIEW_ENVIRONMENT, needs_review=True, main_only=False)
    environment(DRIFT_ENVIRONMENT, needs_review=False, main_only=True)
    repository_id = github.get_repository_output(full_name=repository,
                                                 opts=pulumi.InvokeOptions(provider=provider)).repo_id
    # An environment's variables need the environment first.
    return Repository(repository_id, name, pulumi.ResourceOptions(provider=provider,
                                                                  depends_on=list(created.values())))
