"""The scripts the workflows run (.github/scripts), offline: which stacks a change affects, the preview report
(costs, changes, GPU VM replacement, policy violations, warnings) from real offline plans and a stand-in
`pulumi`, the comment and issue kept one per stack, the deploy (main's tip, no stack output in a step output, the
cleanup of a stopped one), the post-deploy check (the roll per cloud from recorded CLI answers, retries, revoked
keys refused by a real HTTP server), the drift check (a lock nobody holds is reported)."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_plan

sys.path.insert(0, str(ROOT / ".github" / "scripts"))

import affected_stacks  # noqa: E402 (after the path)
import cloud_credentials  # noqa: E402
import deploy  # noqa: E402
import drift_check  # noqa: E402
import plan_diff  # noqa: E402
import post_deploy_check  # noqa: E402
import pr_comment  # noqa: E402
import preview_report  # noqa: E402
import vm_lock_issue  # noqa: E402
from github_api import BOT, GitHub  # noqa: E402

STACKS = ["codellama-dev", "codellama-gcp", "codellama-prod"]
PROGRAM = ("fleet", "cli", "components", "activator", "cloud-init", "catalog", "policies", "__main__.py", "Pulumi.yaml",
           "stacks")


# --- which stacks -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("changed, expected", [
    (["stacks/Pulumi.codellama-prod.yaml"], ["codellama-prod"]),
    (["stacks/Pulumi.codellama-prod.yaml", "README.md"], ["codellama-prod"]),
    (["components/aws/fleet.py"], STACKS),
    (["cloud-init/vllm.service.j2"], STACKS),
    (["activator/core.py"], STACKS),
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


def pulumi_on_path(tmp_path: Path, monkeypatch, answer: str) -> Path:
    """A `pulumi` on PATH that records its arguments (the returned file) and then runs `answer` (shell)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "pulumi"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/args\n{answer}")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "args"


def fake_pulumi(tmp_path: Path, monkeypatch, stdout: str, stderr: str = "", status: int = 0) -> Path:
    """A `pulumi` on PATH that prints what a real one would and records its arguments."""
    (tmp_path / "stdout").write_text(stdout)
    (tmp_path / "stderr").write_text(stderr)
    return pulumi_on_path(tmp_path, monkeypatch,
                          f"cat {tmp_path}/stdout\ncat {tmp_path}/stderr >&2\nexit {status}\n")


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
    # a larger VM holds more requests: the scaling target and the dashboard's cost follow the launch template
    assert "against main 0 added, 0 removed, 3 changed" in report
    assert "- changed: `aws:autoscaling/policy:Policy` codellama-prod-vllm-requests (targetTrackingConfiguration)" in report
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
    config = yaml.safe_load(stack.read_text())
    config["config"]["vllm-fleet:replicas"] = {"min": 9, "max": 1}
    stack.write_text(yaml.safe_dump(config))
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


