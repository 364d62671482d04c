"""The network of an Azure stack: a virtual network (or the user's) with the gateway's and the VMs' subnets, their
network security groups, and a NAT gateway for the VMs' outbound traffic."""

from __future__ import annotations

import pulumi
from pulumi_azure_native import network

from components.base import FleetComponent
from fleet import serving
from fleet.spec import FleetSpec

from .options import _VNET_ID, AzureOptions


def subnets(fleet: FleetComponent, spec: FleetSpec, options: AzureOptions, group):
    if options.virtual_network_id:
        match = _VNET_ID.match(options.virtual_network_id)
        vnet_group, vnet_name = pulumi.Output.from_input(match["group"]), pulumi.Output.from_input(match["name"])
    else:
        vnet = network.VirtualNetwork(
            fleet.child("vnet"), resource_group_name=group, location=spec.region, tags=fleet.tags,
            address_space=network.AddressSpaceArgs(address_prefixes=[options.vnet_cidr]), opts=fleet.opts)
        vnet_group, vnet_name = group, vnet.name
    gateway_nsg, vm_nsg = security_groups(fleet, spec, options, group)
    # Outbound for the VMs (packages, weights, Azure APIs): new subnets have no default outbound access.
    nat_ip = network.PublicIPAddress(
        fleet.child("nat"), resource_group_name=group, location=spec.region, tags=fleet.tags,
        sku=network.PublicIPAddressSkuArgs(name="Standard", tier="Regional"), public_ip_allocation_method="Static",
        opts=fleet.opts)
    nat = network.NatGateway(
        fleet.child("nat"), resource_group_name=group, location=spec.region, tags=fleet.tags,
        sku=network.NatGatewaySkuArgs(name="Standard"), idle_timeout_in_minutes=10,
        public_ip_addresses=[network.SubResourceArgs(id=nat_ip.id)], opts=fleet.opts)
    gateway_subnet = network.Subnet(
        fleet.child("gateway"), resource_group_name=vnet_group, virtual_network_name=vnet_name,
        address_prefix=options.gateway_subnet_cidr,
        network_security_group=network.NetworkSecurityGroupArgs(id=gateway_nsg.id), opts=fleet.opts)
    # One subnet at a time: Azure refuses concurrent changes to one virtual network.
    vm_subnet = network.Subnet(
        fleet.child("vms"), resource_group_name=vnet_group, virtual_network_name=vnet_name,
        address_prefix=options.vm_subnet_cidr, default_outbound_access=False,
        network_security_group=network.NetworkSecurityGroupArgs(id=vm_nsg.id),
        nat_gateway=network.SubResourceArgs(id=nat.id),
        opts=fleet.child_opts(depends_on=[gateway_subnet]))
    return gateway_subnet, vm_subnet

def security_groups(fleet: FleetComponent, spec: FleetSpec, options: AzureOptions, group):
    listener_port = "443" if spec.certificate else "80"

    def allow(name, priority, source, ports, description):
        return network.SecurityRuleArgs(
            name=name, priority=priority, direction="Inbound", access="Allow", protocol="Tcp",
            source_address_prefixes=source if isinstance(source, list) else None,
            source_address_prefix=None if isinstance(source, list) else source,
            source_port_range="*", destination_address_prefix="*", destination_port_range=ports,
            description=description)

    gateway_nsg = network.NetworkSecurityGroup(
        fleet.child("gateway"), resource_group_name=group, location=spec.region, tags=fleet.tags,
        security_rules=[
            allow("clients", 100, list(spec.allowed_cidrs), listener_port, "allowedCidrs to the endpoint"),
            # Required by Application Gateway v2 for its control plane. The platform's probes pass by the default
            # AllowAzureLoadBalancerInBound rule; everything else from the internet meets DenyAllInBound.
            allow("gateway-manager", 110, "GatewayManager", "65200-65535", "Application Gateway v2 infrastructure"),
        ],
        opts=fleet.opts)
    port = str(serving.SERVE_PORT)
    vm_nsg = network.NetworkSecurityGroup(
        fleet.child("vms"), resource_group_name=group, location=spec.region, tags=fleet.tags,
        security_rules=[
            allow("gateway-to-vllm", 100, options.gateway_subnet_cidr, port, "vLLM from the Application Gateway"),
            allow("platform-probe", 110, "AzureLoadBalancer", port, "Azure's health probe to vLLM"),
            # Overrides the default AllowVnetInBound: no SSH or anything else, even from inside the network.
            network.SecurityRuleArgs(
                name="deny-all-inbound", priority=4096, direction="Inbound", access="Deny", protocol="*",
                source_address_prefix="*", source_port_range="*", destination_address_prefix="*",
                destination_port_range="*", description="only the rules above reach the VMs"),
        ],
        opts=fleet.opts)
    return gateway_nsg, vm_nsg
