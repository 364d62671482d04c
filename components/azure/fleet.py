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
from fleet import lifecycle, metrics
from fleet.autoscaling import PERIOD_SECONDS, Reaction, reaction_output, time_to_capacity
from fleet.autoscaling import targets as autoscaling_targets
from fleet.bootstrap import CloudBoot, render_user_data
from fleet.schedule import lead_minutes, standby_vms
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

from . import monitoring
from .edge import GATEWAY_REQUEST_TIMEOUT_SECONDS, HEALTH_PROBE_INTERVAL_SECONDS
from .options import AzureOptions

OS_DISK_GB = 128  # the HPC image's own ~64 GB plus the vLLM venv
HOST_CACHE_MAX_DISK_GB = 4096
ADMIN_USER = "vllmadmin"
# VMs are named <prefix><6 characters>; 9 keeps the names within 15.
COMPUTER_NAME_PREFIX_MAX = 9
CUSTOM_DATA_MAX_BYTES = 65535
# A rolling upgrade's batch, in percent of the VMs: with MaxSurge, each batch's new VMs run next to the old ones.
MAX_BATCH_PERCENT = 20
# The Application Health extension's longest grace period (rich health states).
HEALTH_GRACE_MAX_SECONDS = 14400
# A scale set's terminate notification delays a VM's deletion by 5 to 15 minutes (ISO 8601), during which the VM
# drains (vllm-fleet-drain acts on the Terminate scheduled event and approves it once done).
TERMINATE_NOTICE_MIN_MINUTES, TERMINATE_NOTICE_MAX_MINUTES = 5, 15
# Azure's shortest automatic repairs grace period (ISO 8601 minutes; at most 90): the health endpoint is up well
# before it ends.
REPAIR_GRACE_MIN_MINUTES = 10
# The autoscale rules' windows: scale out on 5 minutes of load, in on 15 quiet minutes, 15 minutes apart.
OUT_WINDOW, IN_WINDOW, IN_COOLDOWN = "PT5M", "PT15M", "PT15M"
# Requests waiting, on average a VM, that scale out: vLLM queues only once a VM is full.
QUEUE_THRESHOLD = 1
# The standby pool API of the installed SDK: it has no postProvisioningDelay (standby_note).
STANDBY_POOL_API = "2024-03-01"


def _iso_minutes(seconds: int) -> str:
    return f"PT{math.ceil(seconds / 60)}M"


def _minutes(iso: str) -> int:
    return int(iso.removeprefix("PT").removesuffix("M"))


def custom_data(spec: FleetSpec, sizing: Sizing, identity, secret_uris) -> pulumi.Output[str]:
    def render(args) -> str:
        client_id, uris = args
        # Telegraf ships vLLM's metrics (monitoring.py). The extension keeps a VM that answers "not yet" Initializing
        # for its grace period (a rolling upgrade waits for it to serve); from shortly before that ends, a VM that
        # still makes progress answers Healthy.
        agent = monitoring.boot(spec)
        boot = CloudBoot(
            secret_refs=uris, edge_idle_timeout_seconds=GATEWAY_REQUEST_TIMEOUT_SECONDS,
            metadata_url="http://169.254.169.254",
            vars={**agent["vars"], "identity_client_id": client_id},
            files=tuple(agent["files"]), units=tuple(agent["units"]), scrape=agent["scrape"],
            starting_healthy_after_seconds=lifecycle.healthy_after_seconds(health_grace_seconds(sizing)))
        text = render_user_data(spec, sizing, boot)
        # Azure takes at most 65535 bytes of custom data (before base64); cloud-init reads it gzip-compressed too.
        packed = gzip.compress(text.encode(), mtime=0)
        if len(packed) > CUSTOM_DATA_MAX_BYTES:
            raise ValueError(f"the custom data is {len(packed)} bytes compressed; Azure takes {CUSTOM_DATA_MAX_BYTES}")
        return base64.b64encode(packed).decode()

    return pulumi.Output.all(identity.client_id, pulumi.Output.all(**secret_uris)).apply(render)


def health_grace_seconds(sizing: Sizing) -> int:
    """The Application Health extension's grace period: a new VM's whole time to serve, within its limit."""
    return min(sizing.time_to_serve.seconds, HEALTH_GRACE_MAX_SECONDS)


def terminate_notice_seconds(spec: FleetSpec) -> int:
    """How long a VM the scale set deletes may drain: the stack's drain, within Azure's limits."""
    return 60 * min(max(math.ceil(lifecycle.drain_seconds(spec) / 60), TERMINATE_NOTICE_MIN_MINUTES),
                    TERMINATE_NOTICE_MAX_MINUTES)


