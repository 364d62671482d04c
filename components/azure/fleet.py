"""The GPU VMs of an Azure stack: the scale set (image, disks, identity, the rendered custom data, health
extension, repairs, rolling upgrades) and its autoscale setting."""

from __future__ import annotations

import base64
import gzip
import math

import pulumi
import pulumi_random
from pulumi_azure_native import compute, monitor

from components.base import FleetComponent
from fleet import serving
from fleet.bootstrap import CloudBoot, CloudFile, render_user_data
from fleet.schedule import lead_minutes, standby_vms
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

from .edge import GATEWAY_REQUEST_TIMEOUT_SECONDS, HEALTH_PROBE_INTERVAL_SECONDS
from .options import AzureOptions

OS_DISK_GB = 128  # the HPC image's own ~64 GB plus the vLLM venv
HOST_CACHE_MAX_DISK_GB = 4096
ADMIN_USER = "vllmadmin"
# VMs are named <prefix><6 characters>; 9 keeps the names within 15.
COMPUTER_NAME_PREFIX_MAX = 9
CUSTOM_DATA_MAX_BYTES = 65535
# vllm-fleet-health: what the Application Health extension asks, on the VM itself.
HEALTH_STATE_SCRIPT = "/usr/local/lib/vllm-fleet/health-state.py"
HEALTH_STATE_UNIT = "vllm-fleet-health.service"
HEALTH_STATE_PORT = 8001
HEALTH_STATE_PATH = "/health-state"
# A rolling upgrade's batch, in percent of the VMs: with MaxSurge, each batch's new VMs run next to the old ones.
MAX_BATCH_PERCENT = 20
# The Application Health extension's longest grace period (rich health states).
HEALTH_GRACE_MAX_SECONDS = 14400
# Azure's limits on the automatic repairs grace period (ISO 8601 minutes).
REPAIR_GRACE_MIN_MINUTES, REPAIR_GRACE_MAX_MINUTES = 10, 90
# The standby pool API of the installed SDK: it has no postProvisioningDelay (standby_note).
STANDBY_POOL_API = "2024-03-01"


def _iso_minutes(seconds: int) -> str:
    return f"PT{math.ceil(seconds / 60)}M"


def custom_data(spec: FleetSpec, sizing: Sizing, identity, secret_uris) -> pulumi.Output[str]:
    def render(args) -> str:
        client_id, uris = args
        boot = CloudBoot(
            secret_refs=uris, edge_idle_timeout_seconds=GATEWAY_REQUEST_TIMEOUT_SECONDS,
            vars={"identity_client_id": client_id, "health_state_script": HEALTH_STATE_SCRIPT,
                  "health_state_port": str(HEALTH_STATE_PORT), "vllm_port": str(serving.SERVE_PORT),
                  "vllm_health_path": serving.HEALTH_PATH},
            files=(CloudFile(HEALTH_STATE_SCRIPT, "clouds/azure-health.py"),
                   CloudFile(f"/etc/systemd/system/{HEALTH_STATE_UNIT}", "clouds/azure-health.service.j2")),
            units=(HEALTH_STATE_UNIT,))
        text = render_user_data(spec, sizing, boot)
        # Azure takes at most 65535 bytes of custom data (before base64); cloud-init reads it gzip-compressed too.
        packed = gzip.compress(text.encode(), mtime=0)
        if len(packed) > CUSTOM_DATA_MAX_BYTES:
            raise ValueError(f"the custom data is {len(packed)} bytes compressed; Azure takes {CUSTOM_DATA_MAX_BYTES}")
        return base64.b64encode(packed).decode()

    return pulumi.Output.all(identity.client_id, pulumi.Output.all(**secret_uris)).apply(render)


