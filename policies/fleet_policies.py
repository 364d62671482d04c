"""vllm-fleet's security floor as CrossGuard policies. Importable without starting a policy server (the tests run
each policy's validate on the resources an offline plan records)."""

from __future__ import annotations

import base64
import gzip
import re
from typing import Any, Iterable

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

PROTECTED_PORTS = (22, 8000)  # SSH, and vLLM itself (only the load balancer may reach it)
INTERNET = {"0.0.0.0/0", "::/0", "*", "Internet", "any"}
# A value written into what a VM boots with: a secret variable assigned a literal (not a shell expansion such as
# $(fleet_fetch_secret ...)), vLLM's api-key option with a key, or a Hugging Face token.
SECRET_IN_TEXT = re.compile(r"^\s*(export\s+)?(VLLM_API_KEY|HF_TOKEN|HUGGING_FACE_HUB_TOKEN)=[^$\s]"
                            r"|api-key:\s*\[\s*\"[^\"\s]{8,}\"|--api-key[= ]+[^-\s]|hf_[A-Za-z0-9]{30,}", re.M)


def _port_ranges(spec: Any) -> Iterable[tuple[int, int]]:
    for item in spec if isinstance(spec, list) else [spec]:
        text = str(item)
        if text in ("*", "all", "-1"):
            yield 0, 65535
        elif "-" in text:
            lo, hi = text.split("-", 1)
            yield int(lo), int(hi)
        elif text.isdigit():
            yield int(text), int(text)


def _opens_protected_port(ranges: Iterable[tuple[int, int]]) -> list[int]:
    return [port for port in PROTECTED_PORTS for lo, hi in ranges if lo <= port <= hi]


def _ingress_rules(kind: str, props: dict) -> list[tuple[set, list[tuple[int, int]]]]:
    """Each inbound allow rule of a resource as (sources, port ranges), whatever the cloud."""
    if kind == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        everything = props.get("ipProtocol") == "-1"
        return [({props.get("cidrIpv4"), props.get("cidrIpv6")},
                 [(0, 65535)] if everything else [(props.get("fromPort", 0), props.get("toPort", 65535))])]
    if kind == "aws:ec2/securityGroup:SecurityGroup":
        return [(set(r.get("cidrBlocks") or []) | set(r.get("ipv6CidrBlocks") or []),
                 [(r.get("fromPort", 0), r.get("toPort", 65535))]) for r in props.get("ingress") or []]
    if kind == "gcp:compute/firewall:Firewall" and props.get("direction", "INGRESS") == "INGRESS":
        return [(set(props.get("sourceRanges") or []),
                 [rng for allow in props.get("allows") or [] for rng in _port_ranges(allow.get("ports") or ["*"])])]
    if kind in ("azure-native:network:NetworkSecurityGroup", "azure-native:network:SecurityRule"):
        rules = props.get("securityRules") or [] if kind.endswith("NetworkSecurityGroup") else [props]
        return [({r.get("sourceAddressPrefix")} | set(r.get("sourceAddressPrefixes") or []),
                 list(_port_ranges([r["destinationPortRange"]] if r.get("destinationPortRange")
                                   else r.get("destinationPortRanges") or [])))
                for r in rules if r.get("direction") == "Inbound" and r.get("access") == "Allow"]
    return []


def _internet_ingress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for sources, ranges in _ingress_rules(args.resource_type, args.props):
        if sources & INTERNET:
            for port in _opens_protected_port(ranges):
                report(f"{args.name} lets the internet reach port {port}; only the load balancer may reach vLLM "
                       f"and SSH stays closed (use SSM / IAP / Bastion)")


def _decoded(value: str) -> str:
    """User-data as the VM gets it: base64-decoded and gunzipped where it is."""
    try:
        data = base64.b64decode(value, validate=True)
    except ValueError:
        return value
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode(errors="replace")


def _user_data_texts(args: ResourceValidationArgs) -> Iterable[str]:
    props = args.props
    profile = props.get("virtualMachineProfile")
    os_profile = profile.get("osProfile") if isinstance(profile, dict) else None
    for key in ("userData", "customData"):
        value = props.get(key) or (os_profile.get(key) if isinstance(os_profile, dict) else None)
        if isinstance(value, str):
            yield _decoded(value)
    metadata = props.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user-data"), str):
        yield metadata["user-data"]


def _no_secret_in_user_data(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for text in _user_data_texts(args):
        if SECRET_IN_TEXT.search(text):
            report(f"{args.name}: a secret value is written into the VM's user-data; fetch it at boot from the "
                   f"secret store with the VM's identity instead")


def _imdsv2(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == "aws:ec2/launchTemplate:LaunchTemplate":
        if (args.props.get("metadataOptions") or {}).get("httpTokens") != "required":
            report(f"{args.name}: instance metadata must require IMDSv2 tokens (metadataOptions.httpTokens=required)")


def _encrypted_disks(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == "aws:ec2/launchTemplate:LaunchTemplate":
        for mapping in args.props.get("blockDeviceMappings") or []:
            if str((mapping.get("ebs") or {}).get("encrypted")).lower() != "true":
                report(f"{args.name}: volume {mapping.get('deviceName')} is not encrypted")


def _health_path(args: ResourceValidationArgs, report: ReportViolation) -> None:
    # A Lambda target group (wakeOnRequest's activator) has no vLLM behind it.
    if args.resource_type == "aws:lb/targetGroup:TargetGroup" and args.props.get("targetType") != "lambda":
        if (args.props.get("healthCheck") or {}).get("path") != "/health":
            report(f"{args.name}: the health check must probe vLLM's /health")


POLICIES = [
    ResourceValidationPolicy(name="no-internet-to-ssh-or-vllm", validate=_internet_ingress,
                             description="No ingress from the internet to SSH (22) or vLLM (8000).",
                             enforcement_level=EnforcementLevel.MANDATORY),
    ResourceValidationPolicy(name="no-secret-in-user-data", validate=_no_secret_in_user_data,
                             description="User-data/custom data/metadata carry no secret values.",
                             enforcement_level=EnforcementLevel.MANDATORY),
    ResourceValidationPolicy(name="imdsv2-required", validate=_imdsv2,
                             description="EC2 instances require IMDSv2.", enforcement_level=EnforcementLevel.MANDATORY),
    ResourceValidationPolicy(name="encrypted-disks", validate=_encrypted_disks,
                             description="Every EBS volume is encrypted.", enforcement_level=EnforcementLevel.MANDATORY),
    ResourceValidationPolicy(name="health-check-on-vllm-health", validate=_health_path,
                             description="Load balancer health checks probe /health.",
                             enforcement_level=EnforcementLevel.MANDATORY),
]
