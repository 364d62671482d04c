"""Azure: GPU VMs in a Virtual Machine Scale Set behind an Application Gateway v2.

Only Azure specifics live here; the spec, sizing, vLLM arguments and user-data come from fleet/.

Front door: Application Gateway v2 rather than a Standard Load Balancer. A Standard LB is layer 4: it cannot terminate
TLS, so every VM would need the certificate and vLLM would serve TLS itself, and allowedCidrs would have to be
enforced on the VMs' subnet, mixed with the platform's rules. The gateway terminates TLS with a certificate it reads
from Key Vault, probes /health over HTTP, drains connections, keeps a request open for 20 minutes, passes streamed
tokens through unbuffered, and sits in its own subnet whose NSG admits only allowedCidrs. It costs ~$0.25/hour plus
capacity units, small next to one GPU VM.

Scale set: Uniform orchestration. Rolling upgrades (with MaxSurge), automatic instance repairs, the Application
Health extension and Application Gateway backend pools are all generally available there; Flexible orchestration
has rolling upgrades only in preview. Flexible's one advantage here, mixing spot and regular VMs in one set, is what
onDemandBase would need: Azure stacks reject onDemandBase instead.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import pulumi
import pulumi_random
from pulumi_azure_native import authorization, compute, dns, keyvault, managedidentity, monitor, network, resources

from components.base import FleetComponent
from fleet import serving
from fleet.bootstrap import render_user_data
from fleet.errors import ConfigError
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

# microsoft-dsvm:ubuntu-hpc:2204: Ubuntu 22.04 with the NVIDIA driver, CUDA, NCCL and InfiniBand drivers installed,
# and cloud-init. Chosen over plain Ubuntu + the NvidiaGpuDriverLinux extension: the extension installs the driver
# while cloud-init already runs our setup (the two race on apt and on nvidia-smi), reboots the VM and adds ~10
# minutes to every new VM; the HPC image also brings the InfiniBand stack the ND sizes need.
DEFAULT_IMAGE = ("microsoft-dsvm", "ubuntu-hpc", "2204", "latest")
OS_DISK_GB = 128  # the HPC image's own ~64 GB plus the vLLM venv
HOST_CACHE_MAX_DISK_GB = 4096
ADMIN_USER = "vllmadmin"
# Built-in role definition ids (the same in every subscription).
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
# How long the gateway waits for a response; a streamed answer keeps it busy, a long non-streamed one does not.
GATEWAY_REQUEST_TIMEOUT_SECONDS = 1200
REFUSED_PATH = "/not-served-publicly"  # a path vLLM has no route for: 404
# Let in-flight generations finish before a VM leaves the backend pool (scale-in, rolling upgrade).
DRAIN_TIMEOUT_SECONDS = 300
GATEWAY_MAX_CAPACITY_UNITS = 10
TLS_POLICY = "AppGwSslPolicy20220101S"  # TLS 1.2+ with strong ciphers only
# Azure's limits on the automatic repairs grace period (ISO 8601 minutes).
REPAIR_GRACE_MIN_MINUTES, REPAIR_GRACE_MAX_MINUTES = 10, 90
HEALTH_PROBE_INTERVAL_SECONDS = 15
USER_DATA = ("azure-native:compute:VirtualMachineScaleSet", "virtualMachineProfile.osProfile.customData", "base64")

_OPTIONS = {
    "resourceGroupName": "an existing resource group to deploy into (default: a new one)",
    "virtualNetworkId": "an existing virtual network (resource id) to add this stack's two subnets to; needs "
                        "gatewaySubnetCidr and vmSubnetCidr",
    "gatewaySubnetCidr": "a free range of virtualNetworkId for the Application Gateway, /24 to /26",
    "vmSubnetCidr": "a free range of virtualNetworkId for the GPU VMs, /16 to /28",
    "vnetCidr": "address space of a new virtual network, /16 to /23 (default 10.90.0.0/16)",
    "image": "publisher:offer:sku:version of a Gen2 Ubuntu image with NVIDIA drivers and cloud-init "
             "(default microsoft-dsvm:ubuntu-hpc:2204:latest)",
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


def parse_options(spec: FleetSpec, sizing: Sizing) -> AzureOptions:
    options = dict(spec.cloud_options)
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"azure.{unknown[0]}", options[unknown[0]],
                          f"is not an Azure option; known: {', '.join(_OPTIONS)}")
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
    certificate_vault_id = _tls_options(spec, options)
    _dns_zone(spec)
    return AzureOptions(
        resource_group_name=group, virtual_network_id=vnet_id, gateway_subnet_cidr=gateway_cidr,
        vm_subnet_cidr=vm_cidr, vnet_cidr=vnet_cidr,
        image=tuple(image.split(":")) if image else DEFAULT_IMAGE,
        certificate_vault_id=certificate_vault_id, model_storage_account_id=_model_storage(spec, options))


def _iso_minutes(seconds: int) -> str:
    return f"PT{math.ceil(seconds / 60)}M"


class Fleet(FleetComponent):
    def __init__(self, name: str, spec: FleetSpec, sizing: Sizing, options: AzureOptions,
                 secrets: Mapping[str, pulumi.Output[str]]):
        super().__init__("azure", name)
        self._opts = pulumi.ResourceOptions(parent=self)
        self._tags = spec.resource_tags
        client = authorization.get_client_config_output(opts=pulumi.InvokeOptions(parent=self))
        self._subscription_id = client.subscription_id

        if options.resource_group_name:
            group = pulumi.Output.from_input(options.resource_group_name)
        else:
            group = resources.ResourceGroup(self._child("rg"), location=spec.region, tags=self._tags,
                                            opts=self._opts).name
        gateway_subnet, vm_subnet = self._network(spec, options, group)
        identity = managedidentity.UserAssignedIdentity(self._child("vms"), resource_group_name=group,
                                                        location=spec.region, tags=self._tags, opts=self._opts)
        secret_uris, grants = self._secrets(spec, secrets, group, client.tenant_id, identity)
        if options.model_storage_account_id:
            grants.append(self._grant_model_read(spec, options, identity))
        public_ip = network.PublicIPAddress(
            self._child("gateway"), resource_group_name=group, location=spec.region, tags=self._tags,
            sku=network.PublicIPAddressSkuArgs(name="Standard", tier="Regional"), public_ip_allocation_method="Static",
            dns_settings=network.PublicIPAddressDnsSettingsArgs(domain_name_label=f"vllm-{spec.name}",
                                                                domain_name_label_scope="ResourceGroupReuse"),
            opts=self._opts)
        gateway, backend_pool_id = self._gateway(spec, options, group, gateway_subnet, public_ip)
        scale_set = self._scale_set(spec, sizing, options, group, vm_subnet, identity, secret_uris,
                                    backend_pool_id, depends_on=[gateway, *grants])
        self._autoscale(spec, sizing, group, scale_set, gateway)

        if spec.domain:
            host = pulumi.Output.from_input(spec.domain)
            self._dns_record(spec, public_ip)
        else:
            host = public_ip.dns_settings.apply(lambda settings: settings.fqdn)
        self._serve_at("https" if spec.certificate else "http", host)

    def _role_id(self, role: str) -> pulumi.Output[str]:
        return pulumi.Output.concat("/subscriptions/", self._subscription_id,
                                    "/providers/Microsoft.Authorization/roleDefinitions/", role)

    # --- network -----------------------------------------------------------------------------------------
    def _network(self, spec: FleetSpec, options: AzureOptions, group):
        if options.virtual_network_id:
            match = _VNET_ID.match(options.virtual_network_id)
            vnet_group, vnet_name = pulumi.Output.from_input(match["group"]), pulumi.Output.from_input(match["name"])
        else:
            vnet = network.VirtualNetwork(
                self._child("vnet"), resource_group_name=group, location=spec.region, tags=self._tags,
                address_space=network.AddressSpaceArgs(address_prefixes=[options.vnet_cidr]), opts=self._opts)
            vnet_group, vnet_name = group, vnet.name
        gateway_nsg, vm_nsg = self._security_groups(spec, options, group)
        # Outbound for the VMs (packages, weights, Azure APIs): new subnets have no default outbound access.
        nat_ip = network.PublicIPAddress(
            self._child("nat"), resource_group_name=group, location=spec.region, tags=self._tags,
            sku=network.PublicIPAddressSkuArgs(name="Standard", tier="Regional"), public_ip_allocation_method="Static",
            opts=self._opts)
        nat = network.NatGateway(
            self._child("nat"), resource_group_name=group, location=spec.region, tags=self._tags,
            sku=network.NatGatewaySkuArgs(name="Standard"), idle_timeout_in_minutes=10,
            public_ip_addresses=[network.SubResourceArgs(id=nat_ip.id)], opts=self._opts)
        gateway_subnet = network.Subnet(
            self._child("gateway"), resource_group_name=vnet_group, virtual_network_name=vnet_name,
            address_prefix=options.gateway_subnet_cidr,
            network_security_group=network.NetworkSecurityGroupArgs(id=gateway_nsg.id), opts=self._opts)
        # One subnet at a time: Azure refuses concurrent changes to one virtual network.
        vm_subnet = network.Subnet(
            self._child("vms"), resource_group_name=vnet_group, virtual_network_name=vnet_name,
            address_prefix=options.vm_subnet_cidr, default_outbound_access=False,
            network_security_group=network.NetworkSecurityGroupArgs(id=vm_nsg.id),
            nat_gateway=network.SubResourceArgs(id=nat.id),
            opts=self._opts.merge(pulumi.ResourceOptions(depends_on=[gateway_subnet])))
        return gateway_subnet, vm_subnet

    def _security_groups(self, spec: FleetSpec, options: AzureOptions, group):
        listener_port = "443" if spec.certificate else "80"

        def allow(name, priority, source, ports, description):
            return network.SecurityRuleArgs(
                name=name, priority=priority, direction="Inbound", access="Allow", protocol="Tcp",
                source_address_prefixes=source if isinstance(source, list) else None,
                source_address_prefix=None if isinstance(source, list) else source,
                source_port_range="*", destination_address_prefix="*", destination_port_range=ports,
                description=description)

        gateway_nsg = network.NetworkSecurityGroup(
            self._child("gateway"), resource_group_name=group, location=spec.region, tags=self._tags,
            security_rules=[
                allow("clients", 100, list(spec.allowed_cidrs), listener_port, "allowedCidrs to the endpoint"),
                # Required by Application Gateway v2 for its control plane. The platform's probes pass by the default
                # AllowAzureLoadBalancerInBound rule; everything else from the internet meets DenyAllInBound.
                allow("gateway-manager", 110, "GatewayManager", "65200-65535", "Application Gateway v2 infrastructure"),
            ],
            opts=self._opts)
        port = str(serving.SERVE_PORT)
        vm_nsg = network.NetworkSecurityGroup(
            self._child("vms"), resource_group_name=group, location=spec.region, tags=self._tags,
            security_rules=[
                allow("gateway-to-vllm", 100, options.gateway_subnet_cidr, port, "vLLM from the Application Gateway"),
                allow("platform-probe", 110, "AzureLoadBalancer", port, "Azure's health probe to vLLM"),
                # Overrides the default AllowVnetInBound: no SSH or anything else, even from inside the network.
                network.SecurityRuleArgs(
                    name="deny-all-inbound", priority=4096, direction="Inbound", access="Deny", protocol="*",
                    source_address_prefix="*", source_port_range="*", destination_address_prefix="*",
                    destination_port_range="*", description="only the rules above reach the VMs"),
            ],
            opts=self._opts)
        return gateway_nsg, vm_nsg

    # --- identity and secrets ----------------------------------------------------------------------------
    def _secrets(self, spec: FleetSpec, secrets: Mapping[str, pulumi.Output[str]], group, tenant_id, identity):
        """A vault of this stack's own (RBAC mode) holding its secrets; the VMs' identity may read exactly those."""
        # Vault names are global, 3-24 characters: Pulumi appends a random suffix to this (8 characters), which
        # also keeps a re-created stack clear of the soft-deleted vault of the old one.
        vault_prefix = "kv-" + re.sub(r"-+", "-", spec.name)[:12].strip("-")
        vault = keyvault.Vault(
            vault_prefix, resource_group_name=group, location=spec.region, tags=self._tags,
            properties=keyvault.VaultPropertiesArgs(
                tenant_id=tenant_id, sku=keyvault.SkuArgs(family="A", name="standard"),
                enable_rbac_authorization=True, soft_delete_retention_in_days=7),
            opts=self._opts)
        uris, grants = {}, []
        for key, value in secrets.items():
            secret = keyvault.Secret(self._child(key), resource_group_name=group, vault_name=vault.name,
                                     secret_name=key, properties=keyvault.SecretPropertiesArgs(value=pulumi.Output.secret(value)),
                                     tags=self._tags, opts=self._opts)
            grants.append(authorization.RoleAssignment(
                self._child(f"read-{key}"), scope=secret.id, principal_id=identity.principal_id,
                principal_type="ServicePrincipal", role_definition_id=self._role_id(KEY_VAULT_SECRETS_USER),
                description=f"vllm-fleet {spec.stack}: the VMs read {key}", opts=self._opts))
            uris[key] = secret.properties.secret_uri  # versionless: a VM reads the current value at boot
        return uris, grants

    def _grant_model_read(self, spec: FleetSpec, options: AzureOptions, identity):
        container = spec.model[len("az://"):].split("/")[1]
        return authorization.RoleAssignment(
            self._child("read-model"),
            scope=f"{options.model_storage_account_id}/blobServices/default/containers/{container}",
            principal_id=identity.principal_id, principal_type="ServicePrincipal",
            role_definition_id=self._role_id(STORAGE_BLOB_DATA_READER),
            description=f"vllm-fleet {spec.stack}: the VMs read the model", opts=self._opts)

    # --- front door ----------------------------------------------------------------------------------------
    def _gateway(self, spec: FleetSpec, options: AzureOptions, group, subnet, public_ip):
        gateway_name = f"{spec.name}-gateway"
        prefix = pulumi.Output.concat("/subscriptions/", self._subscription_id, "/resourceGroups/", group,
                                      "/providers/Microsoft.Network/applicationGateways/", gateway_name)

        def part(kind: str, part_name: str):
            return network.SubResourceArgs(id=pulumi.Output.concat(prefix, f"/{kind}/{part_name}"))

        tls = spec.certificate is not None
        scheme = "https" if tls else "http"
        identity, depends_on, certificates = None, [], None
        if tls:
            # The gateway reads the certificate with an identity of its own, allowed that one secret only.
            gateway_identity = managedidentity.UserAssignedIdentity(
                self._child("gateway"), resource_group_name=group, location=spec.region, tags=self._tags,
                opts=self._opts)
            certificate_name = _SECRET_ID.match(spec.certificate)["name"]
            depends_on.append(authorization.RoleAssignment(
                self._child("read-certificate"),
                scope=f"{options.certificate_vault_id}/secrets/{certificate_name}",
                principal_id=gateway_identity.principal_id, principal_type="ServicePrincipal",
                role_definition_id=self._role_id(KEY_VAULT_SECRETS_USER),
                description=f"vllm-fleet {spec.stack}: the gateway reads its TLS certificate", opts=self._opts))
            identity = network.ManagedServiceIdentityArgs(type="UserAssigned",
                                                          user_assigned_identities=[gateway_identity.id])
            certificates = [network.ApplicationGatewaySslCertificateArgs(name="tls",
                                                                         key_vault_secret_id=spec.certificate)]
        else:
            self._warn_plain_http(spec, "Set domain and certificate (a Key Vault secret id) for HTTPS.")

        gateway = network.ApplicationGateway(
            self._child("gateway"), application_gateway_name=gateway_name, resource_group_name=group,
            location=spec.region, tags=self._tags, identity=identity,
            sku=network.ApplicationGatewaySkuArgs(name="Standard_v2", tier="Standard_v2"),
            autoscale_configuration=network.ApplicationGatewayAutoscaleConfigurationArgs(
                min_capacity=1, max_capacity=GATEWAY_MAX_CAPACITY_UNITS),
            enable_http2=True,
            # Tokens stream as server-sent events: pass each one on at once instead of buffering the response.
            global_configuration=network.ApplicationGatewayGlobalConfigurationArgs(
                enable_request_buffering=True, enable_response_buffering=False),
            gateway_ip_configurations=[network.ApplicationGatewayIPConfigurationArgs(
                name="gateway", subnet=network.SubResourceArgs(id=subnet.id))],
            frontend_ip_configurations=[network.ApplicationGatewayFrontendIPConfigurationArgs(
                name="public", public_ip_address=network.SubResourceArgs(id=public_ip.id))],
            frontend_ports=[network.ApplicationGatewayFrontendPortArgs(name=scheme, port=443 if tls else 80)],
            ssl_certificates=certificates,
            ssl_policy=network.ApplicationGatewaySslPolicyArgs(policy_type="Predefined", policy_name=TLS_POLICY)
            if tls else None,
            http_listeners=[network.ApplicationGatewayHttpListenerArgs(
                name=scheme, protocol="Https" if tls else "Http",
                frontend_ip_configuration=part("frontendIPConfigurations", "public"),
                frontend_port=part("frontendPorts", scheme),
                ssl_certificate=part("sslCertificates", "tls") if tls else None)],
            backend_address_pools=[network.ApplicationGatewayBackendAddressPoolArgs(name="vllm")],
            probes=[network.ApplicationGatewayProbeArgs(
                name="vllm-health", protocol="Http", port=serving.SERVE_PORT, path=serving.HEALTH_PATH,
                interval=HEALTH_PROBE_INTERVAL_SECONDS, timeout=5, unhealthy_threshold=3,
                pick_host_name_from_backend_http_settings=True,
                match=network.ApplicationGatewayProbeHealthResponseMatchArgs(status_codes=["200"]))],
            backend_http_settings_collection=[network.ApplicationGatewayBackendHttpSettingsArgs(
                name="vllm", protocol="Http", port=serving.SERVE_PORT, cookie_based_affinity="Disabled",
                request_timeout=GATEWAY_REQUEST_TIMEOUT_SECONDS, pick_host_name_from_backend_address=True,
                probe=part("probes", "vllm-health"),
                connection_draining=network.ApplicationGatewayConnectionDrainingArgs(
                    enabled=True, drain_timeout_in_sec=DRAIN_TIMEOUT_SECONDS))],
            # vLLM serves /metrics without the API key: the gateway rewrites such paths to one vLLM answers
            # with 404, so they never reach vLLM from outside (a Standard_v2 gateway has no fixed responses).
            rewrite_rule_sets=[network.ApplicationGatewayRewriteRuleSetArgs(
                name="hide-internal", rewrite_rules=[network.ApplicationGatewayRewriteRuleArgs(
                    name="internal-paths", rule_sequence=100,
                    conditions=[network.ApplicationGatewayRewriteRuleConditionArgs(
                        variable="var_uri_path", ignore_case=True,
                        pattern="^(" + "|".join(re.escape(p) for p in serving.INTERNAL_PATH_PREFIXES) + ")")],
                    action_set=network.ApplicationGatewayRewriteRuleActionSetArgs(
                        url_configuration=network.ApplicationGatewayUrlConfigurationArgs(
                            modified_path=REFUSED_PATH, reroute=False)))])],
            request_routing_rules=[network.ApplicationGatewayRequestRoutingRuleArgs(
                name="vllm", rule_type="Basic", priority=100, http_listener=part("httpListeners", scheme),
                backend_address_pool=part("backendAddressPools", "vllm"),
                backend_http_settings=part("backendHttpSettingsCollection", "vllm"),
                rewrite_rule_set=part("rewriteRuleSets", "hide-internal"))],
            opts=self._opts.merge(pulumi.ResourceOptions(depends_on=depends_on)))
        return gateway, pulumi.Output.concat(prefix, "/backendAddressPools/vllm")

    def _dns_record(self, spec: FleetSpec, public_ip) -> None:
        if not spec.dns_zone:
            self._warn(f"{spec.stack}: point {spec.domain} (CNAME) at the gateway's DNS name to use the endpoint.")
            return
        match = _DNS_ZONE_ID.match(spec.dns_zone)
        zone = match["name"].lower()
        dns.RecordSet(self._child("endpoint"), resource_group_name=match["group"], zone_name=zone, record_type="A",
                      relative_record_set_name=spec.domain[: -len(zone) - 1] if spec.domain != zone else "@",
                      ttl=300, target_resource=dns.SubResourceArgs(id=public_ip.id), opts=self._opts)

    # --- instances ---------------------------------------------------------------------------------------
    def _scale_set(self, spec: FleetSpec, sizing: Sizing, options: AzureOptions, group, subnet, identity,
                   secret_uris, backend_pool_id, depends_on):
        user_data = pulumi.Output.all(identity.client_id, pulumi.Output.all(**secret_uris)).apply(
            lambda args: base64.b64encode(render_user_data(
                spec, sizing, args[1], {"identity_client_id": args[0]}).encode()).decode())
        # Azure requires a password or an SSH key for the admin user. Nobody logs in with it: the NSG admits no SSH,
        # the bootstrap turns sshd's password login off, and Run Command or the serial console are the way in.
        admin_password = pulumi_random.RandomPassword(self._child("admin"), length=40, min_lower=1, min_upper=1,
                                                      min_numeric=1, min_special=1, opts=self._opts)
        publisher, offer, sku, version = options.image
        grace = sizing.startup_grace_seconds
        repair_minutes = max(REPAIR_GRACE_MIN_MINUTES, math.ceil(grace / 60))
        if repair_minutes > REPAIR_GRACE_MAX_MINUTES:
            # A VM that is still loading weights when the grace period ends would be replaced, and its successor
            # too, forever: better no automatic repairs than a loop that never serves.
            self._warn(f"{spec.stack}: a new VM needs ~{repair_minutes} minutes to become healthy, more than the "
                       f"{REPAIR_GRACE_MAX_MINUTES} minutes Azure allows as automatic repairs grace period: automatic "
                       f"repairs are off (the gateway still routes around an unhealthy VM; reimage it by hand).")
        repairs = compute.AutomaticRepairsPolicyArgs(
            enabled=repair_minutes <= REPAIR_GRACE_MAX_MINUTES, repair_action="Replace",
            grace_period=f"PT{min(repair_minutes, REPAIR_GRACE_MAX_MINUTES)}M")
        health_extension = compute.VirtualMachineScaleSetExtensionArgs(
            name="health", publisher="Microsoft.ManagedServices", type="ApplicationHealthLinux",
            type_handler_version="1.0", auto_upgrade_minor_version=True,
            settings={"protocol": "http", "port": serving.SERVE_PORT, "requestPath": serving.HEALTH_PATH,
                      "intervalInSeconds": HEALTH_PROBE_INTERVAL_SECONDS, "numberOfProbes": 3})
        return compute.VirtualMachineScaleSet(
            self._child("gpu"), resource_group_name=group, location=spec.region, tags=self._tags,
            orchestration_mode="Uniform",
            sku=compute.SkuArgs(name=sizing.instance.name, tier="Standard", capacity=spec.replicas.desired),
            # No extra VMs at scale-out: GPU VMs are scarce and each would count against the family quota.
            overprovision=False,
            identity=compute.VirtualMachineScaleSetIdentityArgs(type="UserAssigned",
                                                               user_assigned_identities=[identity.id]),
            automatic_repairs_policy=repairs,
            # Upgrades launch new VMs first (MaxSurge) and remove an old one only once its successor is healthy:
            # serving capacity never drops.
            upgrade_policy=compute.UpgradePolicyArgs(
                mode="Rolling",
                rolling_upgrade_policy=compute.RollingUpgradePolicyArgs(
                    max_surge=True, max_batch_instance_percent=20, max_unhealthy_instance_percent=50,
                    max_unhealthy_upgraded_instance_percent=50, pause_time_between_batches="PT0S",
                    prioritize_unhealthy_instances=True, rollback_failed_instances_on_policy_breach=True)),
            virtual_machine_profile=compute.VirtualMachineScaleSetVMProfileArgs(
                priority="Spot" if spec.spot else "Regular",
                eviction_policy="Delete" if spec.spot else None,
                # Pay up to the on-demand price: a spot VM is then evicted for capacity only, never for price.
                billing_profile=compute.BillingProfileArgs(max_price=-1) if spec.spot else None,
                os_profile=compute.VirtualMachineScaleSetOSProfileArgs(
                    computer_name_prefix=spec.name[:9].strip("-") or "vllm", admin_username=ADMIN_USER,
                    admin_password=admin_password.result, custom_data=user_data,
                    linux_configuration=compute.LinuxConfigurationArgs(disable_password_authentication=False,
                                                                       provision_vm_agent=True)),
                # The NVIDIA kernel modules (the image's, or the bootstrap's cuda-drivers fallback) are not signed
                # for Secure Boot, which Trusted Launch, the default for new Gen2 VMs, would turn on.
                security_profile=compute.SecurityProfileArgs(security_type="Standard"),
                storage_profile=compute.VirtualMachineScaleSetStorageProfileArgs(
                    image_reference=compute.ImageReferenceArgs(publisher=publisher, offer=offer, sku=sku,
                                                               version=version),
                    os_disk=compute.VirtualMachineScaleSetOSDiskArgs(
                        create_option="FromImage", caching="ReadWrite", disk_size_gb=OS_DISK_GB,
                        delete_option="Delete",
                        managed_disk=compute.VirtualMachineScaleSetManagedDiskParametersArgs(
                            storage_account_type="Premium_LRS")),
                    # The weights cache, LUN 0 (cloud-init/clouds/azure.sh.j2 finds it by that). Read-mostly: the
                    # host's read cache, which Azure offers below 4 TiB only, speeds up reloading the weights.
                    data_disks=[compute.VirtualMachineScaleSetDataDiskArgs(
                        lun=0, create_option="Empty", disk_size_gb=sizing.data_disk_gb,
                        caching="ReadOnly" if sizing.data_disk_gb < HOST_CACHE_MAX_DISK_GB else "None",
                        delete_option="Delete",
                        managed_disk=compute.VirtualMachineScaleSetManagedDiskParametersArgs(
                            storage_account_type="Premium_LRS"))]),
                network_profile=compute.VirtualMachineScaleSetNetworkProfileArgs(
                    network_interface_configurations=[compute.VirtualMachineScaleSetNetworkConfigurationArgs(
                        name="nic", primary=True, enable_accelerated_networking=True,
                        ip_configurations=[compute.VirtualMachineScaleSetIPConfigurationArgs(
                            name="ipconfig", primary=True, subnet=compute.ApiEntityReferenceArgs(id=subnet.id),
                            application_gateway_backend_address_pools=[
                                compute.SubResourceArgs(id=backend_pool_id)])])]),
                # Reports /health to the scale set: rolling upgrades wait for it and automatic repairs act on it.
                extension_profile=compute.VirtualMachineScaleSetExtensionProfileArgs(extensions=[health_extension]),
            ),
            opts=self._opts.merge(pulumi.ResourceOptions(depends_on=depends_on)),
        )

    def _autoscale(self, spec: FleetSpec, sizing: Sizing, group, scale_set, gateway) -> None:
        """Always present: besides scaling on load it restores the minimum after spot evictions delete VMs."""
        replicas = spec.replicas
        rules = []
        if replicas.min != replicas.max:
            def rule(operator: str, threshold: float, window: str, direction: str, cooldown: str):
                return monitor.ScaleRuleArgs(
                    metric_trigger=monitor.MetricTriggerArgs(
                        metric_name="AvgRequestCountPerHealthyHost", metric_namespace="Microsoft.Network/applicationGateways",
                        metric_resource_uri=gateway.id, operator=operator, statistic="Average", threshold=threshold,
                        time_aggregation="Average", time_grain="PT1M", time_window=window),
                    scale_action=monitor.ScaleActionArgs(direction=direction, type="ChangeCount", value="1",
                                                         cooldown=cooldown))

            target = replicas.target_requests_per_minute
            rules = [
                # Wait out a new VM's startup before judging the load again.
                rule("GreaterThan", target, "PT5M", "Increase", _iso_minutes(sizing.startup_grace_seconds)),
                rule("LessThan", target / 2, "PT15M", "Decrease", "PT15M"),
            ]
        monitor.AutoscaleSetting(
            self._child("replicas"), resource_group_name=group, location=spec.region, tags=self._tags,
            target_resource_uri=scale_set.id, enabled=True,
            profiles=[monitor.AutoscaleProfileArgs(
                name="replicas", rules=rules,
                capacity=monitor.ScaleCapacityArgs(minimum=str(replicas.min), default=str(replicas.desired),
                                                   maximum=str(replicas.max)))],
            opts=self._opts)


# --- offline plan: what Azure would answer ---------------------------------------------------------------
OFFLINE_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


def offline_invoke(token: str, args: Mapping[str, Any]) -> dict[str, Any]:
    if token == "azure-native:authorization:getClientConfig":
        return {"subscriptionId": OFFLINE_SUBSCRIPTION, "tenantId": "11111111-1111-1111-1111-111111111111",
                "clientId": "22222222-2222-2222-2222-222222222222", "objectId": "33333333-3333-3333-3333-333333333333"}
    raise NotImplementedError(f"the offline plan has no answer for {token}")


def offline_state(type_: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {"name": name}
    identity = inputs.get("identity")
    if identity:  # given as a list of identity ids, read back as a map of id -> the identity's details
        state["identity"] = {**identity, "userAssignedIdentities": {
            identity_id: {} for identity_id in identity.get("userAssignedIdentities", [])}}
    if type_ == "azure-native:managedidentity:UserAssignedIdentity":
        state.update(principalId=f"{name}-principal", clientId=f"{name}-client-id")
    if type_ == "azure-native:keyvault:Secret":
        state["properties"] = {"secretUri": f"https://{inputs['vaultName']}.vault.azure.net/secrets/{inputs['secretName']}"}
    if type_ == "azure-native:network:PublicIPAddress":
        label = (inputs.get("dnsSettings") or {}).get("domainNameLabel")
        state.update(ipAddress="198.51.100.7")
        if label:
            state["dnsSettings"] = {"domainNameLabel": label,
                                    "fqdn": f"{label}-a1b2c3d4e5.{inputs['location']}.cloudapp.azure.com"}
    return state
