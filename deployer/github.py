"""Who may use the deployer identities: GitHub Actions' OIDC tokens of one repository, told apart by their `sub`
claim. A job of a pull request (from a branch of the repository: forks get no token) has
`repo:<owner>/<name>:pull_request`, a job on the default branch without an environment (the drift check)
`repo:<owner>/<name>:ref:refs/heads/<branch>`, and a job in a GitHub environment (each deploy, one environment per
fleet stack) `repo:<owner>/<name>:environment:<environment>`."""

from __future__ import annotations

from dataclasses import dataclass

ISSUER = "https://token.actions.githubusercontent.com"
ISSUER_HOST = "token.actions.githubusercontent.com"


@dataclass(frozen=True)
class GitHub:
    repository: str  # owner/name
    default_branch: str
    environments: tuple[str, ...]  # one per fleet stack that the deploy identity may deploy

    @property
    def preview_subjects(self) -> list[str]:
        """Read-only: previews of pull requests and the scheduled drift check on the default branch."""
        return [f"repo:{self.repository}:pull_request",
                f"repo:{self.repository}:ref:refs/heads/{self.default_branch}"]

    @property
    def deploy_subjects(self) -> list[str]:
        """Only jobs in a stack's environment, whose protection rules (reviewers, branches) GitHub enforces first."""
        return [f"repo:{self.repository}:environment:{environment}" for environment in self.environments]
