"""vllm-fleet-health (rendered from cloud-init/clouds/azure-health.py): vLLM's health in the form Azure's Application
Health extension reads with rich health states (version 2), which is what gives a new VM a grace period.

    python3 azure-health.py <vLLM health URL> <port>

GET /health-state on 127.0.0.1:<port> asks vLLM's /health and answers 200 with {"ApplicationHealthState":
"Healthy"} or {"ApplicationHealthState": "Unhealthy"}. Until vLLM has answered healthy once it answers 503 with no
state: the extension keeps the new VM "Initializing" through its grace period (while it installs vLLM and loads the
weights) instead of counting it unhealthy, and rolling upgrades wait for it. The image's Python 3, stdlib only.
"""

import http.server
import json
import sys
import urllib.request

STATE_PATH = "/health-state"


def make_handler(vllm_health_url: str):
    served = {"once": False}  # vLLM has been healthy since this process started

    class HealthState(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            if self.path != STATE_PATH:
                self.send_error(404)
                return
            try:
                with urllib.request.urlopen(vllm_health_url, timeout=5) as response:
                    healthy = response.status == 200
            except OSError:
                healthy = False
            served["once"] = served["once"] or healthy
            if not served["once"]:
                self._answer(503, {"starting": "vLLM has not answered healthy yet"})
            else:
                self._answer(200, {"ApplicationHealthState": "Healthy" if healthy else "Unhealthy"})

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # one probe every few seconds: not worth a journal line each
            pass

    return HealthState


def main(vllm_health_url: str, port: int) -> None:
    http.server.ThreadingHTTPServer(("127.0.0.1", port), make_handler(vllm_health_url)).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
