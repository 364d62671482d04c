"""Start/stop a real `vllm serve` (CPU build in .venv-vllm) for tests; stdlib only.

    with VllmServer(model_dir, api_key="testkey") as srv:
        status, body = srv.request("GET", "/v1/models")

The server runs in its own session/process group (vLLM forks an engine-core process), and
stop() signals that whole group: SIGTERM, then SIGKILL after a grace period. Nothing here
depends on the interpreter running the tests having vLLM installed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("VLLM_VENV", REPO_ROOT / ".venv-vllm"))
VLLM_BIN = VENV / "bin" / "vllm"
VENV_PYTHON = VENV / "bin" / "python"

# Environment that makes vLLM work offline on a CPU-only box (see serving-test/NOTES.md).
CPU_ENV = {
    "VLLM_HOST_IP": "127.0.0.1",  # else its message queue binds the external address
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}

# Flags that work for the tiny model on CPU.
CPU_SERVE_FLAGS = ["--enforce-eager", "--max-model-len", "512", "--dtype", "float32"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes_of_tree(pid: int) -> int:
    """Sum of VmRSS of pid and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class VllmServer:
    def __init__(
        self,
        model_dir: Path,
        *,
        api_key: str | None = "testkey",
        served_model_name: str = "tiny",
        extra_args: list[str] | None = None,
        port: int | None = None,
        log_path: Path | None = None,
        ready_timeout: float = 240.0,
        env: dict[str, str | None] | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.api_key = api_key
        self.served_model_name = served_model_name
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.env_overrides = env or {}  # merged over CPU_ENV; a None value removes the variable
        self.argv = [
            str(VLLM_BIN), "serve", str(self.model_dir),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--served-model-name", served_model_name,
            *(["--api-key", api_key] if api_key else []),
            *(CPU_SERVE_FLAGS if extra_args is None else extra_args),
        ]  # fmt: skip
        self.proc: subprocess.Popen | None = None
        self.ready_seconds: float | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> "VllmServer":
        env = {**os.environ, **CPU_ENV, **self.env_overrides}
        env = {k: v for k, v in env.items() if v is not None}
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if log is not subprocess.DEVNULL:
            log.close()
        deadline = t0 + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.proc.returncode}: {self._tail()}")
            try:
                if self.request("GET", "/health", timeout=2)[0] == 200:
                    self.ready_seconds = time.monotonic() - t0
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"vllm serve not ready after {self.ready_timeout}s: {self._tail()}")

    def stop(self, grace: float = 20.0) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the server leads its own process group
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                # the leader is gone; make sure no child of the group lingers
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
            break
        self.proc = None

    def __enter__(self) -> "VllmServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _tail(self, n: int = 4000) -> str:
        if self.log_path and Path(self.log_path).exists():
            return Path(self.log_path).read_text(errors="replace")[-n:]
        return "(no log)"

    # -- HTTP --------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        *,
        auth: bool = True,
        timeout: float = 60.0,
    ) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if auth and self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def rss_bytes(self) -> int:
        return rss_bytes_of_tree(self.proc.pid) if self.proc else 0
