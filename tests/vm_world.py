"""A VM's boot path run for real on this machine: a stack's rendered vllm-fleet-setup, with its paths moved under a
temporary root, and every command that would touch the GPUs, the disks, the package mirrors, the secret store or
the model hub replaced by a stub on PATH that records its call (and fails as often as a test asks).

The script is the plan's own, changed in one way only: each of its paths (bootstrap.PATHS) gets the root as a
prefix. What the stubs stand for:
- nvidia-smi / nvidia-modprobe: a driver (580.126.16) with `gpus` GPUs and their NVSwitch fabric state
  (FABRIC_STATE, FABRIC_STATUS); nv-fabricmanager / apt-cache / systemctl: nvidia-fabricmanager at FABRIC_MANAGER,
  the driver's version in the apt sources (none with NO_FABRIC_PACKAGE), units that start; dpkg-query: the packages are installed (or not, with
  MISSING_PACKAGES); mountpoint: the cache disk is mounted; chown: recorded, not done (no user vllm here).
- python3 -m venv, the venv's pip, uv: what the install makes (a venv with a `vllm` and a `python`); every other
  python3 is the real one (write_api_keys runs it).
- the venv's python: fetch-weights.py, the download from the hub.
- the cloud's library (FLEET_CLOUD_LIB): fleet_fetch_secret answers from `secrets`, fleet_fetch_weights copies.
Calls that go to the network are recorded with the word `network`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from fleet.bootstrap import PATHS

REAL_PYTHON = sys.executable

# A stub fails while its counter (one file per stub) is below FAIL_<STUB> of the environment.
_FAIL = '''fail_as_asked() {
  local name=$1 count=0 file="$WORLD/fail-$1"
  local times_var="FAIL_${name//-/_}"
  [ -f "$file" ] && count=$(cat "$file")
  if [ "$count" -lt "${!times_var:-0}" ]; then echo $((count + 1)) >"$file"; return 1; fi
}
'''


def _stub(body: str, name: str) -> str:
    return f"#!/bin/bash\nset -u\n{_FAIL}echo \"{name} $*\" >>\"$WORLD/calls.log\"\n{body}\n"


STUBS = {
    "nvidia-smi": 'case "$*" in *--query-gpu=name*) for _ in $(seq "$GPUS"); do echo "NVIDIA H100 80GB HBM3"; done ;;'
                  ' *--query-gpu=driver_version*) echo 580.126.16 ;;'
                  ' -q) for _ in $(seq "$GPUS"); do printf "    Fabric\\n        State : %s\\n        Status : %s\\n"'
                  ' "${FABRIC_STATE:-Completed}" "${FABRIC_STATUS:-Success}"; done ;;'
                  ' *) echo "0, NVIDIA H100 80GB HBM3, 81559 MiB, 580.126.16" ;; esac',
    # nvidia-fabricmanager: FABRIC_MANAGER is the installed version (none where empty); apt-cache has the driver's.
    "nv-fabricmanager": '[ -n "${FABRIC_MANAGER:-}" ] || exit 127; echo "Fabric Manager version is : $FABRIC_MANAGER"',
    "apt-cache": 'echo "network apt-cache $*" >>"$WORLD/calls.log"; [ "${NO_FABRIC_PACKAGE:-}" ] && exit 0; '
                 'echo "nvidia-fabricmanager-580 | 580.126.16-1 | https://developer.download.nvidia.com/compute/cuda/repos"; '
                 'echo "nvidia-fabricmanager-580 | 580.95.05-1 | https://developer.download.nvidia.com/compute/cuda/repos"',
    "systemctl": 'exit 0',
    "curl": 'echo "network curl $*" >>"$WORLD/calls.log"; exit 0',
    "dpkg": 'exit 0',
    "nvidia-modprobe": "exit 0",
    "dpkg-query": '[ -n "${MISSING_PACKAGES:-}" ] && exit 1; echo "install ok installed"',
    "mountpoint": "exit 0",
    "chown": "exit 0",
    "apt-get": 'echo "network apt-get" >>"$WORLD/calls.log"; fail_as_asked apt-get',
    "python3": 'if [ "${1:-}" = -m ] && [ "${2:-}" = venv ]; then mkdir -p "$3/bin"; cp "$WORLD/stubs/pip" "$3/bin/pip"; '
               'cp "$WORLD/stubs/python3" "$3/bin/python"; exit 0; fi; exec "$REAL_PYTHON" "$@"',
}
# Made by the stubs above and below where the real tools would make them.
MADE = {
    "pip": 'echo "network pip $*" >>"$WORLD/calls.log"; fail_as_asked pip || exit 1; cp "$WORLD/stubs/uv" "$(dirname "$0")/uv"',
    "uv": 'echo "network uv $* UV_CACHE_DIR=${UV_CACHE_DIR:-}" >>"$WORLD/calls.log"; fail_as_asked uv || exit 1; '
          'if [ "$1" = venv ]; then dir=${!#}; mkdir -p "$dir/bin"; cp "$WORLD/stubs/venv-python" "$dir/bin/python"; fi; '
          'if [ "$1" = pip ]; then while [ $# -gt 0 ]; do [ "$1" = --python ] && venv=$(dirname "$(dirname "$2")"); '
          'shift; done; cp "$WORLD/stubs/vllm" "$venv/bin/vllm"; fi',
    "vllm": "exit 0",
    "venv-python": 'echo "network fetch-weights $* HF_TOKEN=${HF_TOKEN:-unset}" >>"$WORLD/calls.log"; '
                   'fail_as_asked fetch-weights',
}
CLOUD_LIB = '''# shellcheck shell=bash
fleet_cloud_tools() { echo "fleet_cloud_tools" >>"$WORLD/calls.log"; }
fleet_data_disk() { echo /dev/fake-data-disk; }
fleet_fetch_secret() {
  echo "network fleet_fetch_secret $1" >>"$WORLD/calls.log"
  fail_as_asked fetch-secret || return 1
  case "$1" in
    *apiKeys*) cat "$WORLD/secrets/apiKeys" ;;
    *) cat "$WORLD/secrets/hfToken" ;;
  esac
}
fleet_fetch_weights() { echo "network fleet_fetch_weights $*" >>"$WORLD/calls.log"; fail_as_asked fetch-weights; }
'''


class VmWorld:
    def __init__(self, tmp: Path, setup_script: str, *, gpus: int, api_keys: dict[str, str],
                 hf_token: str = "hf_TestTokenOfTheWorld0123456789abcd"):
        self.tmp = tmp
        self.root = tmp / "vm"
        self.gpus = gpus
        stubs = tmp / "stubs"
        stubs.mkdir(parents=True)
        for name, body in {**STUBS, **MADE}.items():
            (stubs / name).write_text(_stub(body, name))
            (stubs / name).chmod(0o755)
        (tmp / "bin").mkdir()
        for name in STUBS:
            (tmp / "bin" / name).symlink_to(stubs / name)
        (tmp / "secrets").mkdir()
        (tmp / "secrets" / "apiKeys").write_text(json.dumps(api_keys))
        (tmp / "secrets" / "hfToken").write_text(hf_token)
        (tmp / "cloud.sh").write_text(_FAIL + CLOUD_LIB)
        self.script = tmp / "vllm-fleet-setup"
        self.script.write_text(self.moved(setup_script))
        self.script.chmod(0o755)
        for path in ("requirements", "fetch_weights"):  # files cloud-init writes next to the script
            (self.root / PATHS[path].lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (self.root / PATHS[path].lstrip("/")).write_text(f"{path} of the VM\n")

    def moved(self, text: str) -> str:
        """`text` with every path of bootstrap.PATHS under this world's root (one pass: no path moved twice)."""
        paths = sorted(set(PATHS.values()), key=len, reverse=True)
        pattern = re.compile(r"(?<![\w./-])(" + "|".join(map(re.escape, paths)) + r")(?=[/'\"\s]|$)", re.M)
        return pattern.sub(lambda match: f"{self.root}{match[1]}", text)

    def path(self, key: str) -> Path:
        return self.root / PATHS[key].lstrip("/")

    def run(self, step: str = "main", **env: str) -> subprocess.CompletedProcess:
        """Sources the script and runs one of its functions (main: the whole boot) with the stubs on PATH."""
        environment = {
            "PATH": f"{self.tmp / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.tmp), "WORLD": str(self.tmp), "GPUS": str(self.gpus), "REAL_PYTHON": REAL_PYTHON,
            "FLEET_CLOUD_LIB": str(self.tmp / "cloud.sh"), "FLEET_RETRY_FIRST_DELAY": "0", **env,
        }
        return subprocess.run(["bash", "-c", f'source "{self.script}" && {step}'], env=environment,
                              capture_output=True, text=True, timeout=60)

    def calls(self) -> list[str]:
        log = self.tmp / "calls.log"
        calls = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return calls

    @staticmethod
    def network(calls: list[str]) -> list[str]:
        return [call for call in calls if call.startswith("network ")]
