"""Azure: the azure-mgmt-* packages at the REST API versions pulumi-azure-native uses, generated from the same specs
as the provider: each model's `_attribute_map` (where a member goes in the JSON body: "properties.upgradePolicy")
and `_validation` (required, read-only, lengths, patterns, ranges), enums from the models' signatures, and the URL's
parameters from the operation's request builder. A root is an operation and the model of its body,
"<operation group>/<operation>/<Model>" ("compute:virtual_machine_scale_sets/create_or_update/VirtualMachineScaleSet"),
or an operation alone ("storage:storage_accounts/list_keys"): its URL's parameters (resourceGroupName, vaultName).

azure-native's inputs are the body as the SDKs see it: a resource's `properties` (and the spec's other
x-ms-client-flatten objects) flattened into their parent. So are a model's members here: `upgradePolicy`, not
`properties.upgradePolicy` (the Field's `where` says where it goes in the body); the URL's parameters join them."""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import re
from functools import cache
from pathlib import Path
from typing import Any

from .core import Field, Model, ProviderOnly, Resource, Sent

# The API version each resource type of pulumi-azure-native 3.29 calls (its SDK's docstrings name them).
PACKAGES = {"compute": "azure.mgmt.compute",  # 2024-11-01, the package's only version
            "network": "azure.mgmt.network",  # 2024-05-01, likewise
            "keyvault": "azure.mgmt.keyvault.v2024_11_01", "storage": "azure.mgmt.storage.v2024_01_01",
            "monitor": "azure.mgmt.monitor.v2021_05_01_preview",  # autoscale settings
            "monitor_alerts": "azure.mgmt.monitor.v2018_03_01",  # metric alerts
            "msi": "azure.mgmt.msi.v2023_01_31",
            "authorization": "azure.mgmt.authorization.v2022_04_01", "dns": "azure.mgmt.dns.v2023_07_01_preview"}
KINDS = {"str": "string", "int": "integer", "long": "integer", "float": "number", "bool": "boolean",
         "object": "any", "iso-8601": "string", "rfc-1123": "string", "duration": "string", "base64": "string",
         "bytearray": "string", "unix-time": "integer"}
# An ISO 8601 duration, as the SDK's "duration" serializer (isodate) writes one.
# A polymorphic model's subtype the fleet sends (its discriminator names it): a metric alert's criteria are
# MetricAlertCriteria in the body's model, and the fleet's are one resource's several metrics.
SUBTYPES = {"MetricAlertCriteria": "MetricAlertSingleResourceMultipleMetricCriteria"}
DURATION = r"P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?"


@cache
def _models(api: str) -> Any:
    return importlib.import_module(f"{PACKAGES[api]}.models")


@cache
def _url_parameters(api: str, group: str, operation: str) -> dict[str, dict[str, Any]]:
    """The URL parameters of an operation, from its request builder: name -> the serializer's constraints."""
    folder = Path(importlib.import_module(PACKAGES[api]).__file__).parent / "operations"
    for module, builder in ((f"_{group}_operations.py", f"build_{operation}_request"),
                            ("_operations.py", f"build_{group}_{operation}_request")):
        source = _source(folder / module)
        start = source.find(f"\ndef {builder}(")
        if start < 0:
            continue
        end = min((i for i in (source.find("\ndef ", start + 1), source.find("\nclass ", start + 1)) if i > 0),
                  default=len(source))
        found = {}
        for node in ast.walk(ast.parse(source[start:end])):  # that function alone: the modules are megabytes
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if (isinstance(key, ast.Constant) and isinstance(value, ast.Call)
                            and isinstance(value.func, ast.Attribute) and value.func.attr == "url"):
                        found[key.value] = {k.arg: ast.literal_eval(k.value) for k in value.keywords
                                            if k.arg in ("max_length", "min_length", "pattern")}
        return found
    raise AssertionError(f"{api}: no request builder for {group}/{operation}")


