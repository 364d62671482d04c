"""The network of an AWS stack: a VPC with public subnets (load balancer) and private ones (GPU instances) behind
one NAT gateway, or the user's existing one; and the two security groups."""

from __future__ import annotations

import ipaddress

import pulumi_aws
from pulumi_aws import ec2, vpc

from components.base import FleetComponent
from fleet import serving
from fleet.spec import FleetSpec

from .options import AwsOptions


def subnets(fleet: FleetComponent, spec: FleetSpec, options: AwsOptions):
    if options.vpc_id:
        return options.vpc_id, list(options.public_subnet_ids), list(options.private_subnet_ids)
    zones = pulumi_aws.get_availability_zones_output(
        state="available", filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
        opts=fleet.invoke_opts).names
    network = ipaddress.ip_network(options.vpc_cidr)
    # /20s out of the VPC: public ones first, then private ones (large: one IP per VM, ENIs, LB nodes).
    blocks = list(network.subnets(new_prefix=min(network.prefixlen + 4, 24)))
    the_vpc = ec2.Vpc(fleet.child("vpc"), cidr_block=options.vpc_cidr, enable_dns_hostnames=True,
                      enable_dns_support=True, tags={"Name": fleet.child("vpc")}, opts=fleet.opts)
    gateway = ec2.InternetGateway(fleet.child("igw"), vpc_id=the_vpc.id, opts=fleet.opts)
    public_routes = ec2.RouteTable(fleet.child("public"), vpc_id=the_vpc.id, routes=[
        ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)], opts=fleet.opts)
    public, private = [], []
    for index in range(options.az_count):
        zone = zones.apply(lambda names, i=index: names[i % len(names)])
        subnet = ec2.Subnet(fleet.child(f"public-{index}"), vpc_id=the_vpc.id, availability_zone=zone,
                            cidr_block=str(blocks[index]), map_public_ip_on_launch=False,
                            tags={"Name": fleet.child(f"public-{index}")}, opts=fleet.opts)
        ec2.RouteTableAssociation(fleet.child(f"public-{index}"), subnet_id=subnet.id,
                                  route_table_id=public_routes.id, opts=fleet.opts)
        public.append(subnet)
    # One NAT gateway: the instances only need it for installs and downloads at boot.
    nat_ip = ec2.Eip(fleet.child("nat"), domain="vpc", opts=fleet.opts)
    nat = ec2.NatGateway(fleet.child("nat"), subnet_id=public[0].id, allocation_id=nat_ip.id,
                         opts=fleet.child_opts(depends_on=[gateway]))
    private_routes = ec2.RouteTable(fleet.child("private"), vpc_id=the_vpc.id, routes=[
        ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)], opts=fleet.opts)
    for index in range(options.az_count):
        zone = zones.apply(lambda names, i=index: names[i % len(names)])
        subnet = ec2.Subnet(fleet.child(f"private-{index}"), vpc_id=the_vpc.id, availability_zone=zone,
                            cidr_block=str(blocks[options.az_count + index]), map_public_ip_on_launch=False,
                            tags={"Name": fleet.child(f"private-{index}")}, opts=fleet.opts)
        ec2.RouteTableAssociation(fleet.child(f"private-{index}"), subnet_id=subnet.id,
                                  route_table_id=private_routes.id, opts=fleet.opts)
        private.append(subnet)
    return the_vpc.id, [s.id for s in public], [s.id for s in private]

def security_groups(fleet: FleetComponent, spec: FleetSpec, vpc_id):
    lb_sg = ec2.SecurityGroup(fleet.child("lb"), vpc_id=vpc_id,
                              description=f"vllm-fleet {spec.stack}: load balancer, from allowedCidrs",
                              opts=fleet.opts)
    instance_sg = ec2.SecurityGroup(fleet.child("instances"), vpc_id=vpc_id,
                                    description=f"vllm-fleet {spec.stack}: vLLM on {serving.SERVE_PORT} from the load balancer only; no SSH (use SSM)",
                                    opts=fleet.opts)
    port = 443 if spec.certificate or spec.dns_zone else 80
    for index, cidr in enumerate(spec.allowed_cidrs):
        vpc.SecurityGroupIngressRule(fleet.child(f"lb-in-{index}"), security_group_id=lb_sg.id,
                                     cidr_ipv4=cidr, ip_protocol="tcp", from_port=port, to_port=port,
                                     description=f"clients on {port}", opts=fleet.opts)
    vpc.SecurityGroupEgressRule(fleet.child("lb-to-instances"), security_group_id=lb_sg.id,
                                referenced_security_group_id=instance_sg.id, ip_protocol="tcp",
                                from_port=serving.SERVE_PORT, to_port=serving.SERVE_PORT,
                                description="to vLLM and its health check", opts=fleet.opts)
    vpc.SecurityGroupIngressRule(fleet.child("instances-from-lb"), security_group_id=instance_sg.id,
                                 referenced_security_group_id=lb_sg.id, ip_protocol="tcp",
                                 from_port=serving.SERVE_PORT, to_port=serving.SERVE_PORT,
                                 description="vLLM from the load balancer", opts=fleet.opts)
    # Outbound HTTPS for the driver/vLLM install, the weights, Secrets Manager and SSM; DNS goes to the
    # VPC resolver, which security groups do not filter.
    vpc.SecurityGroupEgressRule(fleet.child("instances-https-out"), security_group_id=instance_sg.id,
                                cidr_ipv4="0.0.0.0/0", ip_protocol="tcp", from_port=443, to_port=443,
                                description="HTTPS: packages, weights, AWS APIs", opts=fleet.opts)
    vpc.SecurityGroupEgressRule(fleet.child("instances-http-out"), security_group_id=instance_sg.id,
                                cidr_ipv4="0.0.0.0/0", ip_protocol="tcp", from_port=80, to_port=80,
                                description="HTTP: Ubuntu apt mirrors", opts=fleet.opts)
    return lb_sg, instance_sg

