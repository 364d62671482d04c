"""The GPU VMs of a GCP stack: the instance template (image, disks, scheduling, the rendered user-data), the
regional managed instance group with autohealing and rolling updates (and with office hours, a standby pool of
stopped VMs), and its autoscaler (with office hours, its scaling schedules)."""

from __future__ import annotations

import math

import pulumi
from pulumi_gcp import compute

from components.base import FleetComponent
from fleet import catalog, serving
from fleet.bootstrap import CloudBoot, render_user_data
from fleet.schedule import StandbyPool, standby_vms
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

from .edge import BACKEND_KEEPALIVE_SECONDS
from .options import GcpOptions

BOOT_DISK_GB = 150  # the image's own ~50 GB plus the vLLM venv
# The weights cache disk's device name: cloud-init/clouds/gcp.sh.j2 finds it as /dev/disk/by-id/google-<name>.
DATA_DISK_DEVICE = "vllm-cache"
# Compute Engine's limit on the autohealing initial delay and the autoscaler's initialization period.
MAX_INITIAL_DELAY_SECONDS = 3600
# What a roll needs besides the new VMs' time to serve: the group's own operations, the old VMs' draining.
ROLL_START_MINUTES = 10


def boot_image(fleet: FleetComponent, options: GcpOptions) -> pulumi.Output[str]:
    """The boot image: gcp.image as given, or the catalog's pinned image, looked up so that a name that does not
    exist stops `pulumi preview`, not the first VM."""
    if options.image:
        return pulumi.Output.from_input(options.image)
    pinned = catalog.cloud("gcp").raw["image"]
    return compute.get_image_output(name=pinned["name"], project=pinned["project"], opts=fleet.invoke_opts).self_link


def instance_template(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, options: GcpOptions, subnetwork,
                      account, secret_versions, grants):
    user_data = pulumi.Output.all(**secret_versions).apply(lambda versions: render_user_data(
        spec, sizing, CloudBoot(secret_refs=versions, edge_idle_timeout_seconds=BACKEND_KEEPALIVE_SECONDS)))
    if spec.spot:
        # DELETE: the group recreates a preempted VM from the template when capacity returns.
        scheduling = compute.InstanceTemplateSchedulingArgs(
            provisioning_model="SPOT", preemptible=True, automatic_restart=False,
            on_host_maintenance="TERMINATE", instance_termination_action="DELETE")
    else:
        # GPU VMs cannot live-migrate: host maintenance stops them, and they restart by themselves.
        scheduling = compute.InstanceTemplateSchedulingArgs(
            provisioning_model="STANDARD", automatic_restart=True, on_host_maintenance="TERMINATE")
    disk_labels = dict(options.labels)
    return compute.InstanceTemplate(
        fleet.child("gpu"),
        description=f"vllm-fleet {spec.stack}: {spec.served_model_name} on {sizing.instance.name}",
        machine_type=sizing.instance.name,  # A2, A3 and G2 machine types come with their GPUs attached
        disks=[
            compute.InstanceTemplateDiskArgs(boot=True, source_image=boot_image(fleet, options),
                                             disk_size_gb=BOOT_DISK_GB,
                                             disk_type="pd-balanced", auto_delete=True, labels=disk_labels),
            # The weights cache: SSD so that a new VM loads the weights quickly.
            compute.InstanceTemplateDiskArgs(boot=False, device_name=DATA_DISK_DEVICE, disk_type="pd-ssd",
                                             disk_size_gb=sizing.data_disk_gb, auto_delete=True, labels=disk_labels),
        ],
        # No access_configs: no public IP. Outbound traffic goes through Cloud NAT.
        network_interfaces=[compute.InstanceTemplateNetworkInterfaceArgs(subnetwork=subnetwork,
                                                                         nic_type=nic_type(sizing.instance.name))],
        service_account=compute.InstanceTemplateServiceAccountArgs(email=account.email, scopes=["cloud-platform"]),
        scheduling=scheduling,
        # Secure Boot stays off: it loads only kernel modules signed by a key the firmware trusts. Canonical's
        # precompiled NVIDIA modules are signed, but the bootstrap's fallback (cuda-drivers from NVIDIA's
        # repository, built by DKMS) and the driver of an `image` of the user's are not, and a refused
        # module means a VM without GPUs that never turns healthy. vTPM and integrity monitoring stay on.
        shielded_instance_config=compute.InstanceTemplateShieldedInstanceConfigArgs(
            enable_secure_boot=False, enable_vtpm=True, enable_integrity_monitoring=True),
        # cloud-init reads `user-data`; it holds secret names only, vllm-fleet-setup fetches the values.
        metadata={"user-data": user_data, "enable-oslogin": "TRUE", "block-project-ssh-keys": "TRUE"},
        # VMs start only once they may read their secrets (and the weights).
        opts=fleet.child_opts(depends_on=grants),
    )

