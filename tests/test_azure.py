"""Every Azure stack under Pulumi's mocks: the resource graph, its security posture and its outputs; and each Azure
config error, raised before any resource is declared."""

from __future__ import annotations

import base64
import gzip
import json
import math
import re

import pytest

from conftest import config_of, run_plan, stacks_of, write_files
from fleet import catalog
from fleet.errors import ConfigError
from fleet.sizing import size
from fleet.spec import parse_spec

AZURE_STACKS = stacks_of("azure")
NSG = "azure-native:network:NetworkSecurityGroup"
SUBNET = "azure-native:network:Subnet"
SCALE_SET = "azure-native:compute:VirtualMachineScaleSet"
GATEWAY = "azure-native:network:ApplicationGateway"
ROLE = "azure-native:authorization:RoleAssignment"
SECRET = "azure-native:keyvault:Secret"
AUTOSCALE = "azure-native:monitor:AutoscaleSetting"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
INTERNET = {"*", "0.0.0.0/0", "Internet", "any"}
SUBSCRIPTION = "/subscriptions/00000000-0000-0000-0000-000000000000"
VAULT_ID = f"{SUBSCRIPTION}/resourceGroups/tls/providers/Microsoft.KeyVault/vaults/platform-tls"
CERTIFICATE = "https://platform-tls.vault.azure.net/secrets/code-example-com"




def ports(rule: dict) -> set[int]:
    ranges = [rule["destinationPortRange"]] if rule.get("destinationPortRange") else rule["destinationPortRanges"]
    covered = set()
    for text in ranges:
        lo, _, hi = ("0-65535" if text == "*" else text).partition("-")
        covered |= set(range(int(lo), int(hi or lo) + 1))
    return covered


def sources(rule: dict) -> set[str]:
    return {rule["sourceAddressPrefix"]} if rule.get("sourceAddressPrefix") else set(rule["sourceAddressPrefixes"])


def custom_data(plan) -> str:
    """The scale set's custom data as a VM gets it: base64 of gzip, which cloud-init decompresses, within Azure's
    65535 bytes."""
    data = base64.b64decode(plan.one(SCALE_SET)["virtualMachineProfile"]["osProfile"]["customData"])
    assert data[:2] == b"\x1f\x8b" and len(data) <= 65535
    return gzip.decompress(data).decode()


def test_both_issue_stacks_exist():
    assert {"codellama-azure", "qwen-coder-azure-dev"} <= set(AZURE_STACKS)


# --- network -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_nothing_reaches_ssh_or_vllm_from_the_internet(stack, plan_of):
    plan = plan_of(stack)
    groups = plan.named(NSG)
    assert set(groups) == {f"{stack}-gateway", f"{stack}-vms"}
    for group in groups.values():
        for rule in group["securityRules"]:
            if rule["direction"] == "Inbound" and rule["access"] == "Allow":
                assert not (sources(rule) & INTERNET and ports(rule) & {22, 8000}), rule
                assert 22 not in ports(rule), rule


@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_only_the_gateway_subnet_and_the_platform_probe_reach_the_vms(stack, plan_of):
    plan = plan_of(stack)
    gateway_subnet, vm_subnet = plan.named(SUBNET)[f"{stack}-gateway"], plan.named(SUBNET)[f"{stack}-vms"]
    rules = {r["name"]: r for r in plan.named(NSG)[f"{stack}-vms"]["securityRules"]}
    allowed = [r for r in rules.values() if r["access"] == "Allow" and r["direction"] == "Inbound"]
    assert {(next(iter(sources(r))), frozenset(ports(r))) for r in allowed} == {
        (gateway_subnet["addressPrefix"], frozenset({8000})), ("AzureLoadBalancer", frozenset({8000}))}
    deny = rules["deny-all-inbound"]
    assert (deny["access"], deny["priority"], sources(deny), deny["destinationPortRange"]) == ("Deny", 4096, {"*"}, "*")
    assert all(r["priority"] < deny["priority"] for r in allowed)
    assert vm_subnet["networkSecurityGroup"]["id"] == f"{stack}-vms-id"
    assert gateway_subnet["networkSecurityGroup"]["id"] == f"{stack}-gateway-id"
    # Outbound only through the NAT gateway; no public IP on any VM.
    assert vm_subnet["defaultOutboundAccess"] is False and vm_subnet["natGateway"]["id"] == f"{stack}-nat-id"
    nic = plan.one(SCALE_SET)["virtualMachineProfile"]["networkProfile"]["networkInterfaceConfigurations"][0]
    assert "publicIPAddressConfiguration" not in json.dumps(nic)


