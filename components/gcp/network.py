"""The network of a GCP stack: a VPC and subnetwork with Private Google Access (or the user's), Cloud NAT for the
VMs' outbound traffic, and the firewall rules that let only Google's load balancers reach vLLM."""

from __future__ import annotations

from pulumi_gcp import compute

from components.base import FleetComponent
from fleet import lifecycle, serving
from fleet.spec import FleetSpec

from .options import GcpOptions

# Where Google's load balancer proxies and health checkers connect from; the only sources allowed to vLLM.
LB_SOURCE_RANGES = ("130.211.0.0/22", "35.191.0.0/16")
IAP_SSH_RANGE = "35.235.240.0/20"


def subnetwork(fleet: FleetComponent, spec: FleetSpec, options: GcpOptions):
    if options.network:
        network, subnetwork = options.network, options.subnetwork
    else:
        vpc = compute.Network(fleet.child("vpc"), auto_create_subnetworks=False,
                              description=f"vllm-fleet {spec.stack}", opts=fleet.opts)
        network = vpc.self_link
        # Private Google Access: Secret Manager and Cloud Storage without going through the NAT.
        subnetwork = compute.Subnetwork(fleet.child("vms"), network=network, region=spec.region,
                                        ip_cidr_range=options.subnet_cidr, private_ip_google_access=True,
                                        opts=fleet.opts).self_link
    if options.cloud_nat:
        # The VMs have no public IP: Cloud NAT gives them the internet for apt, PyPI and Hugging Face.
        router = compute.Router(fleet.child("nat"), network=network, region=spec.region, opts=fleet.opts)
        compute.RouterNat(
            fleet.child("nat"), router=router.name, region=spec.region,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="LIST_OF_SUBNETWORKS",
            subnetworks=[compute.RouterNatSubnetworkArgs(name=subnetwork,
                                                         source_ip_ranges_to_nats=["ALL_IP_RANGES"])],
            # Weights downloads open many connections at once; 1024 ports a VM still fits 63 VMs an IP.
            min_ports_per_vm=1024,
            log_config=compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
            opts=fleet.opts)
    return network, subnetwork

def firewall(fleet: FleetComponent, spec: FleetSpec, options: GcpOptions, network, account):
    # Rules target the VMs' service account, which (unlike a network tag) only IAM can change. The deny rule
    # outranks the allow-all rules an existing network may carry (the default network allows SSH and RDP from
    # anywhere at priority 65534); the allow rules outrank the deny.
    targets = [account.email]
    compute.Firewall(fleet.child("vllm-from-lb"), network=network, direction="INGRESS", priority=900,
                     description=f"vllm-fleet {spec.stack}: vLLM and the VMs' health endpoint from Google's load "
                                 f"balancers and health checks only",
                     source_ranges=list(LB_SOURCE_RANGES), target_service_accounts=targets,
                     allows=[compute.FirewallAllowArgs(protocol="tcp", ports=[str(serving.SERVE_PORT),
                                                                              str(lifecycle.HEALTH_PORT)])],
                     opts=fleet.opts)
    if options.iap_ssh:
        compute.Firewall(fleet.child("ssh-from-iap"), network=network, direction="INGRESS", priority=900,
                         description=f"vllm-fleet {spec.stack}: SSH through Identity-Aware Proxy only",
                         source_ranges=[IAP_SSH_RANGE], target_service_accounts=targets,
                         allows=[compute.FirewallAllowArgs(protocol="tcp", ports=["22"])], opts=fleet.opts)
    compute.Firewall(fleet.child("deny-other-ingress"), network=network, direction="INGRESS", priority=1000,
                     description=f"vllm-fleet {spec.stack}: nothing else reaches the GPU VMs",
                     source_ranges=["0.0.0.0/0"], target_service_accounts=targets,
                     denies=[compute.FirewallDenyArgs(protocol="all")], opts=fleet.opts)
