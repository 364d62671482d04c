"""Azure: GPU VMs in a Virtual Machine Scale Set behind an Application Gateway v2.

Only Azure specifics live here; the spec, sizing, vLLM arguments and user-data come from fleet/. By concern:
options (the `azure` config section), network (VNet, subnets, NSGs, NAT), identity (Key Vault, managed identity,
grants), edge (Application Gateway, DNS), fleet (scale set, autoscale), offline (what Azure answers the offline plan).

Front door: Application Gateway v2 rather than a Standard Load Balancer. A Standard LB is layer 4: it cannot terminate
TLS, so every VM would need the certificate and vLLM would serve TLS itself, and allowedCidrs would have to be
enforced on the VMs' subnet, mixed with the platform's rules. The gateway terminates TLS with a certificate it reads
from Key Vault, probes /health over HTTP, drains connections, keeps a request open for 20 minutes, passes streamed
tokens through unbuffered, and sits in its own subnet whose NSG admits only allowedCidrs. It costs ~$0.25/hour plus
capacity units, small next to one GPU VM.

Scale set: Uniform orchestration. Rolling upgrades (with MaxSurge), automatic instance repairs, the Application
Health extension and Application Gateway backend pools are all generally available there. Flexible orchestration
has had rolling upgrades since November 2024 and would allow mixing spot and regular VMs (what onDemandBase needs,
which Azure stacks refuse) and standby pools; moving to it is a change of its own (docs/azure.md).
"""

from .component import Fleet
from .edge import edge_answer, edge_answers
from .offline import offline_invoke, offline_state
from .options import OPTIONS, AzureOptions, parse_options

USER_DATA = ("azure-native:compute:VirtualMachineScaleSet", "virtualMachineProfile.osProfile.customData", "base64+gzip")

__all__ = ["Fleet", "edge_answer", "edge_answers", "OPTIONS", "AzureOptions", "USER_DATA", "offline_invoke", "offline_state", "parse_options"]
