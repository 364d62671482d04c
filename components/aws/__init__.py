"""AWS: GPU VMs in an Auto Scaling group behind an Application Load Balancer.

Only AWS specifics live here; the spec, sizing, vLLM arguments and user-data come from fleet/. By concern:
options (the `aws` config section), network (VPC, subnets, security groups), identity (secrets, instance role),
edge (load balancer, TLS, what it lets through), fleet (launch template, group, scaling), offline (what AWS
answers the offline plan).
"""

from .component import Fleet
from .edge import edge_answer, edge_answers
from .offline import offline_invoke, offline_state
from .options import OPTIONS, AwsOptions, parse_options

USER_DATA = ("aws:ec2/launchTemplate:LaunchTemplate", "userData", "base64+gzip")

__all__ = ["Fleet", "edge_answer", "edge_answers", "OPTIONS", "AwsOptions", "USER_DATA", "offline_invoke", "offline_state", "parse_options"]
