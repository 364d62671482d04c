"""The Azure-only config section (`vllm-fleet:azure`) and the Azure view of cloud-neutral keys, validated."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Mapping

from fleet import catalog
from fleet.errors import ConfigError
from fleet.sizing import Sizing
from fleet.spec import FleetSpec
from .time_zones import API, windows_name

# microsoft-dsvm:ubuntu-hpc:2204: Ubuntu 22.04 with the NVIDIA driver, CUDA, NCCL and InfiniBand drivers installed,
# and cloud-init. Chosen over plain Ubuntu + the NvidiaGpuDriverLinux extension: the extension installs the driver
# while cloud-init already runs our setup (the two race on apt and on nvidia-smi), reboots the VM and adds ~10
# minutes to every new VM; the HPC image also brings the InfiniBand stack the ND sizes need.
_PINNED = catalog.cloud("azure").raw["image"]
DEFAULT_IMAGE = (_PINNED["publisher"], _PINNED["offer"], _PINNED["sku"], _PINNED["version"])

# https://learn.microsoft.com/azure/key-vault/secrets/about-secrets: a secret value is at most 25 KB (25k bytes).
SECRET_VALUE_MAX_BYTES = 25_000
# https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources: names of at most 512 characters
# (128 on storage accounts, which the stack creates), values of 256; these prefixes are Azure's.
TAG_NAME_MAX, TAG_VALUE_MAX = 128, 256
TAG_RESERVED_PREFIXES = ("microsoft", "azure", "windows")
OPTIONS = {
    "resourceGroupName": "an existing resource group to deploy into (default: vllm-fleet-<stack name>, which the deployer creates)",
    "virtualNetworkId": "an existing virtual network (resource id) to add this stack's two subnets to; needs "
                        "gatewaySubnetCidr and vmSubnetCidr",
    "gatewaySubnetCidr": "a free range of virtualNetworkId for the Application Gateway, /24 to /26",
    "vmSubnetCidr": "a free range of virtualNetworkId for the GPU VMs, /16 to /28",
    "vnetCidr": "address space of a new virtual network, /16 to /23 (default 10.90.0.0/16)",
    "image": "publisher:offer:sku:version of a Gen2 Ubuntu image with NVIDIA drivers and cloud-init "
             "(default: catalog/gpu-instances.yaml azure.image, microsoft-dsvm:ubuntu-hpc:2204 at a pinned version)",
    "certificateVaultId": "resource id of the Key Vault (RBAC mode) that holds certificate; the gateway's identity "
                          "is granted read on that one secret",
    "modelStorageAccountId": "resource id of the storage account of an az:// model; the VMs' identity is granted "
                             "read on its container",
}
_RESOURCE_ID = r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/(?P<group>[-\w.()]{1,90})/providers/"
_VNET_ID = re.compile(_RESOURCE_ID + r"Microsoft\.Network/virtualNetworks/(?P<name>[-\w.]{2,64})$", re.I)
_VAULT_ID = re.compile(_RESOURCE_ID + r"Microsoft\.KeyVault/vaults/(?P<name>[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9])$", re.I)
_STORAGE_ID = re.compile(_RESOURCE_ID + r"Microsoft\.Storage/storageAccounts/(?P<name>[a-z0-9]{3,24})$", re.I)
_DNS_ZONE_ID = re.compile(_RESOURCE_ID + r"Microsoft\.Network/dnszones/(?P<name>[a-z0-9.-]+)$", re.I)
_SECRET_ID = re.compile(r"^https://(?P<vault>[a-z][a-z0-9-]{1,22}[a-z0-9])\.vault\.azure\.net/secrets/"
                        r"(?P<name>[A-Za-z0-9-]{1,127})(/[0-9a-f]{32})?$", re.I)
_RESOURCE_GROUP = re.compile(r"^[-\w.()]{0,89}[-\w()]$")
_IMAGE = re.compile(r"^[A-Za-z0-9._-]+:[A-Za-z0-9._-]+:[A-Za-z0-9._-]+:[A-Za-z0-9._-]+$")
_CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class AzureOptions:
    resource_group_name: str | None
    virtual_network_id: str | None
    gateway_subnet_cidr: str
    vm_subnet_cidr: str
    vnet_cidr: str | None  # None: subnets go into virtual_network_id
    image: tuple[str, str, str, str]
    certificate_vault_id: str | None
    model_storage_account_id: str | None
    # officeHours.timezone as Windows names it (Azure autoscale takes no IANA names), on the autoscale API's list
    # (time_zones.py); None without it.
    windows_time_zone: str | None = None


def _cidr(key: str, value: Any, smallest: int, largest: int) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(str(value))
        if not smallest <= network.prefixlen <= largest:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"azure.{key}", value, f"must be an IPv4 network from /{smallest} to /{largest}, "
                                                 f"e.g. 10.90.0.0/{smallest}") from None
    return network


def _network_options(options: Mapping[str, Any]) -> tuple[str | None, str, str, str | None]:
    """(virtual network id, gateway subnet, VM subnet, new VNet address space)."""
    vnet_id = options.get("virtualNetworkId")
    if vnet_id is None:
        if "gatewaySubnetCidr" in options or "vmSubnetCidr" in options:
            raise ConfigError("azure.virtualNetworkId", None, "gatewaySubnetCidr and vmSubnetCidr are ranges of an "
                                                              "existing virtualNetworkId; a new network is laid out from vnetCidr")
        space = _cidr("vnetCidr", options.get("vnetCidr", "10.90.0.0/16"), 16, 23)
        # The gateway gets the first /24 (its recommended size), the VMs the upper half of the space.
        gateway = next(space.subnets(new_prefix=24))
        vms = list(space.subnets(prefixlen_diff=1))[1]
        return None, str(gateway), str(vms), str(space)
    if not isinstance(vnet_id, str) or not _VNET_ID.match(vnet_id):
        raise ConfigError("azure.virtualNetworkId", vnet_id, "must be a virtual network's resource id, /subscriptions/"
                                                             "<id>/resourceGroups/<group>/providers/Microsoft.Network/virtualNetworks/<name>")
    if "vnetCidr" in options:
        raise ConfigError("azure.vnetCidr", options["vnetCidr"], "is for a new network; with virtualNetworkId set "
                                                                 "gatewaySubnetCidr and vmSubnetCidr instead")
    for key in ("gatewaySubnetCidr", "vmSubnetCidr"):
        if key not in options:
            raise ConfigError(f"azure.{key}", None, "virtualNetworkId needs gatewaySubnetCidr and vmSubnetCidr: two "
                                                    "free ranges of it for this stack's subnets")
    gateway = _cidr("gatewaySubnetCidr", options["gatewaySubnetCidr"], 24, 26)
    vms = _cidr("vmSubnetCidr", options["vmSubnetCidr"], 16, 28)
    if gateway.overlaps(vms):
        raise ConfigError("azure.vmSubnetCidr", str(vms), f"overlaps gatewaySubnetCidr {gateway}: the Application "
                                                          f"Gateway needs a subnet of its own")
    return vnet_id, str(gateway), str(vms), None


def _tls_options(spec: FleetSpec, options: Mapping[str, Any]) -> str | None:
    """Validates certificate, domain and dnsZone as Azure reads them; returns certificateVaultId."""
    vault_id = options.get("certificateVaultId")
    if spec.certificate is None:
        if spec.domain:
            raise ConfigError("certificate", None,
                              f"HTTPS for {spec.domain} needs a certificate: on Azure the Key Vault secret id of its "
                              f"certificate (https://<vault>.vault.azure.net/secrets/<name>); Application Gateway "
                              f"cannot issue one")
        if vault_id is not None:
            raise ConfigError("azure.certificateVaultId", vault_id, "only applies with certificate")
        return None
    match = _SECRET_ID.match(spec.certificate)
    if not match:
        hint = (" (use the certificate's secret id, .../secrets/<name>: Application Gateway reads the certificate and "
                "its key from the secret)" if "/certificates/" in spec.certificate else "")
        raise ConfigError("certificate", spec.certificate,
                          f"on Azure must be a Key Vault secret id such as https://<vault>.vault.azure.net/secrets/"
                          f"<name>, without a version so that renewals are picked up{hint}")
    vault_match = _VAULT_ID.match(vault_id) if isinstance(vault_id, str) else None
    if not vault_match:
        raise ConfigError("azure.certificateVaultId", vault_id,
                          f"certificate needs the resource id of its Key Vault ({match['vault']}): /subscriptions/<id>/"
                          f"resourceGroups/<group>/providers/Microsoft.KeyVault/vaults/{match['vault']}, so that the "
                          f"stack can let the gateway read the certificate")
    if vault_match["name"].lower() != match["vault"].lower():
        raise ConfigError("azure.certificateVaultId", vault_id,
                          f"names vault {vault_match['name']}, but certificate is in vault {match['vault']}")
    return vault_id


def _subscription(resource_id: str) -> str:
    return resource_id.split("/")[2].lower()


def _vault_in_the_gateways_subscription(vault_id: str | None, vnet_id: str | None, dns_zone: str | None) -> None:
    """Application Gateway reads certificates from Key Vaults of its own subscription only ("Choosing a key vault
    under a different subscription than your Application Gateway will result in a failure", Microsoft's "TLS
    termination with Key Vault certificates"). The gateway is in the subscription the stack deploys to, which
    virtualNetworkId and dnsZone name where they are set (the stack creates its subnets and record there); without
    them it is the login's, which only `pulumi up` knows (docs/azure.md)."""
    if vault_id is None:
        return
    for key, other in (("azure.virtualNetworkId", vnet_id), ("dnsZone", dns_zone)):
        if other is not None and _subscription(other) != _subscription(vault_id):
            raise ConfigError("azure.certificateVaultId", vault_id,
                              f"is in subscription {_subscription(vault_id)}, but the gateway is in "
                              f"{_subscription(other)} (that of {key}): Application Gateway reads certificates from "
                              f"Key Vaults of its own subscription only; import the certificate into a vault of "
                              f"subscription {_subscription(other)}")


def _dns_zone(spec: FleetSpec) -> None:
    if spec.dns_zone is None:
        return
    match = _DNS_ZONE_ID.match(spec.dns_zone)
    if not match:
        raise ConfigError("dnsZone", spec.dns_zone, "on Azure must be an Azure DNS zone's resource id, /subscriptions/"
                                                    "<id>/resourceGroups/<group>/providers/Microsoft.Network/dnszones/<zone>")
    zone = match["name"].lower()
    if spec.domain != zone and not spec.domain.endswith("." + zone):
        raise ConfigError("dnsZone", spec.dns_zone, f"is the zone {zone}, which does not hold domain {spec.domain}")


def _model_storage(spec: FleetSpec, options: Mapping[str, Any]) -> str | None:
    account_id = options.get("modelStorageAccountId")
    if not spec.model_is_bucket:
        if account_id is not None:
            raise ConfigError("azure.modelStorageAccountId", account_id, "only applies to a model at an az:// URI")
        return None
    account, _, path = spec.model[len("az://"):].partition("/")
    container = path.split("/", 1)[0]
    if not re.match(r"^[a-z0-9]{3,24}$", account) or not _CONTAINER.match(container):
        raise ConfigError("model", spec.model, "an Azure blob URI is az://<storage account>/<container>/<path>: "
                                               "account 3-24 lower-case letters and digits, container 3-63")
    match = _STORAGE_ID.match(account_id) if isinstance(account_id, str) else None
    if not match or match["name"].lower() != account:
        raise ConfigError("azure.modelStorageAccountId", account_id,
                          f"a model in az://{account}/ needs the storage account's resource id, /subscriptions/<id>/"
                          f"resourceGroups/<group>/providers/Microsoft.Storage/storageAccounts/{account}, so that the "
                          f"VMs can be granted read on container {container}")
    return account_id


def _tags(spec: FleetSpec) -> None:
    names: dict[str, str] = {}
    for key, value in spec.tags.items():
        if re.search(r"[<>%&\\?/]", key):
            raise ConfigError(f"tags.{key}", value, "Azure tag names may not hold < > % & \\ ? /: use - or _ instead, "
                                                    f"e.g. {re.sub(r'[<>%&?/]', '-', key)}")
        if key.lower().startswith(TAG_RESERVED_PREFIXES):
            raise ConfigError(f"tags.{key}", value, f"Azure keeps tag names starting with "
                                                    f"{', '.join(TAG_RESERVED_PREFIXES)} for itself; choose another")
        if len(key) > TAG_NAME_MAX or len(value) > TAG_VALUE_MAX:
            raise ConfigError(f"tags.{key}", value, f"Azure tag names take at most {TAG_NAME_MAX} characters (the "
                                                    f"storage account's limit) and values {TAG_VALUE_MAX}")
        if key.lower() in names:
            raise ConfigError(f"tags.{key}", value, f"Azure tag names ignore case: {names[key.lower()]} is the same "
                                                    f"tag")
        names[key.lower()] = key


def parse_options(spec: FleetSpec, sizing: Sizing) -> AzureOptions:
    options = spec.cloud_section(OPTIONS, "an Azure option")
    group = options.get("resourceGroupName")
    if group is not None and not (isinstance(group, str) and _RESOURCE_GROUP.match(group)):
        raise ConfigError("azure.resourceGroupName", group, "must be a resource group name: 1-90 letters, digits and "
                                                            "- _ . ( ), not ending in a period")
    vnet_id, gateway_cidr, vm_cidr, vnet_cidr = _network_options(options)
    image = options.get("image")
    if image is not None and not (isinstance(image, str) and _IMAGE.match(image)):
        raise ConfigError("azure.image", image, "must be publisher:offer:sku:version, e.g. "
                                                "microsoft-dsvm:ubuntu-hpc:2204:latest")
    if spec.spot and spec.on_demand_base:
        raise ConfigError("onDemandBase", spec.on_demand_base,
                          "is not supported on Azure: a Uniform scale set runs all spot or all regular VMs; set 0, or "
                          "spot: false for regular VMs only")
    _tags(spec)
    spec.api_keys_fit(SECRET_VALUE_MAX_BYTES, "Key Vault")
    certificate_vault_id = _tls_options(spec, options)
    _dns_zone(spec)
    _vault_in_the_gateways_subscription(certificate_vault_id, vnet_id, spec.dns_zone)
    return AzureOptions(
        resource_group_name=group, virtual_network_id=vnet_id, gateway_subnet_cidr=gateway_cidr,
        vm_subnet_cidr=vm_cidr, vnet_cidr=vnet_cidr,
        image=tuple(image.split(":")) if image else DEFAULT_IMAGE,
        certificate_vault_id=certificate_vault_id, model_storage_account_id=_model_storage(spec, options),
        windows_time_zone=windows_name(spec.office_hours.timezone, API) if spec.office_hours else None)
