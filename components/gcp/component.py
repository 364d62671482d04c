"""The GCP Fleet component: wires the stack's network, identity, edge and VMs together."""

from __future__ import annotations

from typing import Mapping

import pulumi
import pulumi_gcp
from pulumi_gcp import serviceaccount

from components.base import FleetComponent
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

from . import edge, fleet, identity, network
from .options import GcpOptions


class Fleet(FleetComponent):
    def __init__(self, name: str, spec: FleetSpec, sizing: Sizing, options: GcpOptions,
                 secrets: Mapping[str, pulumi.Output[str]]):
        # GCP resource names (autonamed from these) must start with a letter; a stack name may start with a digit.
        super().__init__("gcp", name if name[:1].isalpha() else f"vllm-{name}")
        provider = pulumi_gcp.Provider(f"{name}-gcp", project=options.project, region=spec.region,
                                       default_labels=dict(options.labels), opts=pulumi.ResourceOptions(parent=self))
        self.opts = pulumi.ResourceOptions(parent=self, provider=provider)
        self.invoke_opts = pulumi.InvokeOptions(provider=provider)

        vpc, subnetwork = network.subnetwork(self, spec, options)
        account = serviceaccount.Account(
            self.child("vm"), account_id=f"vllm-{spec.name}"[:30].rstrip("-"),
            display_name=f"vllm-fleet {spec.stack} GPU VMs", opts=self.opts)
        member = pulumi.Output.concat("serviceAccount:", account.email)
        network.firewall(self, spec, options, vpc, account)
        secret_names, grants = identity.store_secrets(self, spec, secrets, member)
        template = fleet.instance_template(self, spec, sizing, options, subnetwork, account, secret_names, grants)
        health_check, autohealing_check = fleet.health_checks(self)
        group = fleet.instance_group(self, spec, sizing, options, template, autohealing_check)
        fleet.autoscaler(self, spec, sizing, group)
        address, scheme = edge.load_balancer(self, spec, group, health_check)

        self.serve_at(scheme, spec.domain or address.address)
