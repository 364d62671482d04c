"""Whether a job can reach a stack's cloud and state backend: the repository (or environment) variables that
name the cloud identity (docs/ci.md; `pulumi stack output setupCommands` in deployer/ prints them), a state
backend, and an OIDC token (GitHub gives none to pull requests from forks).

    python .github/scripts/cloud_credentials.py --cloud aws --mode preview|drift|deploy

Sets the step output `available` (true/false). Without them a preview is skipped with the reason (the offline
plan and the policy pack still run); a deploy fails, naming what to set.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Mapping

from ci_common import set_output

VARIABLES = {
    ("aws", "preview"): ("AWS_PREVIEW_ROLE_ARN",),
    ("aws", "drift"): ("AWS_DRIFT_ROLE_ARN",),
    ("aws", "deploy"): ("AWS_DEPLOY_ROLE_ARN",),
    ("gcp", "preview"): ("GCP_WORKLOAD_IDENTITY_PROVIDER", "GCP_PREVIEW_SERVICE_ACCOUNT"),
    ("gcp", "drift"): ("GCP_WORKLOAD_IDENTITY_PROVIDER", "GCP_DRIFT_SERVICE_ACCOUNT"),
    ("gcp", "deploy"): ("GCP_WORKLOAD_IDENTITY_PROVIDER", "GCP_DEPLOY_SERVICE_ACCOUNT"),
    ("azure", "preview"): ("AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID", "AZURE_PREVIEW_CLIENT_ID"),
    ("azure", "drift"): ("AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID", "AZURE_DRIFT_CLIENT_ID"),
    ("azure", "deploy"): ("AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID", "AZURE_DEPLOY_CLIENT_ID"),
}
# Where each job's Pulumi Cloud token lives (docs/ci.md): a secret of the job's environment, never the repository's.
TOKEN_SECRETS = {"preview": "PULUMI_PREVIEW_ACCESS_TOKEN of the environment vllm-fleet-preview",
                 "drift": "PULUMI_DRIFT_ACCESS_TOKEN of the environment vllm-fleet-drift",
                 "deploy": "PULUMI_ACCESS_TOKEN of the stack's environment"}
# Pulumi Cloud (the CLI reads PULUMI_ACCESS_TOKEN, which the step sets from its secret), or a self-managed backend.
BACKENDS = ("PULUMI_ACCESS_TOKEN", "PULUMI_BACKEND_URL")
# Set by the runner only where the job may request an OIDC token (permissions: id-token: write, not a fork).
OIDC_REQUEST = "ACTIONS_ID_TOKEN_REQUEST_URL"


def missing(cloud: str, mode: str, env: Mapping[str, str]) -> str | None:
    """Why the job cannot reach the cloud, or None when it can."""
    if (cloud, mode) not in VARIABLES:
        return f"no cloud {cloud!r} (stacks/ names aws, gcp or azure)"
    if not env.get(OIDC_REQUEST):
        return ("no OIDC token: GitHub gives none to pull requests from forks (the offline plan and the policy pack "
                "above are what such a pull request gets)")
    unset = [name for name in VARIABLES[cloud, mode] if not env.get(name)]
    if unset:
        return f"no {cloud} identity for the {mode} job: set the variables {', '.join(unset)} (docs/ci.md)"
    if not any(env.get(name) for name in BACKENDS):
        return (f"no state backend: set the secret {TOKEN_SECRETS[mode]} (Pulumi Cloud) or the variable "
                "PULUMI_BACKEND_URL (docs/ci.md)")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cloud", required=True)
    parser.add_argument("--mode", choices=tuple(TOKEN_SECRETS), required=True)
    args = parser.parse_args(argv)
    reason = missing(args.cloud, args.mode, os.environ)
    set_output("available", "false" if reason else "true")
    if reason and args.mode == "deploy":
        print(f"::error::cannot deploy: {reason}")
        return 1
    if reason:
        print(f"::notice::{args.mode} skipped: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