def scale_set(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, options: AzureOptions, group, subnet, identity,
              secret_uris, backend_pool_id, depends_on):
    # Azure requires a password or an SSH key for the admin user. Nobody logs in with it: the NSG admits no SSH,
    # the bootstrap turns sshd's password login off, and Run Command or the serial console are the way in.
    admin_password = pulumi_random.RandomPassword(fleet.child("admin"), length=40, min_lower=1, min_upper=1,
                                                  min_numeric=1, min_special=1, opts=fleet.opts)
    publisher, offer, sku, version = options.image
    grace = sizing.startup_grace_seconds
    repair_minutes = max(REPAIR_GRACE_MIN_MINUTES, math.ceil(grace / 60))
    if repair_minutes > REPAIR_GRACE_MAX_MINUTES:
        # A VM that is still loading weights when the grace period ends would be replaced, and its successor
        # too, forever: better no automatic repairs than a loop that never serves.
        fleet.warn(f"{spec.stack}: a new VM needs ~{repair_minutes} minutes to become healthy, more than the "
                   f"{REPAIR_GRACE_MAX_MINUTES} minutes Azure allows as automatic repairs grace period: automatic "
                   f"repairs are off (the gateway still routes around an unhealthy VM; reimage it by hand).")
    repairs = compute.AutomaticRepairsPolicyArgs(
        enabled=repair_minutes <= REPAIR_GRACE_MAX_MINUTES, repair_action="Replace",
        grace_period=f"PT{min(repair_minutes, REPAIR_GRACE_MAX_MINUTES)}M")
    # Rich health states (version 2): a new VM stays "Initializing" for up to gracePeriod while it installs vLLM and
    # loads the weights; rolling upgrades wait for it and repairs leave it alone. vLLM's /health has no state in
    # its body, so vllm-fleet-health (cloud-init/clouds/azure-health.py) answers in the extension's format.
    health_extension = compute.VirtualMachineScaleSetExtensionArgs(
        name="health", publisher="Microsoft.ManagedServices", type="ApplicationHealthLinux",
        type_handler_version="2.0", auto_upgrade_minor_version=True,
        settings={"protocol": "http", "port": HEALTH_STATE_PORT, "requestPath": HEALTH_STATE_PATH,
                  "intervalInSeconds": HEALTH_PROBE_INTERVAL_SECONDS, "numberOfProbes": 3,
                  "gracePeriod": min(grace, HEALTH_GRACE_MAX_SECONDS)})
    if grace > HEALTH_GRACE_MAX_SECONDS:
        fleet.warn(f"{spec.stack}: a new VM needs ~{math.ceil(grace / 60)} minutes to serve, more than the "
                   f"{HEALTH_GRACE_MAX_SECONDS // 60} minutes the Application Health extension waits: rolling "
                   f"upgrades may pause on VMs still loading.")
    return compute.VirtualMachineScaleSet(
        fleet.child("gpu"), resource_group_name=group, location=spec.region, tags=fleet.tags,
        orchestration_mode="Uniform",
        # replicas.desired is the first size; the autoscale setting owns it afterwards, and a later `pulumi up` must not
        # set it back and delete the VMs autoscale added (ignore_changes below).
        sku=compute.SkuArgs(name=sizing.instance.name, tier="Standard", capacity=spec.replicas.desired),
        # No extra VMs at scale-out: GPU VMs are scarce and each would count against the family quota.
        overprovision=False,
        identity=compute.VirtualMachineScaleSetIdentityArgs(type="UserAssigned",
                                                           user_assigned_identities=[identity.id]),
        automatic_repairs_policy=repairs,
        # Upgrades launch new VMs first (MaxSurge) and remove an old one only once its successor is healthy:
        # serving capacity never drops.
        upgrade_policy=compute.UpgradePolicyArgs(
            mode="Rolling",
            rolling_upgrade_policy=compute.RollingUpgradePolicyArgs(
                max_surge=True, max_batch_instance_percent=MAX_BATCH_PERCENT, max_unhealthy_instance_percent=50,
                max_unhealthy_upgraded_instance_percent=50, pause_time_between_batches="PT0S",
                prioritize_unhealthy_instances=True, rollback_failed_instances_on_policy_breach=True)),
        virtual_machine_profile=compute.VirtualMachineScaleSetVMProfileArgs(
            priority="Spot" if spec.spot else "Regular",
            eviction_policy="Delete" if spec.spot else None,
            # Pay up to the on-demand price: a spot VM is then evicted for capacity only, never for price.
            billing_profile=compute.BillingProfileArgs(max_price=-1) if spec.spot else None,
            os_profile=compute.VirtualMachineScaleSetOSProfileArgs(
                computer_name_prefix=spec.name_within(COMPUTER_NAME_PREFIX_MAX), admin_username=ADMIN_USER,
                admin_password=admin_password.result, custom_data=custom_data(spec, sizing, identity, secret_uris),
                linux_configuration=compute.LinuxConfigurationArgs(disable_password_authentication=False,
                                                                   provision_vm_agent=True)),
            # No security profile: a standard VM, not Trusted Launch, whose Secure Boot would refuse NVIDIA kernel
            # modules the firmware does not trust (the bootstrap's cuda-drivers fallback, DKMS-built). Compute API
            # 2024-11-01, which this SDK uses, has no securityType "Standard" (2025-11-01 adds it), and leaving the
            # profile out is how it makes a standard VM (tests/test_azure.py checks the SDK's API version).
            storage_profile=compute.VirtualMachineScaleSetStorageProfileArgs(
                image_reference=compute.ImageReferenceArgs(publisher=publisher, offer=offer, sku=sku,
                                                           version=version),
                os_disk=compute.VirtualMachineScaleSetOSDiskArgs(
                    create_option="FromImage", caching="ReadWrite", disk_size_gb=OS_DISK_GB,
                    delete_option="Delete",
                    managed_disk=compute.VirtualMachineScaleSetManagedDiskParametersArgs(
                        storage_account_type="Premium_LRS")),
                # The weights cache, LUN 0 (cloud-init/clouds/azure.sh.j2 finds it by that). Read-mostly: the
                # host's read cache, which Azure offers below 4 TiB only, speeds up reloading the weights.
                data_disks=[compute.VirtualMachineScaleSetDataDiskArgs(
                    lun=0, create_option="Empty", disk_size_gb=sizing.data_disk_gb,
                    caching="ReadOnly" if sizing.data_disk_gb < HOST_CACHE_MAX_DISK_GB else "None",
                    delete_option="Delete",
                    managed_disk=compute.VirtualMachineScaleSetManagedDiskParametersArgs(
                        storage_account_type="Premium_LRS"))]),
            network_profile=compute.VirtualMachineScaleSetNetworkProfileArgs(
                network_interface_configurations=[compute.VirtualMachineScaleSetNetworkConfigurationArgs(
                    name="nic", primary=True, enable_accelerated_networking=True,
                    ip_configurations=[compute.VirtualMachineScaleSetIPConfigurationArgs(
                        name="ipconfig", primary=True, subnet=compute.ApiEntityReferenceArgs(id=subnet.id),
                        application_gateway_backend_address_pools=[
                            compute.SubResourceArgs(id=backend_pool_id)])])]),
            # Reports /health to the scale set: rolling upgrades wait for it and automatic repairs act on it.
            extension_profile=compute.VirtualMachineScaleSetExtensionProfileArgs(extensions=[health_extension]),
        ),
        opts=fleet.child_opts(depends_on=depends_on, ignore_changes=["sku.capacity"]),
    )