@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_allowed_cidrs_only_reach_the_gateway_listener(stack, plan_of):
    plan = plan_of(stack)
    https = "certificate" in config_of(stack)
    rules = {r["name"]: r for r in plan.named(NSG)[f"{stack}-gateway"]["securityRules"]}
    clients = rules["clients"]
    assert sorted(sources(clients)) == sorted(config_of(stack)["allowedCidrs"])
    assert ports(clients) == {443 if https else 80}
    assert not sources(clients) & INTERNET
    # Application Gateway v2's own infrastructure rule, which it cannot run without.
    assert sources(rules["gateway-manager"]) == {"GatewayManager"} and ports(rules["gateway-manager"]) == set(
        range(65200, 65536))
    other = [r for name, r in rules.items() if name != "clients" and r["access"] == "Allow"]
    assert all(sources(r) <= {"GatewayManager", "AzureLoadBalancer"} for r in other)


# --- identity and secrets ------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_vm_identity_reads_exactly_this_stacks_secrets(stack, plan_of):
    plan = plan_of(stack)
    secrets = plan.named(SECRET)
    expected = {"apiKeys"} | ({"hfToken"} if "hfToken" in config_of(stack) else set())
    assert {s["secretName"] for s in secrets.values()} == expected
    assert all(s["properties"] == "[secret]" for s in secrets.values())
    vault = plan.one("azure-native:keyvault:Vault")["properties"]
    assert vault["enableRbacAuthorization"] is True and "accessPolicies" not in vault
    vm_grants = [r for r in plan.resources(ROLE) if r["principalId"] == f"{stack}-vms-principal"]
    assert sorted(r["scope"] for r in vm_grants) == sorted(f"{name}-id" for name in secrets)
    for grant in vm_grants:
        assert grant["roleDefinitionId"] == f"{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/" \
                                            f"{KEY_VAULT_SECRETS_USER}"
        assert grant["principalType"] == "ServicePrincipal"
    identities = plan.one(SCALE_SET)["identity"]
    assert identities == {"type": "UserAssigned", "userAssignedIdentities": [f"{stack}-vms-id"]}


@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_custom_data_names_the_secrets_and_the_identity_but_holds_no_secret(stack, plan_of):
    plan = plan_of(stack)
    text = custom_data(plan)
    assert text == plan.user_data and text.startswith("#cloud-config")
    setup = write_files(text)["/usr/local/sbin/vllm-fleet-setup"]["content"]
    for secret in plan.resources(SECRET):
        # the secret at its current version: a new value, new custom data, new VMs
        uri = f"https://{secret['vaultName']}.vault.azure.net/secrets/{secret['secretName']}"
        assert re.search(rf"^readonly \w+_REF={re.escape(uri)}/[0-9a-f]{{32}}$", setup, re.M), uri
    assert f"FLEET_IDENTITY_CLIENT_ID={stack}-vms-client-id" in text
    assert "client_id=${FLEET_IDENTITY_CLIENT_ID}" in text
    assert "offline-plan-secret-" not in text  # what the plan gives the program for a secret
    assert not re.search(r"^\s*(VLLM_API_KEY|HF_TOKEN)=[^$]|hf_[A-Za-z0-9]{30,}", text, re.M)


