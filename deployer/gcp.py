"""GCP: a Workload Identity Federation pool for GitHub Actions of one repository (by its numeric id) and the
service accounts it may impersonate: vllm-fleet-preview (the approved real preview of pull requests) and
vllm-fleet-drift (the scheduled drift check), both read-only, and one deploy account per fleet stack. Each account
gets a custom role with the permissions of permissions.yaml; a deploy account's grant carries a condition that
limits the service accounts it may act as or change, the secrets and the buckets to its own stack's, and its
compute permissions are granted in bindings of their own conditioned on the names of its stack's compute resources
(docs/ci.md); its state grants cover its own stack's state objects only."""

from __future__ import annotations

from typing import Any, Mapping

import pulumi
import pulumi_gcp as gcp

from fleet import iam_names

from . import backend, permissions
from .config import DeployerConfigError, FleetStack, GcpConfig
from .github import DRIFT_ENVIRONMENT, ISSUER, PREVIEW_ENVIRONMENT, PULL_REQUEST_REF, GitHub

# Workload Identity Federation needs these APIs; they stay enabled when the deployer is destroyed.
APIS = ("iam.googleapis.com", "iamcredentials.googleapis.com", "sts.googleapis.com")
SERVICE_ACCOUNT_ID_MAX = 30


def principal(pool_name: pulumi.Output[str], subject: str) -> pulumi.Output[str]:
    """The federated principal of one exact GitHub OIDC `sub` (google.subject = assertion.sub)."""
    return pulumi.Output.concat("principal://iam.googleapis.com/", pool_name, "/subject/", subject)


def attribute_condition(github: GitHub, repository_id: int) -> str:
    """The pool admits tokens of the repository (by id) only, and of the preview environment only on a pull
    request's merge ref: the preview account is bound to the environment (a principal set), not to one `sub`."""
    prefix, _, _ = github.preview_subject_pattern.partition(PULL_REQUEST_REF)
    pattern = f"^{prefix}refs/pull/[0-9]+/merge$".replace(".", "\\\\.")
    return (f"assertion.repository_id == '{repository_id}' && (!assertion.sub.startsWith('{prefix}') || "
            f"assertion.sub.matches('{pattern}'))")


def stack_condition(stack: str, project_number: str, project: str, model: str | None) -> str:
    """What a stack's deploy account may act as, change or read among service accounts, secrets and buckets: its
    own (fleet/iam_names.py; the model's bucket, read by its VMs, too). Other resource types pass."""
    account = f"{iam_names.gcp_vm_service_account_id(stack)}@{project}.iam.gserviceaccount.com"
    secrets = " || ".join(
        f"resource.name == '{name}' || resource.name.startsWith('{name}/')" for name in
        (f"projects/{project_number}/secrets/{iam_names.gcp_secret_id(stack, key)}" for key in iam_names.SECRET_KEYS))
    buckets = [f"resource.name.startsWith('projects/_/buckets/{iam_names.gcp_closed_bucket(stack)}-')"]
    if model and model.startswith("gs://"):
        buckets.append(f"resource.name == 'projects/_/buckets/{model[len('gs://'):].split('/', 1)[0]}'")
    return (f"(resource.type != 'iam.googleapis.com/ServiceAccount' || resource.name.endsWith('/{account}')) && "
            f"(!resource.type.startsWith('secretmanager.googleapis.com/') || {secrets}) && "
            f"(!resource.type.startsWith('storage.googleapis.com/') || {' || '.join(buckets)})")


# GCP IAM takes at most 12 logical operators (&&, ||, !) in one condition expression (docs/ci.md).
CONDITION_OPERATORS_MAX = 12


def nested_prefixes(stack: str, stacks: list[str]) -> list[str]:
    """The resource prefixes of other stacks that start with this stack's ("prod-" holds "prod-eu-..."): a name
    condition on the stack's prefix must leave theirs out."""
    prefix = f"{iam_names.name_within(stack, 24)}-"
    others = {f"{iam_names.name_within(other, 24)}-" for other in stacks if other != stack}
    return sorted(other for other in others if other.startswith(prefix) and other != prefix)


