"""The GPU instances of an AWS stack: the launch template (image, disks, IMDSv2, the rendered user-data), the
Auto Scaling group that keeps them healthy behind the load balancer, refreshes them and scales them, and with office
hours its scheduled actions and warm pool of stopped instances."""

from __future__ import annotations

import math
import base64
import gzip

import pulumi
from pulumi_aws import autoscaling, ec2

from components.base import FleetComponent
from fleet import catalog, lifecycle, metrics
from fleet.autoscaling import PERIOD_SECONDS, Reaction, reaction_output, time_to_capacity
from fleet.autoscaling import targets as autoscaling_targets
from fleet.bootstrap import CloudBoot, CloudFile, render_user_data
from fleet.catalog import InstanceType
from fleet.schedule import StandbyPool, standby_vms
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

from . import dashboard, monitoring
from .edge import LB_IDLE_TIMEOUT_SECONDS
from .options import AwsOptions

ROOT_VOLUME_GB = 150  # the DLAMI's own ~75 GB plus the vLLM venv
ROOT_VOLUME_MB_PER_S, ROOT_VOLUME_IOPS = 250, 3000
# The weights cache disk's provisioned throughput and IOPS (catalog aws.data_disk; at most 0.25 MiB/s per IOPS).
DATA_DISK_MB_PER_S, DATA_DISK_IOPS = 1000, 8000
# EC2 takes at most 16 KB of user data before base64; cloud-init reads it gzip-compressed as well.
USER_DATA_MAX_BYTES = 16 * 1024
# Instance refresh and replacements launch first: up to twice the group's instances run while they roll.
MAX_HEALTHY_PERCENT = 200
# The Auto Scaling group's default instance warmup: 0-3600 s (Amazon EC2 Auto Scaling user guide).
MAX_DEFAULT_INSTANCE_WARMUP = 3600
# Spot groups launch the sized type or another with the same GPUs that costs at most this many times as much
# on demand: more spot pools to draw from, without a 16xlarge standing in for an xlarge.
SPOT_ALTERNATIVE_MAX_PRICE_RATIO = 2.0
# The launch lifecycle hook of every launch: an instance waits in it (Pending:Wait on its way into service,
# Warmed:Pending:Wait on its way into a warm pool) while vllm-fleet-ready heartbeats for it (the health endpoint says it
# makes progress) and until vLLM serves, when vllm-fleet-ready completes it; it abandons it once the endpoint says the
# instance failed. The group's health is the target group's, which knows nothing of a setup: readiness by progress
# lives in this hook (fleet/lifecycle.py).
READY_HOOK = "vllm-fleet-ready"
READY_UNIT = "vllm-fleet-ready.service"
READY_SCRIPT = "/usr/local/sbin/vllm-fleet-ready"
# The hook's heartbeat timeout (30-7200 s): ten missed heartbeats, i.e. vllm-fleet-ready or the endpoint gone.
HOOK_HEARTBEAT_TIMEOUT = 10 * lifecycle.HEARTBEAT_SECONDS
# A lifecycle hook waits at most 100 heartbeat timeouts or 48 hours, whichever is less, heartbeats and all.
HOOK_GLOBAL_TIMEOUT = min(100 * HOOK_HEARTBEAT_TIMEOUT, 48 * 3600)
# After the hook (vLLM serves): the target's registration and the load balancer's first health checks (2 healthy
# checks 15 s apart), with margin.
AFTER_READY_HOOK_SECONDS = 120


def launchable_types(spec: FleetSpec, sizing: Sizing) -> list[InstanceType]:
    """The instance types the group may launch, the one it prefers first: the sized type alone, or for spot every
    type with the same GPUs (same tensor parallelism, same bootstrap) up to SPOT_ALTERNATIVE_MAX_PRICE_RATIO, by
    price. The on-demand base follows this order ("prioritized"), so it launches the cheapest that fits."""
    chosen = sizing.instance
    if not spec.spot:
        return [chosen]
    alternatives = [it for it in catalog.cloud("aws").instance_types.values()
                    if it.gpu == chosen.gpu and it.gpu_count == chosen.gpu_count
                    and it.usd_per_hour <= chosen.usd_per_hour * SPOT_ALTERNATIVE_MAX_PRICE_RATIO]
    return sorted(alternatives, key=lambda it: (it.name != chosen.name, it.usd_per_hour, it.name))


