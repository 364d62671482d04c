"""The drain (docs/drain.md): every stack's load balancer, systemd and vLLM agree on how long a VM that leaves lets its
generations finish, and the drain watcher (cloud-init/vllm-fleet-drain.py, as rendered) acts on each cloud's notice,
read from a metadata service that answers as the cloud documents it, with iptables and systemctl recording their
calls. The drain itself runs on the CPU server in tests/serving/test_drain_on_cpu.py."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from email.utils import formatdate

import pytest

from conftest import config_of, launcher_argv, stacks_of, write_files
from components.aws.edge import LB_IDLE_TIMEOUT_SECONDS
from components.azure.edge import GATEWAY_REQUEST_TIMEOUT_SECONDS, HEALTH_PROBE_INTERVAL_SECONDS
from components.gcp.edge import BACKEND_TIMEOUT_SECONDS
from fleet import lifecycle
from fleet.bootstrap import PATHS


def test_no_response_through_any_edge_outlasts_the_longest_the_drain_allows():
    assert LB_IDLE_TIMEOUT_SECONDS == BACKEND_TIMEOUT_SECONDS == GATEWAY_REQUEST_TIMEOUT_SECONDS \
        == lifecycle.LONGEST_RESPONSE_SECONDS
    # the load balancers count a VM unhealthy within the watcher's wait: AWS and Azure 3 x 15 s, GCP 3 x 10 s
    assert 3 * max(15, HEALTH_PROBE_INTERVAL_SECONDS, 10) < lifecycle.EDGE_NOTICE_SECONDS


@pytest.mark.parametrize("stack", stacks_of())
def test_the_load_balancer_systemd_and_vllm_drain_for_the_longest_generation(stack, plan_of):
    plan = plan_of(stack)
    config = config_of(stack)
    drain = plan.outputs["timeToServe"]["drainSeconds"]
    assert drain == min(1200, -(-plan.outputs["memory"]["maxModelLen"] // lifecycle.MIN_DECODE_TOKENS_PER_S))
    files = write_files(plan.user_data)
    argv = launcher_argv(files[PATHS["launcher"]]["content"])
    assert argv[argv.index("--shutdown-timeout") + 1] == str(drain)
    unit = files["/etc/systemd/system/vllm.service"]["content"]
    assert int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M)[1]) == drain + lifecycle.STOP_MARGIN_SECONDS
    cloud = config["cloud"]
    if cloud == "aws":
        assert plan.one("aws:lb/targetGroup:TargetGroup")["deregistrationDelay"] == drain
    elif cloud == "gcp":
        assert plan.one("gcp:compute/backendService:BackendService")["connectionDrainingTimeoutSec"] == drain
    else:
        [settings] = plan.one("azure-native:network:ApplicationGateway")["backendHttpSettingsCollection"]
        assert settings["connectionDraining"] == {"enabled": True, "drainTimeoutInSec": drain}
        notice = plan.one("azure-native:compute:VirtualMachineScaleSet")["virtualMachineProfile"][
            "scheduledEventsProfile"]["terminateNotificationProfile"]
        minutes = int(notice["notBeforeTimeout"].removeprefix("PT").removesuffix("M"))
        assert notice["enable"] is True and 5 <= minutes <= 15 and minutes * 60 >= min(drain, 15 * 60)
    drain_config = json.loads(files[PATHS["drain_config"]]["content"])
    assert drain_config["cloud"] == cloud and drain_config["edge_notice_seconds"] == lifecycle.EDGE_NOTICE_SECONDS


class Metadata(http.server.BaseHTTPRequestHandler):
    """A cloud's instance metadata service, as its documentation shows it, with a notice once `notice` is set; and
    vLLM's /metrics with nothing in flight."""

    cloud = ""
    notice = threading.Event()
    posted: list[dict] = []

    def do_PUT(self):  # noqa: N802
        self._answer(200, b"token" if self.path == "/latest/api/token" else b"")

    def do_POST(self):  # noqa: N802
        length = int(self.headers["Content-Length"])
        Metadata.posted.append(json.loads(self.rfile.read(length)))
        self._answer(200, b"")

    def do_GET(self):  # noqa: N802
        path, noticed = self.path, self.notice.is_set()
        if path == "/metrics":
            return self._answer(200, b'vllm:num_requests_running{model_name="m"} 0.0\n'
                                     b'vllm:num_requests_waiting{model_name="m"} 0.0\n')
        if self.cloud == "aws":
            assert self.headers["X-aws-ec2-metadata-token"] == "token"
            if path == "/latest/meta-data/spot/instance-action" and noticed:
                deadline = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 120))
                return self._answer(200, json.dumps({"action": "terminate", "time": deadline}).encode())
            return self._answer(404, b"")
        if self.cloud == "gcp":
            assert self.headers["Metadata-Flavor"] == "Google" and path == "/computeMetadata/v1/instance/preempted"
            return self._answer(200, b"TRUE" if noticed else b"FALSE")
        assert self.headers["Metadata"] == "true"
        if path.startswith("/metadata/instance/compute/name"):
            return self._answer(200, b"vllmfleet_3")
        events = [{"EventId": "602d9444-d2cd-49c7-8624-8643e7171297", "EventType": "Preempt",
                   "ResourceType": "VirtualMachine", "Resources": ["vllmfleet_3"], "EventStatus": "Scheduled",
                   "NotBefore": formatdate(time.time() + 30, usegmt=True), "EventSource": "Platform"}]
        self._answer(200, json.dumps({"DocumentIncarnation": 2, "Events": events if noticed else []}).encode())

    def _answer(self, status: int, body: bytes):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("stack", ["codellama-prod", "codellama-gcp", "codellama-azure"])
def test_the_watcher_drains_on_the_clouds_notice(stack, plan_of, tmp_path):
    files = write_files(plan_of(stack).user_data)
    Metadata.cloud, Metadata.posted[:] = config_of(stack)["cloud"], []
    Metadata.notice.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("iptables", "systemctl"):
        (bin_dir / tool).write_text(f'#!/bin/bash\necho "{tool} $*" >>"{tmp_path}/calls"\n')
        (bin_dir / tool).chmod(0o755)
    config = {**json.loads(files[PATHS["drain_config"]]["content"]), "metadata_url": base,
              "metrics_url": f"{base}/metrics", "progress_dir": str(tmp_path / "progress"), "edge_notice_seconds": 1}
    (tmp_path / "drain.json").write_text(json.dumps(config))
    (tmp_path / "drain.py").write_text(files[PATHS["drain"]]["content"])
    watcher = subprocess.Popen([sys.executable, str(tmp_path / "drain.py"), str(tmp_path / "drain.json")],
                               env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
                               stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(6)  # a poll or more without a notice: nothing happens
        assert not (tmp_path / "calls").exists() and watcher.poll() is None
        Metadata.notice.set()
        _, log = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
        server.shutdown()
    assert watcher.returncode == 0, log
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["iptables -I INPUT -p tcp --dport 8000 ! -i lo -m string --algo bm --string GET /health  -j "
                     "REJECT --reject-with tcp-reset", "systemctl stop vllm.service"], calls
    assert (tmp_path / "progress" / "draining").exists()
    if Metadata.cloud == "azure":  # the eviction may go ahead: the drain is done
        assert Metadata.posted == [{"StartRequests": [{"EventId": "602d9444-d2cd-49c7-8624-8643e7171297"}]}]
