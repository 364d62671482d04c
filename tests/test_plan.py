"""`make plan`: the project's own program under Pulumi's mocks, printed as text or as preview JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from conftest import ROOT, PlannedStack, run_plan, stacks_of
from cli.plan import SECRET_STAND_IN


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
    assert SECRET_STAND_IN not in result.stdout
    types = [s["type"] for s in preview["steps"]]
    assert "random:index/randomPassword:RandomPassword" not in types  # the stack's own key is used
    versions = [s["newState"]["inputs"] for s in preview["steps"]
                if s["type"] == "aws:secretsmanager/secretVersion:SecretVersion"]
    assert len(versions) == 2 and all(v["secretString"] == "[secret]" for v in versions)
    assert re.search(r"^\s*readonly HF_TOKEN_REF='arn:aws:secretsmanager:[^|]+\|[0-9a-f-]+'$", preview["userData"], re.M)


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


def plan_file(stack_file, config: dict) -> PlannedStack:
    result = run_plan(stack_file(config))
    assert result.returncode == 0, result.stderr
    return PlannedStack("case", json.loads(result.stdout))


SMALL = {"model": "codellama/CodeLlama-7b-Instruct-hf", "maxModelLen": 8192, "allowedCidrs": ["10.0.0.0/8"]}
CLOUDS = {"aws": {"cloud": "aws", "region": "eu-west-1"},
          "gcp": {"cloud": "gcp", "region": "europe-west4", "gcp": {"project": "my-project-123"}},
          "azure": {"cloud": "azure", "region": "westeurope"}}
CARRIERS = {"aws": "aws:ec2/launchTemplate:LaunchTemplate", "gcp": "gcp:compute/instanceTemplate:InstanceTemplate",
            "azure": "azure-native:compute:VirtualMachineScaleSet"}


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_a_new_secret_value_is_a_new_user_data_which_rolls_the_vms(cloud, stack_file):
    """Each VM reads the secret version its user-data names: a new key (a new ciphertext in the stack file) is a
    new version, so a new launch template version / instance template / scale set model, and the group replaces
    its VMs one by one (instance refresh, proactive update, rolling upgrade)."""
    def user_data(ciphertext: str) -> str:
        return plan_file(stack_file, {**CLOUDS[cloud], **SMALL, "apiKey": {"secure": ciphertext}}).user_data

    first, same, rotated = user_data("AAABAKw0cWl5"), user_data("AAABAKw0cWl5"), user_data("AAABAJ+0aGVy")
    assert first == same and first != rotated
    refs = [re.search(r"API_KEYS_REF=(\S+)", text)[1] for text in (first, rotated)]
    assert refs[0] != refs[1]
    assert [line for line in first.splitlines() if "API_KEYS_REF=" not in line] == \
        [line for line in rotated.splitlines() if "API_KEYS_REF=" not in line]  # nothing else changes


def test_the_offline_plan_answers_as_the_stacks_region(stack_file):
    plan = plan_file(stack_file, {**CLOUDS["aws"], **SMALL})
    zones = {s["availabilityZone"] for s in plan.resources("aws:ec2/subnet:Subnet")}
    assert zones == {"eu-west-1a", "eu-west-1b", "eu-west-1c"}
    assert "us-east-1" not in json.dumps(plan.steps)
    assert plan.outputs["endpoint"].endswith(".eu-west-1.elb.amazonaws.com")
    azure = plan_file(stack_file, {**CLOUDS["azure"], **SMALL})
    assert ".westeurope.cloudapp.azure.com" in azure.outputs["endpoint"]


@pytest.mark.parametrize("patch, status, words", [
    ("plan.check_policies = lambda p: p.policy_violations.append('[x] broken')", 3, "1 violations"),
    ("plan.run = lambda stack: 1 / 0", 4, "internal error: this is a bug of vllm-fleet"),
])
def test_exit_statuses_tell_a_policy_violation_from_an_internal_error(patch, status, words):
    code = f"import sys; from cli import plan; {patch}; sys.exit(plan.main(['codellama-dev']))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == status and words in result.stdout + result.stderr


@pytest.mark.parametrize("target", ["stacks", "tests/conftest.py"])
def test_a_path_that_is_no_stack_file_is_a_config_error(target, tmp_path):
    result = run_plan(target)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Nothing was planned or created" in result.stderr


def test_a_stack_file_that_is_not_a_map_of_config_is_a_config_error(tmp_path):
    path = tmp_path / "Pulumi.list.yaml"
    path.write_text("config:\n  - cloud\n  - aws\n")
    result = run_plan(path)
    assert result.returncode == 2 and "must be a stack file" in result.stderr and "Traceback" not in result.stderr


def test_the_readmes_example_stack_file_plans_with_its_named_keys(tmp_path):
    """The stack file the README shows a newcomer (named keys as `secure:` leaves) plans as it is: keys by name,
    the load of its capacity key held, the plan's own secret handling."""
    readme = (ROOT / "README.md").read_text()
    [example] = re.findall(r"```yaml\n(.*?)```", readme.split("## Your own stack", 1)[1].split("\n## ", 1)[0], re.S)
    path = tmp_path / "Pulumi.my-coder.yaml"
    path.write_text(example)
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)["outputs"]
    assert outputs["apiKeyNames"] == ["alice", "ci"]
    assert outputs["capacity"]["requestsAtDesired"] >= 40