def group_name(spec: FleetSpec) -> str:
    """The Auto Scaling group's name, fixed (not autonamed): the instances' user-data and the instance role's
    policy name it, and both exist before the group."""
    return f"vllm-fleet-{spec.stack}"


def warm_pool(spec: FleetSpec, sizing: Sizing) -> tuple[StandbyPool | None, str]:
    """The warm pool an office-hours group keeps, or None and why not. It holds the office-hours instances the
    evening's scale-in stops (reuse on scale-in) and the morning's scale-up starts: max prepared capacity
    replicas.desired, so it is empty while they serve."""
    stopped, why_not = standby_vms(spec.office_hours, spec.replicas.desired, spec.spot)
    if not stopped:
        return None, why_not
    aws = catalog.cloud("aws")
    disks = (aws.disk_usd_per_month("gp3", ROOT_VOLUME_GB, ROOT_VOLUME_IOPS, ROOT_VOLUME_MB_PER_S)
             + aws.disk_usd_per_month("gp3", sizing.data_disk_gb, DATA_DISK_IOPS, DATA_DISK_MB_PER_S))
    return StandbyPool(
        kind="Auto Scaling warm pool of stopped instances, reused on scale-in", stopped_in_hours=0,
        stopped_off_hours=stopped, disk_usd_per_vm_month=disks,
        note=("a stopped instance that cannot get its GPU capacity back when started is replaced by a new one, "
              "which takes the whole time to serve")), ""


def user_data(spec: FleetSpec, sizing: Sizing, secret_refs) -> pulumi.Output[str]:
    # The CloudWatch agent ships vLLM's metrics (monitoring.py); vllm-fleet-ready heartbeats for the launch lifecycle
    # hook while the VM makes progress, completes it once vLLM serves.
    agent = monitoring.boot(spec, group_name(spec))
    values = {**agent["vars"], "group_name": group_name(spec), "ready_hook": READY_HOOK,
              "hook_timeout": str(HOOK_HEARTBEAT_TIMEOUT), "hook_global_timeout": str(HOOK_GLOBAL_TIMEOUT),
              "heartbeat_seconds": str(lifecycle.HEARTBEAT_SECONDS),
              "health_url": f"http://127.0.0.1:{lifecycle.HEALTH_PORT}{lifecycle.HEALTH_PATH}",
              "ready_script": READY_SCRIPT}
    files = (*agent["files"], CloudFile(READY_SCRIPT, "clouds/aws-ready.sh.j2", "0755"),
             CloudFile(f"/etc/systemd/system/{READY_UNIT}", "clouds/aws-ready.service.j2"))
    units = (*agent["units"], READY_UNIT)

    def encode(refs: dict[str, str]) -> str:
        boot = CloudBoot(secret_refs=refs, edge_idle_timeout_seconds=LB_IDLE_TIMEOUT_SECONDS,
                         metadata_url="http://169.254.169.254", vars=values, files=files, units=units,
                         scrape=agent["scrape"])
        text = render_user_data(spec, sizing, boot)
        # mtime 0: the same user-data compresses to the same bytes, so an unchanged stack shows no change.
        packed = gzip.compress(text.encode(), mtime=0)
        if len(packed) > USER_DATA_MAX_BYTES:
            raise ValueError(f"the user-data is {len(packed)} bytes compressed; EC2 takes {USER_DATA_MAX_BYTES}")
        return base64.b64encode(packed).decode()

    return pulumi.Output.all(**secret_refs).apply(encode)


def image(fleet: FleetComponent, options: AwsOptions) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
    """(AMI id, root device) of the stack's image: the user's AMI, or the pinned Deep Learning AMI release, found
    by its exact name in the stack's region (deprecated ones included: AWS deprecates public AMIs after two years)."""
    if options.ami_id:
        return pulumi.Output.from_input(options.ami_id), pulumi.Output.from_input("/dev/sda1")
    ami = ec2.get_ami_output(owners=[catalog.cloud("aws").raw["image"]["owner"]], include_deprecated=True,
                             most_recent=True, filters=[{"name": "name", "values": [options.ami_name]},
                                                        {"name": "architecture", "values": ["x86_64"]}],
                             opts=fleet.invoke_opts)
    return ami.id, ami.root_device_name