# --- instances -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_scale_set_probes_repairs_and_upgrades_without_losing_capacity(stack, plan_of):
    plan = plan_of(stack)
    scale_set = plan.one(SCALE_SET)
    assert scale_set["orchestrationMode"] == "Uniform" and scale_set["overprovision"] is False
    assert scale_set["sku"]["name"] == plan.outputs["instanceType"]
    assert scale_set["sku"]["capacity"] == plan.outputs["replicas"]["desired"]
    # the autoscale setting owns the capacity after the first `pulumi up`
    assert plan.options_of(SCALE_SET)["ignoreChanges"] == ["sku.capacity"]
    # new VMs first (MaxSurge), from the latest model: a new custom data (vllmArgs, a secret's version) reaches
    # the VMs as new VMs, since running ones never see a changed custom data
    upgrade = scale_set["upgradePolicy"]
    assert upgrade["mode"] == "Rolling" and upgrade["rollingUpgradePolicy"]["maxSurge"] is True
    assert upgrade["rollingUpgradePolicy"]["maxBatchInstancePercent"] <= 20
    seconds = plan.outputs["timeToServe"]["seconds"]
    repairs = scale_set["automaticRepairsPolicy"]
    assert repairs == {"enabled": True, "gracePeriod": f"PT{max(10, math.ceil(seconds / 60))}M",
                       "repairAction": "Replace"}
    profile = scale_set["virtualMachineProfile"]
    [health] = profile["extensionProfile"]["extensions"]
    assert (health["publisher"], health["type"]) == ("Microsoft.ManagedServices", "ApplicationHealthLinux")
    # rich health states (2.x), whose grace period covers a new VM's whole time to serve
    assert health["typeHandlerVersion"] == "2.0"
    assert health["settings"] == {"protocol": "http", "port": 8001, "requestPath": "/health-state",
                                  "intervalInSeconds": 15, "numberOfProbes": 3, "gracePeriod": min(seconds, 14400)}
    assert 5 <= health["settings"]["intervalInSeconds"] <= 60 and 1 <= health["settings"]["numberOfProbes"] <= 24
    # no security profile: a standard VM under Compute API 2024-11-01 (test_the_sdk_makes_standard_vms)
    assert "securityProfile" not in profile
    storage = profile["storageProfile"]
    assert storage["imageReference"] == {"publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204",
                                         "version": "22.04.2026082801"}  # pinned, never "latest"
    [data] = storage["dataDisks"]
    assert data["lun"] == 0 and data["createOption"] == "Empty"
    assert data["diskSizeGB"] >= 2 * plan.outputs["memory"]["weightsGib"]


@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_spot_settings_follow_the_stack(stack, plan_of):
    profile = plan_of(stack).one(SCALE_SET)["virtualMachineProfile"]
    if config_of(stack).get("spot"):
        assert (profile["priority"], profile["evictionPolicy"], profile["billingProfile"]["maxPrice"]) == (
            "Spot", "Delete", -1)
    else:
        assert profile["priority"] == "Regular"
        assert "evictionPolicy" not in profile and "billingProfile" not in profile


@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_autoscale_follows_replicas(stack, plan_of):
    plan = plan_of(stack)
    replicas = plan.outputs["replicas"]
    # The default profile; with officeHours the recurring ones follow (tests/test_office_hours.py).
    profile = plan.one(AUTOSCALE)["profiles"][0]
    assert profile["name"] == "replicas" and "recurrence" not in profile
    assert profile["capacity"] == {k: str(replicas[v]) for k, v in
                                   (("minimum", "min"), ("default", "desired"), ("maximum", "max"))}
    assert plan.one(AUTOSCALE)["targetResourceUri"] == f"{stack}-gpu-id"
    if replicas["min"] == replicas["max"]:
        assert profile["rules"] == []
    else:
        directions = {r["scaleAction"]["direction"]: r["metricTrigger"] for r in profile["rules"]}
        assert set(directions) == {"Increase", "Decrease"}
        assert directions["Increase"]["metricName"] == "AvgRequestCountPerHealthyHost"
        assert directions["Increase"]["metricResourceUri"] == f"{stack}-gateway-id"
        assert directions["Increase"]["threshold"] == config_of(stack)["replicas"].get("targetRequestsPerMinute", 30)


