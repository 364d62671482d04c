"""vllm-fleet-health (cloud-init/vllm-fleet-health.py): the VM's boot-aware health, which the group's autohealing
asks (docs/boot.md, "Readiness by progress"). `python3 vllm-fleet-health.py /etc/vllm-fleet/health.json`.

GET <path>: 200 {"ApplicationHealthState": "Healthy", "phase", "detail"} while vLLM serves, a drain runs, or the
setup makes progress (a step, bytes added under watched_dirs) or vLLM starts (load_seconds); 503 without a state for
a VM still starting before starting_healthy_after_seconds of uptime; 200 "Unhealthy" once the setup failed for good,
made no progress for stall_seconds, or vLLM did not serve (or stopped) for load_seconds. Failed stays failed.
Standard library only; the clock is the time since boot (CLOCK_MONOTONIC).
"""

import http.server
import json
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path


def bytes_under(directories) -> int:
    total = 0
    for directory in directories:
        for root, _, files in os.walk(directory):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_size
                except OSError:  # a file renamed or removed while we look (a download's .incomplete)
                    pass
    return total


class Judge:
    """What the VM's state says, from what the setup records, the bytes it adds and vLLM's /health."""

    def __init__(self, config: dict, clock=time.monotonic):
        self.config = config
        self.clock = clock
        self.progress_dir = Path(config["progress_dir"])
        self.lock = threading.Lock()
        self.last_progress = clock()
        self.seen = None  # (step, bytes) when progress was last seen
        self.served = False
        self.since = None  # when the setup ended, or vLLM stopped answering after it had served
        self.failure = None  # why the VM failed, for good

    def vllm_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.config["vllm_health_url"], timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def judge(self) -> tuple[str, bool, str]:
        """(phase, healthy, why); healthy is False only for a VM that failed."""
        with self.lock:
            return self._judge()

    def _judge(self) -> tuple[str, bool, str]:
        now = self.clock()
        if self.failure:
            return "failed", False, self.failure
        if (self.progress_dir / "draining").exists():
            return "draining", True, "a drain lets the generations in flight finish"
        failed = self.progress_dir / "failed"
        if failed.exists():
            self.failure = f"the setup failed: {failed.read_text().strip()}"
            return "failed", False, self.failure
        load = self.config["load_seconds"]
        if self.vllm_healthy():
            self.served, self.since = True, None
            return "serving", True, "vLLM answers its health check"
        step_file = self.progress_dir / "step"
        step = step_file.read_text().strip() if step_file.exists() else "boot"
        if self.served or step == "done":
            self.since = self.since if self.since is not None else now
            waited = now - self.since
            if waited > load:
                self.failure = (f"vLLM stopped answering {waited:.0f} s ago (a restart takes at most {load} s)"
                                if self.served else f"vLLM did not serve within {load} s of the setup's end")
                return "failed", False, self.failure
            phase = "restarting" if self.served else "loading"
            return phase, True, f"vLLM starts ({waited:.0f} s of at most {load} s)"
        seen = (step, bytes_under(self.config["watched_dirs"]))
        if seen != self.seen:
            self.seen, self.last_progress = seen, now
        quiet = now - self.last_progress
        if quiet > self.config["stall_seconds"]:
            self.failure = f"the setup made no progress for {quiet:.0f} s in step {step}"
            return "failed", False, self.failure
        return "setup", True, f"step {step}, {seen[1]} bytes, last progress {quiet:.0f} s ago"

    def answer(self) -> tuple[int, dict]:
        phase, healthy, why = self.judge()
        body = {"phase": phase, "detail": why}
        if healthy and phase in ("setup", "loading") and self.clock() < self.config["starting_healthy_after_seconds"]:
            return 503, body
        return 200, {"ApplicationHealthState": "Healthy" if healthy else "Unhealthy", **body}


def make_handler(judge: Judge, path: str):
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            if self.path != path:
                self.send_error(404)
                return
            status, body = judge.answer()
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # one probe every few seconds: not worth a journal line each
            pass

    return Health


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    server = http.server.ThreadingHTTPServer((config["listen"], config["port"]),
                                             make_handler(Judge(config), config["path"]))
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])
