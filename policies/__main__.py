"""The policy pack: `pulumi preview --policy-pack policies -s <stack>` enforces fleet_policies on the real plan."""

from pulumi_policy import PolicyPack

from fleet_policies import POLICIES

PolicyPack(name="vllm-fleet", policies=POLICIES)
