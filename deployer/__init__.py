"""The deployer: a separate Pulumi project (deployer/Pulumi.yaml) that creates the identities GitHub Actions
deploys the fleet with, per cloud, from the permission list of deployer/permissions.yaml (docs/ci.md)."""