def launch_template(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, options: AwsOptions, profile,
                    instance_sg, secret_refs):
    image_id, root_device = image(fleet, options)

    def volume(device, size: int, throughput: int, iops: int):
        return ec2.LaunchTemplateBlockDeviceMappingArgs(device_name=device, ebs=ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
            volume_type="gp3", volume_size=size, encrypted="true", delete_on_termination="true",
            throughput=throughput, iops=iops))

    return ec2.LaunchTemplate(
        fleet.child("gpu"),
        description=f"vllm-fleet {spec.stack}: {spec.served_model_name} on {sizing.instance.name}",
        image_id=image_id,
        instance_type=sizing.instance.name,
        iam_instance_profile=ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
        vpc_security_group_ids=[instance_sg.id],
        # IMDSv2 only, one hop: credentials stay on the host, out of reach of SSRF-style requests.
        metadata_options=ec2.LaunchTemplateMetadataOptionsArgs(
            http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1),
        block_device_mappings=[
            volume(root_device, ROOT_VOLUME_GB, ROOT_VOLUME_MB_PER_S, ROOT_VOLUME_IOPS),
            # The weights cache: fast gp3 so that a new VM loads the weights quickly.
            volume("/dev/sdf", sizing.data_disk_gb, DATA_DISK_MB_PER_S, DATA_DISK_IOPS),
        ],
        user_data=user_data(spec, sizing, secret_refs),
        update_default_version=True,
        tag_specifications=[
            ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags={
                "Name": fleet.child("gpu"), **spec.resource_tags})
            for kind in ("instance", "volume")],
        opts=fleet.opts,
    )


def auto_scaling_group(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, template, target_group, subnets,
                       tags):
    # latest_version, not "$Latest": a new version is what starts an instance refresh.
    version = template.latest_version.apply(str)
    template_spec = autoscaling.GroupLaunchTemplateArgs(id=template.id, version=version)
    mixed = None
    if spec.spot:
        mixed = autoscaling.GroupMixedInstancesPolicyArgs(
            instances_distribution=autoscaling.GroupMixedInstancesPolicyInstancesDistributionArgs(
                on_demand_base_capacity=spec.on_demand_base,
                on_demand_percentage_above_base_capacity=0,
                on_demand_allocation_strategy="prioritized",
                spot_allocation_strategy="price-capacity-optimized"),
            launch_template=autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs(
                launch_template_specification=autoscaling.GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs(
                    launch_template_id=template.id, version=version),
                overrides=[autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArgs(instance_type=it.name)
                           for it in launchable_types(spec, sizing)]))
    autoscaled = spec.replicas.min != spec.replicas.max
    pool = fleet.standby_pool
    # The grace period and the warm-ups start when an instance enters InService, after its launch lifecycle hook,
    # which is once vLLM serves: they need not wait for the setup a second time.
    grace = AFTER_READY_HOOK_SECONDS
    # With a scaling policy, replicas.desired is the first size and the policy owns it afterwards: a later
    # `pulumi up` must not set it back and terminate the VMs it added. With office hours the scheduled actions
    # own the sizes too (a `pulumi up` at night must not start the fleet); they carry the config's. The initial
    # lifecycle hook applies when the group is created; ready_hook keeps it on an existing group.
    ignored = (["minSize", "maxSize", "desiredCapacity"] if fleet.office_schedule(sizing) else
               ["desiredCapacity"] if autoscaled else []) + ["initialLifecycleHooks"]
    return autoscaling.Group(
        fleet.child("gpu"),
        name=group_name(spec),
        min_size=spec.replicas.min,
        max_size=spec.replicas.max,
        desired_capacity=spec.replicas.desired,
        vpc_zone_identifiers=subnets,
        launch_template=None if mixed else template_spec,
        mixed_instances_policy=mixed,
        capacity_rebalance=spec.spot,
        target_group_arns=[target_group.arn],
        health_check_type="ELB",
        # The sizes the dashboard and the no-healthy-VM alarm read (dashboard.py), at no charge; GroupInServiceInstances
        # is make usage's VM hours too (cli/usage.py).
        enabled_metrics=list(dashboard.GROUP_METRICS.values()), metrics_granularity="1Minute",
        # The load balancer's first checks after the hook: the setup is judged by its progress, in the hook.
        health_check_grace_period=grace,
        # How long a new instance's metrics are left out of scaling decisions; AWS takes at most an hour.
        default_instance_warmup=min(grace, MAX_DEFAULT_INSTANCE_WARMUP),
        # Replace unhealthy instances by launching first: serving capacity never drops.
        instance_maintenance_policy=autoscaling.GroupInstanceMaintenancePolicyArgs(
            min_healthy_percentage=100, max_healthy_percentage=MAX_HEALTHY_PERCENT),
        instance_refresh=autoscaling.GroupInstanceRefreshArgs(
            strategy="Rolling",
            preferences=autoscaling.GroupInstanceRefreshPreferencesArgs(
                min_healthy_percentage=100, max_healthy_percentage=MAX_HEALTHY_PERCENT, instance_warmup=str(grace),
                skip_matching=True, auto_rollback=True)),
        # `pulumi up` returns once the group exists; VMs become healthy minutes later (weights download).
        wait_for_capacity_timeout="0",
        tags=[autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=False) for k, v in tags.items()],
        # Stopped instances with vLLM and the weights on their disks: what the evening's scale-in stops and the
        # morning's scale-up starts (warm_pool).
        warm_pool=autoscaling.GroupWarmPoolArgs(
            pool_state="Stopped", min_size=0, max_group_prepared_capacity=spec.replicas.desired,
            instance_reuse_policy=autoscaling.GroupWarmPoolInstanceReusePolicyArgs(reuse_on_scale_in=True),
        ) if pool else None,
        initial_lifecycle_hooks=[autoscaling.GroupInitialLifecycleHookArgs(**READY_HOOK_ARGS)],
        opts=fleet.child_opts(ignore_changes=ignored or None),
    )


