"""What AWS would answer the offline plan (fleet/plan.py): its data sources and the computed outputs of its
resources, under Pulumi's mocks."""

from __future__ import annotations

from typing import Any, Mapping

from .fleet import DLAMI_NAME


def offline_invoke(token: str, args: Mapping[str, Any]) -> dict[str, Any]:
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        return {"names": ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"],
                "zoneIds": ["use1-az1", "use1-az2", "use1-az4", "use1-az6"], "id": "us-east-1"}
    if token == "aws:ec2/getAmi:getAmi":
        return {"id": "ami-0fleet0offline0plan", "name": DLAMI_NAME.replace("*", "20261101"),
                "rootDeviceName": "/dev/sda1", "architecture": "x86_64"}
    raise NotImplementedError(f"the offline plan has no answer for {token}")


def offline_state(type_: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    service = type_.split(":")[1].split("/")[0]
    state: dict[str, Any] = {"arn": f"arn:aws:{service}:us-east-1:123456789012:{name}", "name": inputs.get("name", name)}
    if type_ == "aws:lb/loadBalancer:LoadBalancer":
        state.update(dnsName=f"{name}-1234567890.us-east-1.elb.amazonaws.com", zoneId="Z35SXDOTRQ7X7K",
                     arnSuffix=f"app/{name}/0123456789abcdef")
    if type_ == "aws:lb/targetGroup:TargetGroup":
        state["arnSuffix"] = f"targetgroup/{name}/0123456789abcdef"
    if type_ == "aws:ec2/launchTemplate:LaunchTemplate":
        state["latestVersion"] = 1
    if type_ == "aws:acm/certificate:Certificate":
        state["domainValidationOptions"] = [{"domainName": inputs["domainName"],
                                             "resourceRecordName": f"_x.{inputs['domainName']}.",
                                             "resourceRecordType": "CNAME", "resourceRecordValue": "_y.acm-validations.aws."}]
    if type_ == "aws:route53/record:Record":
        state["fqdn"] = inputs["name"]
    return state
