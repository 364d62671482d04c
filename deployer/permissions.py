"""The permission list of deployer/permissions.yaml, and what each cloud's identities get from it.

The preview identity gets the `read` permissions of every resource type and data source of its cloud; the deploy
identity gets `read` and `write`. AWS actions listed under `narrowed` are granted only on the resources (and under
the conditions) given there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

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


def load(path: Path = PERMISSIONS_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def section_of(token: str) -> str:
    """The section of permissions.yaml a resource type or function token belongs in."""
    return PACKAGE_CLOUDS.get(token.split(":", 1)[0], NO_CLOUD)


def entries(document: Mapping[str, Any], section: str, kind: str = "resources") -> dict[str, Entry]:
    """The entries of one section's `resources` or `data_sources`, by type or function token."""
    listed = (document.get(section) or {}).get(kind) or {}
    return {token: Entry(tuple((entry or {}).get("read") or ()), tuple((entry or {}).get("write") or ()))
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


def _expand(patterns: Iterable[str], account: str, stacks: Iterable[str]) -> list[str]:
    resources = []
    for pattern in patterns:
        names = stacks if "{stack}" in pattern else [None]
        for stack in names:
            resource = pattern.replace("{account}", account)
            resources.append(resource.replace("{stack}", stack) if stack else resource)
    return sorted(set(resources))


def aws_policy(document: Mapping[str, Any], actions: Iterable[str], account: str,
               stacks: Iterable[str]) -> dict[str, Any]:
    """An IAM policy document granting `actions`: narrowed ones on their own resources, the rest on "*"."""
    actions, stacks = set(actions), sorted(stacks)
    narrowed = document["aws"].get("narrowed") or []
    narrowed_actions = {action for statement in narrowed for action in statement["actions"]}
    statements = [{"Sid": "FleetResources", "Effect": "Allow", "Action": sorted(actions - narrowed_actions),
                   "Resource": "*"}]
    for statement in narrowed:
        granted = sorted(actions & set(statement["actions"]))
        if not granted:
            continue
        resources = _expand(statement["resources"], account, stacks)
        if not resources:  # no stack of this cloud yet: nothing of the fleet's to act on
            continue
        built = {"Sid": statement["sid"], "Effect": "Allow", "Action": granted, "Resource": resources}
        if statement.get("condition"):
            built["Condition"] = statement["condition"]
        statements.append(built)
    return {"Version": "2012-10-17", "Statement": statements}


def azure_assignment_condition(document: Mapping[str, Any]) -> str:
    """An Azure role assignment condition (version 2.0): role assignments may be created or deleted only for the
    roles of `azure.assignable_roles`, and only for service principals (the fleet's managed identities)."""
    roles = ", ".join(sorted(document["azure"]["assignable_roles"]))
    return (
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
        f"(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{roles}}} "
        "AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase "
        "{'ServicePrincipal'})) AND "
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR "
        f"(@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{roles}}}))"
    )
