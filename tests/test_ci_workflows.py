"""The GitHub Actions workflows of .github/, offline: GitHub's workflow schema (check-jsonschema), zizmor's security
audits (offline mode), and the properties docs/ci.md promises: triggers, least-privilege permissions, OIDC logins,
an environment and a lock per stack, the policy pack, `make check` after `pulumi up`, actions pinned to commits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT

sys.path.insert(0, str(ROOT / ".github" / "scripts"))

import affected_stacks  # noqa: E402 (after the path)
import preview_report  # noqa: E402

GITHUB = ROOT / ".github"
WORKFLOW_FILES = sorted((GITHUB / "workflows").glob("*.yml"))
ACTION_FILES = sorted((GITHUB / "actions").glob("*/action.yml"))
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s+(?P<action>[\w.-]+/[\w./-]+)@(?P<ref>\S+)\s*(?:#\s*(?P<version>\S+))?\s*$")
LOCAL = re.compile(r"^\s*(?:-\s+)?uses:\s+\./")


def load(path: Path) -> dict:
    document = yaml.safe_load(path.read_text())
    if True in document:  # YAML 1.1 reads the key `on` as true
        document["on"] = document.pop(True)
    return document


WORKFLOWS = {path.stem: load(path) for path in WORKFLOW_FILES}
ACTIONS = {path.parent.name: load(path) for path in ACTION_FILES}


def jobs(workflow: str) -> dict[str, dict]:
    return WORKFLOWS[workflow]["jobs"]


def steps_using(steps: list[dict], action: str) -> list[dict]:
    return [step for step in steps if step.get("uses", "").split("@")[0] == action]


def test_the_workflows_exist():
    assert set(WORKFLOWS) == {"preview", "deploy", "drift", "vm-lock"}
    assert set(ACTIONS) == {"setup-fleet", "cloud-login"}


def test_workflows_and_actions_validate_against_githubs_schemas():
    for schema, files in (("vendor.github-workflows", WORKFLOW_FILES), ("vendor.github-actions", ACTION_FILES)):
        result = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", schema, *map(str, files)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_offline_finds_nothing():
    environment = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN")}
    result = subprocess.run([str(BIN / "zizmor"), "--offline", "--no-progress", "--format", "json",
                             "--config", str(GITHUB / "zizmor.yml"), str(GITHUB)],
                            capture_output=True, text=True, timeout=120, env=environment, cwd=ROOT)
    findings = json.loads(result.stdout or "[]")
    assert not findings, "\n".join(f"{f['ident']} ({f['determinations']['severity']}): {f['desc']} at "
                                   f"{f['locations'][0]['symbolic']['key']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_triggers():
    preview, deploy, drift = (WORKFLOWS[name]["on"] for name in ("preview", "deploy", "drift"))
    assert set(preview) == {"pull_request"}
    assert deploy["push"]["branches"] == ["main"] and set(deploy) == {"push", "workflow_dispatch"}
    assert set(drift) == {"schedule", "workflow_dispatch"} and drift["schedule"][0]["cron"]
    # The lock's re-resolution is scheduled, never on a pull request or a push: it must not block a merge.
    assert set(WORKFLOWS["vm-lock"]["on"]) == {"schedule", "workflow_dispatch"}
    for trigger in (preview["pull_request"], deploy["push"]):
        paths = trigger["paths"]
        # Whatever affected_stacks.py counts as the program must start the workflow too.
        for directory in affected_stacks.PROGRAM_DIRECTORIES:
            assert f"{directory}**" in paths
        assert {"stacks/**", "__main__.py", "Pulumi.yaml", "requirements*.txt"} <= set(paths)


def test_no_workflow_runs_untrusted_code_with_privileges():
    for path in WORKFLOW_FILES:
        text = path.read_text()
        assert "pull_request_target" not in text and "workflow_run" not in text, path.name


def test_permissions_are_none_by_default_and_least_per_job():
    allowed = {
        ("preview", "stacks"): {"contents": "read"},
        ("preview", "preview"): {"contents": "read", "id-token": "write", "pull-requests": "write"},
        ("deploy", "stacks"): {"contents": "read"},
        ("deploy", "deploy"): {"contents": "read", "id-token": "write"},
        ("drift", "stacks"): {"contents": "read"},
        ("drift", "drift"): {"contents": "read", "id-token": "write", "issues": "write"},
        ("vm-lock", "vm-lock"): {"contents": "read", "issues": "write"},
    }
    for name, workflow in WORKFLOWS.items():
        assert workflow["permissions"] == {}, name
        for job_name, job in workflow["jobs"].items():
            assert job["permissions"] == allowed[name, job_name], f"{name}.{job_name}"


def test_cloud_logins_are_oidc_only():
    steps = ACTIONS["cloud-login"]["runs"]["steps"]
    aws, = steps_using(steps, "aws-actions/configure-aws-credentials")
    gcp, = steps_using(steps, "google-github-actions/auth")
    azure, = steps_using(steps, "azure/login")
    assert set(aws["with"]) >= {"role-to-assume", "aws-region"} and not {"aws-access-key-id", "aws-secret-access-key"} & set(aws["with"])
    assert set(gcp["with"]) == {"workload_identity_provider", "service_account"}
    assert set(azure["with"]) == {"client-id", "tenant-id", "subscription-id"}
    for step, cloud in ((aws, "aws"), (gcp, "gcp"), (azure, "azure")):
        assert step["if"] == f"inputs.cloud == '{cloud}'"
    for workflow, job, mode in (("preview", "preview", "PREVIEW"), ("drift", "drift", "PREVIEW"),
                                ("deploy", "deploy", "DEPLOY")):
        login, = [s for s in jobs(workflow)[job]["steps"] if s.get("uses") == "./.github/actions/cloud-login"]
        assert login["with"]["aws-role-arn"] == f"${{{{ vars.AWS_{mode}_ROLE_ARN }}}}"
        assert login["with"]["gcp-service-account"] == f"${{{{ vars.GCP_{mode}_SERVICE_ACCOUNT }}}}"
        assert login["with"]["azure-client-id"] == f"${{{{ vars.AZURE_{mode}_CLIENT_ID }}}}"
        assert jobs(workflow)[job]["env"]["ARM_CLIENT_ID"] == f"${{{{ vars.AZURE_{mode}_CLIENT_ID }}}}"
        assert jobs(workflow)[job]["permissions"]["id-token"] == "write"


def test_deploy_runs_in_the_stacks_environment_holding_the_stacks_lock():
    deploy = jobs("deploy")["deploy"]
    assert deploy["environment"]["name"] == "${{ matrix.stack }}"
    assert deploy["concurrency"] == {"group": "vllm-fleet-stack-${{ matrix.stack }}", "cancel-in-progress": False}
    assert deploy["strategy"]["fail-fast"] is False
    # Nothing else takes that lock: a waiting job of another workflow would replace a waiting deploy.
    others = [json.dumps(job.get("concurrency")) + json.dumps(WORKFLOWS[name].get("concurrency"))
              for name in ("preview", "drift") for job in jobs(name).values()]
    assert not [text for text in others if "vllm-fleet-stack-" in text]
    assert WORKFLOWS["preview"]["concurrency"] == {
        "group": "vllm-fleet-preview-${{ github.event.pull_request.number }}", "cancel-in-progress": True}
    assert jobs("drift")["drift"]["concurrency"]["group"] == "vllm-fleet-drift-${{ matrix.stack }}"


def test_deploy_is_pulumi_up_with_the_policy_pack_then_make_check():
    steps = jobs("deploy")["deploy"]["steps"]
    up, = steps_using(steps, "pulumi/actions")
    assert up["with"]["command"] == "up" and up["with"]["policyPacks"] == "policies"
    assert up["with"]["stack-name"] == "${{ matrix.stack }}" and up["with"]["suppress-outputs"] is True
    check = next(step for step in steps if "post_deploy_check.py" in step.get("run", ""))
    assert steps.index(check) > steps.index(up)
    assert "continue-on-error" not in check and "if" not in check
    source = (GITHUB / "scripts" / "post_deploy_check.py").read_text()
    assert '["make", "check", f"URL={target.url}", f"MODEL={target.model}"]' in source


def test_previews_run_the_policy_pack_offline_and_in_pulumi_preview():
    steps = jobs("preview")["preview"]["steps"]
    report = next(step for step in steps if "preview_report.py" in step.get("run", ""))
    assert "--base-root .preview-base" in report["run"]
    base, = [s for s in steps_using(steps, "actions/checkout") if s["with"].get("path") == ".preview-base"]
    assert base["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    source = (GITHUB / "scripts" / "preview_report.py").read_text()
    assert '"--policy-pack", "policies"' in source
    comment = next(step for step in steps if "pr_comment.py" in step.get("run", ""))
    assert "github.event.pull_request.head.repo.full_name == github.repository" in comment["if"]


def test_actions_are_pinned_to_commit_shas_with_their_version():
    shas: dict[str, set[str]] = {}
    for path in WORKFLOW_FILES + ACTION_FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "uses:" not in line or LOCAL.match(line):
                continue
            match = PINNED.match(line)
            assert match, f"{path.name}:{number}: {line.strip()}"
            assert re.fullmatch(r"[0-9a-f]{40}", match["ref"]), f"{path.name}:{number}: not a commit sha"
            assert match["version"] and re.fullmatch(r"v\d+\.\d+\.\d+", match["version"]), \
                f"{path.name}:{number}: say which release the sha is (# vX.Y.Z)"
            shas.setdefault(match["action"], set()).add((match["ref"], match["version"]))
    assert {action: len(pins) for action, pins in shas.items() if len(pins) > 1} == {}, "one release per action"
    assert set(shas) == {"actions/checkout", "actions/setup-python", "pulumi/actions",
                         "aws-actions/configure-aws-credentials", "google-github-actions/auth", "azure/login"}


def test_pulumi_cli_is_the_release_of_the_sdk():
    sdk, = re.findall(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    versions = re.findall(r"pulumi-version:\s*(\S+)", "".join(p.read_text() for p in WORKFLOW_FILES + ACTION_FILES))
    assert versions and set(versions) == {sdk}


def test_no_expression_in_a_shell_script_and_no_secret_on_a_command_line():
    for path in WORKFLOW_FILES + ACTION_FILES:
        document = load(path)
        all_steps = [s for job in document.get("jobs", {}).values() for s in job["steps"]] or document["runs"]["steps"]
        for step in all_steps:
            # Values reach scripts through env: an expression in `run` is a template injection waiting to happen.
            assert "${{" not in step.get("run", ""), f"{path.name}: {step.get('name') or step['run']}"
        assert not re.search(r"echo[^\n]*(TOKEN|apiKey|SECRET)", path.read_text(), re.I), path.name


def test_secrets_reach_only_the_steps_that_use_them():
    for name in WORKFLOWS:
        for job in jobs(name).values():
            assert "secrets." not in json.dumps(job.get("env", {})), f"{name}: a secret in a job's env"
            for step in job["steps"]:
                if "secrets.PULUMI_ACCESS_TOKEN" in json.dumps(step):
                    assert step["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"


def test_checkouts_never_keep_the_token():
    for name in WORKFLOWS:
        for job in jobs(name).values():
            for step in steps_using(job["steps"], "actions/checkout"):
                assert step["with"]["persist-credentials"] is False, name


def test_the_comment_marker_is_one_per_stack():
    assert preview_report.marker("codellama-prod") != preview_report.marker("codellama-dev")
