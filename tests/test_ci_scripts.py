"""The scripts the workflows run (.github/scripts), offline: which stacks a change affects, the preview report
(costs, changes, GPU VM replacement, policy violations, warnings) from real offline plans and a stand-in
`pulumi`, the comment and issue kept one per stack, the post-deploy check's retries, the drift check."""

from __future__ import annotations

import copy
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_plan

sys.path.insert(0, str(ROOT / ".github" / "scripts"))

import affected_stacks  # noqa: E402 (after the path)
import cloud_credentials  # noqa: E402
import drift_check  # noqa: E402
import plan_diff  # noqa: E402
import post_deploy_check  # noqa: E402
import pr_comment  # noqa: E402
import preview_report  # noqa: E402
import vm_lock_issue  # noqa: E402
from github_api import BOT, GitHub  # noqa: E402

STACKS = ["codellama-dev", "codellama-gcp", "codellama-prod"]
PROGRAM = ("fleet", "components", "cloud-init", "catalog", "policies", "__main__.py", "Pulumi.yaml", "stacks")


# --- which stacks -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("changed, expected", [
    (["stacks/Pulumi.codellama-prod.yaml"], ["codellama-prod"]),
    (["stacks/Pulumi.codellama-prod.yaml", "README.md"], ["codellama-prod"]),
    (["components/aws/fleet.py"], STACKS),
    (["cloud-init/vllm.service.j2"], STACKS),
    (["requirements.txt"], STACKS),
    (["Pulumi.yaml"], STACKS),
    (["docs/ci.md", "deployer/permissions.yaml", ".github/workflows/deploy.yml", "tests/test_plan.py"], []),
    (["stacks/Pulumi.gone.yaml"], []),  # neither side has it
])
def test_affected_stacks(changed, expected):
    assert affected_stacks.affected(changed, STACKS) == expected


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_a_removed_stack_is_previewed_as_removed_and_never_deployed(tmp_path, monkeypatch, capsys):
    (tmp_path / "stacks").mkdir()
    for stack, cloud in (("a", "aws"), ("b", "gcp")):
        (tmp_path / "stacks" / f"Pulumi.{stack}.yaml").write_text(
            f"config:\n  vllm-fleet:cloud: {cloud}\n  vllm-fleet:region: r-{stack}\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "base")
    base = git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "stacks" / "Pulumi.b.yaml").unlink()
    git(tmp_path, "commit", "-qam", "remove b")
    head = git(tmp_path, "rev-parse", "HEAD")
    monkeypatch.setattr(affected_stacks, "ROOT", tmp_path)
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)

    def stacks(*flags):
        assert affected_stacks.main(["--base", base, "--head", head, *flags]) == 0
        return json.loads(capsys.readouterr().out.splitlines()[0].removeprefix("stacks="))

    assert stacks("--merge-base") == [{"stack": "b", "cloud": "gcp", "region": "r-b", "removed": True}]
    assert stacks("--existing-only") == []
    assert affected_stacks.main(["--base", "0" * 40, "--head", head]) == 0  # a new branch: every stack
    assert '"stack":"a"' in capsys.readouterr().out


# --- the preview report ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prod(plan_of):
    return plan_of("codellama-prod").preview


def launch_template(plan):
    return next(s for s in plan["steps"] if s["type"] == "aws:ec2/launchTemplate:LaunchTemplate")


def test_no_change_replaces_no_vm(prod):
    config = {"model": "m"}
    assert plan_diff.vm_replacement_offline(prod, copy.deepcopy(prod), config, config) == []
    changes = plan_diff.offline_changes(prod, copy.deepcopy(prod))
    assert (changes.added, changes.removed, changes.changed) == ([], [], {})


def test_a_new_instance_type_replaces_every_vm(prod):
    head = copy.deepcopy(prod)
    launch_template(head)["newState"]["inputs"]["instanceType"] = "g6e.24xlarge"
    config = {"model": "m"}
    assert plan_diff.vm_replacement_offline(prod, head, config, config) == [plan_diff.INSTANCE_TYPE]
    template = launch_template(prod)["urn"]
    assert plan_diff.offline_changes(prod, head).changed == {template: ["instanceType"]}