@cache
def _source(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _enum(cls: type, attribute: str) -> tuple[str, ...] | None:
    """The enum a model's __init__ names for an attribute (Union[str, "_models.UpgradeMode"]), if any."""
    parameter = inspect.signature(cls.__init__).parameters.get(attribute)
    named = re.search(r"_models\.(\w+)", str(parameter.annotation)) if parameter else None
    kind = getattr(_models_of(cls), named[1], None) if named else None
    return tuple(e.value for e in kind) if isinstance(kind, type) and issubclass(kind, enum.Enum) else None


def _models_of(cls: type) -> Any:
    return importlib.import_module(cls.__module__.rsplit(".", 1)[0])


def _member_name(key: str) -> str:
    """The member an attribute's body key names, its flattened parents left out ("properties.upgradePolicy")."""
    return re.split(r"(?<!\\)\.", key)[-1].replace("\\.", ".")


class AzureModel(Model):
    def root(self, api: str, root: str) -> Field:
        assert api in PACKAGES, f"no azure-mgmt package loaded for {api}"
        group, operation, *body = root.split("/")
        parameters = _url_parameters(api, group, operation)
        where = f"{api} {group}.{operation}"
        model = self._model(getattr(_models(api), body[0]), where) if body else None

        def members() -> dict[str, Field]:
            found = {name: Field(f"{where} URL {name}", "string", **rules) for name, rules in parameters.items()}
            if model:  # a read-only member of the body may share a parameter's name (a role assignment's scope)
                clash = {name for name in set(found) & set(model.members) if not model.members[name].readonly}
                assert not clash, f"{root}: {clash} both a URL parameter and a member of the body"
                found = {**model.members, **found}
            return found

        return Field(where, "structure", members=members, required=model.required if model else frozenset())

    def _model(self, cls: type, where: str, readonly: bool = False) -> Field:
        attributes: dict[str, dict[str, Any]] = cls._attribute_map  # type: ignore[attr-defined]
        validation: dict[str, dict[str, Any]] = getattr(cls, "_validation", {})
        names = {attribute: _member_name(spec["key"]) for attribute, spec in attributes.items()}
        required = frozenset(names[a] for a, rules in validation.items() if rules.get("required") and a in names)
        # Flattened, two attributes may name the same member: an extension's read-only resource `type` and its
        # `properties.type`; the one a request can set is the input's.
        settable = sorted(attributes, key=lambda a: not validation.get(a, {}).get("readonly"))
        return Field(where, "structure", readonly=readonly, required=required, members=lambda: {
            names[a]: self._type(cls, a, attributes[a]["type"], f"{where}.{attributes[a]['key']}",
                                 validation.get(a, {})) for a in settable})

    def _type(self, cls: type, attribute: str, type_: str, where: str, rules: dict[str, Any]) -> Field:
        readonly = bool(rules.get("readonly"))
        if type_.startswith("[") or type_.startswith("{"):
            inner = type_[1:-1]
            kind, item = ("list", "[]") if type_.startswith("[") else ("map", "{}")
            return Field(where, kind, readonly=readonly, min_length=rules.get("min_items"),
                         max_length=rules.get("max_items"),
                         item=lambda: self._type(cls, attribute, inner, f"{where}{item}", {}))
        if type_ in KINDS:  # Azure's enums are case-insensitive (CaseInsensitiveEnumMeta)
            return Field(where, KINDS[type_], readonly=readonly, enum=_enum(cls, attribute) if type_ == "str" else None,
                         enum_any_case=True, min_length=rules.get("min_length"), max_length=rules.get("max_length"),
                         pattern=rules.get("pattern") or (DURATION if type_ == "duration" else None),
                         minimum=rules.get("minimum"), maximum=rules.get("maximum"))
        model = getattr(_models_of(cls), SUBTYPES.get(type_, type_), None)
        if isinstance(model, type) and issubclass(model, enum.Enum):
            return Field(where, "string", readonly=readonly, enum=tuple(e.value for e in model), enum_any_case=True)
        assert model is not None, f"{where}: no model {type_}"
        return self._model(model, where, readonly)


def autoname(logical: str) -> str:
    """What azure-native names a resource that sets no name: the logical name and 8 random characters."""
    return f"{logical}0a1b2c3d"


# --- where azure-native sends each input (its inputs are the body's, flattened as above; what differs is listed) ---
def _identities(ids: list[str]) -> dict[str, dict]:
    """A user-assigned identity list as the body's map from identity id to an empty object."""
    return {identity: {} for identity in ids or ()}


IDENTITIES = {"identity.userAssignedIdentities": Sent("identity.userAssignedIdentities", _identities)}
NETWORK = "network:{0}/create_or_update/{1}"
DATA_PLANE = ("azure-native writes the blob through the Blob service (data plane) with the account's key, "
              "a request no azure-mgmt model describes")

def _criteria(criteria: dict[str, Any]) -> dict[str, Any]:
    """A metric alert's criteria as the body holds them: the SDK's odataType is the member `odata.type`."""
    return {("odata.type" if key == "odataType" else key): value for key, value in (criteria or {}).items()}



# Types whose request no azure-mgmt package models at the API version azure-native calls: each one's inputs are
# not checked, for the reason given.
UNMODELLED = {
    "azure-native:portal:Dashboard": "azure-native calls Microsoft.Portal 2022-12-01-preview; the only azure-mgmt "
                                     "package of it (azure-mgmt-portal 1.0.1) is 2020-09-01-preview",
    "azure-native:monitor:ActionGroup": "azure-native calls action groups at 2024-10-01-preview; the pinned "
                                        "azure-mgmt-monitor (6.0.2) models them up to 2023-01-01",
}

RESOURCES: dict[str, Resource] = {
    "azure-native:compute:VirtualMachineScaleSet": Resource(
        "compute:virtual_machine_scale_sets/create_or_update/VirtualMachineScaleSet", IDENTITIES,
        name="vmScaleSetName"),
    "azure-native:network:VirtualNetwork": Resource(NETWORK.format("virtual_networks", "VirtualNetwork"),
                                                    name="virtualNetworkName"),
    "azure-native:network:Subnet": Resource(NETWORK.format("subnets", "Subnet"), name="subnetName"),
    "azure-native:network:NetworkSecurityGroup": Resource(NETWORK.format("network_security_groups",
                                                                         "NetworkSecurityGroup"),
                                                          name="networkSecurityGroupName"),
    "azure-native:network:PublicIPAddress": Resource(NETWORK.format("public_ip_addresses", "PublicIPAddress"),
                                                     name="publicIpAddressName"),
    "azure-native:network:NatGateway": Resource(NETWORK.format("nat_gateways", "NatGateway"), name="natGatewayName"),
    "azure-native:network:ApplicationGateway": Resource(NETWORK.format("application_gateways", "ApplicationGateway"),
                                                        IDENTITIES, name="applicationGatewayName"),
    "azure-native:managedidentity:UserAssignedIdentity": Resource(
        "msi:user_assigned_identities/create_or_update/Identity", name="resourceName"),
    "azure-native:keyvault:Vault": Resource("keyvault:vaults/create_or_update/VaultCreateOrUpdateParameters",
                                            name="vaultName"),
    "azure-native:keyvault:Secret": Resource("keyvault:secrets/create_or_update/SecretCreateOrUpdateParameters"),
    "azure-native:authorization:RoleAssignment": Resource(  # its name: a GUID azure-native makes
        "authorization:role_assignments/create/RoleAssignmentCreateParameters"),
    "azure-native:monitor:AutoscaleSetting": Resource(
        "monitor:autoscale_settings/create_or_update/AutoscaleSettingResource", name="autoscaleSettingName"),
    "azure-native:monitor:MetricAlert": Resource(
        "monitor_alerts:metric_alerts/create_or_update/MetricAlertResource", {
            "criteria": Sent("criteria", _criteria)}, name="ruleName"),
    "azure-native:storage:StorageAccount": Resource(
        "storage:storage_accounts/create/StorageAccountCreateParameters", {
            "enableHttpsTrafficOnly": "supportsHttpsTrafficOnly"}, name="accountName"),
    # The closed page's blob and the account's static website: data-plane requests, made with the key that
    # listKeys (ARM) returns for the account the inputs name.
    "azure-native:storage:Blob": Resource("storage:storage_accounts/list_keys", {
        **{name: ProviderOnly(DATA_PLANE) for name in ("blobName", "containerName", "contentType", "source", "type")}}),
    "azure-native:storage:StorageAccountStaticWebsite": Resource("storage:storage_accounts/list_keys", {
        **{name: ProviderOnly(DATA_PLANE.replace("writes the blob", "sets the static website"))
           for name in ("indexDocument", "error404Document")}}),
    "azure-native:dns:RecordSet": Resource("dns:record_sets/create_or_update/RecordSet"),
}
