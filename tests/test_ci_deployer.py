"""The deployer program (deployer/), planned offline like the fleet: who each cloud's identities trust (GitHub's OIDC
tokens of one repository: pull requests and the default branch for the preview identity, the stacks' environments
for the deploy identity) and what they may do (permissions.yaml, nothing more)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, stacks_of, stack_cloud, STACK_FILES
from deployer import permissions

DOCUMENT = permissions.load()
REPOSITORY = "my-org/vllm-fleet"  # deployer/Pulumi.example.yaml
PREVIEW_SUBJECTS = [f"repo:{REPOSITORY}:pull_request", f"repo:{REPOSITORY}:ref:refs/heads/main"]
AWS_INLINE_POLICY_LIMIT = 10240  # characters of all inline policies of one role, whitespace not counted


def deploy_subjects(cloud: str) -> list[str]:
    return sorted(f"repo:{REPOSITORY}:environment:{path.name[7:-5]}" for path in STACK_FILES
                  if stack_cloud(path) == cloud)


def run_deployer_plan(target: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deployer.plan", target, "--format", "json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def deployer():
    result = run_deployer_plan("example")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def inputs(preview, type_: str) -> dict[str, dict]:
    return {s["urn"].rsplit("::", 1)[1]: s["newState"]["inputs"] for s in preview["steps"] if s["type"] == type_}


def test_aws_roles_trust_githubs_tokens_of_the_repository_by_subject(deployer):
    roles = inputs(deployer, "aws:iam/role:Role")
    assert set(roles) == {"vllm-fleet-preview", "vllm-fleet-deploy"}
    for name, subjects in (("vllm-fleet-preview", PREVIEW_SUBJECTS), ("vllm-fleet-deploy", deploy_subjects("aws"))):
        statement, = json.loads(roles[name]["assumeRolePolicy"])["Statement"]
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Principal"]["Federated"].endswith(":oidc-provider/token.actions.githubusercontent.com")
        # StringEquals, not StringLike: no wildcard lets another branch, environment or repository in.
        assert statement["Condition"] == {"StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": subjects}}
    provider, = inputs(deployer, "aws:iam/openIdConnectProvider:OpenIdConnectProvider").values()
    assert provider["clientIdLists"] == ["sts.amazonaws.com"]


def aws_policy(deployer, role: str) -> dict:
    return json.loads(inputs(deployer, "aws:iam/rolePolicy:RolePolicy")[f"{role}-fleet"]["policy"])


def granted(policy: dict) -> set[str]:
    return {action for statement in policy["Statement"] for action in statement["Action"]}


def test_aws_roles_get_exactly_the_permission_list(deployer):
    assert granted(aws_policy(deployer, "vllm-fleet-preview")) == set(
        permissions.permissions(DOCUMENT, "aws", deploy=False))
    assert granted(aws_policy(deployer, "vllm-fleet-deploy")) == set(
        permissions.permissions(DOCUMENT, "aws", deploy=True))


def test_aws_deploy_role_passes_and_changes_only_the_fleets_roles(deployer):
    statements = {s["Sid"]: s for s in aws_policy(deployer, "vllm-fleet-deploy")["Statement"]}
    fleet_roles = sorted(f"arn:aws:iam::123456789012:role/{stack}-*" for stack in stacks_of("aws"))
    assert statements["PassFleetRolesToEc2AndSchedulerOnly"]["Resource"] == fleet_roles
    assert statements["PassFleetRolesToEc2AndSchedulerOnly"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "scheduler.amazonaws.com"]}}
    assert statements["OnlySsmManagedPolicyOnFleetRoles"]["Condition"] == {
        "ArnEquals": {"iam:PolicyARN": ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]}}
    assert statements["FleetRolesOnly"]["Resource"] == fleet_roles
    everywhere = set(statements["FleetResources"]["Action"])
    assert not everywhere & {"iam:PassRole", "iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy",
                             "secretsmanager:GetSecretValue"}
    assert statements["FleetSecretsOnly"]["Resource"] == sorted(
        f"arn:aws:secretsmanager:*:123456789012:secret:vllm-fleet/{stack}/*" for stack in stacks_of("aws"))


def test_aws_inline_policies_fit_awss_limit(deployer):
    for role in ("vllm-fleet-preview", "vllm-fleet-deploy"):
        size = sum(len(json.dumps(json.loads(policy["policy"]), separators=(",", ":")))
                   for name, policy in inputs(deployer, "aws:iam/rolePolicy:RolePolicy").items()
                   if name.startswith(role))
        assert size <= AWS_INLINE_POLICY_LIMIT, f"{role}: {size} characters of inline policies"


def test_aws_state_backend_is_read_to_preview_and_written_to_deploy(deployer):
    policies = inputs(deployer, "aws:iam/rolePolicy:RolePolicy")
    preview = granted(json.loads(policies["vllm-fleet-preview-state"]["policy"]))
    deploy = granted(json.loads(policies["vllm-fleet-deploy-state"]["policy"]))
    assert preview == {"s3:ListBucket", "s3:GetObject", "kms:Decrypt"}
    assert deploy == preview | {"s3:PutObject", "s3:DeleteObject", "kms:Encrypt"}


def test_gcp_pool_admits_the_repository_and_each_account_its_subjects(deployer):
    provider, = inputs(deployer, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider").values()
    assert provider["oidc"]["issuerUri"] == "https://token.actions.githubusercontent.com"
    assert provider["attributeCondition"] == f"assertion.repository == '{REPOSITORY}'"
    assert provider["attributeMapping"]["google.subject"] == "assertion.sub"
    pool = "principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/vllm-fleet-github"
    members = inputs(deployer, "gcp:serviceaccount/iAMMember:IAMMember")
    for account, subjects in (("vllm-fleet-preview", PREVIEW_SUBJECTS), ("vllm-fleet-deploy", deploy_subjects("gcp"))):
        bound = sorted(m["member"] for name, m in members.items() if name.startswith(f"{account}-federated-")
                       and m["role"] == "roles/iam.workloadIdentityUser"
                       and m["serviceAccountId"].endswith(f"/{account}@offline-plan-project.iam.gserviceaccount.com"))
        assert bound == sorted(f"{pool}/subject/{subject}" for subject in subjects)


def test_gcp_custom_roles_hold_exactly_the_permission_list(deployer):
    roles = inputs(deployer, "gcp:projects/iAMCustomRole:IAMCustomRole")
    assert roles["vllm-fleet-preview"]["permissions"] == permissions.permissions(DOCUMENT, "gcp", deploy=False)
    assert roles["vllm-fleet-deploy"]["permissions"] == permissions.permissions(DOCUMENT, "gcp", deploy=True)
    bindings = inputs(deployer, "gcp:projects/iAMMember:IAMMember")
    assert bindings["vllm-fleet-deploy"]["role"] == "projects/my-gcp-project/roles/vllmFleetDeploy"
    assert not [b for b in bindings.values() if b["role"].startswith("roles/")], "only the custom roles"


def test_azure_apps_federate_their_subjects_only(deployer):
    credentials = inputs(deployer, "azuread:index/applicationFederatedIdentityCredential:"
                                   "ApplicationFederatedIdentityCredential")
    for app, subjects in (("vllm-fleet-preview", PREVIEW_SUBJECTS), ("vllm-fleet-deploy", deploy_subjects("azure"))):
        mine = [c for name, c in credentials.items() if name.startswith(f"{app}-")]
        assert sorted(c["subject"] for c in mine) == subjects
        assert {c["applicationId"] for c in mine} == {f"/applications/{app}-object-id"}
        assert all(c["issuer"] == "https://token.actions.githubusercontent.com"
                   and c["audiences"] == ["api://AzureADTokenExchange"] for c in mine)


def test_azure_roles_hold_the_permission_list_and_deploy_assigns_only_the_fleets_roles(deployer):
    definitions = inputs(deployer, "azure-native:authorization:RoleDefinition")
    for app, deploy in (("vllm-fleet-preview", False), ("vllm-fleet-deploy", True)):
        permission, = definitions[app]["permissions"]
        assert permission["actions"] == permissions.permissions(DOCUMENT, "azure", deploy=deploy)
        assert definitions[app]["assignableScopes"] == ["/subscriptions/00000000-0000-0000-0000-000000000000"]
    assignments = inputs(deployer, "azure-native:authorization:RoleAssignment")
    assert "condition" not in assignments["vllm-fleet-preview"]
    condition = assignments["vllm-fleet-deploy"]["condition"]
    assert assignments["vllm-fleet-deploy"]["conditionVersion"] == "2.0"
    for role in DOCUMENT["azure"]["assignable_roles"]:
        assert condition.count(role) == 2  # creating and deleting assignments of it
    assert condition.count("GuidEquals") == 2 and "'ServicePrincipal'" in condition


def test_outputs_are_the_github_variables_the_workflows_read(deployer):
    variables = deployer["outputs"]["githubVariables"]
    workflows = "".join(path.read_text() for path in (ROOT / ".github").rglob("*.yml"))
    for name in variables:
        assert f"vars.{name}" in workflows, f"the workflows never read {name}"
    assert deployer["outputs"]["setupCommands"].splitlines()[0].startswith("gh variable set AWS_DEPLOY_ROLE_ARN ")
    assert deployer["outputs"]["environments"] == sorted(stacks_of())


def test_a_config_error_is_one_line_and_plans_nothing(tmp_path):
    stack = tmp_path / "Pulumi.broken.yaml"
    stack.write_text("config:\n  vllm-fleet-deployer:githubRepository: not a repository\n")
    result = run_deployer_plan(str(stack))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: vllm-fleet-deployer:githubRepository = 'not a repository': must be the repository that runs the "
        "workflows, owner/name (e.g. my-org/vllm-fleet)"]
