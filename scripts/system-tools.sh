#!/usr/bin/env bash
# The Debian tools `make test` runs against the rendered user-data: cloud-init's schema check, systemd-analyze and
# systemctl, apt-config. Installs what is missing with apt when it can (as root, or with sudo that asks no password);
# otherwise says the one command to run and fails.
#
#   scripts/system-tools.sh          # make test and make test-offline run it first
set -euo pipefail

packages=()
command -v cloud-init >/dev/null 2>&1 || packages+=(cloud-init)
{ command -v systemd-analyze && command -v systemctl; } >/dev/null 2>&1 || packages+=(systemd)
command -v apt-config >/dev/null 2>&1 || packages+=(apt)
[ "${#packages[@]}" -eq 0 ] && exit 0

install=(apt-get install -y -qq --no-install-recommends "${packages[@]}")
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "make test needs ${packages[*]} (Debian/Ubuntu): sudo apt-get update && sudo ${install[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "make test needs ${packages[*]} from Debian or Ubuntu (apt-get); this machine has no apt-get" >&2
  exit 1
fi
echo "installing ${packages[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" "${install[@]}" >/dev/null
