"""The GCP-only config section (`vllm-fleet:gcp`) and the GCP view of cloud-neutral keys, validated."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Mapping

from fleet import catalog
from fleet.errors import ConfigError
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

OPTIONS = {
    "project": "the GCP project id to deploy into (required), e.g. my-project-123",
    "network": "an existing VPC network (name or self link) instead of a new one; needs subnetwork",
    "subnetwork": "an existing subnetwork of network in the stack's region, for the GPU VMs",
    "subnetCidr": "CIDR of a new subnetwork (default 10.90.0.0/20)",
    "cloudNat": "false when the network already has Cloud NAT for the subnetwork (default true)",
    "zones": "zones of the region for the VMs (default: every zone of the region that offers the GPU)",
    "iapSsh": "true to allow SSH from Identity-Aware Proxy (35.235.240.0/20) only (default false)",
    "image": "a boot image (self link, or projects/<p>/global/images/family/<f>) instead of Canonical's Ubuntu accelerator image",
}
_NAME = r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
_PROJECT = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
_SELF_LINK_PREFIX = r"^(https://www\.googleapis\.com/compute/v1/)?"
_NETWORK = re.compile(rf"^{_NAME}$|{_SELF_LINK_PREFIX}projects/[^/]+/global/networks/{_NAME}$")
_SUBNETWORK = re.compile(rf"^{_NAME}$|{_SELF_LINK_PREFIX}projects/[^/]+/regions/(?P<region>[a-z0-9-]+)/subnetworks/{_NAME}$")
_IMAGE = re.compile(rf"{_SELF_LINK_PREFIX}projects/[^/]+/global/images/(family/)?{_NAME}$")
_CERTIFICATE = re.compile(rf"{_SELF_LINK_PREFIX}projects/[^/]+/global/sslCertificates/{_NAME}$")
_DNS_ZONE = re.compile(rf"^{_NAME}$")
# https://cloud.google.com/resource-manager/docs/labels-overview#requirements: keys of 1-63 and values of 0-63
# characters: lowercase letters (international ones too), digits, _ and -; a key starts with a letter; each at most
# 128 bytes.
LABEL_MAX, LABEL_MAX_BYTES = 63, 128
# https://cloud.google.com/vpc/docs/subnets#valid-ranges: the IPv4 ranges a subnet may use (besides privately used
# public ranges, which the stack does not offer).
SUBNET_RANGES = tuple(ipaddress.IPv4Network(r) for r in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24",
    "192.88.99.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4"))
# https://cloud.google.com/secret-manager/quotas: a secret version's payload is at most 64 KiB.
SECRET_VALUE_MAX_BYTES = 65_536


@dataclass(frozen=True)
class GcpOptions:
    project: str
    network: str | None
    subnetwork: str | None
    subnet_cidr: str
    cloud_nat: bool
    zones: tuple[str, ...]
    iap_ssh: bool
    image: str | None
    labels: Mapping[str, str]


def label_value(text: str) -> str:
    """Text as a GCP label value: lowercase letters, digits, _ and -, at most 63."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def _label_letter(c: str) -> bool:
    return unicodedata.category(c) in ("Ll", "Lo")


def _label_text(text: str) -> bool:
    return (len(text) <= LABEL_MAX and len(text.encode()) <= LABEL_MAX_BYTES
            and all(_label_letter(c) or unicodedata.category(c).startswith("N") or c in "_-" for c in text))


def _labels(spec: FleetSpec) -> dict[str, str]:
    for key, value in spec.tags.items():
        if not (_label_text(key) and key and _label_letter(key[0]) and _label_text(value)):
            suggestion = f"{label_value(key).lstrip('0123456789_-') or 'tag'}: {label_value(value)}"
            raise ConfigError(f"tags.{key}", value,
                              f"on GCP tags become labels: a key starts with a lowercase letter, and keys and values "
                              f"hold only lowercase letters, digits, _ and - (international letters too; at most 63), "
                              f"e.g. {suggestion}")
    return {**spec.resource_tags, "vllm-fleet-stack": label_value(spec.stack)}


def _bool(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"gcp.{key}", value, "must be true or false")
    return value