def compute_chunks(collections: list[str], stacks: list[str], existing: bool = False) -> list[list[str]]:
    """The compute collections, in groups whose name condition (compute_condition) stays within GCP's operators
    for every stack (`existing`: some stack names an existing network): one custom role and one conditional
    binding per group."""
    worst = max(stacks, key=lambda stack: len(nested_prefixes(stack, stacks)), default=None)
    nested = len(nested_prefixes(worst, stacks)) if worst else 0
    # its ||, for each nested prefix && !, and an || for an existing network's or subnetwork's name
    per_collection = 1 + 2 * nested + int(existing)
    if per_collection - 1 > CONDITION_OPERATORS_MAX:
        raise DeployerConfigError(
            f"{nested} stacks' resource names start with {worst}'s and a hyphen "
            f"({', '.join(nested_prefixes(worst, stacks))}...): GCP's IAM conditions cannot tell {worst}'s compute "
            f"resources apart from theirs within {CONDITION_OPERATORS_MAX} logical operators; rename some")
    size = (CONDITION_OPERATORS_MAX + 1) // per_collection
    return [collections[i:i + size] for i in range(0, len(collections), size)]


def compute_condition(stack: str, stacks: list[str], collections: list[str],
                      existing: Mapping[str, str] | None = None) -> str:
    """The stack's own compute resources of these collections: their names start with its resource prefix (and
    not with a longer stack's that shares it); and the existing network and subnetwork it names (`existing`, by
    collection), which its firewalls, router and VMs use."""
    prefix = f"{iam_names.name_within(stack, 24)}-"
    terms = []
    for collection in collections:
        name = f"resource.name.extract('/{collection}/{{name}}')"
        excluded = [f"!{name}.startsWith('{other}')" for other in nested_prefixes(stack, stacks)]
        term = " && ".join([f"{name}.startsWith('{prefix}')", *excluded])
        terms.append(f"({term})" if excluded and len(collections) > 1 else term)
        if collection in (existing or {}):
            terms.append(f"{name} == '{existing[collection]}'")
    return " || ".join(terms)