def scale_set(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, options: AzureOptions, group, subnet, identity,
              secret_uris, backend_pool_id, depends_on):
    # Azure requires a password or an SSH key for the admin user. Nobody logs in with it: the NSG admits no SSH,
    # the bootstrap turns sshd's password login off, and Run Command or the serial console are the way in.
    admin_password = pulumi_random.RandomPassword(fleet.child("admin"), length=40, min_lower=1, min_upper=1,
                                                  min_numeric=1, min_special=1, opts=fleet.opts)
    publisher, offer, sku, version = options.image
    # Repairs act on a VM the health endpoint reports Unhealthy (it failed, stalled or lost vLLM), never on one
    # that is Initializing or makes progress: their own grace needs to cover only the endpoint's start.
    repairs = compute.AutomaticRepairsPolicyArgs(enabled=True, repair_action="Replace",
                                                 grace_period=f"PT{REPAIR_GRACE_MIN_MINUTES}M")
    # Rich health states (version 2) from vllm-fleet-health (cloud-init/vllm-fleet-health.py).
    health_extension = compute.VirtualMachineScaleSetExtensionArgs(
        name="health", publisher="Microsoft.ManagedServices", type="ApplicationHealthLinux",
        type_handler_version="2.0", auto_upgrade_minor_version=True,
        settings={"protocol": "http", "port": lifecycle.HEALTH_PORT, "requestPath": lifecycle.HEALTH_PATH,
                  "intervalInSeconds": HEALTH_PROBE_INTERVAL_SECONDS, "numberOfProbes": 3,
                  "gracePeriod": health_grace_seconds(sizing)})
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
            # A VM the scale set deletes (scale-in, a rolling upgrade, a repair) first gets a Terminate scheduled
            # event and this long to drain; vllm-fleet-drain lets its generations finish and approves it early.
            scheduled_events_profile=compute.ScheduledEventsProfileArgs(
                terminate_notification_profile=compute.TerminateNotificationProfileArgs(
                    enable=True, not_before_timeout=_iso_minutes(terminate_notice_seconds(spec)))),
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


def autoscale(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, options: AzureOptions, group, scale_set):
    """Always present: besides scaling on load it restores the minimum after spot evictions delete VMs. With office
    hours, recurring profiles in the stack's time zone (its Windows name: Azure's autoscale takes no IANA names)
    switch between the office-hours sizes, early enough for new VMs to serve when each window opens, and
    offHoursReplicas when it closes; a profile holds until the next one starts, so stretches that touch are one
    (schedule.py): two profiles starting in the same minute have no defined order."""
    replicas = spec.replicas
    rules = []
    if replicas.min != replicas.max:
        targets = autoscaling_targets(spec, sizing)

        def rule(key: str, operator: str, threshold: float, window: str, direction: str, cooldown: str):
            # vLLM's metric as Telegraf publishes it on the scale set (monitoring.py): the average over its VMs.
            return monitor.ScaleRuleArgs(
                metric_trigger=monitor.MetricTriggerArgs(
                    metric_name=monitoring.metric_name(metrics.metric(key)), metric_namespace=monitoring.NAMESPACE,
                    metric_resource_uri=scale_set.id, operator=operator, statistic="Average", threshold=threshold,
                    time_aggregation="Average", time_grain="PT1M", time_window=window),
                scale_action=monitor.ScaleActionArgs(direction=direction, type="ChangeCount", value="1",
                                                        cooldown=cooldown))

        # Out when any rule holds, in only when all do (Azure autoscale's rule). Azure adds no two metrics: requests
        # running and a queue each; after a scale-out, a new VM's startup passes before the load is judged again.
        out = _iso_minutes(sizing.startup_grace_seconds)
        rules = [
            rule("requests_running", "GreaterThanOrEqual", targets.requests_per_vm, OUT_WINDOW, "Increase", out),
            rule("requests_waiting", "GreaterThanOrEqual", QUEUE_THRESHOLD, OUT_WINDOW, "Increase", out),
            rule("kv_cache_usage", "GreaterThan", targets.kv_cache_usage, OUT_WINDOW, "Increase", out),
            rule("requests_running", "LessThan", targets.requests_per_vm / 2, IN_WINDOW, "Decrease", IN_COOLDOWN),
            rule("requests_waiting", "LessThan", QUEUE_THRESHOLD, IN_WINDOW, "Decrease", IN_COOLDOWN),
            rule("kv_cache_usage", "LessThan", targets.kv_cache_usage / 2, IN_WINDOW, "Decrease", IN_COOLDOWN),
        ]
        seconds, basis = time_to_capacity(_minutes(OUT_WINDOW) * 60, sizing.time_to_serve.seconds,
                                          "a new VM's time to serve")
        fleet.autoscaling = reaction_output(targets, Reaction(
            policies=(f"out +1 VM: vLLM requests running average a VM >= {targets.requests_per_vm}, or requests "
                      f"waiting >= {QUEUE_THRESHOLD}, or KV cache usage > {targets.kv_cache_usage:.0%}, over "
                      f"{_minutes(OUT_WINDOW)} min",
                      f"in -1 VM: all three below half their target (the queue below {QUEUE_THRESHOLD}) over "
                      f"{_minutes(IN_WINDOW)} min"),
            period_seconds=PERIOD_SECONDS, warmup_seconds=_minutes(out) * 60,
            scale_in=f"one VM at a time, {_minutes(IN_COOLDOWN)} min apart",
            time_to_capacity_seconds=seconds, basis=basis))
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
