"""The permission list of deployer/permissions.yaml, and what each cloud's identities get from it.

The preview identity gets the `read` permissions of every resource type and data source of its cloud; the deploy
identity gets `read` and `write`. AWS actions listed under `narrowed` are granted only on the resources (and under
the conditions) given there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from fleet import iam_names

PERMISSIONS_FILE = Path(__file__).with_name("permissions.yaml")
CLOUDS = ("aws", "gcp", "azure")
# Where a Pulumi type token belongs in the file: by its package; anything else calls no cloud API.
PACKAGE_CLOUDS = {"aws": "aws", "gcp": "gcp", "azure-native": "azure"}
NO_CLOUD = "none"
# The syntax of one permission of each cloud, to catch a typo before a cloud refuses the policy.
PERMISSION_SYNTAX = {
    "aws": re.compile(r"^[a-z0-9-]+:[A-Z][A-Za-z0-9]+$"),
    "gcp": re.compile(r"^[a-z0-9]+(\.[a-zA-Z0-9]+){2,}$"),
    "azure": re.compile(r"^Microsoft\.[A-Za-z]+(/[A-Za-z0-9]+)+$"),
}


@dataclass(frozen=True)
class Entry:
    read: tuple[str, ...]
    write: tuple[str, ...]
    data_actions: tuple[str, ...] = ()  # Azure's data plane, for the deploy identity


def load(path: Path = PERMISSIONS_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def section_of(token: str) -> str:
    """The section of permissions.yaml a resource type or function token belongs in."""
    return PACKAGE_CLOUDS.get(token.split(":", 1)[0], NO_CLOUD)


def entries(document: Mapping[str, Any], section: str, kind: str = "resources") -> dict[str, Entry]:
    """The entries of one section's `resources` or `data_sources`, by type or function token."""
    listed = (document.get(section) or {}).get(kind) or {}
    return {token: Entry(*(tuple((entry or {}).get(field) or ()) for field in ("read", "write", "data_actions")))
            for token, entry in listed.items()}


def permissions(document: Mapping[str, Any], cloud: str, *, deploy: bool) -> list[str]:
    """Every permission of a cloud's preview identity (deploy=False) or deploy identity, sorted, once each."""
    found: set[str] = set()
    for kind in ("resources", "data_sources"):
        for entry in entries(document, cloud, kind).values():
            found.update(entry.read)
            if deploy:
                found.update(entry.write)
    return sorted(found)


def _placeholders(account: str, stack: str | None) -> dict[str, str]:
    """What permissions.yaml's AWS resources and conditions name: one stack's own (its deploy role), or every
    stack's (the read-only roles, stack None)."""
    if stack is None:
        return {"{account}": account, "{iam_path}": "/vllm-fleet/*/", "{secret_prefix}": "vllm-fleet/*/"}
    return {"{account}": account, "{iam_path}": iam_names.aws_iam_path(stack),
            "{secret_prefix}": iam_names.aws_secret_prefix(stack),
            "{boundary}": iam_names.aws_permissions_boundary_arn(account, stack)}


def _filled(value: Any, placeholders: Mapping[str, str]) -> Any:
    text = json.dumps(value)
    for placeholder, replacement in placeholders.items():
        text = text.replace(placeholder, replacement)
    return json.loads(text)


def aws_policy(document: Mapping[str, Any], actions: Iterable[str], account: str, stack: str | None
               ) -> dict[str, Any]:
    """An IAM policy document granting `actions`: narrowed ones on their own resources (one stack's, or with
    stack None every stack's), the rest on "*"."""
    actions = set(actions)
    placeholders = _placeholders(account, stack)
    narrowed = document["aws"].get("narrowed") or []
    narrowed_actions = {action for statement in narrowed for action in statement["actions"]}
    statements = [{"Sid": "FleetResources", "Effect": "Allow", "Action": sorted(actions - narrowed_actions),
                   "Resource": "*"}]
    for statement in narrowed:
        granted = sorted(actions & set(statement["actions"]))
        if not granted:
            continue
        built = {"Sid": statement["sid"], "Effect": "Allow", "Action": granted,
                 "Resource": _filled(statement["resources"], placeholders)}
        if statement.get("condition"):
            built["Condition"] = _filled(statement["condition"], placeholders)
        statements.append(built)
    return {"Version": "2012-10-17", "Statement": statements}


def aws_boundary(document: Mapping[str, Any], account: str, stack: str) -> dict[str, Any]:
    """The permissions boundary of one stack's roles: permissions.yaml's `aws.boundary`."""
    statements = [{"Sid": statement["sid"], "Effect": "Allow", "Action": sorted(statement["actions"]),
                   "Resource": _filled(statement["resources"], _placeholders(account, stack))}
                  for statement in document["aws"]["boundary"]]
    return {"Version": "2012-10-17", "Statement": statements}


def gcp_compute_grants(document: Mapping[str, Any]) -> dict[str, list[str]]:
    """The GCP deploy identity's compute permissions that hold on its own stack's resources only, by the collection
    their resources' names carry (gcp.compute_collection_names); those of gcp.compute_unconditioned are not here."""
    section = document["gcp"]
    unconditioned = set(section["compute_unconditioned"])
    names = section.get("compute_collection_names") or {}
    grants: dict[str, list[str]] = {}
    for permission in permissions(document, "gcp", deploy=True):
        service, collection, _ = permission.split(".", 2)
        if service == "compute" and collection not in unconditioned:
            grants.setdefault(names.get(collection, collection), []).append(permission)
    return grants


def data_actions(document: Mapping[str, Any], cloud: str) -> list[str]:
    """The data actions (Azure's data plane: blobs, Key Vault secrets) of the deploy identity, sorted, once each."""
    return sorted({action for entry in entries(document, cloud).values() for action in entry.data_actions})


def azure_assignment_condition(document: Mapping[str, Any], ci_principals: Iterable[str]) -> str:
    """An Azure role assignment condition (version 2.0): role assignments may be created or deleted only for the
    roles of `azure.assignable_roles`, only for service principals (the fleet's managed identities) and never
    for one of the CI's own principals; the scope is the assignment's own (the stack's resource group)."""
    roles = ", ".join(sorted(document["azure"]["assignable_roles"]))
    principals = ", ".join(sorted(ci_principals))
    return (
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
        f"(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{roles}}} "
        "AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase "
        "{'ServicePrincipal'} "
        f"AND @Request[Microsoft.Authorization/roleAssignments:PrincipalId] ForAllOfAllValues:GuidNotEquals {{{principals}}})) "
        "AND ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR "
        f"(@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{roles}}}))"
    )


BLOB = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"


def azure_blob_path_condition(actions: Iterable[str], prefixes: Iterable[str]) -> str:
    """A role assignment condition: the blob data actions `actions` only on blobs under `prefixes`."""
    allowed = " OR ".join(f"@Resource[{BLOB}:path] StringStartsWith '{prefix}'" for prefix in prefixes)
    return " AND ".join(f"((!(ActionMatches{{'{BLOB}/{action}'}})) OR ({allowed}))" for action in actions)