def identities(config: GcpConfig, github: GitHub, document: Mapping[str, Any], repository_id: pulumi.Output[int],
               fleet_stacks: Mapping[str, FleetStack]) -> dict[str | None, dict[str, pulumi.Output]]:
    provider = gcp.Provider("gcp", project=config.project)
    apis = [gcp.projects.Service(api, service=api, disable_on_destroy=False,
                                 opts=pulumi.ResourceOptions(provider=provider)) for api in APIS]
    # Everything IAM waits for the IAM API on a first run, not only the pool.
    opts = pulumi.ResourceOptions(provider=provider, depends_on=apis)
    project_number = gcp.organizations.get_project_output(
        project_id=config.project, opts=pulumi.InvokeOptions(provider=provider)).number
    pool = gcp.iam.WorkloadIdentityPool("github", workload_identity_pool_id=config.pool_id,
                                        display_name="GitHub Actions (vllm-fleet)", opts=opts)
    pool_provider = gcp.iam.WorkloadIdentityPoolProvider(
        "github", workload_identity_pool_id=pool.workload_identity_pool_id, workload_identity_pool_provider_id="github",
        display_name="GitHub Actions", oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=ISSUER),
        attribute_mapping={"google.subject": "assertion.sub", "attribute.repository_id": "assertion.repository_id",
                           "attribute.environment": "assertion.sub.extract(':environment:{environment}:ref:')"},
        attribute_condition=repository_id.apply(lambda id_: attribute_condition(github, id_)), opts=opts)
    stacks = list(github.environments)
    compute = permissions.gcp_compute_grants(document)
    conditioned = {permission for granted in compute.values() for permission in granted}
    existing = {stack: dict(fleet_stacks[stack].gcp_existing) for stack in stacks}
    chunks = compute_chunks(sorted(compute), stacks, any(existing.values()))

    def role(name: str, role_id: str, granted: list[str]) -> gcp.projects.IAMCustomRole:
        return gcp.projects.IAMCustomRole(name, project=config.project, role_id=role_id, title=name.replace("-", " "),
                                          description="permissions.yaml of vllm-fleet's deployer",
                                          permissions=granted, opts=opts)

    roles = {False: role("vllm-fleet-read", "vllmFleetRead", permissions.permissions(document, "gcp", deploy=False)),
             True: role("vllm-fleet-deploy", "vllmFleetDeploy", [
                 p for p in permissions.permissions(document, "gcp", deploy=True) if p not in conditioned])}
    compute_roles = [role(f"vllm-fleet-deploy-compute-{index}", f"vllmFleetDeployCompute{index}",
                          sorted(p for collection in chunk for p in compute[collection]))
                     for index, chunk in enumerate(chunks, 1)]

    def service_account(name: str, account_id: str, federated: pulumi.Output[str], stack: str | None):
        account = gcp.serviceaccount.Account(name, account_id=account_id, display_name=f"{name} from GitHub "
                                             f"Actions of {github.repository}", opts=opts)
        member = pulumi.Output.concat("serviceAccount:", account.email)
        condition = None if stack is None else gcp.projects.IAMMemberConditionArgs(
            title=f"{stack[:90]} only", description="its own service accounts, secrets and buckets",
            expression=project_number.apply(
                lambda number: stack_condition(stack, number, config.project, fleet_stacks[stack].model)))
        gcp.projects.IAMMember(name, project=config.project, role=roles[stack is not None].name, member=member,
                               condition=condition, opts=opts)
        for index, (chunk, compute_role) in enumerate(zip(chunks if stack else [], compute_roles), 1):
            gcp.projects.IAMMember(
                f"{name}-compute-{index}", project=config.project, role=compute_role.name, member=member,
                condition=gcp.projects.IAMMemberConditionArgs(
                    title=f"{stack[:80]} compute only", description=f"its own {', '.join(chunk)}"[:256],
                    expression=compute_condition(stack, stacks, chunk, existing.get(stack))), opts=opts)
        gcp.serviceaccount.IAMMember(f"{name}-federated", service_account_id=account.name,
                                     role="roles/iam.workloadIdentityUser", member=federated, opts=opts)
        if config.state_bucket:
            bucket = config.state_bucket
            if stack is None:  # read every state; write only the lock objects (a preview or refresh takes them)
                gcp.storage.BucketIAMMember(f"{name}-state", bucket=bucket, member=member,
                                            role="roles/storage.objectViewer", opts=opts)
                writable = [backend.lock_prefix(each) for each in stacks]
            else:
                writable = [*backend.stack_prefixes(stack), backend.META]
            gcp.storage.BucketIAMMember(
                f"{name}-state-writes", bucket=bucket, member=member, role="roles/storage.objectUser",
                condition=gcp.storage.BucketIAMMemberConditionArgs(
                    title="its own state objects" if stack else "state locks only",
                    expression=" || ".join(f"resource.name.startsWith('projects/_/buckets/{bucket}/objects/{key}')"
                                           for key in writable)),
                opts=opts)
        if config.secrets_key_id:
            gcp.kms.CryptoKeyIAMMember(f"{name}-secrets", crypto_key_id=config.secrets_key_id, member=member,
                                       role="roles/cloudkms.cryptoKeyEncrypterDecrypter" if stack
                                       else "roles/cloudkms.cryptoKeyDecrypter", opts=opts)
        return account

    variables: dict[str | None, dict[str, pulumi.Output]] = {
        None: {"GCP_WORKLOAD_IDENTITY_PROVIDER": pool_provider.name}}
    for stack in stacks:
        deploy = service_account(f"{stack}-deploy", f"deploy-{iam_names.name_within(stack, SERVICE_ACCOUNT_ID_MAX - 7)}",
                                 principal(pool.name, github.deploy_subject(stack)), stack)
        variables[stack] = {"GCP_DEPLOY_SERVICE_ACCOUNT": deploy.email}
    preview = service_account("vllm-fleet-preview", "vllm-fleet-preview", pulumi.Output.concat(
        "principalSet://iam.googleapis.com/", pool.name, "/attribute.environment/", PREVIEW_ENVIRONMENT), None)
    variables[PREVIEW_ENVIRONMENT] = {"GCP_PREVIEW_SERVICE_ACCOUNT": preview.email}
    drift = service_account("vllm-fleet-drift", "vllm-fleet-drift", principal(pool.name, github.drift_subject), None)
    variables[DRIFT_ENVIRONMENT] = {"GCP_DRIFT_SERVICE_ACCOUNT": drift.email}
    return variables