def health_checks(fleet: FleetComponent):
    def check(suffix: str, interval: int, timeout: int, healthy: int, unhealthy: int, what: str):
        return compute.HealthCheck(
            fleet.child(suffix), description=what, check_interval_sec=interval, timeout_sec=timeout,
            healthy_threshold=healthy, unhealthy_threshold=unhealthy,
            http_health_check=compute.HealthCheckHttpHealthCheckArgs(
                port=serving.SERVE_PORT, request_path=serving.HEALTH_PATH), opts=fleet.opts)

    serving_check = check("health", 10, 5, 2, 3, "vLLM /health: which VMs get requests")
    # Autohealing recreates a VM (and downloads the weights again): only after minutes of failed checks.
    autohealing_check = check("autohealing", 30, 10, 1, 6, "vLLM /health: which VMs are recreated")
    return serving_check, autohealing_check

def delay_with_margin_seconds(sizing: Sizing) -> int:
    """What a delay before a new VM's first health check must cover: its time to serve with the weights downloaded
    at half the assumed rate (hubs vary), so that a slow but working VM is not recreated, and its download lost."""
    return sizing.time_to_serve.seconds + sizing.time_to_serve.download


def standby_pool(spec: FleetSpec, sizing: Sizing) -> tuple[StandbyPool | None, str]:
    """The standby pool an office-hours group keeps, or None and why not: stopped VMs, created and run for the
    initial delay (the setup: vLLM and the weights on their disks), which the morning's scale-up starts; the group
    then creates new ones to fill the pool again (scale-in deletes VMs)."""
    stopped, why_not = standby_vms(spec.office_hours, spec.replicas.desired, spec.spot)
    if not stopped:
        return None, why_not
    if delay_with_margin_seconds(sizing) > MAX_INITIAL_DELAY_SECONDS:
        # The group stops a standby VM when the delay ends: one still downloading would start each morning
        # without its weights.
        return None, (f"no stopped VMs are kept: a new VM needs up to {delay_with_margin_seconds(sizing)} s to set "
                      f"up, and GCP stops standby VMs after at most {MAX_INITIAL_DELAY_SECONDS} s; each morning "
                      f"creates new VMs")
    gcp = catalog.cloud("gcp")
    disks = (gcp.disk_usd_per_month("pd-balanced", BOOT_DISK_GB)
             + gcp.disk_usd_per_month("pd-ssd", sizing.data_disk_gb))
    return StandbyPool(
        kind="managed instance group standby pool of stopped VMs (SCALE_OUT_POOL)", stopped_in_hours=stopped,
        stopped_off_hours=stopped, disk_usd_per_vm_month=disks, refilled_per_opening=stopped,
        refill_seconds=standby_delay_seconds(sizing),
        note=("the pool is filled again after each scale-up: new VMs run their setup for the initial delay, then "
              "stop; a stopped VM that cannot get its GPU back is replaced by a new one")), ""


