"""The CrossGuard policy pack, run on the resources every stack's offline plan records."""

from __future__ import annotations

import base64
import gzip
import copy
import sys

import pytest
from pulumi_policy import ResourceValidationArgs

from conftest import ROOT, stacks_of

sys.path.insert(0, str(ROOT / "policies"))
from fleet_policies import POLICIES  # noqa: E402


def violations(step: dict) -> list[str]:
    found = []
    args = ResourceValidationArgs(step["type"], step["newState"]["inputs"], step["urn"],
                                  step["urn"].rsplit("::", 1)[1], None, None)
    for policy in POLICIES:
        policy.validate(args, lambda message, urn=None, name=policy.name: found.append(f"{name}: {message}"))
    return found


@pytest.mark.parametrize("stack", stacks_of())
def test_every_stack_passes_the_policy_pack(stack, plan_of):
    steps = plan_of(stack).steps
    assert steps
    assert [v for step in steps for v in violations(step)] == []


def _step(plan, type_):
    return copy.deepcopy(next(s for s in plan.steps if s["type"] == type_))


def test_policies_catch_what_they_are_for(plan_of):
    plan = plan_of("codellama-dev")
    ingress = _step(plan, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    ingress["newState"]["inputs"].update(cidrIpv4="0.0.0.0/0", fromPort=22, toPort=22)
    assert any("port 22" in v for v in violations(ingress))
    ingress["newState"]["inputs"].update(fromPort=0, toPort=65535)
    assert len(violations(ingress)) == 2  # 22 and 8000

    template = _step(plan, "aws:ec2/launchTemplate:LaunchTemplate")
    inputs = template["newState"]["inputs"]
    inputs["metadataOptions"]["httpTokens"] = "optional"
    inputs["blockDeviceMappings"][1]["ebs"]["encrypted"] = "false"
    user_data = gzip.decompress(base64.b64decode(inputs["userData"])).decode() + "\nVLLM_API_KEY=abc123\n"
    inputs["userData"] = base64.b64encode(gzip.compress(user_data.encode())).decode()
    found = violations(template)
    assert {v.split(":")[0] for v in found} == {"imdsv2-required", "encrypted-disks", "no-secret-in-user-data"}

    group = _step(plan, "aws:lb/targetGroup:TargetGroup")
    group["newState"]["inputs"]["healthCheck"]["path"] = "/"
    assert [v.split(":")[0] for v in violations(group)] == ["health-check-on-vllm-health"]


def test_gcp_and_azure_rules_are_read_too():
    firewall = {"type": "gcp:compute/firewall:Firewall", "urn": "urn:x::fw", "newState": {"inputs": {
        "direction": "INGRESS", "sourceRanges": ["0.0.0.0/0"], "allows": [{"protocol": "tcp", "ports": ["8000"]}]}}}
    assert any("port 8000" in v for v in violations(firewall))
    nsg = {"type": "azure-native:network:NetworkSecurityGroup", "urn": "urn:x::nsg", "newState": {"inputs": {
        "securityRules": [{"direction": "Inbound", "access": "Allow", "sourceAddressPrefix": "Internet",
                           "destinationPortRange": "22"}]}}}
    assert any("port 22" in v for v in violations(nsg))


def test_a_masked_scale_set_profile_is_read_without_error():
    scale_set = {"type": "azure-native:compute:VirtualMachineScaleSet", "urn": "urn:x::vmss",
                 "newState": {"inputs": {"virtualMachineProfile": "[secret]"}}}
    assert violations(scale_set) == []


@pytest.mark.parametrize("text, is_secret", [
    ('HF_TOKEN=$(retry "reading the token" fleet_fetch_secret "$HF_TOKEN_REF")', False),  # fetched at boot
    ("export HF_TOKEN=hf_abc", True),
    ("VLLM_API_KEY=sk-0123456789", True),
    ('api-key: ["0123456789abcdef"]', True),  # vLLM's --config file, written into user-data
    ('print("api-key: [" + ", ".join(keys) + "]")', False),  # the code that writes that file at boot
    ("vllm serve m --api-key sk-0123456789", True),
    ("hf_" + "a" * 34, True),
])
def test_the_user_data_scan_tells_secrets_from_the_code_that_fetches_them(text, is_secret):
    template = {"type": "aws:ec2/launchTemplate:LaunchTemplate", "urn": "urn:x::lt", "newState": {"inputs": {
        "userData": base64.b64encode(gzip.compress(f"#cloud-config\n{text}\n".encode())).decode(),
        "metadataOptions": {"httpTokens": "required"}}}}
    assert bool(violations(template)) is is_secret, violations(template)
