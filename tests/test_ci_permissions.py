"""deployer/permissions.yaml against what the fleet really plans: every resource type and data source of every
stack of stacks/ (planned by the real offline plan) must have its permissions listed, so that a new resource in a
component cannot reach `pulumi up` in CI with an identity that is not allowed to create it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections import defaultdict
from typing import Iterable, Mapping

import pytest
import yaml

from conftest import ROOT, stacks_of
from deployer import permissions

DOCUMENT = permissions.load()


def unlisted(used_by: Mapping[str, Iterable[str]], document, kind: str) -> list[str]:
    """One message per type (or function) used by the fleet that permissions.yaml does not list."""
    messages = []
    for token, stacks in sorted(used_by.items()):
        section = permissions.section_of(token)
        if token not in permissions.entries(document, section, kind):
            if section == permissions.NO_CLOUD:
                what = "{}"
            else:
                what = "{read: [...], write: [...]}" if kind == "resources" else "{read: [...]}"
            messages.append(f"{token} (used by {', '.join(sorted(stacks))}) has no permissions: add it to "
                            f"deployer/permissions.yaml under `{section}: {kind}:` as `{token}: {what}`")
    return messages


@pytest.fixture(scope="module")
def resource_types(plan_of) -> dict[str, set[str]]:
    """Every custom resource type the fleet plans (components are not custom: they call no API), and its stacks."""
    used_by = defaultdict(set)
    for stack in stacks_of():
        for step in plan_of(stack).steps:
            if step["newState"]["custom"]:
                used_by[step["type"]].add(stack)
    return used_by


@pytest.fixture(scope="module")
def data_sources() -> dict[str, set[str]]:
    used_by = defaultdict(set)
    for stack in stacks_of():
        result = subprocess.run([sys.executable, "tests/ci_fleet_data_sources.py", stack], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        for token in json.loads(result.stdout):
            used_by[token].add(stack)
    return used_by


def test_every_resource_type_the_fleet_plans_has_its_permissions(resource_types):
    assert {"aws:ec2/launchTemplate:LaunchTemplate", "gcp:compute/instanceTemplate:InstanceTemplate",
            "azure-native:compute:VirtualMachineScaleSet"} <= set(resource_types)
    missing = unlisted(resource_types, DOCUMENT, "resources")
    assert not missing, "\n".join(missing)


def test_every_data_source_the_fleet_calls_has_its_permissions(data_sources):
    assert "aws:ec2/getAmi:getAmi" in data_sources
    missing = unlisted(data_sources, DOCUMENT, "data_sources")
    assert not missing, "\n".join(missing)


def test_a_type_without_permissions_is_named_with_where_to_add_it():
    used_by = {"aws:autoscaling/warmPool:WarmPool": {"codellama-prod"}, "random:index/randomUuid:RandomUuid": {"x"}}
    assert unlisted(used_by, DOCUMENT, "resources") == [
        "aws:autoscaling/warmPool:WarmPool (used by codellama-prod) has no permissions: add it to "
        "deployer/permissions.yaml under `aws: resources:` as `aws:autoscaling/warmPool:WarmPool: "
        "{read: [...], write: [...]}`",
        "random:index/randomUuid:RandomUuid (used by x) has no permissions: add it to deployer/permissions.yaml "
        "under `none: resources:` as `random:index/randomUuid:RandomUuid: {}`"]


@pytest.mark.parametrize("section", [*permissions.CLOUDS, permissions.NO_CLOUD])
def test_each_entry_is_in_its_clouds_section_with_well_formed_permissions(section):
    for kind in ("resources", "data_sources"):
        for token, entry in permissions.entries(DOCUMENT, section, kind).items():
            assert permissions.section_of(token) == section, f"{token} belongs under {permissions.section_of(token)}"
            if section == permissions.NO_CLOUD:
                assert entry == permissions.Entry((), ()), f"{token} calls no cloud API: give it no permissions"
                continue
            assert entry.read or kind == "data_sources", f"{token}: a preview needs to read it"
            assert not entry.data_actions or section == "azure", f"{token}: data actions are Azure's"
            for permission in entry.read + entry.write + entry.data_actions:
                assert permissions.PERMISSION_SYNTAX[section].match(permission), f"{token}: {permission!r}"
                assert "*" not in permission, f"{token}: {permission} is a wildcard: name each permission"


def test_every_narrowed_aws_action_is_one_the_fleet_needs():
    needed = set(permissions.permissions(DOCUMENT, "aws", deploy=True))
    for statement in DOCUMENT["aws"]["narrowed"]:
        unused = sorted(set(statement["actions"]) - needed)
        assert not unused, f"{statement['sid']} narrows {unused}, which no resource type lists"


def test_the_preview_identity_gets_read_permissions_only():
    for cloud in permissions.CLOUDS:
        preview = set(permissions.permissions(DOCUMENT, cloud, deploy=False))
        deploy = set(permissions.permissions(DOCUMENT, cloud, deploy=True))
        assert preview < deploy
        writes = {p for kind in ("resources", "data_sources") for e in permissions.entries(DOCUMENT, cloud, kind).values()
                  for p in e.write} - preview
        assert writes == deploy - preview
    assert "ec2:RunInstances" not in permissions.permissions(DOCUMENT, "aws", deploy=False)
    assert "iam.serviceAccounts.actAs" not in permissions.permissions(DOCUMENT, "gcp", deploy=False)
    assert not [a for a in permissions.permissions(DOCUMENT, "azure", deploy=False) if not a.endswith("/read")]


def test_the_permissions_the_first_deploys_need():
    """Calls the providers make that a create, refresh or destroy fails without (the deploy blockers)."""
    aws = permissions.entries(DOCUMENT, "aws")
    assert "ec2:DescribeAddressesAttribute" in aws["aws:ec2/eip:Eip"].read  # every read, provider >= 5.46
    gcp = permissions.entries(DOCUMENT, "gcp")
    assert "compute.securityPolicies.setLabels" in gcp["gcp:compute/securityPolicy:SecurityPolicy"].write
    azure = permissions.entries(DOCUMENT, "azure")
    assert "Microsoft.KeyVault/vaults/secrets/delete" in azure["azure-native:keyvault:Secret"].data_actions
    blob = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"
    assert {f"{blob}/write", f"{blob}/delete"} <= set(azure["azure-native:storage:Blob"].data_actions)
    # The Blob data plane with an Entra token, never the account's keys.
    assert "Microsoft.Storage/storageAccounts/listkeys/action" not in permissions.permissions(
        DOCUMENT, "azure", deploy=True)
    # The deployer creates each stack's resource group: the stack may not create resource groups.
    assert not [a for a in permissions.permissions(DOCUMENT, "azure", deploy=True)
                if a.startswith("Microsoft.Resources/subscriptions/resourceGroups/") and not a.endswith("/read")]


# --- permissions.yaml against the providers' API calls (deployer/api_calls.yaml) ----------------------------
API_CALLS = yaml.safe_load((ROOT / "deployer" / "api_calls.yaml").read_text())
CALLS = ("create", "read", "update", "delete", "checks")


def disagreements(document, table, cloud: str) -> list[str]:
    """One message per permission that a call of a type's provider needs and permissions.yaml does not grant (or
    not where the call is made: a read call under `read`), and per grant that no call needs."""
    messages = []
    for kind in ("resources", "data_sources"):
        granted = permissions.entries(document, cloud, kind)
        rows = (table.get(cloud) or {}).get(kind) or {}
        for token in sorted(set(granted) | set(rows)):
            if token not in rows:
                messages.append(f"{token}: permissions.yaml grants it, deployer/api_calls.yaml lists no calls of it")
                continue
            if token not in granted:
                messages.append(f"{token}: deployer/api_calls.yaml lists its calls, permissions.yaml has no entry")
                continue
            entry, row = granted[token], rows[token]
            needed = {permission for call in CALLS for permission in row.get(call) or ()}
            given = set(entry.read) | set(entry.write)
            for permission in sorted(needed - given):
                where = [call for call in CALLS if permission in (row.get(call) or ())]
                messages.append(f"{token}: {permission} is needed ({', '.join(where)}) but not granted")
            for permission in sorted(given - needed):
                messages.append(f"{token}: {permission} is granted but no call of its provider needs it")
            for permission in sorted(set(row.get("read") or ()) - set(entry.read)):
                messages.append(f"{token}: {permission} is a read call: grant it under `read` (preview, refresh)")
            for permission in sorted(set(entry.read) - set(row.get("read") or ())):
                messages.append(f"{token}: {permission} is under `read` but no read call needs it")
            for permission in sorted(set(row.get("data_actions") or ()) ^ set(entry.data_actions)):
                state = "needed but not granted" if permission in (row.get("data_actions") or ()) else "not needed"
                messages.append(f"{token}: data action {permission} is {state}")
    return messages


@pytest.mark.parametrize("cloud", permissions.CLOUDS)
def test_permissions_are_exactly_what_the_providers_calls_need(cloud):
    wrong = disagreements(DOCUMENT, API_CALLS, cloud)
    assert not wrong, "\n".join(wrong)


def test_every_type_of_the_call_table_names_its_source_and_calls_in_each_clouds_syntax():
    for cloud in permissions.CLOUDS:
        assert API_CALLS[cloud]["repository"]
        for kind in ("resources", "data_sources"):
            for token, row in API_CALLS[cloud][kind].items():
                assert permissions.section_of(token) == cloud and row["source"], token
                assert set(row) <= {"source", *CALLS, "data_actions"}, token
                assert kind == "data_sources" or {"create", "read", "delete"} <= set(row), token
                for permission in (p for call in (*CALLS, "data_actions") for p in row.get(call) or ()):
                    assert permissions.PERMISSION_SYNTAX[cloud].match(permission), f"{token}: {permission}"


def test_a_missing_and_a_superfluous_permission_are_each_named():
    document = copy.deepcopy(DOCUMENT)
    eip = document["aws"]["resources"]["aws:ec2/eip:Eip"]
    eip["read"] = [p for p in eip["read"] if p != "ec2:DescribeAddressesAttribute"]
    eip["write"] = [*eip["write"], "ec2:DeleteVpc"]
    document["gcp"]["resources"]["gcp:compute/network:Network"]["read"].append("compute.networks.list")
    assert disagreements(document, API_CALLS, "aws") == [
        "aws:ec2/eip:Eip: ec2:DescribeAddressesAttribute is needed (read) but not granted",
        "aws:ec2/eip:Eip: ec2:DeleteVpc is granted but no call of its provider needs it",
        "aws:ec2/eip:Eip: ec2:DescribeAddressesAttribute is a read call: grant it under `read` (preview, refresh)"]
    assert disagreements(document, API_CALLS, "gcp") == [
        "gcp:compute/network:Network: compute.networks.list is granted but no call of its provider needs it",
        "gcp:compute/network:Network: compute.networks.list is under `read` but no read call needs it"]
    table = copy.deepcopy(API_CALLS)
    del table["azure"]["resources"]["azure-native:storage:Blob"]
    assert disagreements(DOCUMENT, table, "azure") == [
        "azure-native:storage:Blob: permissions.yaml grants it, deployer/api_calls.yaml lists no calls of it"]
