"""The deployer program (deployer/), planned offline like the fleet: the GitHub environments it creates and protects,
who each cloud's identities trust (GitHub's OIDC tokens of one repository, by `sub` with the ref: the approved
preview of pull requests, the drift check on main, each stack's own deploy environment on main) and what they may
do (permissions.yaml, each deploy identity on its own stack's resources, secrets and state only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, STACK_FILES, run_plan, stack_cloud, stacks_of
from deployer import backend, permissions
from deployer.github import DRIFT_ENVIRONMENT, OIDC_CLAIM_KEYS, PREVIEW_ENVIRONMENT, GitHub
from fleet import iam_names

DOCUMENT = permissions.load()
REPOSITORY = "my-org/vllm-fleet"  # deployer/Pulumi.example.yaml
ACCOUNT = "123456789012"  # deployer/plan.py's offline account
SUBSCRIPTION = "/subscriptions/00000000-0000-0000-0000-000000000000"
GITHUB = GitHub(REPOSITORY, "main", ())
AWS_INLINE_POLICY_LIMIT = 10240  # characters of all inline policies of one role, whitespace not counted
AWS_TRUST_POLICY_LIMIT = 2048
# Stack names as the fleet may get them: long (cut and hashed), upper-case and dotted (not a slug).
ODD_STACKS = ("codellama-70b-instruct-production-east", "Codellama-Prod", "qwen.coder.eu-west-1", "prod")


def run_deployer_plan(target: str, stacks_directory: Path | None = None) -> subprocess.CompletedProcess:
    """The offline plan; with `stacks_directory`, as if the repository's stacks/ held those stack files."""
    code = ("import sys, pathlib; from deployer import config, plan; "
            "config.FLEET_STACKS = pathlib.Path(sys.argv[1]) if sys.argv[1] else config.FLEET_STACKS; "
            "sys.exit(plan.main(sys.argv[2:]))")
    return subprocess.run([sys.executable, "-c", code, str(stacks_directory or ""), target, "--format", "json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def deployer():
    result = run_deployer_plan("example")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def inputs(preview, type_: str) -> dict[str, dict]:
    return {s["urn"].rsplit("::", 1)[1]: s["newState"]["inputs"] for s in preview["steps"] if s["type"] == type_}


def of_type(preview, type_: str) -> dict[str, dict]:
    return {s["urn"].rsplit("::", 1)[1]: s["newState"] for s in preview["steps"] if s["type"] == type_}


# --- the contract with .github/workflows -------------------------------------------------------------------
def test_subjects_carry_the_environment_and_the_ref():
    assert OIDC_CLAIM_KEYS == ("repo", "context", "ref")
    assert GITHUB.deploy_subject("codellama-prod") == \
        "repo:my-org/vllm-fleet:environment:codellama-prod:ref:refs/heads/main"
    assert GITHUB.preview_subject_pattern == \
        "repo:my-org/vllm-fleet:environment:vllm-fleet-preview:ref:refs/pull/*/merge"
    assert GITHUB.drift_subject == "repo:my-org/vllm-fleet:environment:vllm-fleet-drift:ref:refs/heads/main"
    assert (PREVIEW_ENVIRONMENT, DRIFT_ENVIRONMENT) == ("vllm-fleet-preview", "vllm-fleet-drift")


# --- GitHub: the sub template and the environments the clouds trust -----------------------------------------
def test_the_repositorys_sub_includes_the_ref(deployer):
    template, = inputs(deployer, "github:index/actionsRepositoryOidcSubjectClaimCustomizationTemplate:"
                                 "ActionsRepositoryOidcSubjectClaimCustomizationTemplate").values()
    assert template == {"repository": "vllm-fleet", "useDefault": False, "includeClaimKeys": list(OIDC_CLAIM_KEYS)}


def test_every_trusted_environment_is_created_with_its_rules(deployer):
    environments = inputs(deployer, "github:index/repositoryEnvironment:RepositoryEnvironment")
    policies = inputs(deployer, "github:index/repositoryEnvironmentDeploymentPolicy:"
                                "RepositoryEnvironmentDeploymentPolicy")
    assert set(environments) == {*stacks_of(), PREVIEW_ENVIRONMENT, DRIFT_ENVIRONMENT}
    protected = set(yaml.safe_load((ROOT / "deployer/Pulumi.example.yaml").read_text())["config"][
        "vllm-fleet-deployer:github"]["protectedStacks"])
    reviewers = [{"users": [1234567], "teams": []}]
    for name, environment in environments.items():
        assert environment["environment"] == name and environment["canAdminsBypass"] is False
        if name == PREVIEW_ENVIRONMENT:  # pull requests' merge refs: reviewers are the gate, no branch policy
            assert environment["reviewers"] == reviewers and "deploymentBranchPolicy" not in environment
            assert name not in policies
            continue
        # main only: a workflow of another branch naming the environment gets no token for it.
        assert environment["deploymentBranchPolicy"] == {"protectedBranches": False, "customBranchPolicies": True}
        assert policies[name]["branchPattern"] == "main" and policies[name]["environment"] == name
        assert (environment.get("reviewers") == reviewers) == (name in protected), name
    assert protected and protected < set(stacks_of())


def test_the_workflows_variables_are_set_per_environment(deployer):
    variables = inputs(deployer, "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable")
    by_environment = {}
    for variable in variables.values():
        by_environment.setdefault(variable["environment"], set()).add(variable["variableName"])
    clouds = {path.name[7:-5]: stack_cloud(path) for path in STACK_FILES}
    deploy_variable = {"aws": "AWS_DEPLOY_ROLE_ARN", "gcp": "GCP_DEPLOY_SERVICE_ACCOUNT",
                       "azure": "AZURE_DEPLOY_CLIENT_ID"}
    for stack, cloud in clouds.items():
        assert by_environment[stack] == {deploy_variable[cloud]}  # its own identity, nobody else's
    assert by_environment[PREVIEW_ENVIRONMENT] == {
        "AWS_PREVIEW_ROLE_ARN", "GCP_PREVIEW_SERVICE_ACCOUNT", "AZURE_PREVIEW_CLIENT_ID"}
    assert by_environment[DRIFT_ENVIRONMENT] == {
        "AWS_DRIFT_ROLE_ARN", "GCP_DRIFT_SERVICE_ACCOUNT", "AZURE_DRIFT_CLIENT_ID"}
    assert {v["variableName"] for v in inputs(deployer, "github:index/actionsVariable:ActionsVariable").values()} == {
        "GCP_WORKLOAD_IDENTITY_PROVIDER", "AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID"}


# --- AWS ----------------------------------------------------------------------------------------------------
def aws_deploy_role(stack: str) -> str:
    return f"vllm-fleet-{iam_names.short_name(stack, 'deploy', 53)}"


def trust(role: dict) -> dict:
    statement, = json.loads(role["assumeRolePolicy"])["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"]["Federated"].endswith(":oidc-provider/token.actions.githubusercontent.com")
    return statement["Condition"]


def test_aws_each_role_trusts_exactly_its_subject(deployer):
    roles = inputs(deployer, "aws:iam/role:Role")
    aud = {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"}
    sub = "token.actions.githubusercontent.com:sub"
    assert set(roles) == {"vllm-fleet-preview", "vllm-fleet-drift", *map(aws_deploy_role, stacks_of("aws"))}
    for stack in stacks_of("aws"):
        assert trust(roles[aws_deploy_role(stack)]) == {"StringEquals": {**aud, sub: GITHUB.deploy_subject(stack)}}
    assert trust(roles["vllm-fleet-drift"]) == {"StringEquals": {**aud, sub: GITHUB.drift_subject}}
    # Only the pull request's number is open.
    assert trust(roles["vllm-fleet-preview"]) == {"StringEquals": aud,
                                                  "StringLike": {sub: GITHUB.preview_subject_pattern}}
    assert {role["path"] for role in roles.values()} == {"/vllm-fleet-ci/"}  # out of every stack's IAM path


def aws_policy(deployer, role: str, kind: str = "fleet") -> dict:
    return json.loads(inputs(deployer, "aws:iam/rolePolicy:RolePolicy")[f"{role}-{kind}"]["policy"])


def granted(policy: dict) -> set[str]:
    return {action for statement in policy["Statement"] for action in statement["Action"]}


def test_aws_roles_get_exactly_the_permission_list(deployer):
    for role in ("vllm-fleet-preview", "vllm-fleet-drift"):
        assert granted(aws_policy(deployer, role)) == set(permissions.permissions(DOCUMENT, "aws", deploy=False))
    for stack in stacks_of("aws"):
        assert granted(aws_policy(deployer, aws_deploy_role(stack))) == set(
            permissions.permissions(DOCUMENT, "aws", deploy=True))


def test_aws_a_stacks_deploy_role_reaches_only_its_own_roles_and_secrets(deployer):
    for stack in stacks_of("aws"):
        statements = {s["Sid"]: s for s in aws_policy(deployer, aws_deploy_role(stack))["Statement"]}
        own_roles = [f"arn:aws:iam::{ACCOUNT}:role{iam_names.aws_iam_path(stack)}*"]
        assert own_roles == [f"arn:aws:iam::{ACCOUNT}:role/vllm-fleet/{stack}/*"]  # a slug: its own name
        for sid in ("FleetRolesOnly", "FleetRolesOnlyWithTheStacksBoundary", "OnlySsmManagedPolicyOnFleetRoles",
                    "PassFleetRolesToEc2AndSchedulerOnly"):
            assert statements[sid]["Resource"] == own_roles, sid
        assert statements["FleetInstanceProfilesOnly"]["Resource"] == [
            f"arn:aws:iam::{ACCOUNT}:instance-profile/vllm-fleet/{stack}/*"]
        assert statements["FleetSecretsOnly"]["Resource"] == [
            f"arn:aws:secretsmanager:*:{ACCOUNT}:secret:vllm-fleet/{stack}/*"]
        everywhere = set(statements["FleetResources"]["Action"])
        assert not everywhere & {"iam:PassRole", "iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy",
                                 "iam:UpdateAssumeRolePolicy", "secretsmanager:GetSecretValue"}


def test_aws_roles_are_created_and_written_only_with_the_stacks_boundary(deployer):
    boundaries = of_type(deployer, "aws:iam/policy:Policy")
    for stack in stacks_of("aws"):
        boundary = f"arn:aws:iam::{ACCOUNT}:policy/vllm-fleet/{stack}/vllm-fleet-{stack}-boundary"
        statements = {s["Sid"]: s for s in aws_policy(deployer, aws_deploy_role(stack))["Statement"]}
        with_boundary = statements["FleetRolesOnlyWithTheStacksBoundary"]
        assert {"iam:CreateRole", "iam:PutRolePolicy", "iam:PutRolePermissionsBoundary"} <= set(with_boundary["Action"])
        assert with_boundary["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": boundary}}
        assert statements["OnlySsmManagedPolicyOnFleetRoles"]["Condition"] == {
            "ArnEquals": {"iam:PolicyARN": ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]},
            "StringEquals": {"iam:PermissionsBoundary": boundary}}
        # The boundary itself: the stack's own secrets only, and nothing of IAM.
        policy = boundaries[f"{stack}-boundary"]["inputs"]
        assert (policy["path"], policy["name"]) == (f"/vllm-fleet/{stack}/", f"vllm-fleet-{stack}-boundary")
        document = json.loads(policy["policy"])
        secrets, = [s for s in document["Statement"] if "secretsmanager:GetSecretValue" in s["Action"]]
        assert secrets["Resource"] == [f"arn:aws:secretsmanager:*:{ACCOUNT}:secret:vllm-fleet/{stack}/*"]
        assert not [a for s in document["Statement"] for a in s["Action"] if a.startswith(("iam:", "sts:"))]
    # Nothing may change a boundary or take it off a role.
    assert not set(permissions.permissions(DOCUMENT, "aws", deploy=True)) & {
        "iam:CreatePolicyVersion", "iam:DeleteRolePermissionsBoundary", "iam:SetDefaultPolicyVersion"}


def test_aws_the_fleets_roles_set_the_boundary_the_deploy_role_requires(plan_of):
    for stack in stacks_of("aws"):
        roles = plan_of(stack).resources("aws:iam/role:Role")
        assert roles
        for role in roles:
            assert role["path"] == iam_names.aws_iam_path(stack)
            assert role["permissionsBoundary"] == iam_names.aws_permissions_boundary_arn(ACCOUNT, stack)
        for profile in plan_of(stack).resources("aws:iam/instanceProfile:InstanceProfile"):
            assert profile["path"] == iam_names.aws_iam_path(stack)


def test_aws_state_drift_and_preview_write_only_the_locks_deploy_only_its_own_stack(deployer):
    bucket = "arn:aws:s3:::my-org-pulumi-state"
    for role in ("vllm-fleet-preview", "vllm-fleet-drift"):
        statements = {s["Sid"]: s for s in aws_policy(deployer, role, "state")["Statement"]}
        writes = [s for s in statements.values() if set(s["Action"]) & {"s3:PutObject", "s3:DeleteObject"}]
        assert writes == [statements["StateLocksOnly"]]
        assert writes[0]["Resource"] == [f"{bucket}/.pulumi/locks/organization/vllm-fleet/{stack}/*"
                                         for stack in stacks_of("aws")]
        assert granted(aws_policy(deployer, role, "state")) == {
            "s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "kms:Decrypt"}
    for stack in stacks_of("aws"):
        statements = {s["Sid"]: s for s in aws_policy(deployer, aws_deploy_role(stack), "state")["Statement"]}
        assert statements["OwnState"]["Resource"] == [
            f"{bucket}/.pulumi/stacks/vllm-fleet/{stack}.json*", f"{bucket}/.pulumi/backups/vllm-fleet/{stack}/*",
            f"{bucket}/.pulumi/history/vllm-fleet/{stack}/*",
            f"{bucket}/.pulumi/locks/organization/vllm-fleet/{stack}/*"]
        assert not [s for s in statements.values() if s["Resource"] == f"{bucket}/*"]


# --- GCP ----------------------------------------------------------------------------------------------------
POOL = "projects/123456789012/locations/global/workloadIdentityPools/vllm-fleet-github"


def gcp_deploy_account(stack: str) -> str:
    return f"deploy-{iam_names.name_within(stack, 23)}"


def test_gcp_pool_admits_the_repository_by_id_and_previews_only_from_merge_refs(deployer):
    provider, = inputs(deployer, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider").values()
    assert provider["oidc"]["issuerUri"] == "https://token.actions.githubusercontent.com"
    prefix = "repo:my-org/vllm-fleet:environment:vllm-fleet-preview:ref:"
    assert provider["attributeCondition"] == (
        f"assertion.repository_id == '123456789' && (!assertion.sub.startsWith('{prefix}') || "
        f"assertion.sub.matches('^{prefix}refs/pull/[0-9]+/merge$'))")
    assert "repository ==" not in provider["attributeCondition"]  # never by name
    assert provider["attributeMapping"]["google.subject"] == "assertion.sub"
    members = inputs(deployer, "gcp:serviceaccount/iAMMember:IAMMember")
    expected = {"vllm-fleet-drift-federated": f"principal://iam.googleapis.com/{POOL}/subject/{GITHUB.drift_subject}",
                "vllm-fleet-preview-federated":
                    f"principalSet://iam.googleapis.com/{POOL}/attribute.environment/vllm-fleet-preview"}
    expected.update({f"{stack}-deploy-federated":
                     f"principal://iam.googleapis.com/{POOL}/subject/{GITHUB.deploy_subject(stack)}"
                     for stack in stacks_of("gcp")})
    assert {name: m["member"] for name, m in members.items()} == expected
    assert {m["role"] for m in members.values()} == {"roles/iam.workloadIdentityUser"}


def test_gcp_a_stacks_deploy_account_acts_as_and_changes_only_its_own(deployer):
    roles = inputs(deployer, "gcp:projects/iAMCustomRole:IAMCustomRole")
    assert roles["vllm-fleet-read"]["permissions"] == permissions.permissions(DOCUMENT, "gcp", deploy=False)
    compute = {p for granted in permissions.gcp_compute_grants(DOCUMENT).values() for p in granted}
    assert roles["vllm-fleet-deploy"]["permissions"] == [
        p for p in permissions.permissions(DOCUMENT, "gcp", deploy=True) if p not in compute]
    bindings = inputs(deployer, "gcp:projects/iAMMember:IAMMember")
    assert not [b for b in bindings.values() if b["role"].startswith("roles/")], "only the custom roles"
    for stack in stacks_of("gcp"):
        binding = bindings[f"{stack}-deploy"]
        assert binding["role"] == "projects/my-gcp-project/roles/vllmFleetDeploy"
        assert binding["member"] == f"serviceAccount:{gcp_deploy_account(stack)}@offline-plan-project.iam.gserviceaccount.com"
        condition = binding["condition"]["expression"]
        vm_account = f"{iam_names.gcp_vm_service_account_id(stack)}@my-gcp-project.iam.gserviceaccount.com"
        assert f"(resource.type != 'iam.googleapis.com/ServiceAccount' || resource.name.endsWith('/{vm_account}'))" \
               in condition
        for key in iam_names.SECRET_KEYS:
            assert f"resource.name == 'projects/123456789012/secrets/vllm-fleet-{stack}-{key}'" in condition
        assert f"resource.name.startsWith('projects/_/buckets/{stack}-closed-')" in condition
        for other in set(stacks_of("gcp")) - {stack}:
            assert other not in condition
    assert "condition" not in bindings["vllm-fleet-preview"] and "condition" not in bindings["vllm-fleet-drift"]


def test_gcp_a_stacks_compute_permissions_hold_on_its_own_resources_only(deployer):
    """Every compute permission of the deploy identity but operations and Google's images is granted in a binding
    conditioned on the names of the stack's own resources (<stack prefix>-...), each within GCP's 12 logical
    operators; the deploy role holds none of them."""
    roles = inputs(deployer, "gcp:projects/iAMCustomRole:IAMCustomRole")
    bindings = inputs(deployer, "gcp:projects/iAMMember:IAMMember")
    compute = permissions.gcp_compute_grants(DOCUMENT)
    assert {"instanceGroupManagers", "instances", "disks", "instanceTemplates", "addresses", "forwardingRules"} <= set(
        compute)
    unconditioned = [p for p in roles["vllm-fleet-deploy"]["permissions"] if p.startswith("compute.")]
    assert {p.split(".")[1] for p in unconditioned} <= {"globalOperations", "regionOperations", "images"}
    compute_roles = {name: role for name, role in roles.items() if name.startswith("vllm-fleet-deploy-compute-")}
    assert sorted(p for role in compute_roles.values() for p in role["permissions"]) == sorted(
        p for granted in compute.values() for p in granted)
    for stack in stacks_of("gcp"):
        prefix = f"{iam_names.name_within(stack, 24)}-"
        mine = [b for name, b in bindings.items() if name.startswith(f"{stack}-deploy-compute-")]
        assert len(mine) == len(compute_roles)
        for binding in mine:
            expression = binding["condition"]["expression"]
            operators = expression.count("&&") + expression.count("||") + expression.count("!") - expression.count("!=")
            assert operators <= 12, expression
            role_id = binding["role"].rsplit("/", 1)[1]
            role = next(r for r in compute_roles.values() if r["roleId"] == role_id)
            for collection in {c for c, granted in compute.items() if set(granted) & set(role["permissions"])}:
                assert f"resource.name.extract('/{collection}/{{name}}').startsWith('{prefix}')" in expression
    # the preview and drift accounts read, unconditioned, and get no compute role
    assert not [name for name in bindings if name.startswith(("vllm-fleet-preview-compute", "vllm-fleet-drift-compute"))]


def test_gcp_a_stack_whose_name_starts_another_stacks_leaves_that_stacks_resources_out():
    from deployer import gcp as deployer_gcp

    stacks = ["prod", "prod-eu", "prod-eu-2", "dev"]
    assert deployer_gcp.nested_prefixes("prod", stacks) == ["prod-eu-", "prod-eu-2-"]
    assert deployer_gcp.nested_prefixes("prod-eu-2", stacks) == []
    condition = deployer_gcp.compute_condition("prod", stacks, ["instances"])
    assert condition == ("resource.name.extract('/instances/{name}').startsWith('prod-') && "
                         "!resource.name.extract('/instances/{name}').startsWith('prod-eu-') && "
                         "!resource.name.extract('/instances/{name}').startsWith('prod-eu-2-')")
    collections = sorted(permissions.gcp_compute_grants(DOCUMENT))
    chunks = deployer_gcp.compute_chunks(collections, stacks)
    assert sum(chunks, []) == collections and all(len(chunk) == 2 for chunk in chunks[:-1])  # 5 operators each
    assert len(deployer_gcp.compute_chunks(collections, ["a", "b"])) == 2  # 13 collections a condition
    # a stack on an existing network: its firewalls, router and VMs use that network and subnetwork
    assert deployer_gcp.compute_condition("dev", stacks, ["networks", "firewalls"], {"networks": "shared"}) == (
        "resource.name.extract('/networks/{name}').startsWith('dev-') || "
        "resource.name.extract('/networks/{name}') == 'shared' || "
        "resource.name.extract('/firewalls/{name}').startsWith('dev-')")
    assert all(len(chunk) == 6 for chunk in deployer_gcp.compute_chunks(collections, ["a", "b"], True)[:-1])
    with pytest.raises(deployer_gcp.DeployerConfigError, match="cannot tell a's compute resources apart"):
        deployer_gcp.compute_chunks(collections, ["a"] + ["a" + "-b" * n for n in range(1, 8)])


def test_gcp_an_existing_network_of_a_stack_file_is_read_by_name(tmp_path):
    from deployer import config

    assert all(stack.gcp_existing == () for stack in config.fleet_stacks().values())  # stacks/ have their own
    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.codellama-gcp.yaml").read_text())
    raw["config"]["vllm-fleet:gcp"] = {**raw["config"].get("vllm-fleet:gcp", {}), "network": "shared",
                                       "subnetwork": "projects/p/regions/us-central1/subnetworks/gpu"}
    (tmp_path / "Pulumi.x.yaml").write_text(yaml.safe_dump(raw))
    assert config.fleet_stacks(tmp_path)["x"].gcp_existing == (("networks", "shared"), ("subnetworks", "gpu"))


def test_gcp_state_drift_and_preview_write_only_the_locks(deployer):
    members = inputs(deployer, "gcp:storage/bucketIAMMember:BucketIAMMember")
    objects = "projects/_/buckets/my-org-pulumi-state-gcp/objects/"
    for account in ("vllm-fleet-preview", "vllm-fleet-drift"):
        assert members[f"{account}-state"]["role"] == "roles/storage.objectViewer"
        writes = members[f"{account}-state-writes"]
        assert writes["role"] == "roles/storage.objectUser" and "condition" in writes
        assert writes["condition"]["expression"] == " || ".join(
            f"resource.name.startsWith('{objects}.pulumi/locks/organization/vllm-fleet/{stack}/')"
            for stack in stacks_of("gcp"))
    for stack in stacks_of("gcp"):
        assert f"{stack}-deploy-state" not in members  # no read of other stacks' state
        expression = members[f"{stack}-deploy-state-writes"]["condition"]["expression"]
        assert expression == " || ".join(f"resource.name.startsWith('{objects}{key}')" for key in (
            *backend.stack_prefixes(stack), ".pulumi/meta.yaml"))


def test_gcp_everything_iam_waits_for_the_apis(deployer):
    apis = {s["urn"] for s in deployer["steps"] if s["type"] == "gcp:projects/service:Service"}
    assert len(apis) == 3
    for step in deployer["steps"]:
        if step["type"].startswith(("gcp:iam/", "gcp:serviceaccount/", "gcp:projects/i", "gcp:storage/", "gcp:kms/")):
            assert apis <= set(step["newState"]["dependencies"]), step["urn"]


def test_gcp_a_soft_deleted_pool_id_can_be_replaced(tmp_path):
    example = yaml.safe_load((ROOT / "deployer/Pulumi.example.yaml").read_text())
    example["config"]["vllm-fleet-deployer:gcp"]["poolId"] = "vllm-fleet-github-2"
    path = tmp_path / "Pulumi.repooled.yaml"
    path.write_text(yaml.safe_dump(example))
    result = run_deployer_plan(str(path))
    assert result.returncode == 0, result.stderr
    pool, = inputs(json.loads(result.stdout), "gcp:iam/workloadIdentityPool:WorkloadIdentityPool").values()
    assert pool["workloadIdentityPoolId"] == "vllm-fleet-github-2"


# --- Azure --------------------------------------------------------------------------------------------------
def test_azure_apps_federate_exactly_their_subjects(deployer):
    credentials = inputs(deployer, "azuread:index/applicationFederatedIdentityCredential:"
                                   "ApplicationFederatedIdentityCredential")
    expected = {"vllm-fleet-drift": GITHUB.drift_subject,
                **{f"{stack}-deploy": GITHUB.deploy_subject(stack) for stack in stacks_of("azure")}}
    assert {name: c["subject"] for name, c in credentials.items()} == expected
    for name, credential in credentials.items():
        assert credential["applicationId"] == f"/applications/{name}-object-id"
        assert credential["issuer"] == "https://token.actions.githubusercontent.com"
        assert credential["audiences"] == ["api://AzureADTokenExchange"]
    flexible, = inputs(deployer, "azuread:index/applicationFlexibleFederatedIdentityCredential:"
                                 "ApplicationFlexibleFederatedIdentityCredential").values()
    assert flexible["applicationId"] == "/applications/vllm-fleet-preview-object-id"
    assert flexible["claimsMatchingExpression"] == f"claims['sub'] matches '{GITHUB.preview_subject_pattern}'"
    assert flexible["audience"] == "api://AzureADTokenExchange"


def test_azure_assignments_are_on_the_stacks_groups_never_writable_on_the_subscription(deployer):
    groups = inputs(deployer, "azure-native:resources:ResourceGroup")
    assert {g["resourceGroupName"] for g in groups.values()} == {
        iam_names.azure_resource_group(stack) for stack in stacks_of("azure")}
    definitions = inputs(deployer, "azure-native:authorization:RoleDefinition")
    for definition in definitions.values():  # unique in the tenant: the subscription is in the name
        assert definition["roleName"].endswith(f"({REPOSITORY}, 00000000-0000-0000-0000-000000000000)")
    operations, = definitions["vllm-fleet-operations"]["permissions"]
    assert operations["actions"] and all("/locations/" in a and a.endswith("/read") for a in operations["actions"])
    assignments = inputs(deployer, "azure-native:authorization:RoleAssignment")
    for name, assignment in assignments.items():
        if assignment["scope"] == SUBSCRIPTION:
            assert assignment["roleDefinitionId"].endswith("/vllm-fleet-operations"), name
    for stack in stacks_of("azure"):
        mine = {name: a for name, a in assignments.items() if a["principalId"] == f"{stack}-deploy-principal-id"}
        group = f"{SUBSCRIPTION}/resourceGroups/{iam_names.azure_resource_group(stack)}"
        deploy_scopes = {a["scope"] for a in mine.values() if a["roleDefinitionId"].endswith("/vllm-fleet-deploy")}
        assert group in deploy_scopes and SUBSCRIPTION not in deploy_scopes
        assert all(scope == group or "/providers/Microsoft.Network/dnszones/" in scope for scope in deploy_scopes)


def test_azure_deploy_role_has_the_data_actions_and_no_keys(deployer):
    definitions = inputs(deployer, "azure-native:authorization:RoleDefinition")
    deploy, = definitions["vllm-fleet-deploy"]["permissions"]
    assert {"Microsoft.KeyVault/vaults/secrets/delete",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"} <= set(deploy["dataActions"])
    assert deploy["dataActions"] == permissions.data_actions(DOCUMENT, "azure")
    every = {a for d in definitions.values() for p in d["permissions"] for a in p.get("actions", [])}
    assert "Microsoft.Storage/storageAccounts/listkeys/action" not in every
    read, = definitions["vllm-fleet-read"]["permissions"]
    assert all(a.endswith("/read") for a in read["actions"]) and not read.get("dataActions")


def test_azure_deploy_assigns_only_the_fleets_roles_never_to_a_ci_principal(deployer):
    assignments = inputs(deployer, "azure-native:authorization:RoleAssignment")
    principals = sorted({a["principalId"] for a in assignments.values()})
    assert len(principals) == 2 + len(stacks_of("azure"))
    for stack in stacks_of("azure"):
        assignment = assignments[f"{stack}-deploy-rg"]
        assert assignment["conditionVersion"] == "2.0"
        condition = assignment["condition"]
        for role in DOCUMENT["azure"]["assignable_roles"]:
            assert condition.count(role) == 2  # creating and deleting assignments of it
        assert ("@Request[Microsoft.Authorization/roleAssignments:PrincipalId] ForAllOfAllValues:GuidNotEquals "
                f"{{{', '.join(principals)}}}") in condition
        assert "'ServicePrincipal'" in condition
    assert "condition" not in assignments["vllm-fleet-preview-codellama-azure"]


def test_azure_state_drift_and_preview_write_only_the_locks(deployer):
    assignments = inputs(deployer, "azure-native:authorization:RoleAssignment")
    path = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringStartsWith"
    for app in ("vllm-fleet-preview", "vllm-fleet-drift"):
        condition = assignments[f"{app}-state"]["condition"]
        for action in ("write", "add/action", "delete"):
            assert f"(!(ActionMatches{{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/{action}'}}))" \
                   in condition
        starts = {part.split("'")[1] for part in condition.split(path)[1:]}
        assert starts == {backend.lock_prefix(stack) for stack in stacks_of("azure")}
    for stack in stacks_of("azure"):
        condition = assignments[f"{stack}-deploy-state"]["condition"]
        assert "blobs/read'}" in condition
        assert {part.split("'")[1] for part in condition.split(path)[1:]} == {
            *backend.stack_prefixes(stack), ".pulumi/meta.yaml"}


def test_the_fleets_azure_stacks_deploy_into_the_deployers_groups(plan_of):
    for stack in stacks_of("azure"):
        plan = plan_of(stack)
        assert not plan.resources("azure-native:resources:ResourceGroup")
        groups = {r["resourceGroupName"] for r in plan.resources("azure-native:network:VirtualNetwork")}
        assert groups == {iam_names.azure_resource_group(stack)}


# --- many stacks, odd names ---------------------------------------------------------------------------------
def synthetic_stacks(directory: Path, count: int = 40) -> list[str]:
    """`count` stacks per cloud with long names, and the odd names of ODD_STACKS, as stack files."""
    templates = {stack_cloud(path): yaml.safe_load(path.read_text()) for path in STACK_FILES}
    names = []
    for cloud, template in templates.items():
        for index in range(count):
            name = f"{ODD_STACKS[index % len(ODD_STACKS)]}-{cloud}-replica-{index:02d}-with-a-long-name"
            (directory / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(template))
            names.append(name)
    return names


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    directory = tmp_path_factory.mktemp("stacks")
    names = synthetic_stacks(directory)
    example = yaml.safe_load((ROOT / "deployer/Pulumi.example.yaml").read_text())
    example["config"]["vllm-fleet-deployer:github"]["protectedStacks"] = names[::2]
    stack = directory / "deployer" / "Pulumi.many.yaml"
    stack.parent.mkdir()
    stack.write_text(yaml.safe_dump(example))
    result = run_deployer_plan(str(stack), directory)
    assert result.returncode == 0, result.stderr
    return names, json.loads(result.stdout)


def test_the_deployer_plans_40_long_named_stacks_per_cloud_within_the_clouds_limits(many):
    names, preview = many
    roles = inputs(preview, "aws:iam/role:Role")
    policies = inputs(preview, "aws:iam/rolePolicy:RolePolicy")
    assert len(roles) == 40 + 2
    for name, role in roles.items():
        assert len(name) <= 64
        assert len(json.dumps(json.loads(role["assumeRolePolicy"]), separators=(",", ":"))) <= AWS_TRUST_POLICY_LIMIT
        size = sum(len(json.dumps(json.loads(policy["policy"]), separators=(",", ":")))
                   for policy_name, policy in policies.items() if policy_name.rsplit("-", 1)[0] == name)
        assert 0 < size <= AWS_INLINE_POLICY_LIMIT, f"{name}: {size} characters of inline policies"
    accounts = inputs(preview, "gcp:serviceaccount/account:Account")
    assert len(accounts) == 40 + 2 and all(6 <= len(a["accountId"]) <= 30 for a in accounts.values())
    assert len(inputs(preview, "azuread:index/application:Application")) == 40 + 2
    groups = inputs(preview, "azure-native:resources:ResourceGroup")
    assert len({g["resourceGroupName"] for g in groups.values()}) == 40
    environments = inputs(preview, "github:index/repositoryEnvironment:RepositoryEnvironment")
    assert set(environments) == {*names, PREVIEW_ENVIRONMENT, DRIFT_ENVIRONMENT}


@pytest.mark.parametrize("stack, cloud", [(ODD_STACKS[0], "aws"), (ODD_STACKS[1], "gcp"), (ODD_STACKS[2], "azure"),
                                          (ODD_STACKS[2], "aws")])
def test_the_deploy_identitys_scope_is_the_names_the_fleet_gives_an_odd_stack(stack, cloud, tmp_path):
    """The fleet planned under an odd name: every name its deploy identity is limited to is one the fleet's
    resources really get."""
    template = next(path for path in STACK_FILES if stack_cloud(path) == cloud)
    target = tmp_path / f"Pulumi.{stack}.yaml"
    target.write_text(template.read_text())
    result = run_plan(target)
    assert result.returncode == 0, result.stderr
    steps = [s["newState"]["inputs"] | {"type": s["type"]} for s in json.loads(result.stdout)["steps"]]

    def of(type_: str) -> list[dict]:
        return [step for step in steps if step["type"] == type_]

    if cloud == "aws":
        assert of("aws:iam/role:Role")
        for role in of("aws:iam/role:Role"):
            assert role["path"] == iam_names.aws_iam_path(stack)
            assert role["permissionsBoundary"] == iam_names.aws_permissions_boundary_arn("123456789012", stack)
        for secret in of("aws:secretsmanager/secret:Secret"):
            assert secret["namePrefix"].startswith(iam_names.aws_secret_prefix(stack))
    elif cloud == "gcp":
        assert {a["accountId"] for a in of("gcp:serviceaccount/account:Account")} == {
            iam_names.gcp_vm_service_account_id(stack)}
        assert {s["secretId"] for s in of("gcp:secretmanager/secret:Secret")} <= {
            iam_names.gcp_secret_id(stack, key) for key in iam_names.SECRET_KEYS}
    else:
        assert {v["resourceGroupName"] for v in of("azure-native:network:VirtualNetwork")} == {
            iam_names.azure_resource_group(stack)}
    assert iam_names.name_within(stack, 24) == iam_names.aws_iam_path(stack).split("/")[2]
    assert iam_names.name_within(stack, 24) != stack  # cut and hashed, or made a slug


# --- config -------------------------------------------------------------------------------------------------
def test_a_config_error_is_one_line_and_plans_nothing(tmp_path):
    stack = tmp_path / "Pulumi.broken.yaml"
    stack.write_text("config:\n  vllm-fleet-deployer:githubRepository: not a repository\n")
    result = run_deployer_plan(str(stack))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: vllm-fleet-deployer:githubRepository = 'not a repository': must be the repository that runs the "
        "workflows, owner/name (e.g. my-org/vllm-fleet)"]


def test_reviewers_are_required_and_named_in_one_line(tmp_path):
    example = yaml.safe_load((ROOT / "deployer/Pulumi.example.yaml").read_text())
    example["config"]["vllm-fleet-deployer:github"]["reviewers"] = {"users": ["octocat"]}
    stack = tmp_path / "Pulumi.unreviewed.yaml"
    stack.write_text(yaml.safe_dump(example))
    result = run_deployer_plan(str(stack))
    assert result.returncode == 2 and result.stdout == ""
    line, = result.stderr.strip().splitlines()
    assert line.startswith("error: vllm-fleet-deployer:github.reviewers = {'users': ['octocat']}: must be "
                           "{users: [...], teams: [...]} with 1 to 6 numeric GitHub ids")