# ABANDON when no heartbeat comes: the instance is terminated and another launched.
READY_HOOK_ARGS = dict(name=READY_HOOK, lifecycle_transition="autoscaling:EC2_INSTANCE_LAUNCHING",
                       default_result="ABANDON", heartbeat_timeout=HOOK_HEARTBEAT_TIMEOUT)


def ready_hook(fleet: FleetComponent, group) -> None:
    """The launch lifecycle hook as its own resource (PutLifecycleHook creates or updates it): on a group created
    without it, initial_lifecycle_hooks does nothing."""
    autoscaling.LifecycleHook(fleet.child("ready"), autoscaling_group_name=group.name, **READY_HOOK_ARGS,
                              opts=fleet.opts)


def office_hours(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, group) -> None:
    """Scheduled actions in the stack's time zone (AWS keeps them to local time across daylight-saving changes):
    the office-hours sizes early enough for the instances to serve when each window opens, offHoursReplicas when
    it closes. A size left out of a scheduled action would be set to 0 by the provider: -1 keeps one unchanged.
    Stretches that touch are one (schedule.py): no two actions share a minute, whose order AWS does not define."""
    hours = spec.office_hours
    replicas = spec.replicas
    lead_minutes = fleet.scale_up_lead_minutes(sizing)
    for index, moment in enumerate(hours.openings(lead_minutes)):
        autoscaling.Schedule(fleet.child(f"open-{index}"), autoscaling_group_name=group.name,
                             scheduled_action_name=f"vllm-fleet-open-{index}", recurrence=moment.cron,
                             time_zone=hours.timezone, min_size=replicas.min, max_size=replicas.max,
                             desired_capacity=replicas.desired, opts=fleet.opts)
    for index, moment in enumerate(hours.closings(lead_minutes)):
        autoscaling.Schedule(fleet.child(f"close-{index}"), autoscaling_group_name=group.name,
                             scheduled_action_name=f"vllm-fleet-close-{index}", recurrence=moment.cron,
                             time_zone=hours.timezone, min_size=hours.off_hours_replicas, max_size=-1,
                             desired_capacity=hours.off_hours_replicas, opts=fleet.opts)


