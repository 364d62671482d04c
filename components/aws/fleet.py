"""The GPU instances of an AWS stack: the launch template (image, disks, IMDSv2, the rendered user-data) and the
Auto Scaling group that keeps them healthy behind the load balancer, refreshes them and scales them."""

from __future__ import annotations

import base64
import gzip

import pulumi
from pulumi_aws import autoscaling, ec2

from components.base import FleetComponent
from fleet import catalog
from fleet.bootstrap import CloudBoot, render_user_data
from fleet.catalog import InstanceType
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

from .edge import LB_IDLE_TIMEOUT_SECONDS
from .options import AwsOptions

ROOT_VOLUME_GB = 150  # the DLAMI's own ~75 GB plus the vLLM venv
# The weights cache disk's provisioned throughput and IOPS (catalog aws.data_disk; at most 0.25 MiB/s per IOPS).
DATA_DISK_MB_PER_S, DATA_DISK_IOPS = 1000, 8000
# EC2 takes at most 16 KB of user data before base64; cloud-init reads it gzip-compressed as well.
USER_DATA_MAX_BYTES = 16 * 1024
# The Auto Scaling group's default instance warmup: 0-3600 s (Amazon EC2 Auto Scaling user guide).
MAX_DEFAULT_INSTANCE_WARMUP = 3600
# Spot groups launch the sized type or another with the same GPUs that costs at most this many times as much
# on demand: more spot pools to draw from, without a 16xlarge standing in for an xlarge.
SPOT_ALTERNATIVE_MAX_PRICE_RATIO = 2.0


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


def user_data(spec: FleetSpec, sizing: Sizing, secret_refs) -> pulumi.Output[str]:
    def encode(refs: dict[str, str]) -> str:
        text = render_user_data(spec, sizing, CloudBoot(secret_refs=refs,
                                                        edge_idle_timeout_seconds=LB_IDLE_TIMEOUT_SECONDS))
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
            volume(root_device, ROOT_VOLUME_GB, 250, 3000),
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
    grace = sizing.startup_grace_seconds
    autoscaled = spec.replicas.min != spec.replicas.max
    return autoscaling.Group(
        fleet.child("gpu"),
        min_size=spec.replicas.min,
        max_size=spec.replicas.max,
        desired_capacity=spec.replicas.desired,
        vpc_zone_identifiers=subnets,
        launch_template=None if mixed else template_spec,
        mixed_instances_policy=mixed,
        capacity_rebalance=spec.spot,
        target_group_arns=[target_group.arn],
        health_check_type="ELB",
        # Long enough to install vLLM and download and load the weights before health checks count.
        health_check_grace_period=grace,
        # How long a new instance's metrics are left out of scaling decisions; AWS takes at most an hour.
        default_instance_warmup=min(grace, MAX_DEFAULT_INSTANCE_WARMUP),
        # Replace unhealthy instances by launching first: serving capacity never drops.
        instance_maintenance_policy=autoscaling.GroupInstanceMaintenancePolicyArgs(
            min_healthy_percentage=100, max_healthy_percentage=200),
        instance_refresh=autoscaling.GroupInstanceRefreshArgs(
            strategy="Rolling",
            preferences=autoscaling.GroupInstanceRefreshPreferencesArgs(
                min_healthy_percentage=100, max_healthy_percentage=200, instance_warmup=str(grace),
                skip_matching=True, auto_rollback=True)),
        # `pulumi up` returns once the group exists; VMs become healthy minutes later (weights download).
        wait_for_capacity_timeout="0",
        tags=[autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=False) for k, v in tags.items()],
        # With a scaling policy, replicas.desired is the first size and the policy owns it afterwards: a later
        # `pulumi up` must not set it back and terminate the VMs it added.
        opts=fleet.child_opts(ignore_changes=["desiredCapacity"] if autoscaled else None),
    )


def autoscaling_policy(fleet: FleetComponent, spec: FleetSpec, group, alb, target_group):
    if spec.replicas.min == spec.replicas.max:
        return
    autoscaling.Policy(
        fleet.child("requests-per-target"), autoscaling_group_name=group.name,
        policy_type="TargetTrackingScaling",
        target_tracking_configuration=autoscaling.PolicyTargetTrackingConfigurationArgs(
            predefined_metric_specification=autoscaling.PolicyTargetTrackingConfigurationPredefinedMetricSpecificationArgs(
                predefined_metric_type="ALBRequestCountPerTarget",
                resource_label=pulumi.Output.concat(alb.arn_suffix, "/", target_group.arn_suffix)),
            target_value=spec.replicas.target_requests_per_minute),
        opts=fleet.opts)
