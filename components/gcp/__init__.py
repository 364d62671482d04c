"""GCP: GPU VMs in a regional managed instance group behind a global external Application Load Balancer.

Only GCP specifics live here; the spec, sizing, vLLM arguments and user-data come from fleet/. By concern:
options (the `gcp` config section), network (VPC, Cloud NAT, firewall), identity (secrets and their grants),
edge (load balancer, TLS, Cloud Armor), fleet (instance template, group, autoscaler), offline (what GCP answers
the offline plan).
"""

from .component import Fleet
from .edge import edge_answer, edge_answers
from .offline import offline_invoke, offline_state
from .options import OPTIONS, GcpOptions, label_value, parse_options

USER_DATA = ("gcp:compute/instanceTemplate:InstanceTemplate", "metadata.user-data", "text")

__all__ = ["Fleet", "edge_answer", "edge_answers", "OPTIONS", "GcpOptions", "USER_DATA", "label_value", "offline_invoke", "offline_state",
           "parse_options"]