def standby_delay_seconds(sizing: Sizing) -> int:
    """How long a new standby VM runs before the group stops it: its setup and a first load, with margin."""
    return delay_with_margin_seconds(sizing)


def instance_group(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, options: GcpOptions, template, autohealing_check):
    initial_delay = delay_with_margin_seconds(sizing)
    autohealing = None
    if initial_delay > MAX_INITIAL_DELAY_SECONDS:
        # A VM recreated mid-download starts the download again, and so would its replacement, forever.
        fleet.warn(f"{spec.stack}: no autohealing: a new VM may need {initial_delay} s to serve (its weights at "
                   f"half the assumed download rate), but GCP starts autohealing checks after at most "
                   f"{MAX_INITIAL_DELAY_SECONDS} s and would recreate it before it serves. A VM that fails stays in "
                   f"the group, out of the load balancer's rotation (its health check), until it is recreated by "
                   f"hand (gcloud compute instance-groups managed recreate-instances)")
    else:
        autohealing = compute.RegionInstanceGroupManagerAutoHealingPoliciesArgs(
            health_check=autohealing_check.id,
            # Long enough to install vLLM and download and load the weights before checks count.
            initial_delay_sec=initial_delay)
    autoscaled = spec.replicas.min != spec.replicas.max or spec.office_hours is not None
    roll_timeout = f"{roll_minutes(spec, sizing, len(options.zones))}m"
    return compute.RegionInstanceGroupManager(
        fleet.child("gpu"),
        base_instance_name=fleet.child("gpu"),
        region=spec.region,
        versions=[compute.RegionInstanceGroupManagerVersionArgs(name="vllm",
                                                                instance_template=template.self_link_unique)],
        # BALANCED: spread over the zones with the GPU, but create VMs where there is capacity (GPUs run out
        # zone by zone); it requires proactive redistribution off.
        distribution_policy_zones=list(options.zones),
        distribution_policy_target_shape="BALANCED",
        named_ports=[compute.RegionInstanceGroupManagerNamedPortArgs(name="http", port=serving.SERVE_PORT)],
        # Without an autoscaler the group holds `desired` VMs; with one, `desired` is the first size and the
        # autoscaler owns it afterwards (ignore_changes below).
        target_size=spec.replicas.desired,
        auto_healing_policies=autohealing,
        # Replace by creating first: serving capacity never drops. A regional group's fixed surge must be 0 or
        # at least its number of zones.
        update_policy=compute.RegionInstanceGroupManagerUpdatePolicyArgs(
            type="PROACTIVE", minimal_action="REPLACE", most_disruptive_allowed_action="REPLACE",
            replacement_method="SUBSTITUTE", instance_redistribution_type="NONE",
            max_unavailable_fixed=0, max_surge_fixed=len(options.zones)),
        # A repaired VM comes from the current template, not the one it was created from.
        instance_lifecycle_policy=compute.RegionInstanceGroupManagerInstanceLifecyclePolicyArgs(
            force_update_on_repair="YES", default_action_on_failure="REPAIR"),
        # `pulumi up` waits until every VM runs the new template: Pulumi deletes a replaced instance template only
        # then, which GCP refuses while the roll still uses it (resourceInUseByAnotherResource), and a deploy is
        # done when the fleet serves what it says (a revoked key is gone).
        wait_for_instances=True, wait_for_instances_status="UPDATED",
        # Stopped VMs with vLLM and the weights on their disks, which a scale-out starts (standby_pool). Without a
        # pool, MANUAL and 0 are sent explicitly: both inputs are optional and computed in the provider, so leaving
        # them out would keep a pool (and its disks) that an earlier config made.
        standby_policy=compute.RegionInstanceGroupManagerStandbyPolicyArgs(
            mode="SCALE_OUT_POOL", initial_delay_sec=standby_delay_seconds(sizing)) if fleet.standby_pool else
        compute.RegionInstanceGroupManagerStandbyPolicyArgs(mode="MANUAL"),
        target_stopped_size=fleet.standby_pool.stopped_off_hours if fleet.standby_pool else 0,
        opts=fleet.child_opts(ignore_changes=["targetSize"] if autoscaled else None,
                              custom_timeouts=pulumi.CustomTimeouts(create=roll_timeout, update=roll_timeout)),
    )


