"""Readiness by progress, run: a stack's rendered setup on the stubbed VM (tests/vm_world.py) with its rendered health
endpoint (cloud-init/vllm-fleet-health.py) beside it, the way the group's autohealing asks it. Time runs SCALE
times faster than on a VM: every duration of the plan (the download's budget, the stall bound, vLLM's start) is
divided by SCALE, and the endpoint is asked far more often than any cloud asks it."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from components.aws.fleet import READY_SCRIPT
from conftest import write_files
from fleet import lifecycle
from fleet.bootstrap import PATHS
from vm_world import VmWorld

STACKS = ["codellama-prod", "codellama-gcp", "codellama-azure"]
CHUNKS = 30  # the download in this many pieces


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Vm:
    """The stubbed VM of a stack's plan, its setup started with `env` and its health endpoint asked every 50 ms."""

    def __init__(self, plan, tmp_path, scale: float, healthy_after: float = 0, **env: str):
        files = write_files(plan.user_data)
        self.world = VmWorld(tmp_path, files[PATHS["setup"]]["content"], gpus=plan.outputs["gpuCount"],
                             api_keys={"default": "test-default-key-0123456789"})
        self.scale = scale
        self.config = json.loads(files[PATHS["health_config"]]["content"])
        self.vllm_port, port = free_port(), free_port()
        config = {**self.config, "listen": "127.0.0.1", "port": port,
                  "vllm_health_url": f"http://127.0.0.1:{self.vllm_port}/health",
                  "stall_seconds": self.config["stall_seconds"] / scale,
                  "load_seconds": self.config["load_seconds"] / scale,
                  # 0: what a cloud sees once its own start-up delay is over.
                  "starting_healthy_after_seconds": healthy_after}
        self.url = f"http://127.0.0.1:{port}{self.config['path']}"
        self.health = self.world.serve_health(files[PATHS["health"]]["content"], config)
        self.setup = self.world.start(**env)
        self.vllm = None
        self.answers: list[tuple[float, int, dict]] = []  # (seconds since the start, status, body)
        self.started = time.monotonic()

    def ask(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def watch(self, until, limit: float) -> None:
        """Asks the endpoint until `until(status, body)` or `limit` seconds; starts "vLLM" (a server whose /health
        answers 200) once the setup has ended, as its ExecStartPost starts vllm.service."""
        while time.monotonic() - self.started < limit:
            try:
                status, body = self.ask()
            except OSError:  # the endpoint is not listening yet
                time.sleep(0.05)
                continue
            self.answers.append((time.monotonic() - self.started, status, body))
            if until(status, body):
                return
            if self.vllm is None and self.setup.poll() == 0:
                self.vllm = start_vllm(self.vllm_port)
            time.sleep(0.05)
        raise AssertionError(f"not within {limit} s; the last answers: {self.answers[-3:]}")

    def stop(self) -> None:
        for process in (self.setup, self.health):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if self.vllm:
            self.vllm.shutdown()


def start_vllm(port: int) -> http.server.HTTPServer:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def download_env(plan, scale: float, rate_fraction: float, **env: str) -> dict[str, str]:
    """The download stub at `rate_fraction` of the plan's assumed rate: it takes the plan's download budget divided
    by rate_fraction, scaled."""
    seconds = plan.outputs["timeToServe"]["download"] / rate_fraction / scale
    return {"DOWNLOAD_CHUNKS": str(CHUNKS), "DOWNLOAD_CHUNK_BYTES": "65536",
            "DOWNLOAD_PAUSE": f"{seconds / CHUNKS:.3f}", **env}


@pytest.mark.parametrize("stack", STACKS)
def test_a_download_at_a_third_of_the_assumed_rate_ends_serving_and_is_never_reported_unhealthy(stack, plan_of,
                                                                                               tmp_path):
    plan = plan_of(stack)
    budget = plan.outputs["timeToServe"]
    scale = budget["download"] * 3 / 6  # the slow download takes 6 s here
    vm = Vm(plan, tmp_path, scale, **download_env(plan, scale, 1 / 3))
    try:
        vm.watch(lambda status, body: body["phase"] == "serving", limit=30)
    finally:
        vm.stop()
    assert vm.setup.returncode == 0, vm.setup.stderr.read()
    phases = [body["phase"] for _, _, body in vm.answers]
    assert {"setup", "serving"} <= set(phases) and "failed" not in phases
    assert all(status == 200 and body["ApplicationHealthState"] == "Healthy" for _, status, body in vm.answers)
    # The download alone took longer than the whole time to serve the plan budgets, which the health checks'
    # grace periods waited before they counted.
    download_seconds = max(t for t, _, body in vm.answers if body["phase"] == "setup") * scale
    assert download_seconds > budget["seconds"]
    assert (vm.world.root / PATHS["hf_home"].lstrip("/") / "hub" / "model.safetensors").stat().st_size == CHUNKS * 65536


@pytest.mark.parametrize("stack", STACKS)
def test_a_download_stalled_longer_than_the_bound_is_reported_unhealthy_within_it(stack, plan_of, tmp_path):
    plan = plan_of(stack)
    scale = lifecycle.STALL_SECONDS / 3  # the stall bound is 3 s here
    vm = Vm(plan, tmp_path, scale, **download_env(plan, scale, 1, DOWNLOAD_STALL_AFTER=str(CHUNKS // 3)))
    part = vm.world.root / PATHS["hf_home"].lstrip("/") / "hub" / "model.safetensors.incomplete"
    try:
        vm.watch(lambda status, body: body["phase"] == "failed", limit=30)
    finally:
        vm.stop()
    stalled_at = part.stat().st_mtime - vm.started + time.monotonic() - time.time()  # the last byte, on our clock
    failed_at, status, body = vm.answers[-1]
    assert status == 200 and body["ApplicationHealthState"] == "Unhealthy"
    assert "no progress" in body["detail"] and "cache_weights" in body["detail"]
    bound = lifecycle.STALL_SECONDS / scale
    # Not before the bound, and within it (one check after it: the clouds ask every 15-30 s).
    assert bound <= failed_at - stalled_at <= bound + 1.0
    assert all(b["ApplicationHealthState"] == "Healthy" for t, _, b in vm.answers if t < failed_at)


def test_a_vm_whose_setup_can_never_succeed_is_reported_unhealthy_at_once(plan_of, tmp_path):
    plan = plan_of("codellama-prod")
    vm = Vm(plan, tmp_path, 1.0, GPUS="1")  # fewer GPUs than the tensor parallel size
    try:
        vm.watch(lambda status, body: body["phase"] == "failed", limit=15)
    finally:
        vm.stop()
    assert "expected 4 GPUs" in vm.answers[-1][2]["detail"] and vm.answers[-1][0] < 10


def test_a_vm_still_starting_before_the_clouds_delay_ends_answers_not_yet(plan_of, tmp_path):
    """503 without a state: Azure keeps it Initializing, GCP's checks do not count yet, and a rolling
    replacement waits for the VM to serve."""
    plan = plan_of("codellama-gcp")
    vm = Vm(plan, tmp_path, 100.0, healthy_after=10 ** 9, **download_env(plan, 100.0, 1))
    try:
        vm.watch(lambda status, body: body["phase"] == "setup", limit=15)
    finally:
        vm.stop()
    status, body = vm.answers[-1][1:]
    assert status == 503 and "ApplicationHealthState" not in body


@pytest.mark.parametrize("stack", STACKS)
def test_the_endpoint_config_is_the_plans(stack, plan_of):
    plan = plan_of(stack)
    config = json.loads(write_files(plan.user_data)[PATHS["health_config"]]["content"])
    assert config["stall_seconds"] == lifecycle.STALL_SECONDS == plan.outputs["timeToServe"]["stallSeconds"]
    assert config["load_seconds"] == plan.outputs["timeToServe"]["vllmStartSeconds"] >= 2 * plan.outputs["timeToServe"]["load"]
    assert config["port"] == lifecycle.HEALTH_PORT and config["vllm_health_url"] == "http://127.0.0.1:8000/health"
    # GCP's health checkers come from outside the VM; elsewhere only the VM asks.
    assert config["listen"] == ("0.0.0.0" if stack == "codellama-gcp" else "127.0.0.1")


@pytest.mark.parametrize("phases, result", [(["setup"] * 3 + ["loading", "serving"], "CONTINUE"),
                                            (["setup"] * 3 + ["failed"], "ABANDON")])
def test_the_aws_instance_heartbeats_while_it_makes_progress_then_completes_or_abandons(phases, result, plan_of,
                                                                                         tmp_path):
    """vllm-fleet-ready as rendered, its waits made short (15 s between looks: 0.1 s here; a heartbeat at every look
    instead of every 60 s) and fleet_launch_action recording its calls: it heartbeats for the launch lifecycle action while the
    health endpoint says the VM makes progress, and completes it once the VM serves, or abandons it once it failed."""
    files = write_files(plan_of("codellama-prod").user_data)
    answers = iter(phases)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps({"phase": next(answers, phases[-1])}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "cloud.sh").write_text(f'fleet_launch_action() {{ echo "$*" >>"{tmp_path}/calls"; }}\n')
    script = files[READY_SCRIPT]["content"]
    for old, new in ((PATHS["cloud_lib"], str(tmp_path / "cloud.sh")), ("sleep 15", "sleep 0.1"),
                     (f"http://127.0.0.1:{lifecycle.HEALTH_PORT}{lifecycle.HEALTH_PATH}",
                      f"http://127.0.0.1:{server.server_address[1]}{lifecycle.HEALTH_PATH}")):
        assert old in script
        script = script.replace(old, new)
    every_minute = '[ $((SECONDS - last_beat)) -ge "$HEARTBEAT_SECONDS" ]'
    assert every_minute in script
    script = script.replace(every_minute, "true")
    (tmp_path / "ready").write_text(script)
    try:
        done = subprocess.run(["bash", str(tmp_path / "ready")], capture_output=True, text=True, timeout=30)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    group_and_hook = "vllm-fleet-codellama-prod vllm-fleet-ready"
    heartbeats = phases.index("serving" if result == "CONTINUE" else "failed")
    assert calls == [f"heartbeat {group_and_hook}"] * heartbeats + [f"{result} {group_and_hook}"]
