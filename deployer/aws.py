"""AWS: GitHub's OIDC provider in the account and two IAM roles that trust it, vllm-fleet-preview (read-only, for
pull requests and the drift check) and vllm-fleet-deploy (for the stacks' environments), with the permissions of
permissions.yaml and, when the state lives in S3 with a KMS secrets provider, access to that bucket and key."""

from __future__ import annotations

import json
from typing import Any, Mapping

import pulumi
import pulumi_aws as aws

from . import permissions
from .config import AwsConfig
from .github import ISSUER, ISSUER_HOST, GitHub

AUDIENCE = "sts.amazonaws.com"  # what aws-actions/configure-aws-credentials asks GitHub's token for


def trust_policy(oidc_provider_arn: str, subjects: list[str]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": oidc_provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{ISSUER_HOST}:aud": AUDIENCE, f"{ISSUER_HOST}:sub": subjects}}}]})


def state_policy(config: AwsConfig, *, deploy: bool) -> dict[str, Any] | None:
    """The S3 state backend and the KMS secrets provider: read and decrypt to preview, write and encrypt to deploy."""
    statements = []
    if config.state_bucket:
        bucket = f"arn:aws:s3:::{config.state_bucket}"
        statements += [
            {"Sid": "ListState", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": bucket},
            {"Sid": "State", "Effect": "Allow", "Resource": f"{bucket}/*",
             "Action": ["s3:GetObject"] + (["s3:PutObject", "s3:DeleteObject"] if deploy else [])},
        ]
    if config.secrets_key_arn:
        statements.append({"Sid": "StackSecrets", "Effect": "Allow", "Resource": config.secrets_key_arn,
                           "Action": ["kms:Decrypt"] + (["kms:Encrypt"] if deploy else [])})
    return {"Version": "2012-10-17", "Statement": statements} if statements else None


def identities(config: AwsConfig, github: GitHub, document: Mapping[str, Any]) -> dict[str, pulumi.Output]:
    provider = aws.Provider("aws", region=config.region)
    opts = pulumi.ResourceOptions(provider=provider)
    account = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(provider=provider)).account_id
    oidc_provider_arn = pulumi.Output.from_input(config.oidc_provider_arn) if config.oidc_provider_arn else (
        aws.iam.OpenIdConnectProvider("github", url=ISSUER, client_id_lists=[AUDIENCE], opts=opts).arn)

    def role(mode: str, subjects: list[str], deploy: bool) -> aws.iam.Role:
        name = f"vllm-fleet-{mode}"
        created = aws.iam.Role(
            name, name=name, description=f"vllm-fleet {mode} from GitHub Actions of {github.repository}",
            assume_role_policy=oidc_provider_arn.apply(lambda arn: trust_policy(arn, subjects)), opts=opts)
        actions = permissions.permissions(document, "aws", deploy=deploy)
        aws.iam.RolePolicy(f"{name}-fleet", role=created.id, opts=opts, policy=account.apply(
            lambda account_id: json.dumps(permissions.aws_policy(document, actions, account_id,
                                                                  github.environments))))
        state = state_policy(config, deploy=deploy)
        if state:
            aws.iam.RolePolicy(f"{name}-state", role=created.id, policy=json.dumps(state), opts=opts)
        return created

    preview = role("preview", github.preview_subjects, deploy=False)
    deploy = role("deploy", github.deploy_subjects, deploy=True)
    return {"AWS_PREVIEW_ROLE_ARN": preview.arn, "AWS_DEPLOY_ROLE_ARN": deploy.arn}
