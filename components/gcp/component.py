"""The GCP Fleet component: wires the stack's network, identity, edge and VMs together."""

from __future__ import annotations

from typing import Mapping

import pulumi
import pulumi_gcp
from pulumi_gcp import serviceaccount

from components.base import FleetComponent
from fleet import catalog, iam_names
from fleet.sizing import Sizing
from fleet.spec import FleetSpec

from . import dashboard, edge, fleet, identity, monitoring, network
from .options import GcpOptions


class Fleet(FleetComponent):
    def __init__(self, name: str, spec: FleetSpec, sizing: Sizing, options: GcpOptions,
                 secrets: Mapping[str, pulumi.Output[str]]):
        super().__init__("gcp", name, spec, sizing)
        provider = pulumi_gcp.Provider(f"{name}-gcp", project=options.project, region=spec.region,
                                       default_labels=dict(options.labels), opts=pulumi.ResourceOptions(parent=self))
        self.opts = pulumi.ResourceOptions(parent=self, provider=provider)
        self.invoke_opts = pulumi.InvokeOptions(provider=provider)

        vpc, subnetwork = network.subnetwork(self, spec, options)
        # Service account ids are 6-30 characters and unique in the project: the stack's name, with a hash where
        # it had to be cut.
        account = serviceaccount.Account(
            self.child("vm"), account_id=iam_names.gcp_vm_service_account_id(spec.stack),
            display_name=f"vllm-fleet {spec.stack} GPU VMs", opts=self.opts)
        member = pulumi.Output.concat("serviceAccount:", account.email)
        network.firewall(self, spec, options, vpc, account)
        secret_versions, grants = identity.store_secrets(self, spec, secrets, member)
        grants.append(monitoring.allow_publishing(self, options.project, member))
        self.standby_pool, self.standby_note = fleet.standby_pool(spec, sizing)
        template = fleet.instance_template(self, spec, sizing, options, subnetwork, account, secret_versions, grants)
        health_check, autohealing_check = fleet.health_checks(self)
        group = fleet.instance_group(self, spec, sizing, options, template, autohealing_check)
        fleet.autoscaler(self, spec, sizing, group)
        if spec.office_hours:
            self.wake_target = {"cloud": "gcp", "project": options.project, "region": spec.region,
                                "group": group.name}
        address, scheme = edge.load_balancer(self, spec, group, health_check)
        dashboard.create(self, spec, sizing, options.project, group, self.url_map_name)

        self.image = options.image or (f"{catalog.cloud('gcp').raw['image']['name']} (pinned; gcp.image names "
                                       f"another image)")
        if "/images/family/" in self.image:
            self.warn(f"{spec.stack}: gcp.image names an image family: each `pulumi up` may find a newer image in "
                      f"it and replace every VM; name one image (gcloud compute images describe-from-family ...) to "
                      f"move on purpose")
        self.serve_at(scheme, spec.domain or address.address)
        self.zones = len(options.zones)

    def update_surge(self, vms: int) -> int:
        return fleet.update_surge(vms, self.zones)
