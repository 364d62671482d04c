"""The Azure Fleet component: wires the stack's resource group, network, identity, edge and scale set together."""

from __future__ import annotations

from typing import Mapping

import pulumi
from pulumi_azure_native import authorization, managedidentity, network as azure_network

from components.base import FleetComponent
from fleet import iam_names
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

from . import edge, fleet, identity, network
from .options import DEFAULT_IMAGE, AzureOptions


class Fleet(FleetComponent):
    def __init__(self, name: str, spec: FleetSpec, sizing: Sizing, options: AzureOptions,
                 secrets: Mapping[str, pulumi.Output[str]]):
        super().__init__("azure", name, spec, sizing)
        # azure-native has no default tags: every resource that takes tags is given these.
        self.tags = spec.resource_tags
        client = authorization.get_client_config_output(opts=self.invoke_opts)
        self.subscription_id = client.subscription_id

        # The stack's own resource group: where its CI deploy identity is allowed anything (deployer/).
        group = pulumi.Output.from_input(options.resource_group_name or iam_names.azure_resource_group(spec.stack))
        gateway_subnet, vm_subnet = network.subnets(self, spec, options, group)
        vm_identity = managedidentity.UserAssignedIdentity(self.child("vms"), resource_group_name=group,
                                                           location=spec.region, tags=self.tags, opts=self.opts)
        secret_uris, grants = identity.store_secrets(self, spec, secrets, group, client.tenant_id, vm_identity)
        if options.model_storage_account_id:
            grants.append(identity.grant_model_read(self, spec, options, vm_identity))
        public_ip = azure_network.PublicIPAddress(
            self.child("gateway"), resource_group_name=group, location=spec.region, tags=self.tags,
            sku=azure_network.PublicIPAddressSkuArgs(name="Standard", tier="Regional"),
            public_ip_allocation_method="Static",
            dns_settings=azure_network.PublicIPAddressDnsSettingsArgs(domain_name_label=f"vllm-{spec.name}",
                                                                      domain_name_label_scope="ResourceGroupReuse"),
            opts=self.opts)
        gateway, backend_pool_id = edge.gateway(self, spec, options, group, gateway_subnet, public_ip)
        scale_set = fleet.scale_set(self, spec, sizing, options, group, vm_subnet, vm_identity, secret_uris,
                                    backend_pool_id, depends_on=[gateway, *grants])
        self.standby_note = fleet.standby_note(spec)
        setting = fleet.autoscale(self, spec, sizing, options, group, scale_set, gateway)
        if spec.office_hours:
            self.wake_target = {"cloud": "azure", "resourceGroup": group, "autoscaleSetting": setting.name}

        self.image = ":".join(options.image) + ("" if options.image != DEFAULT_IMAGE else
                                                " (pinned; azure.image names another version)")
        if options.image[3] == "latest":
            self.warn(f"{spec.stack}: azure.image asks for the latest version: VMs created on different days boot "
                      f"different images; name a version (az vm image list ... --all) to move on purpose")
        if spec.domain:
            host = pulumi.Output.from_input(spec.domain)
            edge.dns_record(self, spec, public_ip)
        else:
            host = public_ip.dns_settings.apply(lambda settings: settings.fqdn)
        self.serve_at("https" if spec.certificate else "http", host)

    def update_surge(self, vms: int) -> int:
        return fleet.update_surge(vms)

    def role_id(self, role: str) -> pulumi.Output[str]:
        """A built-in role definition's id in this subscription."""
        return pulumi.Output.concat("/subscriptions/", self.subscription_id,
                                    "/providers/Microsoft.Authorization/roleDefinitions/", role)