# --- front door ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_gateway_keeps_long_streams_open_and_probes_health(stack, plan_of):
    plan = plan_of(stack)
    gateway = plan.one(GATEWAY)
    [settings] = gateway["backendHttpSettingsCollection"]
    assert settings["requestTimeout"] >= 1200 and settings["port"] == 8000 and settings["protocol"] == "Http"
    assert settings["connectionDraining"]["enabled"] is True
    [probe] = gateway["probes"]
    assert (probe["path"], probe["port"], probe["match"]["statusCodes"]) == ("/health", 8000, ["200"])
    assert settings["probe"]["id"].endswith("/probes/" + probe["name"])
    assert gateway["globalConfiguration"]["enableResponseBuffering"] is False
    pools = plan.one(SCALE_SET)["virtualMachineProfile"]["networkProfile"]["networkInterfaceConfigurations"][0][
        "ipConfigurations"][0]["applicationGatewayBackendAddressPools"]
    assert [p["id"].rsplit("/", 2)[1:] for p in pools] == [["backendAddressPools", "vllm"]]


@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_gateway_routes_the_api_to_the_vms_and_everything_else_to_an_empty_pool(stack, plan_of):
    gateway = plan_of(stack).one(GATEWAY)
    [routing] = gateway["requestRoutingRules"]
    assert routing["ruleType"] == "PathBasedRouting" and routing["urlPathMap"]["id"].endswith("/urlPathMaps/vllm")
    [path_map] = gateway["urlPathMaps"]
    [rule] = path_map["pathRules"]
    assert rule["paths"] == ["/v1/*", "/health"] and rule["backendAddressPool"]["id"].endswith("/backendAddressPools/vllm")
    assert path_map["defaultBackendAddressPool"]["id"].endswith("/backendAddressPools/refused")
    assert {pool["name"]: pool.get("backendAddresses", []) for pool in gateway["backendAddressPools"]} == {
        "vllm": [], "refused": []}  # the VMs join "vllm" from the scale set; "refused" stays empty


def test_the_sdk_makes_standard_vms_without_a_security_profile():
    """Leaving securityProfile out makes a standard (not Trusted Launch) VM under Compute API 2024-11-01, whose
    securityType enum has no "Standard" (2025-11-01 adds it, and makes Trusted Launch the default). A newer SDK
    with a newer API version must fail here, so that the choice is made again."""
    from pathlib import Path

    from pulumi_azure_native.compute import SecurityTypes, virtual_machine_scale_set

    assert "Uses Azure REST API version 2024-11-01." in Path(virtual_machine_scale_set.__file__).read_text()
    assert {t.value for t in SecurityTypes} == {"TrustedLaunch", "ConfidentialVM"}


def test_https_stack_terminates_tls_with_the_key_vault_certificate(plan_of):
    plan = plan_of("codellama-azure")
    gateway, config = plan.one(GATEWAY), config_of("codellama-azure")
    [listener] = gateway["httpListeners"]
    assert listener["protocol"] == "Https" and gateway["frontendPorts"] == [{"name": "https", "port": 443}]
    assert gateway["sslCertificates"] == [{"name": "tls", "keyVaultSecretId": config["certificate"]}]
    assert gateway["sslPolicy"]["policyName"].startswith("AppGwSslPolicy2022")
    assert gateway["identity"]["userAssignedIdentities"] == ["codellama-azure-gateway-id"]
    [grant] = [r for r in plan.resources(ROLE) if r["principalId"] == "codellama-azure-gateway-principal"]
    assert grant["scope"] == config["azure"]["certificateVaultId"] + "/secrets/" + config["certificate"].rsplit("/", 1)[1]
    assert plan.outputs["endpoint"] == f"https://{config['domain']}"
    assert not any("plain HTTP" in w for w in plan.warnings)


def test_http_stack_warns_loudly(plan_of):
    plan = plan_of("qwen-coder-azure-dev")
    assert plan.one(GATEWAY)["httpListeners"][0]["protocol"] == "Http"
    assert "sslCertificates" not in plan.one(GATEWAY)
    assert any("plain HTTP" in w for w in plan.warnings)
    assert any("plain HTTP" in w for w in plan.outputs["warnings"])
    assert plan.outputs["endpoint"].startswith("http://vllm-qwen-coder-azure-dev-")


