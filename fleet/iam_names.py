"""The names of a stack's resources that its CI deploy identity is scoped to: one function each, used by the
fleet's components (which create the resources) and by the deployer (deployer/, which allows each stack's identity
exactly its own), so that the two can never disagree (a long, upper-case or dotted stack name included)."""

from __future__ import annotations

import hashlib
import re

STACK_NAME_MAX = 24  # FleetSpec.name: the prefix of every resource name of a stack


def name_within(stack: str, limit: int) -> str:
    """The stack's name as a resource name of at most `limit` (>= 8) characters that every cloud accepts:
    lower-case letters, digits and single hyphens, starting with a letter and ending with a letter or digit.
    That is the stack name itself where it already is one; otherwise its slug, cut to fit, and a hash of the
    whole stack name, so that two stacks (`...-us-central1-dev` and `...-prod`) never share a cut name."""
    slug = re.sub(r"[^a-z0-9]+", "-", stack.lower()).strip("-")
    if not slug[:1].isalpha():
        slug = f"s-{slug}".rstrip("-")
    if slug == stack and len(slug) <= limit:
        return slug
    digest = hashlib.sha256(stack.encode()).hexdigest()[:6]
    return f"{slug[:limit - len(digest) - 1].rstrip('-')}-{digest}"


def short_name(stack: str, suffix: str, limit: int) -> str:
    """A resource name of at most `limit` characters ending in `suffix`: the stack's name is cut, never the suffix."""
    return f"{name_within(stack, limit - len(suffix) - 1)}-{suffix}"


# AWS: the stack's IAM roles and instance profiles live under their own path, which no other stack's is a prefix
# of (it ends with "/"), and may exist only with the stack's permissions boundary.
def aws_iam_path(stack: str) -> str:
    return f"/vllm-fleet/{name_within(stack, STACK_NAME_MAX)}/"


def aws_permissions_boundary_name(stack: str) -> str:
    return f"vllm-fleet-{name_within(stack, STACK_NAME_MAX)}-boundary"


def aws_permissions_boundary_arn(account: str, stack: str) -> str:
    """The managed policy the deployer creates for the stack (before the stack's first deploy)."""
    return f"arn:aws:iam::{account}:policy{aws_iam_path(stack)}{aws_permissions_boundary_name(stack)}"


def aws_secret_prefix(stack: str) -> str:
    """Secrets Manager names (which take the stack name as it is) end the prefix with "/": no other stack's."""
    return f"vllm-fleet/{stack}/"


# GCP: the VMs' service account and the stack's secrets have exact names.
GCP_SERVICE_ACCOUNT_ID_MAX = 30
GCP_SECRET_ID_MAX = 255


def gcp_vm_service_account_id(stack: str) -> str:
    return f"vllm-{name_within(stack, GCP_SERVICE_ACCOUNT_ID_MAX - 5)}"


def gcp_secret_id(stack: str, key: str) -> str:
    """Secret ids are unique in the project: the stack's whole name, with a hash where it had to be cut."""
    return f"vllm-fleet-{name_within(stack, GCP_SECRET_ID_MAX - 12 - len(key))}-{key}"


# The office-hours bucket of the closed answer: Pulumi names it after this, plus "-" and 7 random characters.
GCP_BUCKET_NAME_MAX, AUTONAME_SUFFIX = 63, 8


def gcp_closed_bucket(stack: str) -> str:
    return short_name(stack, "closed", GCP_BUCKET_NAME_MAX - AUTONAME_SUFFIX)


# The stack's secrets (fleet/program.py's keys): their names on every cloud end with the key.
SECRET_KEYS = ("apiKeys", "hfToken")


# Azure: every resource of the stack is in its own resource group, created by the deployer (where the stack's
# deploy identity is assigned its role) or named by the stack (azure.resourceGroupName).
def azure_resource_group(stack: str) -> str:
    return f"vllm-fleet-{name_within(stack, STACK_NAME_MAX)}"

# The role the GCP VMs write vLLM's metrics with (components/gcp/monitoring.py), on the project: the only role a
# stack's deploy account may grant in the project's IAM policy (deployer/gcp.py).
GCP_METRIC_WRITER_ROLE = "roles/monitoring.metricWriter"
