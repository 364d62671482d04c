"""What a GCP stack's VMs are allowed: its secrets in Secret Manager, each granted to the VMs' service account, and
read access to the model's bucket."""

from __future__ import annotations

from typing import Mapping

import pulumi
from pulumi_gcp import secretmanager, storage

from components.base import FleetComponent
from fleet import iam_names
from fleet.spec import FleetSpec


def store_secrets(fleet: FleetComponent, spec: FleetSpec, secrets: Mapping[str, pulumi.Output[str]], member):
    """Secret Manager secrets the VMs read at boot, and the grants of each to the VMs' service account: (the name of
    each secret's current version, projects/<number>/secrets/<id>/versions/<n>, which the VMs read; the grants). A
    new value is a new version, a new instance template and so a rolling replacement of the VMs."""
    versions, grants = {}, []
    for key, value in secrets.items():
        secret = secretmanager.Secret(
            fleet.child(key), secret_id=iam_names.gcp_secret_id(spec.stack, key),
            replication=secretmanager.SecretReplicationArgs(auto=secretmanager.SecretReplicationAutoArgs()),
            opts=fleet.opts)
        version = secretmanager.SecretVersion(fleet.child(key), secret=secret.id, secret_data=value, opts=fleet.opts)
        grants.append(secretmanager.SecretIamMember(
            fleet.child(f"{key}-reader"), secret_id=secret.secret_id, role="roles/secretmanager.secretAccessor",
            member=member, opts=fleet.opts))
        versions[key] = version.name
    if spec.model_is_bucket:
        # Cloud Storage IAM has no prefix scope without conditions (which listing ignores): the whole bucket.
        bucket = spec.model[len("gs://"):].split("/", 1)[0]
        grants.append(storage.BucketIAMMember(fleet.child("read-model"), bucket=bucket,
                                              role="roles/storage.objectViewer", member=member, opts=fleet.opts))
    return versions, grants