def autoscaling_policy(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, group) -> None:
    """Target tracking on vLLM's signals, as the CloudWatch agent publishes them (monitoring.py): the requests
    waiting + running a VM (metric math on the group's averages) and the KV cache usage. The group scales out when
    either is above its target and in only when both are below."""
    if spec.replicas.min == spec.replicas.max:
        return
    targets = autoscaling_targets(spec, sizing)
    spec_args = autoscaling.PolicyTargetTrackingConfigurationCustomizedMetricSpecificationArgs
    tracking = autoscaling.PolicyTargetTrackingConfigurationArgs

    def average(id_: str, key: str):
        return autoscaling.PolicyTargetTrackingConfigurationCustomizedMetricSpecificationMetricArgs(
            id=id_, return_data=False,
            metric_stat=autoscaling.PolicyTargetTrackingConfigurationCustomizedMetricSpecificationMetricMetricStatArgs(
                stat="Average", metric=autoscaling.PolicyTargetTrackingConfigurationCustomizedMetricSpecificationMetricMetricStatMetricArgs(
                    namespace=monitoring.NAMESPACE, metric_name=monitoring.metric_name(metrics.metric(key)),
                    dimensions=[autoscaling.PolicyTargetTrackingConfigurationCustomizedMetricSpecificationMetricMetricStatMetricDimensionArgs(
                        name=monitoring.DIMENSION, value=group_name(spec))])))

    in_hand = autoscaling.PolicyTargetTrackingConfigurationCustomizedMetricSpecificationMetricArgs(
        id="inhand", expression="waiting + running", label="vLLM requests waiting + running, average a VM",
        return_data=True)
    autoscaling.Policy(
        fleet.child("vllm-requests"), autoscaling_group_name=group.name, policy_type="TargetTrackingScaling",
        target_tracking_configuration=tracking(target_value=targets.requests_per_vm, customized_metric_specification=spec_args(
            metrics=[average("waiting", "requests_waiting"), average("running", "requests_running"), in_hand])),
        opts=fleet.opts)
    autoscaling.Policy(
        fleet.child("vllm-kv-cache"), autoscaling_group_name=group.name, policy_type="TargetTrackingScaling",
        target_tracking_configuration=tracking(target_value=targets.kv_cache_usage, customized_metric_specification=spec_args(
            namespace=monitoring.NAMESPACE, metric_name=monitoring.metric_name(metrics.metric("kv_cache_usage")),
            statistic="Average", metric_dimensions=[
                autoscaling.PolicyTargetTrackingConfigurationCustomizedMetricSpecificationMetricDimensionArgs(
                    name=monitoring.DIMENSION, value=group_name(spec))])),
        opts=fleet.opts)
    warmup = min(AFTER_READY_HOOK_SECONDS, MAX_DEFAULT_INSTANCE_WARMUP)
    # Target tracking's alarms: 3 one-minute data points above the target scale out (AWS's own alarms of the policy).
    # A scale-out beyond the office-hours size launches a new instance: the warm pool holds at most that size.
    seconds, basis = time_to_capacity(3 * PERIOD_SECONDS, sizing.time_to_serve.seconds,
                                      "a new instance's time to serve")
    fleet.autoscaling = reaction_output(targets, Reaction(
        policies=(f"target tracking: vLLM requests waiting + running, average a VM, at {targets.requests_per_vm}",
                  f"target tracking: vLLM KV cache usage, average a VM, at {targets.kv_cache_usage:.0%}"),
        period_seconds=PERIOD_SECONDS, warmup_seconds=warmup,
        scale_in=("when both are below target for 15 minutes (target tracking's scale-in alarm), removing the "
                  "instances the gap asks for"),
        time_to_capacity_seconds=seconds, basis=basis))



def update_surge(vms: int) -> int:
    """A refresh of `vms` instances launches up to MAX_HEALTHY_PERCENT of them before terminating any."""
    return math.ceil(vms * (MAX_HEALTHY_PERCENT - 100) / 100)
