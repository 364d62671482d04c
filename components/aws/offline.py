"""What AWS would answer the offline plan (cli/plan.py): its data sources and the computed outputs of its
resources, under Pulumi's mocks, as in the stack's region."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

from fleet import catalog

OFFLINE_ACCOUNT = "123456789012"
# The hosted zone id of Application Load Balancers per region (Elastic Load Balancing endpoints and quotas).
ALB_ZONE_IDS = {
    "us-east-1": "Z35SXDOTRQ7X7K", "us-east-2": "Z3AADJGX6KTTL2", "us-west-2": "Z1H1FL5HABSF5",
    "ca-central-1": "ZQSVJUPU6J1EY", "eu-west-1": "Z32O12XQLNTSW2", "eu-west-2": "ZHURV8PSTC4K8",
    "eu-central-1": "Z215JYRZR1TBD5", "eu-north-1": "Z23TAZ7KDT4BAZ", "ap-northeast-1": "Z14GRHDCWA56QT",
    "ap-south-1": "ZP97RAFLXTNZK", "ap-southeast-2": "Z1GM3OXH4ZPM65",
}


IAM_ARN_KINDS = {"aws:iam/role:Role": "role", "aws:iam/instanceProfile:InstanceProfile": "instance-profile"}


def _digest(*parts: Any, length: int = 17) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:length]


def offline_invoke(token: str, args: Mapping[str, Any], region: str) -> dict[str, Any]:
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        names = catalog.cloud("aws").raw["zones"][region]
        return {"names": names, "zoneIds": [f"{region}-az{i + 1}" for i in range(len(names))], "id": region}
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {"accountId": OFFLINE_ACCOUNT, "arn": f"arn:aws:iam::{OFFLINE_ACCOUNT}:user/offline",
                "userId": "OFFLINE", "id": OFFLINE_ACCOUNT}
    if token == "aws:ec2/getAmi:getAmi":
        [name] = next(f["values"] for f in args["filters"] if f["name"] == "name")
        # An AMI has one name in every region and another id in each.
        return {"id": f"ami-{_digest(name, region)}", "name": name, "rootDeviceName": "/dev/sda1",
                "architecture": "x86_64"}
    raise NotImplementedError(f"the offline plan has no answer for {token}")


def offline_state(type_: str, name: str, inputs: Mapping[str, Any], region: str) -> dict[str, Any]:
    service = type_.split(":")[1].split("/")[0]
    state: dict[str, Any] = {"arn": f"arn:aws:{service}:{region}:{OFFLINE_ACCOUNT}:{name}", "name": inputs.get("name", name)}
    if type_ in IAM_ARN_KINDS:  # IAM is global: its ARNs have no region, and name the kind of entity
        state["arn"] = f"arn:aws:iam::{OFFLINE_ACCOUNT}:{IAM_ARN_KINDS[type_]}/{name}"
    if type_ == "aws:lb/loadBalancer:LoadBalancer":
        state.update(dnsName=f"{name}-1234567890.{region}.elb.amazonaws.com", zoneId=ALB_ZONE_IDS[region],
                     arnSuffix=f"app/{name}/0123456789abcdef")
    if type_ == "aws:cloudwatch/logGroup:LogGroup":
        state["arn"] = f"arn:aws:logs:{region}:{OFFLINE_ACCOUNT}:log-group:{inputs['name']}"
    if type_ == "aws:lb/targetGroup:TargetGroup":
        state["arnSuffix"] = f"targetgroup/{name}/0123456789abcdef"
    if type_ == "aws:ec2/launchTemplate:LaunchTemplate":
        state["latestVersion"] = 1
    if type_ == "aws:secretsmanager/secretVersion:SecretVersion":
        # Secrets Manager makes a new version (id) for each new value.
        state["versionId"] = f"{_digest(inputs.get('secretString'), length=8)}-0000-4000-8000-{_digest(name, length=12)}"
    if type_ == "aws:acm/certificate:Certificate":
        state["domainValidationOptions"] = [{"domainName": inputs["domainName"],
                                             "resourceRecordName": f"_x.{inputs['domainName']}.",
                                             "resourceRecordType": "CNAME", "resourceRecordValue": "_y.acm-validations.aws."}]
    if type_ == "aws:route53/record:Record":
        state["fqdn"] = inputs["name"]
    return state
