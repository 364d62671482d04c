"""The GPU instances of an AWS stack: the launch template (image, disks, IMDSv2, the rendered user-data) and the
Auto Scaling group that keeps them healthy behind the load balancer, refreshes them and scales them."""

from __future__ import annotations

import base64

import pulumi
from pulumi_aws import autoscaling, ec2

from components.base import FleetComponent
from fleet import catalog
from fleet.bootstrap import render_user_data
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

from .options import AwsOptions

# Deep Learning Base OSS Nvidia Driver GPU AMI: NVIDIA driver, CUDA and cloud-init on Ubuntu 22.04.
DLAMI_OWNER = "898082745236"
DLAMI_NAME = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
ROOT_VOLUME_GB = 150  # the DLAMI's own ~75 GB plus the vLLM venv


def launch_template(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, options: AwsOptions, profile, instance_sg, secret_arns):
    if options.ami_id:
        image_id, root_device = pulumi.Output.from_input(options.ami_id), pulumi.Output.from_input("/dev/sda1")
    else:
        ami = ec2.get_ami_output(most_recent=True, owners=[DLAMI_OWNER], filters=[
            {"name": "name", "values": [DLAMI_NAME]}, {"name": "architecture", "values": ["x86_64"]},
            {"name": "state", "values": ["available"]}], opts=fleet.invoke_opts)
        image_id, root_device = ami.id, ami.root_device_name
    user_data = pulumi.Output.all(**secret_arns).apply(
        lambda arns: base64.b64encode(render_user_data(spec, sizing, arns).encode()).decode())

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
            volume("/dev/sdf", sizing.data_disk_gb, 1000, 8000),
        ],
        user_data=user_data,
        update_default_version=True,
        tag_specifications=[
            ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags={
                "Name": fleet.child("gpu"), **spec.resource_tags})
            for kind in ("instance", "volume")],
        opts=fleet.opts,
    )

def auto_scaling_group(fleet: FleetComponent, spec: FleetSpec, sizing: Sizing, template, target_group, subnets, tags):
    template_spec = autoscaling.GroupLaunchTemplateArgs(id=template.id, version=template.latest_version.apply(str))
    mixed = None
    if spec.spot:
        # Spot across every catalog type with the same GPUs (same TP, same bootstrap): more pools, fewer
        # interruptions; on-demand for the first onDemandBase VMs.
        alternatives = sorted(it.name for it in catalog.cloud("aws").instance_types.values()
                              if it.gpu == sizing.instance.gpu and it.gpu_count == sizing.instance.gpu_count)
        mixed = autoscaling.GroupMixedInstancesPolicyArgs(
            instances_distribution=autoscaling.GroupMixedInstancesPolicyInstancesDistributionArgs(
                on_demand_base_capacity=spec.on_demand_base,
                on_demand_percentage_above_base_capacity=0,
                spot_allocation_strategy="price-capacity-optimized"),
            launch_template=autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs(
                launch_template_specification=autoscaling.GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs(
                    launch_template_id=template.id, version=template.latest_version.apply(str)),
                overrides=[autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArgs(instance_type=t)
                           for t in alternatives]))
    grace = sizing.startup_grace_seconds
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
        default_instance_warmup=grace,
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
        opts=fleet.opts,
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

