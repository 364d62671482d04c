"""Azure: app registrations with federated credentials for GitHub Actions of one repository: vllm-fleet-preview
(the approved real preview of pull requests) and vllm-fleet-drift (the scheduled drift check), both read-only,
and one deploy app per fleet stack. Every fleet stack gets its own resource group, created here; the apps' roles
are assigned on those groups (a deploy app on its own stack's only, and on the stack's DNS zone), never on the
subscription, whose scope holds only the reading of asynchronous operations. A deploy app's assignment carries a
condition: it may assign only the roles of permissions.yaml's assignable_roles, never to one of the CI's own
principals, and only within its group (its scope)."""

from __future__ import annotations

import re
from typing import Any, Mapping

import pulumi
import pulumi_azuread as azuread
from pulumi_azure_native import authorization, resources

from fleet import iam_names

from . import backend, permissions
from .config import AzureConfig, FleetStack
from .github import DRIFT_ENVIRONMENT, ISSUER, PREVIEW_ENVIRONMENT, GitHub

AUDIENCE = "api://AzureADTokenExchange"  # what azure/login asks GitHub's token for
# Built-in roles for the state backend (the same ids in every subscription).
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
KEY_VAULT_CRYPTO_USER = "12338af0-0e69-4776-bea7-57ae8d297424"


def credential_name(subject: str) -> str:
    """A federated credential's name: letters, digits and hyphens."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", subject.split(":", 2)[2]).strip("-")[:120]


def claims_matching_expression(pattern: str) -> str:
    """Entra ID's flexible federated identity credential: `matches` takes `*` for the pull request's number."""
    return f"claims['sub'] matches '{pattern}'"


def identities(config: AzureConfig, github: GitHub, document: Mapping[str, Any], stacks: Mapping[str, FleetStack]
               ) -> dict[str | None, dict[str, pulumi.Output]]:
    subscription = f"/subscriptions/{config.subscription_id}"
    client = authorization.get_client_config_output()

    def built_in(role_id: str) -> str:
        return f"{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role_id}"

    def role(mode: str, actions: list[str], data_actions: list[str]) -> authorization.RoleDefinition:
        # Custom role names are unique in the tenant: two subscriptions of one repository need two of each.
        return authorization.RoleDefinition(
            f"vllm-fleet-{mode}", role_name=f"vllm-fleet-{mode} ({github.repository}, {config.subscription_id})",
            scope=subscription, assignable_scopes=[subscription], description="permissions.yaml of vllm-fleet's deployer",
            permissions=[authorization.PermissionArgs(actions=actions, data_actions=data_actions)])

    def split(deploy: bool) -> tuple[list[str], list[str]]:
        """(the actions on the stacks' resources, the reading of asynchronous operations of a region)."""
        actions = permissions.permissions(document, "azure", deploy=deploy)
        operations = [action for action in actions if "/locations/" in action]
        return [action for action in actions if action not in operations], operations

    read_actions, read_operations = split(deploy=False)
    deploy_actions, deploy_operations = split(deploy=True)
    roles = {"read": role("read", read_actions, []),
             "deploy": role("deploy", deploy_actions, permissions.data_actions(document, "azure")),
             "operations": role("operations", sorted(set(read_operations) | set(deploy_operations)), [])}
    groups = {stack: resources.ResourceGroup(
        f"{stack}-rg", resource_group_name=iam_names.azure_resource_group(stack), location=stacks[stack].region,
        tags={"vllm-fleet-stack": stack}) for stack in github.environments}

    def app(name: str, credential: dict[str, str]):
        registration = azuread.Application(name, display_name=f"{name} ({github.repository})")
        principal = azuread.ServicePrincipal(name, client_id=registration.client_id)
        if "subject" in credential:
            azuread.ApplicationFederatedIdentityCredential(
                name, application_id=registration.id, display_name=credential_name(credential["subject"]),
                issuer=ISSUER, audiences=[AUDIENCE], subject=credential["subject"])
        else:
            azuread.ApplicationFlexibleFederatedIdentityCredential(
                name, application_id=registration.id, display_name=name, issuer=ISSUER, audience=AUDIENCE,
                claims_matching_expression=claims_matching_expression(credential["pattern"]))
        authorization.RoleAssignment(f"{name}-operations", scope=subscription, principal_id=principal.object_id,
                                     principal_type="ServicePrincipal", role_definition_id=roles["operations"].id)
        return registration, principal

    def state_backend(name: str, principal, stack: str | None) -> None:
        """The Blob state backend: a stack's deploy app reads and writes its own stack's blobs only; the read-only
        apps read every state and write only the cloud's stacks' locks (a preview or refresh takes one)."""
        if config.state_storage_account_id:
            if stack:
                condition = permissions.azure_blob_path_condition(
                    ("read", "write", "add/action", "delete"), [*backend.stack_prefixes(stack), backend.META])
            else:
                condition = permissions.azure_blob_path_condition(
                    ("write", "add/action", "delete"), [backend.lock_prefix(each) for each in github.environments])
            authorization.RoleAssignment(
                f"{name}-state", scope=config.state_storage_account_id, principal_id=principal.object_id,
                principal_type="ServicePrincipal", role_definition_id=built_in(STORAGE_BLOB_DATA_CONTRIBUTOR),
                condition=condition, condition_version="2.0")
        if config.secrets_key_vault_id:
            authorization.RoleAssignment(
                f"{name}-secrets", scope=config.secrets_key_vault_id, principal_id=principal.object_id,
                principal_type="ServicePrincipal", role_definition_id=built_in(KEY_VAULT_CRYPTO_USER))

    variables: dict[str | None, dict[str, pulumi.Output]] = {None: {
        "AZURE_TENANT_ID": client.tenant_id, "AZURE_SUBSCRIPTION_ID": pulumi.Output.from_input(config.subscription_id)}}
    readers = {}
    for environment, name, credential in (
            (PREVIEW_ENVIRONMENT, "vllm-fleet-preview", {"pattern": github.preview_subject_pattern}),
            (DRIFT_ENVIRONMENT, "vllm-fleet-drift", {"subject": github.drift_subject})):
        registration, readers[name] = app(name, credential)
        for stack, group in groups.items():
            authorization.RoleAssignment(f"{name}-{stack}", scope=group.id, principal_id=readers[name].object_id,
                                         principal_type="ServicePrincipal", role_definition_id=roles["read"].id)
        state_backend(name, readers[name], None)
        variables[environment] = {f"AZURE_{name.split('-')[-1].upper()}_CLIENT_ID": registration.client_id}
    deployers = {stack: app(f"{stack}-deploy", {"subject": github.deploy_subject(stack)}) for stack in groups}
    ci_principals = pulumi.Output.all(*(principal.object_id for principal in readers.values()),
                                      *(principal.object_id for _, principal in deployers.values()))
    condition = ci_principals.apply(lambda ids: permissions.azure_assignment_condition(document, ids))
    for stack, (registration, principal) in deployers.items():
        scopes = {"rg": groups[stack].id}
        if stacks[stack].dns_zone:
            scopes["dns"] = pulumi.Output.from_input(stacks[stack].dns_zone)
        for kind, scope in scopes.items():
            authorization.RoleAssignment(
                f"{stack}-deploy-{kind}", scope=scope, principal_id=principal.object_id,
                principal_type="ServicePrincipal", role_definition_id=roles["deploy"].id, condition=condition,
                condition_version="2.0")
        state_backend(f"{stack}-deploy", principal, stack)
        variables[stack] = {"AZURE_DEPLOY_CLIENT_ID": registration.client_id}
    return variables
