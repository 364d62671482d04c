"""AWS: GitHub's OIDC provider in the account and the roles that trust it: vllm-fleet-preview (the approved real
preview of pull requests) and vllm-fleet-drift (the scheduled drift check), both read-only, and one deploy role per
fleet stack, limited to that stack's roles (under its IAM path, with its permissions boundary), instance
profiles, secrets and state. The roles of the CI itself live under /vllm-fleet-ci/, which no deploy role reaches."""

from __future__ import annotations

import json
from typing import Any, Mapping

import pulumi
import pulumi_aws as aws

from fleet import iam_names

from . import backend, permissions
from .config import AwsConfig
from .github import DRIFT_ENVIRONMENT, ISSUER, ISSUER_HOST, PREVIEW_ENVIRONMENT, GitHub

AUDIENCE = "sts.amazonaws.com"  # what aws-actions/configure-aws-credentials asks GitHub's token for
CI_ROLE_PATH = "/vllm-fleet-ci/"
ROLE_NAME_MAX = 64


def trust_policy(oidc_provider_arn: str, subject: str) -> str:
    """StringEquals for an exact subject, StringLike for the preview's pattern (only its `*`, the pull request's
    number, is open)."""
    match = "StringLike" if "*" in subject else "StringEquals"
    condition = {"StringEquals": {f"{ISSUER_HOST}:aud": AUDIENCE}}
    condition.setdefault(match, {})[f"{ISSUER_HOST}:sub"] = subject
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": oidc_provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity", "Condition": condition}]})


def state_policy(config: AwsConfig, stacks: list[str], deploy: str | None) -> dict[str, Any] | None:
    """The S3 state backend and the KMS secrets provider. The deploy role of a stack (`deploy`) reads and writes
    only that stack's state; the read-only roles read every state of the bucket and write only the lock objects of
    the cloud's stacks (a preview or refresh takes the stack's lock)."""
    statements = []
    if config.state_bucket:
        bucket = f"arn:aws:s3:::{config.state_bucket}"
        statements.append({"Sid": "ListState", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": bucket})
        if deploy:
            own = [f"{bucket}/{prefix}*" for prefix in backend.stack_prefixes(deploy)]
            statements += [
                {"Sid": "ReadBackendMeta", "Effect": "Allow", "Action": ["s3:GetObject"],
                 "Resource": f"{bucket}/{backend.META}"},
                {"Sid": "OwnState", "Effect": "Allow", "Resource": own,
                 "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]}]
        else:
            statements += [
                {"Sid": "ReadState", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"{bucket}/*"},
                {"Sid": "StateLocksOnly", "Effect": "Allow", "Action": ["s3:PutObject", "s3:DeleteObject"],
                 "Resource": [f"{bucket}/{backend.lock_prefix(stack)}*" for stack in stacks]}]
    if config.secrets_key_arn:
        statements.append({"Sid": "StackSecrets", "Effect": "Allow", "Resource": config.secrets_key_arn,
                           "Action": ["kms:Decrypt"] + (["kms:Encrypt"] if deploy else [])})
    return {"Version": "2012-10-17", "Statement": statements} if statements else None


def deploy_role_name(stack: str) -> str:
    return f"vllm-fleet-{iam_names.short_name(stack, 'deploy', ROLE_NAME_MAX - len('vllm-fleet-'))}"


def identities(config: AwsConfig, github: GitHub, document: Mapping[str, Any]
               ) -> dict[str | None, dict[str, pulumi.Output]]:
    provider = aws.Provider("aws", region=config.region)
    opts = pulumi.ResourceOptions(provider=provider)
    account = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(provider=provider)).account_id
    oidc_provider_arn = pulumi.Output.from_input(config.oidc_provider_arn) if config.oidc_provider_arn else (
        aws.iam.OpenIdConnectProvider("github", url=ISSUER, client_id_lists=[AUDIENCE], opts=opts).arn)
    stacks = list(github.environments)

    def role(name: str, subject: str, stack: str | None) -> aws.iam.Role:
        created = aws.iam.Role(
            name, name=name, path=CI_ROLE_PATH, description=f"vllm-fleet CI from GitHub Actions of {github.repository}",
            assume_role_policy=oidc_provider_arn.apply(lambda arn: trust_policy(arn, subject)), opts=opts)
        actions = permissions.permissions(document, "aws", deploy=stack is not None)
        aws.iam.RolePolicy(f"{name}-fleet", role=created.id, opts=opts, policy=account.apply(
            lambda account_id: json.dumps(permissions.aws_policy(document, actions, account_id, stack))))
        state = state_policy(config, stacks, stack)
        if state:
            aws.iam.RolePolicy(f"{name}-state", role=created.id, policy=json.dumps(state), opts=opts)
        return created

    variables: dict[str | None, dict[str, pulumi.Output]] = {}
    for stack in stacks:
        # The most the stack's own roles may ever do, whatever its deploy role writes into them.
        aws.iam.Policy(f"{stack}-boundary", name=iam_names.aws_permissions_boundary_name(stack),
                       path=iam_names.aws_iam_path(stack),
                       description=f"vllm-fleet {stack}: the permissions boundary of the stack's roles",
                       policy=account.apply(lambda account_id, stack=stack: json.dumps(
                           permissions.aws_boundary(document, account_id, stack))), opts=opts)
        deploy = role(deploy_role_name(stack), github.deploy_subject(stack), stack)
        variables[stack] = {"AWS_DEPLOY_ROLE_ARN": deploy.arn}
    preview = role("vllm-fleet-preview", github.preview_subject_pattern, None)
    variables[PREVIEW_ENVIRONMENT] = {"AWS_PREVIEW_ROLE_ARN": preview.arn}
    variables[DRIFT_ENVIRONMENT] = {"AWS_DRIFT_ROLE_ARN": role("vllm-fleet-drift", github.drift_subject, None).arn}
    return variables