def test_a_new_model_replaces_every_vm_and_the_plans_say_why(stack_file):
    base = stack_in(stack_file, "base", "codellama/CodeLlama-7b-Instruct-hf")
    head = stack_in(stack_file, "head", "Qwen/Qwen2.5-Coder-7B-Instruct")
    plans = [json.loads(run_plan(path).stdout) for path in (base, head)]
    reasons = plan_diff.vm_replacement_offline(*plans, {"model": "codellama/CodeLlama-7b-Instruct-hf"},
                                               {"model": "Qwen/Qwen2.5-Coder-7B-Instruct"})
    assert reasons[:2] == [plan_diff.MODEL, plan_diff.USER_DATA]


def stack_in(stack_file, directory: str, model: str) -> Path:
    """A stack file named `case` in its own directory: two of them plan to the same URNs."""
    path = stack_file({"cloud": "aws", "region": "us-east-1", "model": model, "allowedCidrs": ["203.0.113.0/24"]},
                      name=directory)
    target = path.parent / directory / "Pulumi.case.yaml"
    target.parent.mkdir()
    path.rename(target)
    return target


def preview_step(op, type_, old=None, new=None, name="x"):
    return {"op": op, "urn": f"urn:pulumi:s::vllm-fleet::vllm-fleet:aws:Fleet${type_}::{name}",
            "oldState": {"inputs": old or {}}, "newState": {"inputs": new or {}}}


@pytest.mark.parametrize("step, reasons", [
    (preview_step("update", "aws:ec2/launchTemplate:LaunchTemplate", {"userData": "YQ=="}, {"userData": "Yg=="}),
     [plan_diff.USER_DATA]),
    (preview_step("update", "aws:autoscaling/group:Group", {"maxSize": 1}, {"maxSize": 4}), []),
    (preview_step("update", "azure-native:compute:VirtualMachineScaleSet",
                  {"sku": {"name": "a", "capacity": 1}}, {"sku": {"name": "a", "capacity": 2}}), []),
    (preview_step("update", "azure-native:compute:VirtualMachineScaleSet",
                  {"sku": {"name": "a"}}, {"sku": {"name": "b"}}), [plan_diff.INSTANCE_TYPE]),
    (preview_step("replace", "gcp:compute/instanceTemplate:InstanceTemplate", {"labels": 1}, {"labels": 2}),
     ["a new InstanceTemplate"]),
    (preview_step("same", "aws:ec2/launchTemplate:LaunchTemplate", {"imageId": "a"}, {"imageId": "b"}), []),
])
def test_vm_replacement_in_a_real_preview(step, reasons):
    assert plan_diff.vm_replacement_preview({"steps": [step]}) == reasons


