"""Azure: two app registrations with federated credentials for GitHub Actions of one repository, vllm-fleet-preview
(read-only, for pull requests and the drift check) and vllm-fleet-deploy (for the stacks' environments), each with
a custom role on the subscription holding the actions of permissions.yaml and, when the state lives in Blob
Storage with a Key Vault secrets provider, access to that account and vault. The deploy identity's role assignment
carries a condition: it may assign only the roles permissions.yaml lists under assignable_roles."""

from __future__ import annotations

import re
from typing import Any, Mapping

import pulumi
import pulumi_azuread as azuread
from pulumi_azure_native import authorization

from . import permissions
from .config import AzureConfig, DeployerConfigError
from .github import ISSUER, GitHub

AUDIENCE = "api://AzureADTokenExchange"  # what azure/login asks GitHub's token for
MAX_FEDERATED_CREDENTIALS = 20  # Entra ID's limit per app registration
# Built-in roles for the state backend (the same ids in every subscription).
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
KEY_VAULT_CRYPTO_USER = "12338af0-0e69-4776-bea7-57ae8d297424"


def credential_name(subject: str) -> str:
    """A federated credential's name: letters, digits and hyphens."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", subject.split(":", 2)[2]).strip("-")[:120]


def identities(config: AzureConfig, github: GitHub, document: Mapping[str, Any]) -> dict[str, pulumi.Output]:
    scope = f"/subscriptions/{config.subscription_id}"
    client = authorization.get_client_config_output()

    def built_in(role_id: str) -> str:
        return f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{role_id}"

    def app(mode: str, subjects: list[str], deploy: bool) -> azuread.Application:
        if len(subjects) > MAX_FEDERATED_CREDENTIALS:
            raise DeployerConfigError(f"{len(subjects)} GitHub environments for Azure, but an app registration "
                                      f"holds at most {MAX_FEDERATED_CREDENTIALS} federated credentials: list "
                                      f"fewer in vllm-fleet-deployer:stacks, or run a second deployer stack")
        name = f"vllm-fleet-{mode}"
        registration = azuread.Application(name, display_name=f"{name} ({github.repository})")
        principal = azuread.ServicePrincipal(name, client_id=registration.client_id)
        for subject in subjects:
            azuread.ApplicationFederatedIdentityCredential(
                f"{name}-{credential_name(subject)}", application_id=registration.id,
                display_name=credential_name(subject), issuer=ISSUER, audiences=[AUDIENCE], subject=subject)
        role = authorization.RoleDefinition(
            name, role_name=f"{name} ({github.repository})", scope=scope, assignable_scopes=[scope],
            description="permissions.yaml of vllm-fleet's deployer",
            permissions=[authorization.PermissionArgs(
                actions=permissions.permissions(document, "azure", deploy=deploy))])
        condition = permissions.azure_assignment_condition(document) if deploy else None
        authorization.RoleAssignment(
            name, scope=scope, principal_id=principal.object_id, principal_type="ServicePrincipal",
            role_definition_id=role.id, condition=condition, condition_version="2.0" if condition else None)
        if config.state_storage_account_id:
            authorization.RoleAssignment(
                f"{name}-state", scope=config.state_storage_account_id, principal_id=principal.object_id,
                principal_type="ServicePrincipal",
                role_definition_id=built_in(STORAGE_BLOB_DATA_CONTRIBUTOR if deploy else STORAGE_BLOB_DATA_READER))
        if config.secrets_key_vault_id:
            authorization.RoleAssignment(
                f"{name}-secrets", scope=config.secrets_key_vault_id, principal_id=principal.object_id,
                principal_type="ServicePrincipal", role_definition_id=built_in(KEY_VAULT_CRYPTO_USER))
        return registration

    preview = app("preview", github.preview_subjects, deploy=False)
    deploy = app("deploy", github.deploy_subjects, deploy=True)
    return {"AZURE_TENANT_ID": client.tenant_id, "AZURE_SUBSCRIPTION_ID": pulumi.Output.from_input(config.subscription_id),
            "AZURE_PREVIEW_CLIENT_ID": preview.client_id, "AZURE_DEPLOY_CLIENT_ID": deploy.client_id}