# --- outputs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_outputs_quota_cost_and_tensor_parallelism(stack, plan_of):
    plan = plan_of(stack)
    instance = catalog.cloud("azure").instance_types[plan.outputs["instanceType"]]
    assert plan.outputs["tensorParallelSize"] == plan.outputs["gpuCount"] == instance.gpu_count
    assert plan.outputs["estimatedCost"]["usdPerHour"] == round(instance.usd_per_hour * plan.outputs["replicas"][
        "desired"], 2)
    quotas = plan.outputs["quota"]
    if config_of(stack).get("spot"):
        # the family quota and the regional total both count spot VMs as low-priority: listed once
        assert [q["code"] for q in quotas] == ["lowPriorityCores"]
    else:
        family, total = quotas
        assert family["name"].startswith("Standard ") and family["name"].endswith(" Family vCPUs")
        assert total["name"] == "Total Regional vCPUs"
    for quota in quotas:
        assert quota["scope"] == config_of(stack)["region"]
        assert quota["atMax"] == instance.vcpus * plan.outputs["replicas"]["max"]
        # A rolling upgrade with MaxSurge creates a batch (20% of the VMs, at least one) before deleting any.
        most = plan.outputs["replicas"]["max"]
        assert quota["duringUpdate"] == instance.vcpus * (most + math.ceil(most * 0.2))


def test_codellama_azure_is_the_cheapest_fit():
    raw = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config_of("codellama-azure").items()}
    sizing = size(parse_spec("codellama-azure", raw, set()))
    assert sizing.instance.name == "Standard_NC48ads_A100_v4" and sizing.tensor_parallel_size == 2


# --- config errors, in-process -------------------------------------------------------------------------
BASE = {"cloud": "azure", "region": "eastus", "model": "Qwen/Qwen2.5-Coder-7B-Instruct", "allowedCidrs": ["203.0.113.0/24"]}


def azure_options(**config):
    from components import azure

    from fleet.sizing import size

    raw = {k: v if isinstance(v, str) else json.dumps(v) for k, v in {**BASE, **config}.items()}
    spec = parse_spec("case", raw, set())
    return azure.parse_options(spec, size(spec))


