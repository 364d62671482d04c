"""`make serve-local STACK=...` (cli/serve_local.py): a stack's launcher served on this machine by the CPU build
of vLLM, as a user starts it to try clients and `make check` before a cloud exists. Fails in CI (skips elsewhere)
without .venv-vllm."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from stack_on_cpu import require_vllm
from vllm_server import REPO_ROOT, VllmServer, free_port

STACK = "codellama-dev"
KEY = "local-key-0123456789"
pytestmark = pytest.mark.timeout(900)


def test_make_serve_local_serves_the_stacks_model_with_its_key_and_make_check_passes(tmp_path):
    require_vllm()
    port = free_port()
    command = [sys.executable, "-m", "cli.serve_local", STACK, "--port", str(port), "--api-key", KEY,
               "--workdir", str(tmp_path / "work")]
    # VllmServer runs the command in its own session, waits for /health and stops the whole group after.
    server = VllmServer(command, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, port=port, api_key=KEY,
                        log_path=tmp_path / "serve-local.log", ready_timeout=600)
    with server:
        status, body = server.request("GET", "/v1/models")
        assert status == 200, body
        assert [model["id"] for model in json.loads(body)["data"]] == ["codellama/CodeLlama-7b-Instruct-hf"]
        server.api_key = "not-the-key"
        assert server.request("GET", "/v1/models")[0] == 401
        check = subprocess.run(["make", "--no-print-directory", "check", f"URL={server.base_url}", f"KEY={KEY}",
                                "DIRECT=1"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, check.stdout + check.stderr
        # codellama-dev serves Code Llama, which has no tool-call parser: the tools check is skipped
        assert "OK: 9 checks passed, 1 skipped (tools)" in check.stdout
    log = server.log_tail(100_000)
    assert f"make check URL=http://127.0.0.1:{port} KEY={KEY} DIRECT=1" in log
    usage = subprocess.run(["make", "--no-print-directory", "serve-local"], cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=120)
    assert usage.returncode == 2 and usage.stderr.startswith("usage: make serve-local STACK=<stack>")
