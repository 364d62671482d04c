"""vllm-fleet-drain (cloud-init/vllm-fleet-drain.py): on the cloud's notice that this VM is about to go (AWS spot
interruption, GCP preemption, Azure Preempt or Terminate scheduled events), drains it so that the generations in
flight finish (docs/drain.md). `python3 vllm-fleet-drain.py /etc/vllm-fleet/drain.json`, as root.

The drain: the health endpoint reports "draining"; the load balancer's health checks of vLLM are refused (a firewall
rule resets outside connections that ask for /health) so that it stops sending new requests; once nothing runs or
waits in vLLM (after the load balancer had time to notice) or the deadline is near, vllm.service is stopped (vLLM
finishes what runs, for its --shutdown-timeout). Azure's event is then approved. Standard library only.
"""

import datetime
import email.utils
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

POLL_SECONDS = 5
# Left before a notice's deadline when vLLM is stopped: its teardown.
STOP_BEFORE_DEADLINE_SECONDS = 10


def http(method: str, url: str, headers: dict, data: bytes | None = None, timeout: float = 5) -> bytes:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


class Notices:
    """One cloud's notice: `poll()` returns None, or (what, deadline as a time.time() value) once the VM is to go."""

    def __init__(self, config: dict):
        self.metadata = config["metadata_url"].rstrip("/")

    def poll(self):
        raise NotImplementedError

    def drained(self) -> None:
        """Tells the cloud the drain is done, where it waits to be told."""


class Aws(Notices):
    def __init__(self, config: dict):
        super().__init__(config)
        self.rebalance_seen = False

    def _get(self, path: str) -> bytes | None:
        token = http("PUT", f"{self.metadata}/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"})
        try:
            return http("GET", f"{self.metadata}/latest/meta-data/{path}", {"X-aws-ec2-metadata-token": token.decode()})
        except urllib.error.HTTPError as error:
            if error.code == 404:  # no notice
                return None
            raise

    def poll(self):
        action = self._get("spot/instance-action")
        if action:
            notice = json.loads(action)
            deadline = datetime.datetime.fromisoformat(notice["time"].replace("Z", "+00:00")).timestamp()
            return f"spot interruption ({notice['action']})", deadline
        if not self.rebalance_seen and self._get("events/recommendations/rebalance"):
            self.rebalance_seen = True
            log("rebalance recommendation: the group's capacity rebalancing replaces this instance and drains it "
                "through the target group's deregistration delay")
        return None


class Gcp(Notices):
    def poll(self):
        answer = http("GET", f"{self.metadata}/computeMetadata/v1/instance/preempted", {"Metadata-Flavor": "Google"})
        # Compute Engine stops a preempted VM about 30 s after it says so.
        return ("preemption", time.time() + 30) if answer.decode().strip() == "TRUE" else None


class Azure(Notices):
    API = "api-version=2020-07-01"

    def __init__(self, config: dict):
        super().__init__(config)
        self.name = http("GET", f"{self.metadata}/metadata/instance/compute/name?api-version=2021-02-01&format=text",
                         {"Metadata": "true"}).decode().strip()
        self.event = None

    def poll(self):
        document = json.loads(http("GET", f"{self.metadata}/metadata/scheduledevents?{self.API}", {"Metadata": "true"}))
        for event in document.get("Events", []):
            if event["EventType"] in ("Preempt", "Terminate") and self.name in event.get("Resources", []):
                self.event = event["EventId"]
                not_before = event.get("NotBefore")
                deadline = (email.utils.parsedate_to_datetime(not_before).timestamp() if not_before
                            else time.time() + 30)
                return event["EventType"], deadline
        return None

    def drained(self) -> None:
        body = json.dumps({"StartRequests": [{"EventId": self.event}]}).encode()
        http("POST", f"{self.metadata}/metadata/scheduledevents?{self.API}",
             {"Metadata": "true", "Content-Type": "application/json"}, body)


CLOUDS = {"aws": Aws, "gcp": Gcp, "azure": Azure}


def log(message: str) -> None:
    print(f"vllm-fleet-drain: {message}", file=sys.stderr, flush=True)


def in_flight(metrics_url: str) -> float:
    """Requests running or waiting in vLLM (its Prometheus gauges); none once it no longer answers."""
    try:
        text = http("GET", metrics_url, {}).decode()
    except OSError:
        return 0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(("vllm:num_requests_running", "vllm:num_requests_waiting")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        log(f"{' '.join(command)}: {result.stderr.strip()}")


def drain(config: dict, what: str, deadline: float) -> None:
    started = time.time()
    log(f"{what}: draining, deadline in {deadline - started:.0f} s")
    progress = Path(config["progress_dir"])
    progress.mkdir(parents=True, exist_ok=True)
    (progress / "draining").write_text(f"{what}\n")
    port = str(config["vllm_port"])
    run(["iptables", "-I", "INPUT", "-p", "tcp", "--dport", port, "!", "-i", "lo", "-m", "string", "--algo", "bm",
         "--string", f"GET {config['vllm_health_path']} ", "-j", "REJECT", "--reject-with", "tcp-reset"])
    # New requests keep coming until the load balancer has counted the refused health checks.
    while time.time() < deadline - STOP_BEFORE_DEADLINE_SECONDS:
        if time.time() - started >= config["edge_notice_seconds"] and not in_flight(config["metrics_url"]):
            break
        time.sleep(1)
    log(f"stopping vLLM ({in_flight(config['metrics_url']):.0f} requests in flight; it lets them finish)")
    run(["systemctl", "stop", "vllm.service"])


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    notices = CLOUDS[config["cloud"]](config)
    while True:
        try:
            notice = notices.poll()
        except (OSError, ValueError, KeyError) as error:  # the metadata service is briefly away
            log(f"asking for notices: {error}")
            notice = None
        if notice:
            drain(config, *notice)
            try:
                notices.drained()
            except OSError as error:
                log(f"could not say the drain is done: {error}")
            return
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    main(sys.argv[1])
