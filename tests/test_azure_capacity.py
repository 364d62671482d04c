"""Azure: what keeps the scale set's live count when `pulumi up` changes the scale set.

azure-native updates a resource with a full PUT of its inputs (provider.go defaultUpdate -> crud.CreateOrUpdate ->
azureClient.Put), so the request carries sku.capacity. For an ignoreChanges path, the Pulumi engine takes the value
from the inputs in the stack's state (path.Reset(oldInputs, newInputs)); those are the inputs of the last update,
unless a refresh came first: azure-native's Read applies what changed in the cloud (the outputs' projection onto
the inputs) to the inputs in state. The project refreshes before every update (Pulumi.yaml options.refresh), so
the PUT carries the count autoscale set, not the first one."""

from __future__ import annotations

import copy

import yaml
from azure.mgmt.compute.models import Sku, VirtualMachineScaleSet

from conftest import ROOT

SCALE_SET = "azure-native:compute:VirtualMachineScaleSet"


def reset(new_inputs: dict, old_inputs: dict, path: str) -> dict:
    """The engine's ignoreChanges: the path's value from the old inputs (deleted where they have none)."""
    inputs, keys = copy.deepcopy(new_inputs), path.split(".")
    target, source = inputs, old_inputs
    for key in keys[:-1]:
        target, source = target.setdefault(key, {}), (source or {}).get(key)
    if source and keys[-1] in source:
        target[keys[-1]] = source[keys[-1]]
    else:
        target.pop(keys[-1], None)
    return inputs


def refreshed(state_inputs: dict, live_capacity: int) -> dict:
    """azure-native's Read: the cloud's change (here autoscale's count) applied to the inputs in state."""
    inputs = copy.deepcopy(state_inputs)
    inputs["sku"]["capacity"] = live_capacity
    return inputs


def put_body(inputs: dict) -> dict:
    """The REST body of the scale set's sku as the Compute API model serializes it (what the PUT carries)."""
    sku = inputs["sku"]
    return VirtualMachineScaleSet(location="eastus", sku=Sku(name=sku["name"], tier=sku["tier"],
                                                               capacity=sku.get("capacity"))).serialize()


def test_every_update_refreshes_first():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["options"]["refresh"] == "always"


def test_the_put_after_a_refresh_carries_the_live_count_and_without_one_the_first(plan_of):
    plan = plan_of("qwen-coder-azure-dev")
    [step] = [s for s in plan.steps if s["type"] == SCALE_SET]
    created = step["newState"]["inputs"]
    assert "sku.capacity" in step["options"]["ignoreChanges"]
    first = created["sku"]["capacity"]
    # Later: autoscale runs 4 VMs, and a `pulumi up` changes the scale set (a new image, say).
    changed = {**copy.deepcopy(created), "virtualMachineProfile": {"changed": True}}
    stale = reset(changed, created, "sku.capacity")
    assert put_body(stale)["sku"]["capacity"] == first != 4  # what a `pulumi up` without a refresh would do
    live = reset(changed, refreshed(created, 4), "sku.capacity")
    assert put_body(live)["sku"] == {"name": created["sku"]["name"], "tier": "Standard", "capacity": 4}