def fake_pulumi(tmp_path: Path, monkeypatch, stdout: str, stderr: str = "", status: int = 0) -> Path:
    """A `pulumi` on PATH that prints what a real one would and records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "stdout").write_text(stdout)
    (tmp_path / "stderr").write_text(stderr)
    script = bin_dir / "pulumi"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/args\ncat {tmp_path}/stdout\n"
                      f"cat {tmp_path}/stderr >&2\nexit {status}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "args"


@pytest.mark.parametrize("stderr, status", [
    ("error: no stack named 'codellama-prod' found", "not-initialized"),
    ("error: [409] Conflict: Another update is currently in progress.", "busy"),
    ("error: preview failed", "failed"),
])
def test_pulumi_preview_outcomes(tmp_path, monkeypatch, stderr, status):
    args = fake_pulumi(tmp_path, monkeypatch, "", stderr, 255)
    assert preview_report.pulumi_preview("codellama-prod").status == status
    assert args.read_text().split() == ["preview", "--json", "--non-interactive", "--policy-pack", "policies",
                                        "--stack", "codellama-prod"]


def program_copy(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    root.mkdir()
    for entry in PROGRAM:
        source = ROOT / entry
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / entry)
    return root


def report_of(tmp_path, monkeypatch, head_root: Path, base_root: Path | None, environment: dict,
              part: str = "plan") -> tuple[int, str]:
    monkeypatch.setattr(preview_report, "ROOT", head_root)
    for name in ("ACTIONS_ID_TOKEN_REQUEST_URL", "AWS_PREVIEW_ROLE_ARN", "PULUMI_ACCESS_TOKEN", "PULUMI_BACKEND_URL",
                 "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / f"{part}.md"
    bases = ["--base-root", str(base_root)] if base_root else []
    status = preview_report.main(["--part", part, "--stack", "codellama-prod", *bases, "--out", str(out)])
    return status, out.read_text()


def test_plan_report_of_a_pull_request_that_changes_the_gpu(tmp_path, monkeypatch, capsys):
    base, head = program_copy(tmp_path, "base"), program_copy(tmp_path, "head")
    stack = head / "stacks" / "Pulumi.codellama-prod.yaml"
    stack.write_text(stack.read_text().replace("max: 4", "max: 4\n  vllm-fleet:accelerator: L40S:8"))
    args = fake_pulumi(tmp_path, monkeypatch, "{}")
    # The offline plan's job has neither an OIDC token nor a state backend: whatever it is given, it asks no cloud.
    status, report = report_of(tmp_path, monkeypatch, head, base, {
        "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token", "AWS_PREVIEW_ROLE_ARN": "arn:aws:iam::1:role/p",
        "PULUMI_ACCESS_TOKEN": "pul-secret-token"})
    assert status == 0 and not args.exists()
    assert report.startswith(preview_report.marker("codellama-prod"))
    assert ("**This change replaces every GPU VM of the stack** (user-data (vLLM release, model, serving "
            "arguments), instance type)") in report
    assert "| GPU VMs a month (desired replicas; officeHours counted) | $2,633 | $" in report and "(+$" in report
    assert "| g6e.12xlarge × 1/1/4 | g6e.48xlarge × 1/1/4 |" in report
    assert "against main 0 added, 0 removed, 1 changed" in report
    assert "- changed: `aws:ec2/launchTemplate:LaunchTemplate` codellama-prod-gpu (description, instanceType" in report
    assert "**Policy pack** (`policies/`): all policies pass" in report
    assert ("**`pulumi preview`** runs in the job `pulumi preview codellama-prod` once a reviewer approves the "
            "environment vllm-fleet-preview") in report
    assert "pul-secret-token" not in report + capsys.readouterr().out


def test_pulumi_report_of_a_pull_request_that_changes_the_gpu(tmp_path, monkeypatch, capsys):
    head = program_copy(tmp_path, "head")
    args = fake_pulumi(tmp_path, monkeypatch, json.dumps({"steps": [
        preview_step("update", "aws:ec2/launchTemplate:LaunchTemplate", {"instanceType": "a"}, {"instanceType": "b"},
                     name="codellama-prod-gpu"),
        preview_step("create", "aws:route53/record:Record", name="endpoint")],
        "diagnostics": [{"severity": "warning", "message": "from the real preview"}]}))
    status, report = report_of(tmp_path, monkeypatch, head, None, {
        "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token", "AWS_PREVIEW_ROLE_ARN": "arn:aws:iam::1:role/p",
        "PULUMI_ACCESS_TOKEN": "pul-secret-token"}, part="pulumi")
    assert status == 0
    assert args.read_text().split() == ["preview", "--json", "--non-interactive", "--policy-pack", "policies",
                                        "--stack", "codellama-prod"]
    assert report.startswith(preview_report.marker("codellama-prod", "pulumi"))
    assert "**This change replaces every GPU VM of the stack** (instance type)" in report
    assert "**`pulumi preview`** (with the policy pack): 1 to create, 1 to update, 0 to replace, 0 to delete" in report
    assert "- from the real preview" in report and "CNAME" not in report
    assert "pul-secret-token" not in report + capsys.readouterr().out


def test_plan_report_without_change(tmp_path, monkeypatch):
    base, head = program_copy(tmp_path, "base"), program_copy(tmp_path, "head")
    status, report = report_of(tmp_path, monkeypatch, head, base, {})
    assert status == 0
    assert "replaces every GPU VM" not in report
    assert "$2,633 | $2,633 (no change)" in report


def test_pulumi_report_without_credentials(tmp_path, monkeypatch):
    head = program_copy(tmp_path, "head")
    status, report = report_of(tmp_path, monkeypatch, head, None, {"ACTIONS_ID_TOKEN_REQUEST_URL": "https://token"},
                               part="pulumi")
    assert status == 0
    assert ("**`pulumi preview`** not run: no aws identity for the preview job: set the variables "
            "AWS_PREVIEW_ROLE_ARN (docs/ci.md)") in report


def test_report_of_a_policy_violation_fails_the_job(tmp_path, monkeypatch):
    base, head = program_copy(tmp_path, "base"), program_copy(tmp_path, "head")
    stack = head / "stacks" / "Pulumi.codellama-prod.yaml"
    stack.write_text(stack.read_text().replace("- --enable-prefix-caching", "- --enable-prefix-caching\n"
                                                                            "  vllm-fleet:replicas: {min: 9, max: 1}"))
    status, report = report_of(tmp_path, monkeypatch, head, base, {})
    assert status == 1
    assert "**The offline plan failed** (config error: error: config vllm-fleet:replicas" in report


def test_report_of_a_removed_stack(tmp_path, monkeypatch):
    base, head = program_copy(tmp_path, "base"), program_copy(tmp_path, "head")
    (head / "stacks" / "Pulumi.codellama-prod.yaml").unlink()
    status, report = report_of(tmp_path, monkeypatch, head, base, {})
    assert status == 0
    assert "`stacks/Pulumi.codellama-prod.yaml` is removed.** Merging does not destroy the stack" in report
    status, report = report_of(tmp_path, monkeypatch, head, None, {}, part="pulumi")
    assert status == 0 and "not run: the stack file is removed" in report


def test_policy_violations_are_listed(prod):
    head = copy.deepcopy(prod)
    head["diagnostics"].append({"severity": "error", "message": "[imdsv2-required] gpu: IMDSv2"})
    ok = preview_report.Outcome("ok", prod)
    report = preview_report.render_plan("s", "aws", "r", preview_report.Outcome("failed", head, "policy violation"),
                                        ok, {}, {})
    assert "**Policy pack** (`policies/`): 1 violations\n- [imdsv2-required] gpu: IMDSv2" in report


# --- credentials --------------------------------------------------------------------------------------------------
def test_credentials_name_what_is_missing():
    full = {"ACTIONS_ID_TOKEN_REQUEST_URL": "u", "GCP_WORKLOAD_IDENTITY_PROVIDER": "p",
            "GCP_DEPLOY_SERVICE_ACCOUNT": "d", "PULUMI_BACKEND_URL": "gs://b"}
    assert cloud_credentials.missing("gcp", "deploy", full) is None
    assert "forks" in cloud_credentials.missing("gcp", "deploy", {**full, "ACTIONS_ID_TOKEN_REQUEST_URL": ""})
    assert "GCP_PREVIEW_SERVICE_ACCOUNT" in cloud_credentials.missing("gcp", "preview", full)
    assert "GCP_DRIFT_SERVICE_ACCOUNT" in cloud_credentials.missing("gcp", "drift", full)
    no_backend = {**full, "PULUMI_BACKEND_URL": "", "GCP_PREVIEW_SERVICE_ACCOUNT": "p", "GCP_DRIFT_SERVICE_ACCOUNT": "d"}
    assert "PULUMI_ACCESS_TOKEN of the stack's environment" in cloud_credentials.missing("gcp", "deploy", no_backend)
    assert "PULUMI_PREVIEW_ACCESS_TOKEN of the environment vllm-fleet-preview" in cloud_credentials.missing(
        "gcp", "preview", no_backend)
    assert "PULUMI_DRIFT_ACCESS_TOKEN of the environment vllm-fleet-drift" in cloud_credentials.missing(
        "gcp", "drift", no_backend)


def test_a_deploy_without_credentials_fails(monkeypatch, capsys):
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_URL", raising=False)
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    assert cloud_credentials.main(["--cloud", "aws", "--mode", "deploy"]) == 1
    assert cloud_credentials.main(["--cloud", "aws", "--mode", "preview"]) == 0
    assert "available=false" in capsys.readouterr().out


# --- GitHub: one comment per stack, one issue per drifted stack ----------------------------------------------------
class FakeGitHub:
    def __init__(self, comments=(), issues=()):
        self.comments, self.issues, self.calls = list(comments), list(issues), []

    def __call__(self, method, path, body):
        self.calls.append((method, path.split("?")[0], body))
        if method == "GET":
            page = int(path.rsplit("page=", 1)[1])
            items = self.comments if "/comments" in path else self.issues
            return items[(page - 1) * 100:page * 100]
        return {}


def bot(body, id_=1, **extra):
    return {"id": id_, "number": id_, "body": body, "user": {"login": BOT}, **extra}


def test_a_stacks_comment_is_created_once_then_edited():
    marker = preview_report.marker("codellama-prod")
    fake = FakeGitHub(comments=[{"id": 5, "body": marker, "user": {"login": "someone"}},
                                *[bot("other", id_=i) for i in range(10, 110)], bot(f"{marker}\nold", id_=7)])
    assert GitHub("o/r", "t", send=fake).upsert_comment(3, marker, "new") == "updated"
    assert fake.calls[-1] == ("PATCH", "/repos/o/r/issues/comments/7", {"body": "new"})
    empty = FakeGitHub()
    assert GitHub("o/r", "t", send=empty).upsert_comment(3, marker, "new") == "created"
    assert empty.calls[-1] == ("POST", "/repos/o/r/issues/3/comments", {"body": "new"})


def test_the_comment_body_carries_its_marker_and_fits():
    body = pr_comment.body_of("s", "x" * 70000)
    assert body.startswith(preview_report.marker("s")) and len(body) < 65536
    # The offline plan and the real preview have a comment each: neither edits the other's.
    assert pr_comment.body_of("s", "x", "pulumi").startswith(preview_report.marker("s", "pulumi"))
    assert preview_report.marker("s", "pulumi") != preview_report.marker("s")


def test_drift_issue_is_opened_updated_and_closed():
    marker = drift_check.marker("s")
    fresh = FakeGitHub()
    assert GitHub("o/r", "t", send=fresh).upsert_issue(marker, "l", "T", "B") == "opened"
    assert fresh.calls[-1] == ("POST", "/repos/o/r/issues", {"title": "T", "body": "B", "labels": ["l"]})
    existing = FakeGitHub(issues=[bot(f"{marker} pr", id_=4, pull_request={}), bot(marker, id_=9)])
    assert GitHub("o/r", "t", send=existing).upsert_issue(marker, "l", "T", "B") == "updated"
    assert ("PATCH", "/repos/o/r/issues/9", {"title": "T", "body": "B"}) in existing.calls
    assert GitHub("o/r", "t", send=existing).close_issue(marker, "l", "ok") == "closed"
    assert existing.calls[-1] == ("PATCH", "/repos/o/r/issues/9", {"state": "closed", "state_reason": "completed"})
    assert GitHub("o/r", "t", send=FakeGitHub()).close_issue(marker, "l", "ok") == "none open"


# --- after the deploy: make check until served ---------------------------------------------------------------------
OUTPUTS = {"endpoint": "https://e", "servedModelName": "m", "apiKey": "sk-very-secret"}


def test_time_to_serve_defaults_to_an_hour():
    assert post_deploy_check.target_of(OUTPUTS).time_to_serve == 3600
    assert post_deploy_check.target_of({**OUTPUTS, "timeToServe": {"seconds": 1500}}).time_to_serve == 1500
    with pytest.raises(LookupError, match="apiKey"):
        post_deploy_check.target_of({**OUTPUTS, "apiKey": None})


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_checks_are_retried_until_they_pass():
    clock, statuses = Clock(), iter([2, 2, 0])
    target = post_deploy_check.target_of({**OUTPUTS, "timeToServe": {"seconds": 600}})
    assert post_deploy_check.check_until_served(target, lambda t: next(statuses), clock, clock.sleep, 60) == 0
    assert clock.now == 120


def test_checks_give_up_at_the_stacks_time_to_serve(capsys):
    clock, attempts = Clock(), []
    target = post_deploy_check.target_of({**OUTPUTS, "timeToServe": {"seconds": 600}})
    assert post_deploy_check.check_until_served(target, lambda t: attempts.append(t) or 2, clock, clock.sleep, 60) == 1
    assert len(attempts) == 11 and clock.now == 600  # at 0, 60, ... 600 s
    assert "checks still fail after 600 s" in capsys.readouterr().out


def test_the_api_key_is_masked_before_anything_is_printed(monkeypatch, capsys):
    monkeypatch.setattr(post_deploy_check, "stack_outputs", lambda stack: OUTPUTS)
    monkeypatch.setattr(post_deploy_check, "check_until_served", lambda target, interval: 0)
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    assert post_deploy_check.main(["--stack", "s"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "::add-mask::sk-very-secret"
    assert not [line for line in lines[1:] if "sk-very-secret" in line]
    assert "endpoint=https://e" in lines


def test_make_check_gets_the_key_in_its_environment_only(monkeypatch):
    seen = {}

    def run(command, cwd, env):
        seen.update(command=command, key=env["OPENAI_API_KEY"])
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(post_deploy_check.subprocess, "run", run)
    assert post_deploy_check.make_check(post_deploy_check.target_of(OUTPUTS)) == 0
    assert seen == {"command": ["make", "check", "URL=https://e", "MODEL=m"], "key": "sk-very-secret"}


# --- drift ---------------------------------------------------------------------------------------------------------
def test_drift_is_what_refresh_found_changed():
    same = preview_step("same", "aws:ec2/vpc:Vpc")
    changed = {**preview_step("update", "aws:ec2/securityGroup:SecurityGroup", name="sg"),
               "detailedDiff": {"ingress": {"kind": "update"}}}
    refreshed = {**preview_step("refresh", "aws:lb/listener:Listener", name="l"), "diffReasons": ["port"]}
    assert drift_check.drifted({"steps": [same]}) == []
    assert drift_check.drifted({"steps": [same, changed, refreshed]}) == [
        "update: `aws:ec2/securityGroup:SecurityGroup` sg (ingress)", "refresh: `aws:lb/listener:Listener` l (port)"]
    assert drift_check.drifted({"steps": [], "changeSummary": {"same": 3, "delete": 1}}) == [
        'changes by operation: {"same": 3, "delete": 1}']


@pytest.mark.parametrize("document, stderr, status, expected", [
    ({"steps": [{**preview_step("delete", "aws:ec2/eip:Eip", name="ip")}]}, "", 0, "opened"),
    ({"steps": [preview_step("same", "aws:ec2/vpc:Vpc")]}, "", 0, "closed"),
    (None, "error: [409] Conflict: Another update is currently in progress.", 255, None),
])
def test_the_drift_check_keeps_the_issue(tmp_path, monkeypatch, document, stderr, status, expected):
    fake_pulumi(tmp_path, monkeypatch, json.dumps(document) if document else "", stderr, status)
    done = []

    class Recording:
        def upsert_issue(self, marker, label, title, body):
            assert marker in body and "ip" in body and label == drift_check.LABEL
            done.append("opened")
            return "opened"

        def close_issue(self, marker, label, comment):
            done.append("closed")
            return "closed"

    monkeypatch.setattr(drift_check.GitHub, "from_environment", classmethod(lambda cls: Recording()))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert drift_check.main(["--stack", "s"]) == 0
    assert done == ([expected] if expected else [])


def test_a_drift_check_that_cannot_run_fails(tmp_path, monkeypatch):
    fake_pulumi(tmp_path, monkeypatch, "", "error: no credentials", 255)
    assert drift_check.main(["--stack", "s"]) == 1


@pytest.mark.parametrize("status, stdout, expected", [
    (1, "Resolving ... no longer gives ...:\n\n- `ml-dtypes`: locked 0.6.0, resolves to 0.7.0", "opened"),
    (0, "The resolution ... is the lock's", "closed"),
])
def test_the_vm_lock_check_keeps_one_issue(monkeypatch, status, stdout, expected):
    done = []

    class Recording:
        def upsert_issue(self, marker, label, title, body, again):
            assert marker in body and "`ml-dtypes`: locked 0.6.0, resolves to 0.7.0" in body
            assert label == vm_lock_issue.LABEL and again.startswith("Still moved")
            done.append("opened")
            return "opened"

        def close_issue(self, marker, label, comment):
            done.append("closed")
            return "closed"

    monkeypatch.setattr(vm_lock_issue, "run_check", lambda: subprocess.CompletedProcess([], status, stdout, ""))
    monkeypatch.setattr(vm_lock_issue.GitHub, "from_environment", classmethod(lambda cls: Recording()))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert vm_lock_issue.main() == 0
    assert done == [expected]


def test_a_vm_lock_check_that_cannot_ask_the_index_fails_without_touching_the_issue(monkeypatch):
    monkeypatch.setattr(vm_lock_issue, "run_check",
                        lambda: subprocess.CompletedProcess([], 2, "", "vm-lock-check could not ask the index"))
    monkeypatch.setattr(vm_lock_issue.GitHub, "from_environment", classmethod(lambda cls: pytest.fail("asked")))
    assert vm_lock_issue.main() == 1
