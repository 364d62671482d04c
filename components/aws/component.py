"""The AWS Fleet component: wires the stack's network, identity, edge and instances together."""

from __future__ import annotations

from typing import Mapping

import pulumi
import pulumi_aws

from components.base import FleetComponent
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

from . import dashboard, edge, fleet, identity, monitoring, network, rate_limits, wake_on_request
from .options import AwsOptions


class Fleet(FleetComponent):
    def __init__(self, name: str, spec: FleetSpec, sizing: Sizing, options: AwsOptions,
                 secrets: Mapping[str, pulumi.Output[str]]):
        super().__init__("aws", name, spec, sizing)
        tags = spec.resource_tags
        provider = pulumi_aws.Provider(f"{name}-aws", region=spec.region,
                                       default_tags=pulumi_aws.ProviderDefaultTagsArgs(tags=tags),
                                       opts=pulumi.ResourceOptions(parent=self))
        self.opts = pulumi.ResourceOptions(parent=self, provider=provider)
        self.invoke_opts = pulumi.InvokeOptions(provider=provider)
        self.account_id = pulumi_aws.get_caller_identity_output(opts=self.invoke_opts).account_id

        vpc_id, public_subnets, private_subnets = network.subnets(self, spec, options)
        lb_sg, instance_sg = network.security_groups(self, spec, vpc_id)
        secret_arns, secret_refs = identity.store_secrets(self, spec, secrets)
        self.standby_pool, self.standby_note = fleet.warm_pool(spec, sizing)
        profile = identity.instance_profile(self, spec, secret_arns, fleet.group_name(spec))
        monitoring.allow_publishing(self, profile.role, monitoring.log_group(self, spec))
        template = fleet.launch_template(self, spec, sizing, options, profile, instance_sg, secret_refs)
        alb, target_group = edge.load_balancer(self, spec, options, vpc_id, public_subnets, lb_sg)
        rate_limits.edge_rate_limit(self, spec, alb)
        self.instance_types = fleet.launchable_types(spec, sizing)
        self.image = (f"{options.ami_id} (aws.amiId)" if options.ami_id else
                      f"{options.ami_name} (pinned; aws.amiName names a newer release)")
        group = fleet.auto_scaling_group(self, spec, sizing, template, target_group, private_subnets, tags)
        fleet.autoscaling_policy(self, spec, sizing, group)
        fleet.ready_hook(self, group)
        scheme, api_rule = edge.listeners(self, spec, alb, target_group)
        dashboard.create(self, spec, sizing, fleet.group_name(spec), alb, target_group)
        if self.office_schedule(sizing):
            fleet.office_hours(self, spec, sizing, group)
            woken_by = spec.wake_on_request and wake_on_request.activator(
                self, spec, sizing, group, api_rule, target_group, secret_arns["apiKeys"])
            edge.closed_outside_hours(self, spec, api_rule, target_group, woken_by)
        if spec.office_hours:
            self.wake_target = {"cloud": "aws", "region": spec.region, "group": group.name,
                                "apiRuleArn": api_rule.arn, "targetGroupArn": target_group.arn}

        self.serve_at(scheme, spec.domain or alb.dns_name)

    def update_surge(self, vms: int) -> int:
        return fleet.update_surge(vms)
