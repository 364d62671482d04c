"""One component per cloud, in the package components/<cloud>/. The program imports only the one a stack uses (a whole
provider SDK costs seconds to import).

Each module provides:
- `parse_options(spec, sizing) -> object`: the stack's cloud-only config section (spec.cloud_options) and the
  cloud's view of cloud-neutral keys (certificate, dnsZone), validated (raises ConfigError);
- `Fleet(name, spec, sizing, options, secrets)`: a `components.base.FleetComponent` (child names, warnings,
  `endpoint`; with officeHours, `standby_pool` or `standby_note` and `wake_target`); `secrets` maps
  apiKey/hfToken to secret Outputs;
- `USER_DATA`: (resource type, dotted input path, encoding) where the rendered cloud-init lands, for the
  offline plan;
- `offline_invoke(token, args, region)` and `offline_state(type, name, inputs, region)`: what the cloud's data
  sources and computed outputs return under the offline plan's mocks, as in the stack's region (a state with an
  "id" gives the resource that id);
- `edge_answers(resources, method, path)`: what the planned load balancer answers a request itself (a status), or
  None where it passes it on to vLLM, for each reading of the path its rules may match, and `edge_answer`, the
  strictest of them; a model of the cloud's documented rule matching (components/edge_model.py), which the serving
  proof runs every route of the real vLLM through.

Apart from the program, for `make wake` (cli/wake.py): the module `components.<cloud>.wake` with
`wake_commands(spec, target, start, end, scale_down)`, the cloud CLI commands that start an office-hours fleet.
"""

import importlib
from types import ModuleType


def load(cloud: str) -> ModuleType:
    return importlib.import_module(f"components.{cloud}")