ERRORS = {
    "unknown option": ({"azure": {"vpcId": "vpc-0123456789abcdef0"}}, "azure.vpcId", "is not an Azure option"),
    "tag name with /": ({"tags": {"team/name": "platform"}}, "tags.team/name", "e.g. team-name"),
    "ACM certificate": ({"domain": "code.example.com",
                         "certificate": "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d"},
                        "certificate", "Key Vault secret id"),
    "certificate object, not secret": ({"domain": "code.example.com",
                                        "certificate": "https://platform-tls.vault.azure.net/certificates/code",
                                        "azure": {"certificateVaultId": VAULT_ID}},
                                       "certificate", "use the certificate's secret id"),
    "certificate without its vault": ({"domain": "code.example.com", "certificate": CERTIFICATE},
                                      "azure.certificateVaultId", "resource id of its Key Vault"),
    "certificate in another vault": ({"domain": "code.example.com", "certificate": CERTIFICATE,
                                      "azure": {"certificateVaultId": VAULT_ID.replace("platform-tls", "other-tls")}},
                                     "azure.certificateVaultId", "but certificate is in vault platform-tls"),
    "certificate in another subscription than the network": (
        {"domain": "code.example.com", "certificate": CERTIFICATE,
         "azure": {"certificateVaultId": VAULT_ID.replace("00000000-0000", "99999999-0000"),
                   "virtualNetworkId": f"{SUBSCRIPTION}/resourceGroups/hub/providers/Microsoft.Network/virtualNetworks/hub",
                   "gatewaySubnetCidr": "10.0.0.0/24", "vmSubnetCidr": "10.0.1.0/24"}},
        "azure.certificateVaultId", "Key Vaults of its own subscription only"),
    "certificate in another subscription than the zone": (
        {"domain": "code.example.com", "certificate": CERTIFICATE,
         "dnsZone": f"{SUBSCRIPTION}/resourceGroups/dns/providers/Microsoft.Network/dnszones/example.com",
         "azure": {"certificateVaultId": VAULT_ID.replace("00000000-0000", "99999999-0000")}},
        "azure.certificateVaultId", "but the gateway is in 00000000-0000-0000-0000-000000000000 (that of dnsZone)"),
    "domain without certificate": ({"domain": "code.example.com"}, "certificate", "cannot issue one"),
    "onDemandBase": ({"spot": True, "onDemandBase": 1, "replicas": {"min": 1, "max": 2}}, "onDemandBase",
                     "all spot or all regular"),
    "bad virtual network id": ({"azure": {"virtualNetworkId": "vnet-123", "gatewaySubnetCidr": "10.0.0.0/24",
                                          "vmSubnetCidr": "10.0.1.0/24"}}, "azure.virtualNetworkId", "resource id"),
    "virtual network without subnets": (
        {"azure": {"virtualNetworkId": f"{SUBSCRIPTION}/resourceGroups/hub/providers/Microsoft.Network/virtualNetworks/hub"}},
        "azure.gatewaySubnetCidr", "two free ranges"),
    "overlapping subnets": (
        {"azure": {"virtualNetworkId": f"{SUBSCRIPTION}/resourceGroups/hub/providers/Microsoft.Network/virtualNetworks/hub",
                   "gatewaySubnetCidr": "10.0.0.0/24", "vmSubnetCidr": "10.0.0.0/22"}},
        "azure.vmSubnetCidr", "subnet of its own"),
    "subnets without virtual network": ({"azure": {"vmSubnetCidr": "10.0.1.0/24"}}, "azure.virtualNetworkId",
                                        "existing virtualNetworkId"),
    "tiny vnetCidr": ({"azure": {"vnetCidr": "10.0.0.0/27"}}, "azure.vnetCidr", "from /16 to /23"),
    "bad image": ({"azure": {"image": "ubuntu-22.04"}}, "azure.image", "publisher:offer:sku:version"),
    "bad resource group": ({"azure": {"resourceGroupName": "rg/1"}}, "azure.resourceGroupName", "resource group name"),
    "Route 53 zone": ({"domain": "code.example.com", "certificate": CERTIFICATE, "dnsZone": "Z0123456789ABCDEFGHIJ",
                       "azure": {"certificateVaultId": VAULT_ID}}, "dnsZone", "Azure DNS zone's resource id"),
    "zone without the domain": ({"domain": "code.example.com", "certificate": CERTIFICATE,
                                 "dnsZone": f"{SUBSCRIPTION}/resourceGroups/dns/providers/Microsoft.Network/dnszones/other.org",
                                 "azure": {"certificateVaultId": VAULT_ID}}, "dnsZone", "does not hold domain"),
    "blob model without its account": ({"model": "az://weights/models/qwen", "modelParams": {"like": BASE["model"]}},
                                       "azure.modelStorageAccountId", "storageAccounts/weights"),
    "S3 model": ({"model": "s3://bucket/qwen", "modelParams": {"like": BASE["model"]}}, "model", "az://"),
    "region of another cloud": ({"region": "us-east-1"}, "region", "eastus"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_azure_config_errors_name_key_value_and_fix(case):
    config, key, expected = ERRORS[case]
    with pytest.raises(ConfigError) as raised:
        azure_options(**config)
    assert raised.value.key == key
    assert expected in str(raised.value)


def test_good_options_parse():
    vnet = f"{SUBSCRIPTION}/resourceGroups/hub/providers/Microsoft.Network/virtualNetworks/hub"
    options = azure_options(domain="code.example.com", certificate=CERTIFICATE, azure={
        "certificateVaultId": VAULT_ID, "virtualNetworkId": vnet, "gatewaySubnetCidr": "10.0.0.0/24",
        "vmSubnetCidr": "10.0.16.0/20", "image": "canonical:ubuntu-hpc:2204:1.0.0"})
    assert (options.virtual_network_id, options.gateway_subnet_cidr, options.vm_subnet_cidr, options.vnet_cidr) == (
        vnet, "10.0.0.0/24", "10.0.16.0/20", None)
    assert options.image == ("canonical", "ubuntu-hpc", "2204", "1.0.0")
    default = azure_options()
    assert (default.gateway_subnet_cidr, default.vm_subnet_cidr) == ("10.90.0.0/24", "10.90.128.0/17")


# --- end to end ----------------------------------------------------------------------------------------
def test_bad_azure_stack_file_fails_cleanly(stack_file):
    path = stack_file({**BASE, "domain": "code.example.com",
                       "certificate": "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d"})
    result = run_plan(path)
    assert result.returncode == 2
    assert "vllm-fleet:certificate" in result.stderr and "Key Vault secret id" in result.stderr
    assert "Nothing was planned" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_existing_network_blob_model_and_dns_record(stack_file):
    vnet = f"{SUBSCRIPTION}/resourceGroups/hub/providers/Microsoft.Network/virtualNetworks/hub"
    account = f"{SUBSCRIPTION}/resourceGroups/data/providers/Microsoft.Storage/storageAccounts/weights"
    zone = f"{SUBSCRIPTION}/resourceGroups/dns/providers/Microsoft.Network/dnszones/example.com"
    path = stack_file({**BASE, "model": "az://weights/models/qwen-7b", "modelParams": {"like": BASE["model"]},
                       "domain": "code.example.com", "certificate": CERTIFICATE, "dnsZone": zone,
                       "azure": {"resourceGroupName": "ml-serving", "virtualNetworkId": vnet,
                                 "gatewaySubnetCidr": "10.0.0.0/24", "vmSubnetCidr": "10.0.16.0/20",
                                 "certificateVaultId": VAULT_ID, "modelStorageAccountId": account}})
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    preview = json.loads(result.stdout)
    types = [s["type"] for s in preview["steps"]]
    assert "azure-native:resources:ResourceGroup" not in types and "azure-native:network:VirtualNetwork" not in types
    subnets = [s["newState"]["inputs"] for s in preview["steps"] if s["type"] == SUBNET]
    assert {(s["resourceGroupName"], s["virtualNetworkName"], s["addressPrefix"]) for s in subnets} == {
        ("hub", "hub", "10.0.0.0/24"), ("hub", "hub", "10.0.16.0/20")}
    grants = {s["newState"]["inputs"]["scope"]: s["newState"]["inputs"] for s in preview["steps"] if s["type"] == ROLE}
    model_grant = grants[f"{account}/blobServices/default/containers/models"]
    assert model_grant["roleDefinitionId"].endswith("2a2b9908-6ea1-4ae2-8e65-a410df84e7d1")  # Storage Blob Data Reader
    [record] = [s["newState"]["inputs"] for s in preview["steps"] if s["type"] == "azure-native:dns:RecordSet"]
    assert (record["zoneName"], record["relativeRecordSetName"], record["recordType"]) == ("example.com", "code", "A")
    assert "fleet_fetch_weights" in preview["userData"] and "az://weights/models/qwen-7b" in preview["userData"]


def test_startup_beyond_the_repair_grace_limit_turns_repairs_off(stack_file):
    # ~500 GB of weights: ~94 minutes to become healthy at the sizing's 100 MB/s, over Azure's 90 minute limit.
    path = stack_file({**BASE, "model": "example/huge-coder", "maxModelLen": 8192, "modelParams": {
        "params_b": 250, "layers": 100, "heads": 64, "kv_heads": 8, "head_dim": 128, "max_len": 8192}})
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    preview = json.loads(result.stdout)
    [scale_set] = [s["newState"]["inputs"] for s in preview["steps"] if s["type"] == SCALE_SET]
    assert scale_set["automaticRepairsPolicy"]["enabled"] is False
    assert scale_set["automaticRepairsPolicy"]["gracePeriod"] == "PT90M"
    assert any("automatic repairs are off" in d["message"] for d in preview["diagnostics"])


def test_the_latest_image_version_is_taken_with_a_warning_that_it_drifts(stack_file):
    path = stack_file({**BASE, "azure": {"image": "microsoft-dsvm:ubuntu-hpc:2204:latest"}})
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    preview = json.loads(result.stdout)
    assert any("asks for the latest version" in d["message"] for d in preview["diagnostics"])
