"""Start and stop a real `vllm serve` for the tests, and talk plain HTTP to it; stdlib only.

    with VllmServer([launcher], env=env, port=port, api_key=key, log_path=log) as server:
        status, body = server.request("GET", "/v1/models")

The server runs in its own session, so its process group holds everything it forks (API server, engine core,
worker); stop() signals that group by the leader's PID: SIGTERM, then SIGKILL after a grace period. Starting
gives up (and stops it) after `ready_timeout` seconds without a healthy /health.
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
# serving-test/install.sh creates it; VLLM_VENV points both there and here at another one.
VENV = Path(os.environ.get("VLLM_VENV", REPO_ROOT / ".venv-vllm"))
VLLM_BIN = VENV / "bin" / "vllm"
VENV_PYTHON = VENV / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VllmServer:
    def __init__(self, command: list[str], *, env: dict[str, str], port: int, api_key: str, log_path: Path,
                 ready_timeout: float = 240.0) -> None:
        self.command = command
        self.env = env
        self.base_url = f"http://127.0.0.1:{port}"
        self.api_key = api_key
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self.ready_seconds: float | None = None

    def start(self) -> VllmServer:
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            while time.monotonic() < started + self.ready_timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"vllm serve exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if self.request("GET", "/health", auth=False, timeout=2)[0] == 200:
                        self.ready_seconds = time.monotonic() - started
                        return self
                except OSError:
                    pass  # not listening yet
                time.sleep(0.5)
            raise TimeoutError(f"vllm serve not ready after {self.ready_timeout:.0f} s:\n{self.log_tail()}")
        except BaseException:  # a failed start, but also a test timeout or ^C while waiting: no server is left behind
            self.stop()
            raise

    def stop(self, grace: float = 20.0) -> None:
        if self.proc is None:
            return
        group = self.proc.pid  # start_new_session: the server leads its own process group
        try:
            os.killpg(group, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            os.killpg(group, signal.SIGKILL)  # whatever of the group outlived the leader or the grace period
        except ProcessLookupError:
            pass  # the whole group is gone
        self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else "(no log)"

    def request(self, method: str, path: str, body: dict | None = None, *, auth: bool = True,
                timeout: float = 60.0) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
