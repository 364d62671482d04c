"""`make plan`: the project's own program under Pulumi's mocks, printed as text or as preview JSON."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from conftest import ROOT, run_plan, stacks_of


@pytest.mark.parametrize("stack", stacks_of())
def test_every_stack_plans_in_a_few_seconds(stack):
    started = time.monotonic()
    result = run_plan(stack, fmt="text")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 8, f"{stack} took {elapsed:.1f} s"
    text = result.stdout
    for section in ("Resources:", "Outputs:", "Cost: $", "Quota needed", "User data of each VM (cloud-init):",
                    "Policies (policies/fleet_policies.py): all passed",
                    "curlExample:", "continueConfig:"):
        assert section in text, section
    assert "apiKey: [secret]" in text


def test_json_has_the_shape_of_pulumi_preview(plan_of):
    preview = plan_of("codellama-prod").preview
    assert preview["changeSummary"] == {"create": len(preview["steps"])}
    for step in preview["steps"]:
        assert step["op"] == "create"
        assert step["urn"].startswith("urn:pulumi:codellama-prod::vllm-fleet::")
        # the URN's type part is the parent chain ending in the step's own type
        assert step["urn"].split("::")[2].split("$")[-1] == step["type"]
        assert step["newState"]["type"] == step["type"] and isinstance(step["newState"]["inputs"], dict)
    urns = [s["urn"] for s in preview["steps"]]
    assert len(urns) == len(set(urns))
    # children of the component carry it in their URN type chain, as the engine would write them
    assert any("vllm-fleet:aws:Fleet$aws:autoscaling/group:Group" in urn for urn in urns)
    assert preview["outputs"]["apiKey"] == "[secret]"


def test_stack_file_secrets_are_secrets_in_the_program_and_masked_in_the_plan(stack_file):
    path = stack_file({"cloud": "aws", "region": "us-east-1", "model": "meta-llama/Llama-3.1-8B-Instruct",
                       "maxModelLen": 8192, "allowedCidrs": ["10.0.0.0/8"],
                       "hfToken": {"secure": "AAABAKw0cWl5ZWtleQ=="}, "apiKey": {"secure": "AAABAJ+0aGVyZQ=="}})
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    preview = json.loads(result.stdout)
    assert "offline-plan-placeholder" not in result.stdout
    types = [s["type"] for s in preview["steps"]]
    assert "random:index/randomPassword:RandomPassword" not in types  # the stack's own key is used
    versions = [s["newState"]["inputs"] for s in preview["steps"]
                if s["type"] == "aws:secretsmanager/secretVersion:SecretVersion"]
    assert len(versions) == 2 and all(v["secretString"] == "[secret]" for v in versions)
    assert "HF_TOKEN=" not in preview["userData"] and "arn:aws:secretsmanager" in preview["userData"]


def test_a_gated_model_without_hf_token_warns(stack_file):
    path = stack_file({"cloud": "aws", "region": "us-east-1", "model": "meta-llama/Llama-3.1-8B-Instruct",
                       "maxModelLen": 8192, "allowedCidrs": ["10.0.0.0/8"]})
    preview = json.loads(run_plan(path).stdout)
    assert any("gated on Hugging Face" in d["message"] for d in preview["diagnostics"])


def test_make_plan_without_a_stack_says_how():
    result = subprocess.run(["make", "-s", "plan"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert "usage: make plan STACK=" in result.stderr and "codellama-prod" in result.stderr


def test_make_plan_json_prints_preview_json():
    result = subprocess.run(["make", "-s", "plan", "STACK=codellama-dev", "FORMAT=json"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outputs"]["instanceType"] == "g6.xlarge"


def test_an_unknown_stack_lists_the_known_ones():
    result = run_plan("no-such-stack")
    assert result.returncode == 2 and "codellama-prod" in result.stderr and "Traceback" not in result.stderr
