"""What every cloud's Fleet component shares: child resource names and options, warnings and the endpoint output.

A cloud's package builds its resources in modules by concern (network, edge, identity, fleet); each module's
functions take the component as their first argument and create their resources as its children with `child()`
names and `opts`.
"""

from __future__ import annotations

import pulumi

from fleet import iam_names
from fleet.catalog import InstanceType
from fleet.schedule import OfficeHours, StandbyPool, lead_minutes
from fleet.sizing import Sizing
from fleet.spec import FleetSpec


class FleetComponent(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    warnings: list[str]
    # The instance types the group may launch, the preferred first (what the quota output counts).
    instance_types: list[InstanceType]
    # The VM image and how it is chosen, for the `image` output.
    image: str
    # With office hours: the stopped VMs the cloud keeps for the morning, or None and why not.
    standby_pool: StandbyPool | None
    standby_note: str
    # With office hours: the cloud's names of what `make wake` changes (cli/wake.py).
    wake_target: dict[str, object]
    # How the autoscaler reacts to vLLM's signals (fleet/autoscaling.py reaction_output), or None: a fixed size.
    autoscaling: dict | None
    # The stack's dashboard in the cloud's console (components/<cloud>/dashboard.py).
    dashboard_url: pulumi.Input[str] | None
    # Options for every child resource (parent, provider); a cloud's component sets them once its provider exists.
    opts: pulumi.ResourceOptions
    invoke_opts: pulumi.InvokeOptions

    def __init__(self, cloud: str, name: str, spec: FleetSpec, sizing: Sizing):
        super().__init__(f"vllm-fleet:{cloud}:Fleet", name)
        self.name = name
        self.spec = spec
        self.instance_types = [sizing.instance]
        self.standby_pool = None
        self.standby_note = ""
        self.wake_target = {}
        self.autoscaling = None
        self.dashboard_url = None
        self.warnings = []
        self.opts = pulumi.ResourceOptions(parent=self)
        self.invoke_opts = pulumi.InvokeOptions(parent=self)

    def child(self, suffix: str) -> str:
        """The logical name of a child resource."""
        return f"{self.name}-{suffix}"

    def short_child(self, suffix: str, limit: int) -> str:
        """The logical name of a child resource whose name may be at most `limit` characters: the stack's name is
        cut to fit (with a hash of it, spec.name_within), never the suffix."""
        return iam_names.short_name(self.spec.stack, suffix, limit)

    def child_opts(self, **options) -> pulumi.ResourceOptions:
        """`opts` with more resource options, e.g. depends_on or ignore_changes."""
        return self.opts.merge(pulumi.ResourceOptions(**options))

    def scale_up_lead_minutes(self, sizing: Sizing) -> int:
        """How early office hours scale up: the time a started standby VM takes where the cloud keeps a pool, else
        a new VM's whole time to serve."""
        budget = sizing.time_to_serve
        return lead_minutes(budget.warm_seconds if self.standby_pool else budget.seconds)

    def update_surge(self, vms: int) -> int:
        """How many VMs beyond `vms` a rolling replacement of them runs at its peak, by the cloud's update policy:
        what the quota must hold besides the fleet."""
        raise NotImplementedError(f"{type(self).__name__} does not say how its rolling replacement surges")

    def office_schedule(self, sizing: Sizing) -> OfficeHours | None:
        """The stack's office hours where they leave time off once the scale-up lead is applied; None where the
        fleet serves around the clock (no officeHours, or windows that cover the whole week)."""
        hours = self.spec.office_hours
        return hours if hours and not hours.always_on(self.scale_up_lead_minutes(sizing)) else None

    def warn(self, message: str) -> None:
        """Shown by `pulumi preview/up` and kept in the stack's `warnings` output."""
        pulumi.log.warn(message, resource=self)
        self.warnings.append(message)

    def warn_plain_http(self, spec: FleetSpec, how_to_fix: str) -> None:
        self.warn(f"{spec.stack}: the endpoint is plain HTTP: prompts, completions and the API key cross the "
                  f"network unencrypted. {how_to_fix}")

    def serve_at(self, scheme: str | pulumi.Output[str], host: str | pulumi.Output[str]) -> None:
        self.endpoint = pulumi.Output.concat(scheme, "://", host)
        self.register_outputs({"endpoint": self.endpoint})