def standby_note(spec: FleetSpec, sizing: Sizing) -> str:
    """Why an Azure stack keeps no stopped VMs for the morning (docs/azure.md, "No standby pool"): the reasons every
    cloud shares (fleet/schedule.py), else Azure's own, with what a pool would have saved each morning."""
    stopped, why_not = standby_vms(spec.office_hours, spec.replicas.desired, spec.spot)
    if not stopped:
        return why_not
    budget = sizing.time_to_serve
    return (f"no standby pool: Azure's (API {STANDBY_POOL_API}, the one pulumi-azure-native ships) deallocates a "
            f"pool VM as soon as it is provisioned, and cloud-init reports a VM provisioned before it runs the setup: "
            f"a pool VM would stop without vLLM or the weights. Each morning creates new VMs, which serve after "
            f"{budget.seconds} s (scale-up {lead_minutes(budget.seconds)} min early); a started pool VM would serve "
            f"after {budget.warm_seconds} s ({lead_minutes(budget.warm_seconds)} min)")


def autoscale(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, options: AzureOptions, group, scale_set,
              gateway):
    """Always present: besides scaling on load it restores the minimum after spot evictions delete VMs. With office
    hours, recurring profiles in the stack's time zone (its Windows name: Azure's autoscale takes no IANA names)
    switch between the office-hours sizes, early enough for new VMs to serve when each window opens, and
    offHoursReplicas when it closes; a profile holds until the next one starts, so stretches that touch are one
    (schedule.py): two profiles starting in the same minute have no defined order."""
    replicas = spec.replicas
    rules = []
    if replicas.min != replicas.max:
        def rule(operator: str, threshold: float, window: str, direction: str, cooldown: str):
            return monitor.ScaleRuleArgs(
                metric_trigger=monitor.MetricTriggerArgs(
                    metric_name="AvgRequestCountPerHealthyHost", metric_namespace="Microsoft.Network/applicationGateways",
                    metric_resource_uri=gateway.id, operator=operator, statistic="Average", threshold=threshold,
                    time_aggregation="Average", time_grain="PT1M", time_window=window),
                scale_action=monitor.ScaleActionArgs(direction=direction, type="ChangeCount", value="1",
                                                     cooldown=cooldown))

        target = replicas.target_requests_per_minute
        rules = [
            # Wait out a new VM's startup before judging the load again.
            rule("GreaterThan", target, "PT5M", "Increase", _iso_minutes(sizing.startup_grace_seconds)),
            rule("LessThan", target / 2, "PT15M", "Decrease", "PT15M"),
        ]
    office = monitor.ScaleCapacityArgs(minimum=str(replicas.min), default=str(replicas.desired),
                                       maximum=str(replicas.max))
    profiles = [monitor.AutoscaleProfileArgs(name="replicas", rules=rules, capacity=office)]
    hours = fleet.office_schedule(sizing)
    if hours:
        zone = options.windows_time_zone
        lead_minutes = fleet.scale_up_lead_minutes(sizing)

        def recurring(name: str, moment, capacity, profile_rules):
            hour, minute = moment.hour_and_minute
            return monitor.AutoscaleProfileArgs(
                name=name, rules=profile_rules, capacity=capacity,
                recurrence=monitor.RecurrenceArgs(frequency="Week", schedule=monitor.RecurrentScheduleArgs(
                    time_zone=zone, days=moment.day_names, hours=[hour], minutes=[minute])))

        off = str(hours.off_hours_replicas)
        profiles += [recurring(f"office-hours-{index}", moment, office, rules)
                     for index, moment in enumerate(hours.openings(lead_minutes))]
        profiles += [recurring(f"off-hours-{index}", moment,
                               monitor.ScaleCapacityArgs(minimum=off, default=off, maximum=off), [])
                     for index, moment in enumerate(hours.closings(lead_minutes))]
    return monitor.AutoscaleSetting(
        fleet.child("replicas"), resource_group_name=group, location=spec.region, tags=fleet.tags,
        target_resource_uri=scale_set.id, enabled=True, profiles=profiles, opts=fleet.opts)


def update_surge(vms: int) -> int:
    """A rolling upgrade with MaxSurge creates one batch (MAX_BATCH_PERCENT of the VMs, at least one) before it
    deletes the VMs it replaces."""
    return math.ceil(vms * MAX_BATCH_PERCENT / 100) if vms else 0
