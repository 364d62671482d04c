"""vllm-fleet-deployer: `pulumi up` in deployer/ creates the CI identities of docs/ci.md.

The Pulumi CLI runs this file with deployer/ as the working directory; the program is the `deployer` package of
the repository root, which is put on the import path first.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deployer import program  # noqa: E402 (after the path it is imported from)

program.run()
