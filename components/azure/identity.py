"""What an Azure stack's VMs are allowed: a Key Vault of the stack's own holding its secrets, the VMs' managed
identity with read on exactly those, and read on the model's blob container."""

from __future__ import annotations

import re
from typing import Mapping

import pulumi
from pulumi_azure_native import authorization, keyvault

from components.base import FleetComponent
from fleet.spec import FleetSpec

from .options import AzureOptions

# Built-in role definition ids (the same in every subscription).
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"


def store_secrets(fleet: FleetComponent, spec: FleetSpec, secrets: Mapping[str, pulumi.Output[str]], group, tenant_id, identity):
    """A vault of this stack's own (RBAC mode) holding its secrets; the VMs' identity may read exactly those.
    Returns (each secret's URI at its current version, which the VMs read; the role assignments)."""
    # Vault names are global, 3-24 characters: Pulumi appends a random suffix to this (8 characters), which
    # also keeps a re-created stack clear of the soft-deleted vault of the old one.
    vault_prefix = "kv-" + re.sub(r"-+", "-", spec.name)[:12].strip("-")
    vault = keyvault.Vault(
        vault_prefix, resource_group_name=group, location=spec.region, tags=fleet.tags,
        properties=keyvault.VaultPropertiesArgs(
            tenant_id=tenant_id, sku=keyvault.SkuArgs(family="A", name="standard"),
            enable_rbac_authorization=True, soft_delete_retention_in_days=7),
        opts=fleet.opts)
    uris, grants = {}, []
    for key, value in secrets.items():
        secret = keyvault.Secret(fleet.child(key), resource_group_name=group, vault_name=vault.name,
                                 secret_name=key, properties=keyvault.SecretPropertiesArgs(value=pulumi.Output.secret(value)),
                                 tags=fleet.tags, opts=fleet.opts)
        grants.append(authorization.RoleAssignment(
            fleet.child(f"read-{key}"), scope=secret.id, principal_id=identity.principal_id,
            principal_type="ServicePrincipal", role_definition_id=fleet.role_id(KEY_VAULT_SECRETS_USER),
            description=f"vllm-fleet {spec.stack}: the VMs read {key}", opts=fleet.opts))
        # The current version: a new value is a new version, a new custom data and so new VMs (a rolling upgrade).
        uris[key] = secret.properties.secret_uri_with_version
    return uris, grants

def grant_model_read(fleet: FleetComponent, spec: FleetSpec, options: AzureOptions, identity):
    container = spec.model[len("az://"):].split("/")[1]
    return authorization.RoleAssignment(
        fleet.child("read-model"),
        scope=f"{options.model_storage_account_id}/blobServices/default/containers/{container}",
        principal_id=identity.principal_id, principal_type="ServicePrincipal",
        role_definition_id=fleet.role_id(STORAGE_BLOB_DATA_READER),
        description=f"vllm-fleet {spec.stack}: the VMs read the model", opts=fleet.opts)
