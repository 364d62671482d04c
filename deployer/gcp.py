"""GCP: a Workload Identity Federation pool for GitHub Actions of one repository, and two service accounts it may
impersonate, vllm-fleet-preview (read-only, for pull requests and the drift check) and vllm-fleet-deploy (for the
stacks' environments), each with a custom role holding the permissions of permissions.yaml and, when the state
lives in Cloud Storage with a Cloud KMS secrets provider, access to that bucket and key."""

from __future__ import annotations

from typing import Any, Mapping

import pulumi
import pulumi_gcp as gcp

from . import permissions
from .config import GcpConfig
from .github import ISSUER, GitHub

# Workload Identity Federation needs these APIs; they stay enabled when the deployer is destroyed.
APIS = ("iam.googleapis.com", "iamcredentials.googleapis.com", "sts.googleapis.com")
POOL_ID = "vllm-fleet-github"


def principal(pool_name: pulumi.Output[str], subject: str) -> pulumi.Output[str]:
    """The federated principal of one GitHub OIDC `sub` (google.subject = assertion.sub)."""
    return pulumi.Output.concat("principal://iam.googleapis.com/", pool_name, "/subject/", subject)


def identities(config: GcpConfig, github: GitHub, document: Mapping[str, Any]) -> dict[str, pulumi.Output]:
    provider = gcp.Provider("gcp", project=config.project)
    opts = pulumi.ResourceOptions(provider=provider)
    apis = [gcp.projects.Service(api, service=api, disable_on_destroy=False, opts=opts) for api in APIS]
    pool = gcp.iam.WorkloadIdentityPool("github", workload_identity_pool_id=POOL_ID,
                                        display_name="GitHub Actions (vllm-fleet)",
                                        opts=pulumi.ResourceOptions(provider=provider, depends_on=apis))
    pool_provider = gcp.iam.WorkloadIdentityPoolProvider(
        "github", workload_identity_pool_id=pool.workload_identity_pool_id, workload_identity_pool_provider_id="github",
        display_name="GitHub Actions", oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=ISSUER),
        attribute_mapping={"google.subject": "assertion.sub", "attribute.repository": "assertion.repository"},
        # Tokens of any other repository are refused by the pool itself, before any binding is looked at.
        attribute_condition=f"assertion.repository == '{github.repository}'", opts=opts)

    def service_account(mode: str, subjects: list[str], deploy: bool) -> gcp.serviceaccount.Account:
        name = f"vllm-fleet-{mode}"
        account = gcp.serviceaccount.Account(name, account_id=name, display_name=f"vllm-fleet {mode} from GitHub "
                                             f"Actions of {github.repository}", opts=opts)
        role = gcp.projects.IAMCustomRole(
            name, project=config.project, role_id=f"vllmFleet{mode.capitalize()}", title=f"vllm-fleet {mode}",
            description="permissions.yaml of vllm-fleet's deployer",
            permissions=permissions.permissions(document, "gcp", deploy=deploy), opts=opts)
        member = pulumi.Output.concat("serviceAccount:", account.email)
        gcp.projects.IAMMember(name, project=config.project, role=role.name, member=member, opts=opts)
        for index, subject in enumerate(subjects):
            gcp.serviceaccount.IAMMember(f"{name}-federated-{index}", service_account_id=account.name,
                                         role="roles/iam.workloadIdentityUser",
                                         member=principal(pool.name, subject), opts=opts)
        if config.state_bucket:
            gcp.storage.BucketIAMMember(f"{name}-state", bucket=config.state_bucket, member=member,
                                        role="roles/storage.objectAdmin" if deploy else "roles/storage.objectViewer",
                                        opts=opts)
        if config.secrets_key_id:
            gcp.kms.CryptoKeyIAMMember(f"{name}-secrets", crypto_key_id=config.secrets_key_id, member=member,
                                       role="roles/cloudkms.cryptoKeyEncrypterDecrypter" if deploy
                                       else "roles/cloudkms.cryptoKeyDecrypter", opts=opts)
        return account

    preview = service_account("preview", github.preview_subjects, deploy=False)
    deploy = service_account("deploy", github.deploy_subjects, deploy=True)
    return {"GCP_WORKLOAD_IDENTITY_PROVIDER": pool_provider.name,
            "GCP_PREVIEW_SERVICE_ACCOUNT": preview.email, "GCP_DEPLOY_SERVICE_ACCOUNT": deploy.email}
