"""The AWS-only config section (`vllm-fleet:aws`) and the AWS view of cloud-neutral keys, validated."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from fleet import catalog
from fleet.errors import ConfigError
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

OPTIONS = {
    "vpcId": "an existing VPC (vpc-...) instead of a new one; needs publicSubnetIds and privateSubnetIds",
    "publicSubnetIds": "subnets of vpcId for the load balancer (at least two AZs)",
    "privateSubnetIds": "subnets of vpcId for the GPU instances, with a route to the internet (NAT)",
    "vpcCidr": "CIDR of a new VPC (default 10.80.0.0/16)",
    "azCount": "availability zones of a new VPC, 2 to the region's number of zones (default 3: more AZs, more GPU "
               "capacity)",
    "internal": "true for a load balancer reachable only inside the VPC (default false)",
    "amiName": "the exact name of a Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) release to boot, "
               "e.g. a newer one than the catalog's (default: catalog/gpu-instances.yaml aws.image)",
    "amiId": "an AMI of your own instead (Ubuntu 22.04 with the NVIDIA driver and cloud-init)",
}
# https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_limits.html: a SecretString's bytes.
SECRET_VALUE_MAX_BYTES = 65_536
# https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html: keys of 1-128 and values of 0-256 Unicode
# characters: letters, numbers, spaces and _ . : / = + - @; aws: (any case) is AWS's own prefix.
TAG_KEY_MAX, TAG_VALUE_MAX = 128, 256
TAG_PUNCTUATION = "_.:/=+-@"
# A security group holds at most 60 inbound rules (an adjustable quota; each CIDR is one rule):
# https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html
SECURITY_GROUP_INBOUND_RULES = 60


@dataclass(frozen=True)
class AwsOptions:
    vpc_id: str | None
    public_subnet_ids: tuple[str, ...]
    private_subnet_ids: tuple[str, ...]
    vpc_cidr: str
    az_count: int
    internal: bool
    ami_id: str | None
    ami_name: str  # the DLAMI release booted unless ami_id is set


def _ids(key: str, value: Any, prefix: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) < 2 or not all(
            isinstance(v, str) and re.match(rf"^{prefix}-[0-9a-f]{{8,17}}$", v) for v in value):
        raise ConfigError(f"aws.{key}", value, f"must list at least two {prefix}-... ids in different AZs")
    return tuple(value)


def _tag_text(text: str) -> bool:
    return all(c.isalnum() or c == " " or unicodedata.category(c) == "Zs" or c in TAG_PUNCTUATION for c in text)


def _tags(spec: FleetSpec) -> None:
    for key, value in spec.tags.items():
        if key.lower().startswith("aws:") or value.lower().startswith("aws:"):
            raise ConfigError(f"tags.{key}", value, "tag names and values starting with aws: are AWS's own; choose "
                                                    "another")
        if not (len(key) <= TAG_KEY_MAX and len(value) <= TAG_VALUE_MAX and _tag_text(key) and _tag_text(value)):
            raise ConfigError(f"tags.{key}", value, f"AWS tag names (at most {TAG_KEY_MAX} characters) and values (at "
                                                    f"most {TAG_VALUE_MAX}) hold letters, digits, spaces and "
                                                    f"{' '.join(TAG_PUNCTUATION)}")


def parse_options(spec: FleetSpec, sizing: Sizing) -> AwsOptions:
    options = spec.cloud_section(OPTIONS, "an AWS option")
    vpc_id = options.get("vpcId")
    public = private = ()
    if vpc_id is not None:
        if not isinstance(vpc_id, str) or not re.match(r"^vpc-[0-9a-f]{8,17}$", vpc_id):
            raise ConfigError("aws.vpcId", vpc_id, "must be a VPC id such as vpc-0123456789abcdef0")
        public = _ids("publicSubnetIds", options.get("publicSubnetIds"), "subnet")
        private = _ids("privateSubnetIds", options.get("privateSubnetIds"), "subnet")
    elif "publicSubnetIds" in options or "privateSubnetIds" in options:
        raise ConfigError("aws.vpcId", None, "subnet ids need the vpcId they belong to")
    cidr = options.get("vpcCidr", "10.80.0.0/16")
    try:
        network = ipaddress.IPv4Network(str(cidr))  # the VPC the stack creates is IPv4-only
        if not 16 <= network.prefixlen <= 20:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError("aws.vpcCidr", cidr, "must be an IPv4 network from /16 to /20, e.g. 10.80.0.0/16") from None
    zones = catalog.cloud("aws").raw["zones"][spec.region]
    az_count = options.get("azCount", 3)
    if not isinstance(az_count, int) or isinstance(az_count, bool) or not 2 <= az_count <= len(zones):
        # Subnets in one zone twice would make the load balancer refuse them.
        raise ConfigError("aws.azCount", az_count, f"must be a whole number from 2 to {len(zones)}: {spec.region} has "
                                                   f"{len(zones)} zones ({', '.join(zones)})")
    internal = options.get("internal", False)
    if not isinstance(internal, bool):
        raise ConfigError("aws.internal", internal, "must be true or false")
    ami_id = options.get("amiId")
    if ami_id is not None and not (isinstance(ami_id, str) and re.match(r"^ami-[0-9a-f]{8,17}$", ami_id)):
        raise ConfigError("aws.amiId", ami_id, "must be an AMI id such as ami-0123456789abcdef0")
    ami_name = options.get("amiName", catalog.cloud("aws").raw["image"]["name"])
    if not (isinstance(ami_name, str) and re.match(r"^Deep Learning Base OSS Nvidia Driver GPU AMI \(Ubuntu 22\.04\) "
                                                   r"\d{8}$", ami_name)):
        raise ConfigError("aws.amiName", ami_name, "must name a release of the Deep Learning Base OSS Nvidia Driver GPU "
                                                   "AMI, e.g. 'Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu "
                                                   "22.04) 20260929'")
    if ami_id is not None and "amiName" in options:
        raise ConfigError("aws.amiName", ami_name, "set either amiId or amiName, not both")
    _tags(spec)
    spec.api_keys_fit(SECRET_VALUE_MAX_BYTES, "Secrets Manager")
    if len(spec.allowed_cidrs) > SECURITY_GROUP_INBOUND_RULES:
        raise ConfigError("allowedCidrs", f"{len(spec.allowed_cidrs)} ranges",
                          f"an AWS security group holds at most {SECURITY_GROUP_INBOUND_RULES} inbound rules, one a "
                          f"range: merge ranges into wider ones (or ask AWS for a higher quota and split the list)")
    if spec.certificate is not None and not re.match(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$",
                                                     spec.certificate):
        raise ConfigError("certificate", spec.certificate,
                          "on AWS must be an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)")
    if spec.certificate and spec.certificate.split(":")[3] != spec.region:
        raise ConfigError("certificate", spec.certificate, f"must be an ACM certificate in {spec.region}, the load balancer's region")
    if spec.domain and not spec.certificate and not spec.dns_zone:
        raise ConfigError("certificate", None,
                          f"HTTPS for {spec.domain} needs an ACM certificate ARN, or dnsZone (a Route 53 hosted zone "
                          f"id) so that the stack can issue and validate one")
    if spec.dns_zone is not None and not re.match(r"^Z[A-Z0-9]{4,31}$", spec.dns_zone):
        raise ConfigError("dnsZone", spec.dns_zone, "on AWS must be a Route 53 hosted zone id such as Z0123456789ABCDEFGHIJ")
    return AwsOptions(vpc_id, public, private, str(cidr), az_count, internal, ami_id, ami_name)


