"""What a change does to a stack, from two offline plans (the base's and the head's, `python -m cli.plan --format
json`) and from a real `pulumi preview --json`: resources added, removed, changed and, above all, whether every GPU
VM of the stack is replaced (a new image, model, vLLM release or instance type rolls through the whole group)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Mapping

USER_DATA = "user-data (vLLM release, model, serving arguments)"
IMAGE = "VM image"
INSTANCE_TYPE = "instance type"
DISKS = "VM disks"
MODEL = "model"
# The resource each cloud's VMs are made from, and the inputs whose change makes every VM be replaced: AWS launches
# a new template version and refreshes the group's instances, GCP makes a new (immutable) instance template that
# the group rolls out, Azure upgrades the scale set's VMs to the new model. Paths are dotted into the inputs.
VM_TEMPLATES: dict[str, dict[str, str]] = {
    "aws:ec2/launchTemplate:LaunchTemplate": {
        "userData": USER_DATA, "imageId": IMAGE, "instanceType": INSTANCE_TYPE, "blockDeviceMappings": DISKS},
    "gcp:compute/instanceTemplate:InstanceTemplate": {
        "metadata.user-data": USER_DATA, "disks": f"{IMAGE} or disks", "machineType": INSTANCE_TYPE},
    "azure-native:compute:VirtualMachineScaleSet": {
        "virtualMachineProfile.osProfile.customData": USER_DATA,
        "virtualMachineProfile.storageProfile": f"{IMAGE} or disks", "sku.name": INSTANCE_TYPE},
}
# GCP instance templates cannot be updated: a replaced one is a new template for every VM.
IMMUTABLE_VM_TEMPLATES = {"gcp:compute/instanceTemplate:InstanceTemplate"}
CHANGING_OPS = ("update", "replace", "create-replacement")
# Ops of `pulumi preview --json` as the comment counts them (a replacement's create-replacement and
# delete-replaced steps are parts of its `replace`).
COUNTED_OPS = ("create", "update", "replace", "delete")


def nested(inputs: Any, path: str) -> Any:
    for key in path.split("."):
        inputs = inputs.get(key) if isinstance(inputs, dict) else None
    return inputs


def resource_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def step_type(step: Mapping[str, Any]) -> str:
    """A step's resource type: the offline plan names it, `pulumi preview --json` has it in the URN
    (urn:pulumi:<stack>::<project>::<parent types$>type::<name>)."""
    return step.get("type") or step["urn"].split("::")[2].rsplit("$", 1)[-1]


def _resources(plan: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["urn"]: step for step in plan.get("steps") or []}


@dataclass
class OfflineChanges:
    """Resources of the head's plan against the base's, by URN."""
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # URN -> the inputs that differ


def offline_changes(base: Mapping[str, Any], head: Mapping[str, Any]) -> OfflineChanges:
    before, after = _resources(base), _resources(head)
    changes = OfflineChanges(added=sorted(set(after) - set(before)), removed=sorted(set(before) - set(after)))
    for urn in sorted(set(before) & set(after)):
        old, new = before[urn]["newState"]["inputs"], after[urn]["newState"]["inputs"]
        keys = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
        if keys:
            changes.changed[urn] = keys
    return changes


def _decoded(value: Any) -> Any:
    """A base64 user-data as its text, so that two encodings of one text compare equal."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return value
    return value


def _template_differences(type_: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [label for path, label in VM_TEMPLATES[type_].items()
            if _decoded(nested(old, path)) != _decoded(nested(new, path))]


def vm_replacement_offline(base: Mapping[str, Any], head: Mapping[str, Any], base_config: Mapping[str, Any],
                           head_config: Mapping[str, Any]) -> list[str]:
    """Why every GPU VM would be replaced, comparing the base's and the head's offline plans; [] if they would not."""
    before, after = _resources(base), _resources(head)
    reasons: list[str] = []
    if base_config.get("model") != head_config.get("model"):
        reasons.append(MODEL)
    for urn in sorted(set(before) & set(after)):
        type_ = step_type(after[urn])
        if type_ in VM_TEMPLATES:
            reasons += _template_differences(type_, before[urn]["newState"]["inputs"], after[urn]["newState"]["inputs"])
    if base.get("userData") != head.get("userData") and USER_DATA not in reasons:
        reasons.append(USER_DATA)
    return list(dict.fromkeys(reasons))


def vm_replacement_preview(preview: Mapping[str, Any]) -> list[str]:
    """Why every GPU VM is replaced, from a real `pulumi preview --json`: an update or replacement of the VM
    template that changes what the VMs are made of; [] if none."""
    reasons: list[str] = []
    for step in preview.get("steps") or []:
        type_ = step_type(step)
        if type_ not in VM_TEMPLATES or step.get("op") not in CHANGING_OPS:
            continue
        old = (step.get("oldState") or {}).get("inputs") or {}
        new = (step.get("newState") or {}).get("inputs") or {}
        found = _template_differences(type_, old, new)
        if not found and type_ in IMMUTABLE_VM_TEMPLATES and step["op"] != "update":
            found = [f"a new {type_.rsplit(':', 1)[1]}"]
        reasons += found
    return list(dict.fromkeys(reasons))


def preview_operations(preview: Mapping[str, Any]) -> dict[str, list[str]]:
    """The URNs `pulumi preview` would create, update, replace and delete."""
    operations: dict[str, list[str]] = {op: [] for op in COUNTED_OPS}
    for step in preview.get("steps") or []:
        if step.get("op") in operations:
            operations[step["op"]].append(step["urn"])
    return operations


def diagnostics(document: Mapping[str, Any], severity: str) -> list[str]:
    return [d["message"].strip() for d in document.get("diagnostics") or []
            if d.get("severity") == severity and d.get("message", "").strip()]
