"""What an AWS stack's instances are allowed: its secrets in Secrets Manager, and the instance role that may read
exactly those (and the model's S3 prefix), plus SSM Session Manager instead of SSH."""

from __future__ import annotations

import json
from typing import Mapping

import pulumi
from pulumi_aws import iam, secretsmanager

from components.base import FleetComponent
from fleet import iam_names
from fleet.spec import FleetSpec

SSM_CORE_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"


def service_role(fleet: FleetComponent, spec: FleetSpec, name: str, service: str, description: str,
                 for_this_account_only: bool = False) -> iam.Role:
    """A role of the stack that an AWS service assumes: under the stack's IAM path and with its permissions
    boundary (the deployer's), the only roles its CI deploy identity may create or change.
    `for_this_account_only`: the service assumes it only on behalf of this account's resources (aws:SourceAccount,
    against the confused deputy), for services that act for resources of any account (EventBridge Scheduler)."""
    account = fleet.account_id

    def trust(account_id: str) -> str:
        statement = {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": service}}
        if for_this_account_only:
            statement["Condition"] = {"StringEquals": {"aws:SourceAccount": account_id}}
        return json.dumps({"Version": "2012-10-17", "Statement": [statement]})

    return iam.Role(name, description=description, path=iam_names.aws_iam_path(spec.stack),
                    permissions_boundary=account.apply(
                        lambda account_id: iam_names.aws_permissions_boundary_arn(account_id, spec.stack)),
                    assume_role_policy=account.apply(trust), opts=fleet.opts)


def store_secrets(fleet: FleetComponent, spec: FleetSpec, secrets: Mapping[str, pulumi.Output[str]]
                  ) -> tuple[dict[str, pulumi.Output[str]], dict[str, pulumi.Output[str]]]:
    """The stack's secrets in Secrets Manager: (ARNs, for the instance role; `<ARN>|<version id>` of the current
    value, which the VMs read). A new value is a new version id, a new user-data and so a rolling replacement."""
    arns, refs = {}, {}
    for key, value in secrets.items():
        secret = secretsmanager.Secret(fleet.child(key), name_prefix=f"{iam_names.aws_secret_prefix(spec.stack)}{key}-",
                                       description=f"vllm-fleet {spec.stack}: {key}, read by the VMs at boot",
                                       recovery_window_in_days=7, opts=fleet.opts)
        version = secretsmanager.SecretVersion(fleet.child(key), secret_id=secret.id, secret_string=value,
                                               opts=fleet.opts)
        arns[key] = secret.arn
        refs[key] = pulumi.Output.concat(secret.arn, "|", version.version_id)
    return arns, refs

def instance_profile(fleet: FleetComponent, spec: FleetSpec, secret_arns: Mapping[str, pulumi.Output[str]],
                     lifecycle_group: str):
    """`lifecycle_group`: the Auto Scaling group whose launch lifecycle actions the instances heartbeat for and
    complete themselves (vllm-fleet-ready)."""
    role = service_role(fleet, spec, fleet.child("instance"), "ec2.amazonaws.com",
                        description=f"vllm-fleet {spec.stack} GPU instances")
    iam.RolePolicyAttachment(fleet.child("ssm"), role=role.name, policy_arn=SSM_CORE_POLICY, opts=fleet.opts)

    def policy(arns: list[str]) -> str:
        statements = [{"Sid": "ReadThisStacksSecrets", "Effect": "Allow",
                       "Action": "secretsmanager:GetSecretValue", "Resource": sorted(arns)}]
        if spec.model_is_bucket:
            bucket, _, prefix = spec.model[len("s3://"):].partition("/")
            statements += [
                {"Sid": "ListModelPrefix", "Effect": "Allow", "Action": "s3:ListBucket",
                 "Resource": f"arn:aws:s3:::{bucket}",
                 "Condition": {"StringLike": {"s3:prefix": [f"{prefix.rstrip('/')}/*" if prefix else "*"]}}},
                {"Sid": "ReadModel", "Effect": "Allow", "Action": "s3:GetObject",
                 "Resource": f"arn:aws:s3:::{bucket}/{prefix.rstrip('/') + '/' if prefix else ''}*"},
            ]
        statements.append({"Sid": "OwnLaunchLifecycleAction", "Effect": "Allow",
                           "Action": ["autoscaling:CompleteLifecycleAction",
                                      "autoscaling:RecordLifecycleActionHeartbeat"],
                           "Resource": f"arn:aws:autoscaling:{spec.region}:*:autoScalingGroup:*:"
                                       f"autoScalingGroupName/{lifecycle_group}"})
        return json.dumps({"Version": "2012-10-17", "Statement": statements})

    iam.RolePolicy(fleet.child("read-secrets"), role=role.id,
                   policy=pulumi.Output.all(*secret_arns.values()).apply(policy), opts=fleet.opts)
    return iam.InstanceProfile(fleet.child("instance"), role=role.name, path=iam_names.aws_iam_path(spec.stack),
                               opts=fleet.opts)