# A3 VMs take Google's virtual NIC (gVNIC) only, not VirtIO-Net; the default image (Ubuntu 22.04 accelerator) has
# the gVNIC driver and the GVNIC guest OS feature that lets GCP attach one (docs/gcp.md).
GVNIC_MACHINE_PREFIXES = ("a3-",)


def nic_type(machine_type: str) -> str | None:
    """GVNIC where the machine series needs it; else GCP's default (VirtIO-Net), left out."""
    return "GVNIC" if machine_type.startswith(GVNIC_MACHINE_PREFIXES) else None


def roll_minutes(spec: FleetSpec, sizing: Sizing, zones: int) -> int:
    """How long a roll of the whole group may take: batches of one new VM per zone (the surge), each its time to
    serve with margin, at max replicas; and a start."""
    batches = math.ceil(spec.replicas.max / zones)
    return batches * math.ceil(delay_with_margin_seconds(sizing) / 60) + ROLL_START_MINUTES

def autoscaler(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, group):
    hours = fleet.office_schedule(sizing)
    lead_minutes = fleet.scale_up_lead_minutes(sizing)
    if spec.replicas.min == spec.replicas.max and not spec.office_hours:
        return
    warmup = min(sizing.startup_grace_seconds, MAX_INITIAL_DELAY_SECONDS)
    schedules = None
    if hours:
        # A scaling schedule keeps at least replicas.desired VMs from `lead_minutes` before each window opens until
        # it closes, in the stack's time zone; outside, the group may go down to offHoursReplicas. Its duration is
        # absolute seconds: a stretch over a daylight-saving change comes in two (OfficeHours.timed_stretches).
        schedules = [compute.RegionAutoscalerAutoscalingPolicyScalingScheduleArgs(
            name=f"office-hours-{index}", min_required_replicas=spec.replicas.desired, schedule=moment.cron,
            time_zone=hours.timezone, duration_sec=seconds,
            description=f"vllm-fleet {spec.stack}: {', '.join(w.describe() for w in hours.windows)}")
            for index, (moment, seconds) in enumerate(hours.timed_stretches(lead_minutes))]
    compute.RegionAutoscaler(
        fleet.child("gpu"), region=spec.region, target=group.id,
        autoscaling_policy=compute.RegionAutoscalerAutoscalingPolicyArgs(
            min_replicas=hours.off_hours_replicas if hours else spec.replicas.min, max_replicas=spec.replicas.max,
            mode="ON", scaling_schedules=schedules,
            # The backend's capacity is targetRequestsPerMinute a VM (max_rate_per_instance): scale out when
            # the VMs get more than that.
            load_balancing_utilization=compute.RegionAutoscalerAutoscalingPolicyLoadBalancingUtilizationArgs(
                target=1.0),
            # A new VM's first minutes (install, weights) say nothing about load.
            cooldown_period=warmup,
            # A VM removed too early takes the startup time to come back: one at a time. With office hours the
            # schedule keeps the day's VMs, and the evening's scale-in must not take hours.
            scale_in_control=None if hours else compute.RegionAutoscalerAutoscalingPolicyScaleInControlArgs(
                max_scaled_in_replicas=compute.RegionAutoscalerAutoscalingPolicyScaleInControlMaxScaledInReplicasArgs(
                    fixed=1),
                time_window_sec=warmup)),
        opts=fleet.opts)


def update_surge(vms: int, zones: int) -> int:
    """A proactive update surges by max_surge_fixed (one VM per zone), never by more VMs than it replaces."""
    return min(vms, zones)