def _zones(spec: FleetSpec, sizing: Sizing, requested: Any) -> tuple[str, ...]:
    # Sizing chose a machine type the region offers (catalog gpu_zones): these are its zones.
    gpu, machine = sizing.instance.gpu, sizing.instance.name
    offered = catalog.cloud("gcp").raw["gpu_zones"][gpu][spec.region]
    if requested is None:
        return tuple(offered)
    if not isinstance(requested, list) or not requested or not all(isinstance(zone, str) for zone in requested):
        raise ConfigError("gcp.zones", requested, f"must list zones of {spec.region}, e.g. [{offered[0]}]")
    for zone in requested:
        if zone not in offered:
            problem = (f"offers no {gpu} GPUs ({machine})" if zone.startswith(f"{spec.region}-")
                       else f"is not a zone of the stack's region, {spec.region}")
            raise ConfigError("gcp.zones", zone, f"{problem}; zones of {spec.region} with {gpu}: {', '.join(offered)}")
    if len(set(requested)) != len(requested):
        raise ConfigError("gcp.zones", requested, "lists a zone twice")
    return tuple(requested)


def parse_options(spec: FleetSpec, sizing: Sizing) -> GcpOptions:
    options = spec.cloud_section(OPTIONS, "a GCP option")
    spec.api_keys_fit(SECRET_VALUE_MAX_BYTES, "Secret Manager")
    project = options.get("project")
    if project is None:
        raise ConfigError("gcp.project", None,
                          "GCP stacks need the project to deploy into: pulumi config set --path "
                          "'vllm-fleet:gcp.project' <project id> (the gcp:project provider setting is not read)")
    if not isinstance(project, str) or not _PROJECT.match(project):
        raise ConfigError("gcp.project", project,
                          "must be a project id: 6-30 lowercase letters, digits and -, starting with a letter, "
                          "e.g. my-project-123 (the id, not the display name or the project number)")
    network, subnetwork = options.get("network"), options.get("subnetwork")
    if (network is None) != (subnetwork is None):
        raise ConfigError("gcp.network" if network is None else "gcp.subnetwork", None,
                          "an existing network needs both network and subnetwork (in the stack's region)")
    if network is not None:
        if not isinstance(network, str) or not _NETWORK.match(network):
            raise ConfigError("gcp.network", network, "must be a network name or projects/<p>/global/networks/<name>")
        match = _SUBNETWORK.match(subnetwork) if isinstance(subnetwork, str) else None
        if not match:
            raise ConfigError("gcp.subnetwork", subnetwork,
                              f"must be a subnetwork name or projects/<p>/regions/{spec.region}/subnetworks/<name>")
        if match.group("region") not in (None, spec.region):
            raise ConfigError("gcp.subnetwork", subnetwork, f"must be in the stack's region, {spec.region}")
        if "subnetCidr" in options:
            raise ConfigError("gcp.subnetCidr", options["subnetCidr"], "only applies to a new network (without network)")
    cidr = options.get("subnetCidr", "10.90.0.0/20")
    try:
        block = ipaddress.IPv4Network(str(cidr))  # the subnetwork the stack creates is IPv4-only
        if not (any(block.subnet_of(valid) for valid in SUBNET_RANGES) and 16 <= block.prefixlen <= 24):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError("gcp.subnetCidr", cidr, f"must be a private IPv4 network from /16 to /24 within GCP's "
                                                  f"valid subnet ranges ({', '.join(map(str, SUBNET_RANGES))}), e.g. "
                                                  f"10.90.0.0/20") from None
    image = options.get("image")
    if image is not None and not (isinstance(image, str) and _IMAGE.match(image)):
        raise ConfigError("gcp.image", image,
                          "must be projects/<project>/global/images/<name> or projects/<project>/global/images/family/<family>")

    if spec.on_demand_base:
        raise ConfigError("onDemandBase", spec.on_demand_base,
                          "a GCP managed instance group cannot mix Spot and standard VMs: set onDemandBase to 0 "
                          "(or spot: false for standard VMs only)")
    if spec.certificate is not None and not _CERTIFICATE.match(spec.certificate):
        raise ConfigError("certificate", spec.certificate,
                          "on GCP must be an existing global SSL certificate, projects/<project>/global/sslCertificates/"
                          "<name>; leave it unset for a Google-managed certificate for domain")
    if spec.dns_zone is not None and not _DNS_ZONE.match(spec.dns_zone):
        raise ConfigError("dnsZone", spec.dns_zone, "on GCP must be the name of a Cloud DNS managed zone, e.g. example-com")

    return GcpOptions(
        project=project, network=network, subnetwork=subnetwork, subnet_cidr=str(cidr),
        cloud_nat=_bool(options, "cloudNat", True), zones=_zones(spec, sizing, options.get("zones")),
        iap_ssh=_bool(options, "iapSsh", False), image=image, labels=_labels(spec),
    )
