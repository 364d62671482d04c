"""What Azure would answer the offline plan (cli/plan.py): its data sources and the computed outputs of its
resources, under Pulumi's mocks, as in the stack's region."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

OFFLINE_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


def offline_invoke(token: str, args: Mapping[str, Any], region: str) -> dict[str, Any]:
    if token == "azure-native:authorization:getClientConfig":
        return {"subscriptionId": OFFLINE_SUBSCRIPTION, "tenantId": "11111111-1111-1111-1111-111111111111",
                "clientId": "22222222-2222-2222-2222-222222222222", "objectId": "33333333-3333-3333-3333-333333333333"}
    raise NotImplementedError(f"the offline plan has no answer for {token}")


def offline_state(type_: str, name: str, inputs: Mapping[str, Any], region: str) -> dict[str, Any]:
    state: dict[str, Any] = {"name": name}
    identity = inputs.get("identity")
    if identity:  # given as a list of identity ids, read back as a map of id -> the identity's details
        state["identity"] = {**identity, "userAssignedIdentities": {
            identity_id: {} for identity_id in identity.get("userAssignedIdentities", [])}}
    if type_ == "azure-native:managedidentity:UserAssignedIdentity":
        state.update(principalId=f"{name}-principal", clientId=f"{name}-client-id")
    if type_ == "azure-native:keyvault:Secret":
        uri = f"https://{inputs['vaultName']}.vault.azure.net/secrets/{inputs['secretName']}"
        # Key Vault makes a new version (a 32-digit id) for each new value.
        version = hashlib.sha256(repr(inputs.get("properties")).encode()).hexdigest()[:32]
        state["properties"] = {"secretUri": uri, "secretUriWithVersion": f"{uri}/{version}"}
    if type_ == "azure-native:network:PublicIPAddress":
        label = (inputs.get("dnsSettings") or {}).get("domainNameLabel")
        state.update(ipAddress="198.51.100.7")
        if label:
            state["dnsSettings"] = {"domainNameLabel": label,
                                    "fqdn": f"{label}-a1b2c3d4e5.{region}.cloudapp.azure.com"}
    if type_ == "random:index/randomString:RandomString":
        state["result"] = hashlib.sha256(name.encode()).hexdigest()[: int(inputs["length"])]
    if type_ == "azure-native:storage:StorageAccount":
        state["name"] = inputs["accountName"]
        state["primaryEndpoints"] = {"web": f"https://{inputs['accountName']}.z13.web.core.windows.net/"}
    if type_ == "azure-native:storage:StorageAccountStaticWebsite":
        state["containerName"] = "$web"
    if type_ == "azure-native:storage:Blob":
        state["name"] = inputs["blobName"]
    return state
