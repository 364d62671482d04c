"""The GitHub Actions workflows of .github/, offline: GitHub's workflow schema (check-jsonschema), zizmor's security
audits (offline mode), and the properties docs/ci.md promises: triggers, least-privilege permissions, OIDC logins,
the environments and secrets of the contract with deployer/ (the OIDC subjects each job presents are exactly the
ones deployer.github trusts), no secret in a pull request's job outside the approved environment, a lock per
stack, the policy pack, `make check` after `pulumi up`, actions pinned to commits."""

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
import deploy  # noqa: E402
import drift_check  # noqa: E402
import preview_report  # noqa: E402
from deployer import github as deployer_github  # noqa: E402

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
        ("preview", "plan"): {"contents": "read", "pull-requests": "write"},
        ("preview", "preview"): {"contents": "read", "id-token": "write", "pull-requests": "write"},
        ("deploy", "stacks"): {"contents": "read"},
        ("deploy", "deploy"): {"contents": "read", "id-token": "write"},
        ("drift", "stacks"): {"contents": "read"},
        ("drift", "drift"): {"actions": "read", "contents": "read", "id-token": "write", "issues": "write"},
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
    for workflow, job, mode in (("preview", "preview", "PREVIEW"), ("drift", "drift", "DRIFT"),
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
    assert jobs("drift")["drift"]["concurrency"]["group"] == "vllm-fleet-drift-${{ matrix.stack }}"


def test_deploy_is_pulumi_up_of_mains_tip_with_the_policy_pack_then_the_post_deploy_check():
    deploy_job = jobs("deploy")["deploy"]
    steps = deploy_job["steps"]
    checkout, = steps_using(steps, "actions/checkout")
    assert checkout["with"]["ref"] == "refs/heads/main"  # main as it is when the job starts, not the run's commit
    up = next(step for step in steps if "deploy.py up" in step.get("run", ""))
    assert up["id"] == "up" and up["env"]["GITHUB_TOKEN"] == "${{ github.token }}"
    assert deploy.up_command("s") == ["pulumi", "up", "--yes", "--non-interactive", "--policy-pack", "policies",
                                      "--suppress-outputs", "--stack", "s"]
    check = next(step for step in steps if "post_deploy_check.py" in step.get("run", ""))
    assert steps.index(check) > steps.index(up) and "continue-on-error" not in check
    assert check["if"] == "steps.up.outputs.deployed == 'true'"  # a run that left the deploy to a newer one
    source = (GITHUB / "scripts" / "post_deploy_check.py").read_text()
    assert '["make", "check", f"URL={target.url}", f"MODEL={target.model}"]' in source
    # Steps' own limits below the job's: a hung `pulumi up` still leaves the cleanup its time.
    assert up["timeout-minutes"] + check["timeout-minutes"] + 15 < deploy_job["timeout-minutes"]


def test_a_stopped_deploy_is_cleaned_up():
    steps = jobs("deploy")["deploy"]["steps"]
    cleanup = next(step for step in steps if "deploy.py cleanup" in step.get("run", ""))
    assert steps.index(cleanup) == len(steps) - 1
    assert cleanup["if"] == ("(cancelled() || failure()) && (steps.up.outcome == 'failure' || "
                             "steps.up.outcome == 'cancelled')")
    assert cleanup["env"] == {"PULUMI_ACCESS_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}"}


def test_only_main_deploys_and_a_dispatch_from_a_branch_takes_no_place_in_a_stacks_lock():
    # The job's condition keeps a dispatch from a branch out of the concurrency group, where it would replace a
    # deploy of main waiting there and then be refused by the environment (main only).
    assert "github.ref == 'refs/heads/main'" in jobs("deploy")["deploy"]["if"]
    changed = next(step for step in jobs("deploy")["stacks"]["steps"] if step.get("id") == "changed")
    assert changed["run"].startswith('if [ "$GITHUB_REF" != refs/heads/main ]; then')
    assert "github.ref == 'refs/heads/main'" in jobs("drift")["drift"]["if"]


def test_no_stack_output_reaches_a_step_output():
    # pulumi/actions writes every stack output, decrypted secrets too, to $GITHUB_OUTPUT: it only installs the CLI.
    for path in WORKFLOW_FILES + ACTION_FILES:
        document = load(path)
        all_steps = [s for job in document.get("jobs", {}).values() for s in job["steps"]] or document["runs"]["steps"]
        for step in steps_using(all_steps, "pulumi/actions"):
            assert set(step["with"]) == {"pulumi-version"}, path.name
    # The step outputs the scripts write and the workflows read: names of stacks, flags and the endpoint only.
    written = set(re.findall(r'set_output\("(\w+)"', "".join(p.read_text() for p in (GITHUB / "scripts").glob("*.py"))))
    assert written == {"stacks", "count", "available", "deployed", "endpoint"}
    read = set(re.findall(r"steps\.\w+\.outputs\.(\w+)", "".join(p.read_text() for p in WORKFLOW_FILES)))
    assert read <= written


def test_the_drift_check_knows_the_jobs_that_lock_a_stack():
    for workflow, job_name in drift_check.LOCKING_JOBS:
        names = [job["name"] for job in WORKFLOWS[workflow.removesuffix(".yml")]["jobs"].values()]
        assert job_name.format(stack="${{ matrix.stack }}") in names


def test_previews_run_the_policy_pack_offline_and_in_pulumi_preview():
    plan, preview = jobs("preview")["plan"], jobs("preview")["preview"]
    report = next(step for step in plan["steps"] if "preview_report.py" in step.get("run", ""))
    assert "--part plan" in report["run"] and "--base-root .preview-base" in report["run"]
    base, = [s for s in steps_using(plan["steps"], "actions/checkout") if s["with"].get("path") == ".preview-base"]
    assert base["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    comment = next(step for step in plan["steps"] if "pr_comment.py" in step.get("run", ""))
    assert "github.event.pull_request.head.repo.full_name == github.repository" in comment["if"]
    assert "--part plan" in comment["run"]
    real = next(step for step in preview["steps"] if "preview_report.py" in step.get("run", ""))
    assert "--part pulumi" in real["run"]
    assert '"--policy-pack", "policies"' in (GITHUB / "scripts" / "preview_report.py").read_text()
    # Forks get no OIDC token nor the environment's secret: their pull requests do not start the real preview.
    assert "github.event.pull_request.head.repo.full_name == github.repository" in preview["if"]
    # A newer push replaces a preview waiting for approval; none is stopped mid-way (it would leave its lock).
    assert preview["concurrency"]["cancel-in-progress"] is False
    assert "concurrency" not in WORKFLOWS["preview"]


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
        for job_name, job in jobs(name).items():
            assert "secrets." not in json.dumps(job.get("env", {})), f"{name}: a secret in a job's env"
            secret = SECRETS.get((name, job_name))
            for step in job["steps"]:
                if "secrets." in json.dumps(step):
                    # The CLI reads PULUMI_ACCESS_TOKEN; each job sets it from its own environment's secret.
                    assert step["env"] == {**step["env"], "PULUMI_ACCESS_TOKEN": f"${{{{ secrets.{secret} }}}}"}, \
                        f"{name}.{job_name}: {step.get('name')}"


# --- the contract with deployer/ (docs/ci.md, the trust model) ---------------------------------------------------
# (workflow, job) -> the environment the job runs in (the contract's names, checked against deployer.github's below)
# and the only secret it reads (a secret of that environment).
ENVIRONMENTS = {("preview", "preview"): "vllm-fleet-preview", ("drift", "drift"): "vllm-fleet-drift",
                ("deploy", "deploy"): "${{ matrix.stack }}"}
SECRETS = {("preview", "preview"): "PULUMI_PREVIEW_ACCESS_TOKEN", ("drift", "drift"): "PULUMI_DRIFT_ACCESS_TOKEN",
           ("deploy", "deploy"): "PULUMI_ACCESS_TOKEN"}
SECRET = re.compile(r"secrets\.(\w+)")
STACKS = sorted(path.name.removeprefix("Pulumi.").removesuffix(".yaml") for path in (ROOT / "stacks").glob("Pulumi.*.yaml"))


def environment_of(job: dict) -> str | None:
    environment = job.get("environment")
    return environment.get("name") if isinstance(environment, dict) else environment


def test_environments_and_their_secrets_are_the_contracts():
    assert deployer_github.PREVIEW_ENVIRONMENT == "vllm-fleet-preview"
    assert deployer_github.DRIFT_ENVIRONMENT == "vllm-fleet-drift"
    for name in WORKFLOWS:
        for job_name, job in jobs(name).items():
            assert environment_of(job) == ENVIRONMENTS.get((name, job_name)), f"{name}.{job_name}"
            expected = {SECRETS[name, job_name]} if (name, job_name) in SECRETS else set()
            assert set(SECRET.findall(json.dumps(job))) == expected, f"{name}.{job_name}"


def test_no_pull_request_job_reads_a_secret_outside_the_approved_environment():
    for name, workflow in WORKFLOWS.items():
        if "pull_request" not in workflow["on"]:
            continue
        for job_name, job in workflow["jobs"].items():
            if SECRET.search(json.dumps(job)) or job.get("permissions", {}).get("id-token") == "write":
                # The one environment whose required reviewers (deployer/) approve each run.
                assert environment_of(job) == ENVIRONMENTS["preview", "preview"], f"{name}.{job_name}"
    # The offline plan runs the pull request's code for every pull request: nothing to steal there.
    plan = jobs("preview")["plan"]
    assert not SECRET.search(json.dumps(plan)) and "id-token" not in plan["permissions"] and "environment" not in plan


def test_every_job_with_an_oidc_token_runs_in_a_contract_environment():
    for name in WORKFLOWS:
        for job_name, job in jobs(name).items():
            if job.get("permissions", {}).get("id-token") == "write":
                assert environment_of(job) == ENVIRONMENTS.get((name, job_name)), f"{name}.{job_name}"


def refs_of(workflow: dict, job: dict) -> set[str]:
    """The git refs a job of this workflow can run on, as its OIDC token's `ref` claim: from the triggers, narrowed
    by a job condition on github.ref."""
    only_main = "github.ref == 'refs/heads/main'" in (job.get("if") or "")
    refs = set()
    for trigger, spec in workflow["on"].items():
        if trigger == "pull_request":
            refs.add("refs/pull/*/merge")  # GitHub's merge ref of the pull request
        elif trigger == "push":
            refs |= {f"refs/heads/{branch}" for branch in spec["branches"]}
        elif trigger == "schedule":
            refs.add("refs/heads/main")  # schedules run on the default branch
        elif trigger == "workflow_dispatch":
            refs.add("refs/heads/*")  # whichever branch the person picks
        else:
            raise AssertionError(f"no OIDC ref known for the trigger {trigger}")
    return {ref for ref in refs if ref == "refs/heads/main"} if only_main else refs


def subjects_of(repository: str, name: str, job: dict) -> set[str]:
    """The OIDC `sub` claims a job presents, with the repository's customised claim (repo, context, ref)."""
    assert deployer_github.OIDC_CLAIM_KEYS == ("repo", "context", "ref")
    environment = environment_of(job)
    environments = STACKS if environment == "${{ matrix.stack }}" else [environment]
    assert "${{" not in "".join(environments), environment
    return {f"repo:{repository}:environment:{env}:ref:{ref}" for env in environments
            for ref in refs_of(WORKFLOWS[name], job)}


def test_the_oidc_subjects_of_the_workflows_are_exactly_what_the_deployer_trusts():
    repository = "my-org/vllm-fleet"
    presented = {name: set() for name in ("preview", "drift", "deploy")}
    for name in WORKFLOWS:
        for job in jobs(name).values():
            if job.get("permissions", {}).get("id-token") == "write":
                presented[name] |= subjects_of(repository, name, job)
    github = deployer_github.GitHub(repository=repository, default_branch="main", environments=tuple(STACKS))
    assert presented == {
        "preview": {github.preview_subject_pattern},
        "drift": {github.drift_subject},
        "deploy": {github.deploy_subject(stack) for stack in STACKS},
    }
    assert github.preview_subject_pattern == \
        "repo:my-org/vllm-fleet:environment:vllm-fleet-preview:ref:refs/pull/*/merge"


def test_zizmor_auditor_finds_no_secret_outside_an_environment():
    environment = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN")}
    result = subprocess.run([str(BIN / "zizmor"), "--offline", "--no-progress", "--format", "json", "--persona",
                             "auditor", "--config", str(GITHUB / "zizmor.yml"), str(GITHUB)],
                            capture_output=True, text=True, timeout=120, env=environment, cwd=ROOT)
    findings = json.loads(result.stdout or "[]")
    assert not [f for f in findings if f["ident"] == "secrets-outside-env"]
    # nor anything else the auditor persona reports (its low concurrency-limits included)
    assert not findings, [(f["ident"], f["locations"][0]["symbolic"]["key"]) for f in findings]


def test_every_job_has_a_concurrency_group_that_fits_what_it_does():
    """zizmor's concurrency-limits: each job in a group. Nothing that deploys or holds a stack's state lock is
    cancelled mid-way; a pull request's read-only jobs are cancelled by its newer push; the deploy's change list is
    grouped per commit, so that a newer push never replaces an older one's waiting run (and drops its stacks)."""
    for name in WORKFLOWS:
        for job_id, job in jobs(name).items():
            concurrency = job.get("concurrency") or WORKFLOWS[name].get("concurrency")
            assert concurrency and concurrency["group"].startswith("vllm-fleet-"), f"{name}.{job_id}"
            if name == "preview":
                assert "github.event.pull_request.number" in concurrency["group"], job_id
            if "pulumi" in json.dumps(job["steps"]) or name != "preview":
                assert concurrency["cancel-in-progress"] is False, f"{name}.{job_id}"
    assert jobs("preview")["stacks"]["concurrency"]["cancel-in-progress"] is True
    assert jobs("preview")["plan"]["concurrency"]["cancel-in-progress"] is True
    assert "github.sha" in jobs("deploy")["stacks"]["concurrency"]["group"]


def test_checkouts_never_keep_the_token():
    for name in WORKFLOWS:
        for job in jobs(name).values():
            for step in steps_using(job["steps"], "actions/checkout"):
                assert step["with"]["persist-credentials"] is False, name


def test_the_comment_marker_is_one_per_stack():
    assert preview_report.marker("codellama-prod") != preview_report.marker("codellama-dev")
