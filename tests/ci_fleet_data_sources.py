"""Prints, as a JSON list, the data sources (function tokens) a fleet stack's program calls, by running the real
offline plan (cli.plan.run) with Pulumi's mock monitor recording each invoke. A separate process per stack, as
Pulumi's runtime is process-global:

    python tests/ci_fleet_data_sources.py codellama-prod
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi.runtime import mocks  # noqa: E402 (after the path)

from cli import plan  # noqa: E402

called: set[str] = set()
invoke = mocks.MockMonitor.Invoke


def recording_invoke(self, request):
    called.add(request.tok)
    return invoke(self, request)


mocks.MockMonitor.Invoke = recording_invoke
plan.run(sys.argv[1])
print(json.dumps(sorted(called)), flush=True)
# The mocks' per-thread event loops can print a spurious traceback at interpreter shutdown: skip it.
os._exit(0)