def test_every_key_is_masked_before_anything_is_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    post_deploy_check.record_file("s").write_text(json.dumps(
        {"startedAt": "2026-12-07T10:00:00+00:00", "apiKeys": {"alice": "sk-alice-old"}}))
    states = {True: exported({"default": "sk-very-secret"}), False: exported(None)}
    monkeypatch.setattr(post_deploy_check, "export", lambda stack, show_secrets=False: states[show_secrets])
    monkeypatch.setattr(post_deploy_check, "stack_outputs", lambda stack: OUTPUTS)
    monkeypatch.setattr(post_deploy_check, "wait_for_roll", lambda *args, **kwargs: print("sk-very-secret") or 0)
    monkeypatch.setattr(post_deploy_check, "check_until_served", lambda target, interval: 0)
    monkeypatch.setattr(post_deploy_check, "revoked_keys_refused", lambda target, keys: 0)
    assert post_deploy_check.main(["--stack", "s", "--cloud", "aws", "--region", "us-east-1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    masks = [line for line in lines if line.startswith("::add-mask::")]
    assert lines[:len(masks)] == masks
    assert set(masks) == {"::add-mask::sk-alice-old", "::add-mask::sk-very-secret"}
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


# --- a lock on the drift check -------------------------------------------------------------------------------------
def recorded_github(answers: dict[str, object]):
    """GitHub's REST answers by path (query left off), as recorded from the API's documented responses."""
    calls = []

    def send(method, path, body):
        calls.append((method, path, body))
        if method != "GET":
            return {}
        return answers[path.split("?")[0]]
    return send, calls


RUNS = {"/repos/o/r/actions/workflows/deploy.yml/runs": {"total_count": 1, "workflow_runs": [
            {"id": 71, "html_url": "https://github.com/o/r/actions/runs/71", "status": "in_progress"}]},
        "/repos/o/r/actions/workflows/preview.yml/runs": {"total_count": 0, "workflow_runs": []}}


def job(name, status="in_progress"):
    return {"id": 9, "name": name, "status": status, "html_url": f"https://github.com/o/r/actions/runs/71/job/{name}"}


@pytest.mark.parametrize("stderr", ["error: [409] Conflict: Another update is currently in progress.",
                                    "error: the stack is currently locked by 1 lock(s). Either wait for the other "
                                    "process(es) to end or delete the lock file with `pulumi cancel`."])
@pytest.mark.parametrize("jobs, status, issue", [
    ([job("deploy s")], 0, False),  # a deploy holds it: checked on the next run
    ([job("deploy other"), job("deploy s", "completed")], 1, True),  # nobody holds it: reported, job fails
])
def test_a_locked_stack_is_skipped_while_a_job_holds_it_and_reported_when_none_does(
        tmp_path, monkeypatch, capsys, stderr, jobs, status, issue):
    fake_pulumi(tmp_path, monkeypatch, "", stderr, 255)
    send, calls = recorded_github({**RUNS, "/repos/o/r/actions/runs/71/jobs": {"total_count": len(jobs), "jobs": jobs},
                                   "/repos/o/r/issues": []})
    monkeypatch.setattr(drift_check.GitHub, "from_environment", classmethod(lambda cls: GitHub("o/r", "t", send=send)))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert drift_check.main(["--stack", "s"]) == status
    opened = [body for method, path, body in calls if method == "POST" and path == "/repos/o/r/issues"]
    if issue:
        assert opened[0]["title"] == "Drift check blocked: vllm-fleet stack s is locked"
        assert drift_check.marker("s") in opened[0]["body"] and "pulumi cancel -s s" in opened[0]["body"]
        assert "no deploy or preview of it runs" in capsys.readouterr().out
    else:
        assert opened == [] and "locked by a running job" in capsys.readouterr().out


# --- the deploy: main's tip, no output to a step output, the cleanup ------------------------------------------------
SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret in an exported state


def secret(value):
    return {SIG: "1b47061264138c4ac30d75fd1eb44270", "plaintext": json.dumps(value)}


def exported(keys: dict[str, str] | None, cloud: str = "aws", pending=()) -> dict:
    """The shape of `pulumi stack export [--show-secrets]`: the apiKeys secret and the VMs' group of a stack."""
    secret_type, path = {"aws": ("aws:secretsmanager/secretVersion:SecretVersion", "secretString"),
                         "gcp": ("gcp:secretmanager/secretVersion:SecretVersion", "secretData"),
                         "azure": ("azure-native:keyvault:Secret", "properties.value")}[cloud]
    inputs: dict = {}
    if keys is not None:
        *parents, leaf = path.split(".")
        node = inputs
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = secret(json.dumps(keys, sort_keys=True))
    group = {"aws": {"outputs": {"name": "s-gpu"}},
             "gcp": {"outputs": {"name": "s-gpu", "region": "us-central1", "project": "p"}},
             "azure": {"outputs": {"name": "s-gpu"}, "inputs": {"resourceGroupName": "s-rg"}}}[cloud]
    return {"version": 3, "deployment": {
        "resources": [
            {"urn": "urn:pulumi:s::vllm-fleet::pulumi:pulumi:Stack::vllm-fleet-s", "type": "pulumi:pulumi:Stack"},
            {"urn": f"urn:pulumi:s::vllm-fleet::vllm-fleet:{cloud}:Fleet${secret_type}::s-apiKeys",
             "type": secret_type, "inputs": inputs},
            {"urn": f"urn:pulumi:s::vllm-fleet::vllm-fleet:{cloud}:Fleet${post_deploy_check.GROUPS[cloud]}::s-gpu",
             "type": post_deploy_check.GROUPS[cloud], **group}],
        "pending_operations": list(pending)}}


def recorded_pulumi(tmp_path: Path, monkeypatch, answers: dict[str, tuple]) -> Path:
    """A `pulumi` on PATH that gives each subcommand ("up", "cancel", "stack-export") its recorded answer:
    (stdout, exit status) or (stdout, exit status, stderr)."""
    answer_dir = tmp_path / "answers"
    answer_dir.mkdir()
    for name, (stdout, status, *stderr) in answers.items():
        (answer_dir / f"{name}.out").write_text(stdout)
        (answer_dir / f"{name}.err").write_text("".join(stderr))
        (answer_dir / f"{name}.rc").write_text(str(status))
    return pulumi_on_path(tmp_path, monkeypatch, f'key="$1"; [ "$1" = stack ] && key="$1-$2"\n'
                                                f'cat {answer_dir}/$key.out\ncat {answer_dir}/$key.err >&2\n'
                                                f'exit $(cat {answer_dir}/$key.rc)\n')


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A git checkout of main as the deploy job makes it; GITHUB_OUTPUT and the summary as files."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "commit", "-q", "--allow-empty", "-m", "main")
    monkeypatch.setattr(deploy, "ROOT", repo)
    monkeypatch.setattr(post_deploy_check, "ROOT", repo)
    for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        (tmp_path / name).write_text("")
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    head = git(repo, "rev-parse", "HEAD")
    monkeypatch.setenv("GITHUB_SHA", head)
    return head


def github_with(tip: str, comparison: dict | None = None):
    answers = {"/repos/o/r/git/ref/heads/main": {"ref": "refs/heads/main", "object": {"sha": tip, "type": "commit"}}}
    if comparison is not None:
        answers[f"/repos/o/r/compare/{comparison.pop('base')}...{tip}"] = comparison
    send, calls = recorded_github(answers)
    return GitHub("o/r", "t", send=send), calls


UP_LOG = "Updating (s)\n + 3 created\nOutputs:\n    apiKey: [secret]\nResources: 3 created\n"


def test_a_deploy_of_mains_tip_runs_pulumi_up_and_writes_no_stack_output(tmp_path, monkeypatch, checkout, capsys):
    args = recorded_pulumi(tmp_path, monkeypatch, {
        "stack-export": (json.dumps(exported({"default": "sk-before", "alice": "sk-alice"})), 0), "up": (UP_LOG, 0)})
    github, _ = github_with(checkout)
    record = post_deploy_check.record_file("s")
    assert deploy.up("s", github, record) == 0
    assert args.read_text().splitlines() == ["stack export --stack s --show-secrets",
                                             "up --yes --non-interactive --policy-pack policies --suppress-outputs "
                                             "--stack s"]
    # The one step output: whether it deployed. No output of the stack, no key.
    assert (tmp_path / "GITHUB_OUTPUT").read_text() == "deployed=true\n"
    out = capsys.readouterr().out
    assert "::add-mask::sk-before" in out and "::add-mask::sk-alice" in out
    assert json.loads(record.read_text())["apiKeys"] == {"default": "sk-before", "alice": "sk-alice"}
    assert stat.S_IMODE(record.stat().st_mode) == 0o600


@pytest.mark.parametrize("comparison, deploys", [
    ({"status": "ahead", "files": [{"filename": "stacks/Pulumi.s.yaml", "status": "modified"}]}, False),
    ({"status": "ahead", "files": [{"filename": "fleet/x.py", "previous_filename": "docs/x.md",
                                    "status": "renamed"}]}, False),
    ({"status": "ahead", "files": [{"filename": "docs/ci.md", "status": "modified"},
                                   {"filename": "stacks/Pulumi.other.yaml", "status": "modified"}]}, True),
    ({"status": "ahead", "files": [{"filename": f"docs/{i}.md", "status": "added"} for i in range(300)]}, False),
    ({"status": "diverged", "files": []}, False),
])
def test_a_deploy_of_a_main_that_moved_on(tmp_path, monkeypatch, checkout, capsys, comparison, deploys):
    args = recorded_pulumi(tmp_path, monkeypatch, {"stack-export": (json.dumps(exported({})), 0), "up": ("", 0)})
    github, calls = github_with("f" * 40, {"base": checkout, **comparison})
    assert deploy.up("s", github, post_deploy_check.record_file("s")) == 0
    assert (tmp_path / "GITHUB_OUTPUT").read_text() == f"deployed={'true' if deploys else 'false'}\n"
    assert ("up --yes" in (args.read_text() if args.exists() else "")) == deploys
    out = capsys.readouterr().out
    if deploys:
        assert "with no change to s: deploying" in out
    else:
        assert f"::notice::main moved on from {checkout[:12]} to ffffffffffff, which changes s" in out
        assert "which changes s" in (tmp_path / "GITHUB_STEP_SUMMARY").read_text()


def test_a_deploy_started_for_an_older_commit_says_it_deploys_the_tip(tmp_path, monkeypatch, checkout, capsys):
    recorded_pulumi(tmp_path, monkeypatch, {"stack-export": (json.dumps(exported({})), 0), "up": ("", 0)})
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    assert deploy.up("s", github_with(checkout)[0], post_deploy_check.record_file("s")) == 0
    assert f"started for aaaaaaaaaaaa; main is at {checkout[:12]} now" in capsys.readouterr().out


def test_a_failed_pulumi_up_says_so(tmp_path, monkeypatch, checkout):
    recorded_pulumi(tmp_path, monkeypatch, {"stack-export": (json.dumps(exported({})), 0), "up": ("error", 255)})
    assert deploy.up("s", github_with(checkout)[0], post_deploy_check.record_file("s")) == 255
    assert (tmp_path / "GITHUB_OUTPUT").read_text() == "deployed=false\n"


def test_a_deploy_of_a_stack_never_initialized_is_skipped_with_one_notice(tmp_path, monkeypatch, checkout, capsys):
    # What the Pulumi CLI answers for a stack the backend does not have (an example stack kept in a fork).
    args = recorded_pulumi(tmp_path, monkeypatch, {
        "stack-export": ("", 255, "error: no stack named 'codellama-gcp' found\n"), "up": ("", 0)})
    assert deploy.up("codellama-gcp", github_with(checkout)[0], post_deploy_check.record_file("codellama-gcp")) == 0
    assert args.read_text().splitlines() == ["stack export --stack codellama-gcp --show-secrets"]  # no `pulumi up`
    assert (tmp_path / "GITHUB_OUTPUT").read_text() == "deployed=false\n"
    notices = [line for line in capsys.readouterr().out.splitlines() if line.startswith("::")]
    assert notices == ["::notice::codellama-gcp not deployed: there is no Pulumi stack codellama-gcp in the state "
                       "backend: `pulumi stack init codellama-gcp` creates it (docs/ci.md, section 5), or delete "
                       "stacks/Pulumi.codellama-gcp.yaml if it is an example you do not deploy"]
    assert "codellama-gcp**: not deployed" in (tmp_path / "GITHUB_STEP_SUMMARY").read_text()


def test_a_deploy_whose_state_cannot_be_read_still_fails(tmp_path, monkeypatch, checkout, capsys):
    recorded_pulumi(tmp_path, monkeypatch, {"stack-export": ("", 255, "error: 403 Forbidden\n"), "up": ("", 0)})
    assert deploy.up("s", github_with(checkout)[0], post_deploy_check.record_file("s")) == 1
    assert "::error::pulumi stack export failed: error: 403 Forbidden" in capsys.readouterr().out


PENDING = [{"resource": {"urn": "urn:pulumi:s::vllm-fleet::vllm-fleet:aws:Fleet$aws:autoscaling/group:Group::s-gpu",
                         "type": "aws:autoscaling/group:Group"}, "type": "creating"},
           {"resource": {"urn": "urn:pulumi:s::vllm-fleet::vllm-fleet:aws:Fleet$aws:lb/listener:Listener::s-https",
                         "type": "aws:lb/listener:Listener", "id": "arn:l"}, "type": "updating"}]


@pytest.mark.parametrize("cancel, pending, status", [
    (("Stack s update cancelled.", 0), [], 0),
    (("Stack s update cancelled.", 0), PENDING, 1),
    (("error: the stack has no update in progress", 255), [], 1),
])
def test_the_cleanup_of_a_stopped_deploy(tmp_path, monkeypatch, checkout, capsys, cancel, pending, status):
    args = recorded_pulumi(tmp_path, monkeypatch, {"cancel": cancel,
                                                   "stack-export": (json.dumps(exported({}, pending=pending)), 0)})
    assert deploy.main(["cleanup", "--stack", "s"]) == status
    assert args.read_text().splitlines() == ["cancel --yes --stack s", "stack export --stack s"]
    out = capsys.readouterr().out
    if pending:
        assert "::error::s: interrupted while creating urn:pulumi:s::vllm-fleet::vllm-fleet:aws:Fleet$aws:" \
               "autoscaling/group:Group::s-gpu" in out
        summary = (tmp_path / "GITHUB_STEP_SUMMARY").read_text()
        assert "**s has 2 pending operations**" in summary and "--import-pending-creates <urn> <id>" in summary
    elif cancel[1]:
        assert "::warning::pulumi cancel -s s exited 255" in out


# --- the post-deploy check: the roll, then every revoked key refused ------------------------------------------------
@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_the_keys_and_the_group_are_read_from_the_exported_state(cloud):
    state = exported({"default": "sk-1", "bob": "sk-2"}, cloud)
    assert post_deploy_check.api_keys_in_state(state) == {"default": "sk-1", "bob": "sk-2"}
    assert post_deploy_check.api_keys_in_state(exported(None, cloud)) == {}
    assert post_deploy_check.group_in_state(state, cloud, "us-east-1") == {
        "aws": {"name": "s-gpu", "region": "us-east-1"},
        "gcp": {"name": "s-gpu", "region": "us-central1", "project": "p"},
        "azure": {"name": "s-gpu", "resourceGroup": "s-rg"}}[cloud]


def test_the_roll_statuses_are_each_clouds_own():
    import botocore.session
    from azure.mgmt.compute.models import RollingUpgradeStatusCode

    model = botocore.session.get_session().get_service_model("autoscaling")
    assert set(post_deploy_check.AWS_REFRESH) == set(model.shape_for("InstanceRefreshStatus").enum)
    assert {"Status", "StartTime", "PercentageComplete", "StatusReason"} <= set(model.shape_for("InstanceRefresh").members)
    assert set(post_deploy_check.AZURE_UPGRADE) == {code.value for code in RollingUpgradeStatusCode}
    import googleapiclient
    compute = json.loads((Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" /
                          "compute.v1.json").read_text())["schemas"]
    assert {"isStable", "versionTarget"} <= set(compute["InstanceGroupManagerStatus"]["properties"])
    assert "isReached" in compute["InstanceGroupManagerStatusVersionTarget"]["properties"]


SINCE = post_deploy_check._time("2026-12-07T10:00:00Z")


def recorded_cli(answers: dict[str, list[tuple[int, object]]]):
    """Each CLI command (by its first words) answers its recorded answers in turn, the last one again."""
    calls = []

    def run(command):
        calls.append(command)
        key = next(k for k in answers if " ".join(command).startswith(k))
        status, answer = answers[key][0] if len(answers[key]) == 1 else answers[key].pop(0)
        return subprocess.CompletedProcess(command, status, json.dumps(answer) if answer is not None else "",
                                           "" if status == 0 else "ERROR: (ResourceNotFound) not found")
    return run, calls


def refresh(status, start="2026-12-07T10:01:00Z", percent=50):
    return {"InstanceRefreshId": "r1", "AutoScalingGroupName": "s-gpu", "Status": status, "StartTime": start,
            "PercentageComplete": percent, "InstancesToUpdate": 1}


AWS_GROUP = {"name": "s-gpu", "region": "us-east-1"}
GCP_GROUP = {"name": "s-gpu", "region": "us-central1", "project": "p"}
AZURE_GROUP = {"name": "s-gpu", "resourceGroup": "s-rg"}


@pytest.mark.parametrize("cloud, group, answers, expected", [
    ("aws", AWS_GROUP, {"aws autoscaling": [(0, {"InstanceRefreshes": [refresh("InProgress")]})]}, "rolling"),
    ("aws", AWS_GROUP, {"aws autoscaling": [(0, {"InstanceRefreshes": [
        refresh("Successful", "2026-12-06T10:00:00Z", 100), refresh("RollbackSuccessful")]})]}, "failed"),
    ("aws", AWS_GROUP, {"aws autoscaling": [(0, {"InstanceRefreshes": [refresh("Successful", percent=100)]})]}, "done"),
    # The last refresh was an earlier deploy's: this one did not change the VMs.
    ("aws", AWS_GROUP, {"aws autoscaling": [(0, {"InstanceRefreshes": [
        refresh("Failed", "2026-12-01T10:00:00Z")]})]}, "done"),
    ("gcp", GCP_GROUP, {"gcloud": [(0, {"name": "s-gpu", "status": {
        "isStable": False, "versionTarget": {"isReached": False}}})]}, "rolling"),
    ("gcp", GCP_GROUP, {"gcloud": [(0, {"name": "s-gpu", "status": {
        "isStable": True, "versionTarget": {"isReached": False}}})]}, "rolling"),
    ("gcp", GCP_GROUP, {"gcloud": [(0, {"name": "s-gpu", "status": {
        "isStable": True, "versionTarget": {"isReached": True}}})]}, "done"),
    ("azure", AZURE_GROUP, {"az vmss rolling-upgrade": [(0, {"runningStatus": {
        "code": "Faulted", "startTime": "2026-12-07T10:02:00Z", "lastAction": "Start"}})]}, "failed"),
    ("azure", AZURE_GROUP, {"az vmss rolling-upgrade": [(0, {"runningStatus": {
        "code": "RollingForward", "startTime": "2026-12-07T10:02:00Z", "lastAction": "Start"}})]}, "rolling"),
    # No upgrade since the deploy (none at all: az says not found): the VMs' models tell.
    ("azure", AZURE_GROUP, {"az vmss rolling-upgrade": [(1, None)], "az vmss list-instances": [
        (0, [{"name": "s-gpu_0", "latestModelApplied": True}, {"name": "s-gpu_1", "latestModelApplied": False}])]},
     "rolling"),
    ("azure", AZURE_GROUP, {"az vmss rolling-upgrade": [(0, {"runningStatus": {
        "code": "Completed", "startTime": "2026-12-07T10:02:00Z"}})], "az vmss list-instances": [
        (0, [{"name": "s-gpu_0", "latestModelApplied": True}])]}, "done"),
])
def test_the_roll_as_each_cloud_reports_it(cloud, group, answers, expected):
    run, calls = recorded_cli(answers)
    assert post_deploy_check.roll_state(cloud, group, SINCE, run)[0] == expected
    assert calls[0][:3] == {"aws": ["aws", "autoscaling", "describe-instance-refreshes"],
                            "gcp": ["gcloud", "compute", "instance-groups"],
                            "azure": ["az", "vmss", "rolling-upgrade"]}[cloud]


def test_the_check_waits_for_the_roll_and_fails_on_a_rollback(capsys):
    clock = Clock()
    run, calls = recorded_cli({"aws autoscaling": [(0, {"InstanceRefreshes": [refresh("InProgress")]}),
                                                   (0, {"InstanceRefreshes": [refresh("Successful", percent=100)]})]})
    assert post_deploy_check.wait_for_roll("aws", AWS_GROUP, SINCE, 600, run, clock, clock.sleep, 60) == 0
    assert clock.now == 60 and len(calls) == 2
    run, _ = recorded_cli({"aws autoscaling": [(0, {"InstanceRefreshes": [refresh("RollbackSuccessful")]})]})
    assert post_deploy_check.wait_for_roll("aws", AWS_GROUP, SINCE, 600, run, clock, clock.sleep, 60) == 1
    assert "VMs of before, which accept the keys of before, may still serve" in capsys.readouterr().out
    clock = Clock()
    run, _ = recorded_cli({"gcloud": [(1, None)]})  # a CLI that keeps failing: asked again, named at the deadline
    assert post_deploy_check.wait_for_roll("gcp", GCP_GROUP, SINCE, 120, run, clock, clock.sleep, 60) == 1
    assert "gcloud compute instance-groups managed failed: ERROR: (ResourceNotFound)" in capsys.readouterr().out
    clock = Clock()
    run, _ = recorded_cli({"gcloud": [(0, {"status": {"isStable": False, "versionTarget": {"isReached": False}}})]})
    assert post_deploy_check.wait_for_roll("gcp", GCP_GROUP, SINCE, 300, run, clock, clock.sleep, 60) == 1
    assert clock.now == 300 and "is not done after 300 s" in capsys.readouterr().out


def test_revoked_keys_are_the_removed_and_the_replaced_ones():
    before = {"default": "sk-1", "alice": "sk-a", "bob": "sk-b"}
    after = {"default": "sk-1", "bob": "sk-b2"}  # alice removed, bob given a new key
    assert post_deploy_check.revoked(before, after) == {"alice": "sk-a", "bob": "sk-b"}
    assert post_deploy_check.revoked(before, before) == {}


@contextlib.contextmanager
def http_server(answer_get):
    """A real HTTP server on loopback whose GET requests `answer_get(handler)` answers; yields its URL."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            answer_get(self)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@pytest.fixture
def endpoint():
    """A real HTTP server that, like vLLM with --api-key, answers /v1/models 401 to any key but its own."""
    accepted = {"sk-1"}

    def answer(handler):
        key = handler.headers.get("Authorization", "").removeprefix("Bearer ")
        handler.send_response(200 if handler.path == "/v1/models" and key in accepted else 401)
        handler.end_headers()

    with http_server(answer) as url:
        yield url, accepted


def test_each_revoked_key_must_be_refused(endpoint, capsys):
    url, accepted = endpoint
    target = post_deploy_check.target_of({**OUTPUTS, "endpoint": url})
    assert post_deploy_check.revoked_keys_refused(target, {"alice": "sk-a", "bob": "sk-b"}) == 0
    assert "every revoked key is refused (401): alice, bob" in capsys.readouterr().out
    accepted.add("sk-b")  # an old VM still serving bob's key of before
    assert post_deploy_check.revoked_keys_refused(target, {"alice": "sk-a", "bob": "sk-b"}) == 1
    out = capsys.readouterr().out
    assert "::error::the revoked API key 'bob' is still accepted" in out and "sk-b" not in out


def test_the_post_deploy_check_runs_roll_then_make_check_then_the_revoked_keys(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    post_deploy_check.record_file("s").write_text(json.dumps(
        {"startedAt": "2026-12-07T10:00:00+00:00", "apiKeys": {"default": "sk-old", "alice": "sk-a"}}))
    states = {True: exported({"default": "sk-new"}, "gcp"), False: exported(None, "gcp")}
    monkeypatch.setattr(post_deploy_check, "export", lambda stack, show_secrets=False: states[show_secrets])
    monkeypatch.setattr(post_deploy_check, "stack_outputs",
                        lambda stack: {**OUTPUTS, "apiKey": "sk-new", "replicas": {"desired": 2}})
    done = []
    monkeypatch.setattr(post_deploy_check, "wait_for_roll", lambda cloud, group, since, seconds, interval:
                        done.append(("roll", cloud, group["name"], since.hour, seconds)) or 0)
    monkeypatch.setattr(post_deploy_check, "check_until_served", lambda target, interval: done.append("check") or 0)
    monkeypatch.setattr(post_deploy_check, "revoked_keys_refused",
                        lambda target, keys: done.append(("revoked", sorted(keys))) or 0)
    assert post_deploy_check.main(["--stack", "s", "--cloud", "gcp", "--region", "us-central1"]) == 0
    assert done == [("roll", "gcp", "s-gpu", 10, 7200), "check", ("revoked", ["alice", "default"])]
    out = capsys.readouterr().out
    assert {"::add-mask::sk-old", "::add-mask::sk-a", "::add-mask::sk-new"} <= set(out.splitlines())


# --- the post-deploy check: the key meant for it, office hours -------------------------------------------------------
def test_the_post_deploy_check_uses_the_named_ci_key_where_the_stack_has_one():
    keys = {"default": "sk-default", "alice": "sk-a", "ci": "sk-ci"}
    target = post_deploy_check.target_of(OUTPUTS, keys)
    assert (target.api_key, target.key_name) == ("sk-ci", "ci")
    without = post_deploy_check.target_of(OUTPUTS, {"alice": "sk-a"})
    assert (without.api_key, without.key_name) == ("sk-very-secret", "")


BERLIN_HOURS = {"timezone": "Europe/Berlin", "days": "Mon-Fri", "start": "08:00", "end": "19:00"}
HOURS_OUTPUTS = {**OUTPUTS, "officeHours": {"scaleUpMinutesEarly": 30}}


@pytest.mark.parametrize("when, offhours, closed", [
    ("2026-12-07T19:00:00+00:00", 0, True),   # Monday 20:00 in Berlin: the issue's merge
    ("2026-12-07T09:00:00+00:00", 0, False),  # Monday 10:00
    ("2026-12-08T06:40:00+00:00", 0, False),  # Tuesday 07:40: in the scale-up's lead, VMs are coming
    ("2026-12-08T06:20:00+00:00", 0, True),   # Tuesday 07:20: before the lead
    ("2026-12-12T12:00:00+00:00", 0, True),   # Saturday
    ("2026-12-07T19:00:00+00:00", 1, False),  # offHoursReplicas 1: a VM serves off hours
])
def test_a_fleet_is_closed_outside_its_hours_and_their_lead(when, offhours, closed):
    from fleet.schedule import parse_office_hours

    hours = parse_office_hours({**BERLIN_HOURS, "offHoursReplicas": offhours}, 1)
    assert post_deploy_check.closed_now(hours, HOURS_OUTPUTS, dt.datetime.fromisoformat(when)) == closed
    assert post_deploy_check.closed_now(None, OUTPUTS, dt.datetime.fromisoformat(when)) is False


@pytest.fixture
def closed_endpoint():
    """A real HTTP server that answers /v1/models what it is told (status, content type, body)."""
    answer = {"status": 503, "type": "application/json", "body": ""}

    def respond(handler):
        handler.send_response(answer["status"])
        handler.send_header("Content-Type", answer["type"])
        handler.end_headers()
        handler.wfile.write(answer["body"].encode())

    with http_server(respond) as url:
        yield url, answer


def test_the_closed_answer_is_checked_as_each_cloud_gives_it(closed_endpoint, capsys):
    import html

    from fleet.schedule import closed_answer, parse_office_hours

    url, answer = closed_endpoint
    hours = parse_office_hours(BERLIN_HOURS, 1)
    target = post_deploy_check.target_of({**OUTPUTS, "endpoint": url})
    closed = closed_answer("s", hours)
    answer["body"] = json.dumps(closed)
    for cloud in ("aws", "gcp"):
        assert post_deploy_check.closed_answer_check("s", cloud, hours)(target) == 0
    assert post_deploy_check.closed_answer_check("s", "azure", hours)(target) == 1  # Azure answers 502
    answer.update(status=502, type="text/html",
                  body=f"<!doctype html>\n<p>{html.escape(closed['error']['message'])}</p>")
    assert post_deploy_check.closed_answer_check("s", "azure", hours)(target) == 0
    answer.update(status=200, type="application/json", body='{"data": []}')  # a VM serves: not closed
    assert post_deploy_check.closed_answer_check("s", "gcp", hours)(target) == 1
    assert "FAIL the closed answer: /v1/models answered 200" in capsys.readouterr().out


def test_outside_its_hours_the_post_deploy_check_waits_for_no_vm(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    (tmp_path / "stacks").mkdir()
    stack = {"config": {"vllm-fleet:officeHours": BERLIN_HOURS}}
    (tmp_path / "stacks" / "Pulumi.s.yaml").write_text(yaml.safe_dump(stack))
    monkeypatch.setattr(post_deploy_check, "ROOT", tmp_path)
    post_deploy_check.record_file("s").write_text(json.dumps(
        {"startedAt": "2026-12-07T19:00:00+00:00", "apiKeys": {"default": "sk-old"}}))
    states = {True: exported({"default": "sk-new", "ci": "sk-ci"}, "gcp"), False: exported(None, "gcp")}
    monkeypatch.setattr(post_deploy_check, "export", lambda stack, show_secrets=False: states[show_secrets])
    monkeypatch.setattr(post_deploy_check, "stack_outputs", lambda stack: {**HOURS_OUTPUTS, "apiKey": "sk-new"})
    monkeypatch.setattr(post_deploy_check, "utc_now", lambda: dt.datetime(2026, 12, 7, 19, tzinfo=dt.timezone.utc))
    done = []
    monkeypatch.setattr(post_deploy_check, "wait_for_roll", lambda *args, **kwargs: done.append("roll") or 0)
    monkeypatch.setattr(post_deploy_check, "closed_answer_check",
                        lambda stack, cloud, hours: lambda target: done.append(("closed", cloud, target.api_key)) or 0)
    assert post_deploy_check.main(["--stack", "s", "--cloud", "gcp", "--region", "europe-west4"]) == 0
    assert done == [("closed", "gcp", "sk-ci")]  # no roll, no make check, no revoked keys: nothing runs
    out = capsys.readouterr().out
    assert "checking with the API key 'ci'" in out and "s is closed now (Mon-Fri 08:00-19:00 (Europe/Berlin)" in out
    assert "the closed answer: every check passed (attempt 1)" in out
