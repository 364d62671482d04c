"""End-to-end: real vLLM 0.32.0 (CPU build, .venv-vllm) serving the tiny random Llama.

Skipped unless `serving-test/install.sh` has created .venv-vllm. One server per module
(~25-35 s to ready on 2 cores, ~2.6 GiB RSS). Uses only the stdlib for HTTP so it runs under
either the project venv or .venv-vllm.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vllm_server import VENV_PYTHON, VLLM_BIN, VllmServer  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not VLLM_BIN.exists(), reason="run serving-test/install.sh first"),
    pytest.mark.timeout(600),
]

API_KEY = "testkey"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny-model")
    try:
        from tiny_model import make_tiny_model  # needs tokenizers/safetensors/numpy
    except ImportError:
        script = Path(__file__).resolve().parent / "tiny_model.py"
        subprocess.run([str(VENV_PYTHON), str(script), str(out)], check=True, timeout=120)
        return out
    return make_tiny_model(out)


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("vllm-log") / "serve.log"
    srv = VllmServer(tiny_model, api_key=API_KEY, served_model_name="tiny", log_path=log)
    with srv:
        yield srv


def _json(status_body):
    status, body = status_body
    assert status == 200, body[:500]
    return json.loads(body)


def test_health_is_public(server):
    assert server.request("GET", "/health", auth=False)[0] == 200


def test_models_requires_key(server):
    assert server.request("GET", "/v1/models", auth=False)[0] == 401
    models = _json(server.request("GET", "/v1/models"))
    assert [m["id"] for m in models["data"]] == ["tiny"]
    assert models["data"][0]["max_model_len"] == 512


def test_completion(server):
    out = _json(
        server.request(
            "POST",
            "/v1/completions",
            {"model": "tiny", "prompt": "def add(a, b):", "max_tokens": 16, "ignore_eos": True},
        )
    )
    assert out["usage"]["completion_tokens"] == 16
    assert out["choices"][0]["finish_reason"] == "length"


def test_chat_completion(server):
    out = _json(
        server.request(
            "POST",
            "/v1/chat/completions",
            {
                "model": "tiny",
                "messages": [{"role": "user", "content": "Write a function."}],
                "max_tokens": 8,
                "ignore_eos": True,
            },
        )
    )
    assert out["choices"][0]["message"]["role"] == "assistant"
    assert out["usage"]["completion_tokens"] == 8


def test_streamed_completion(server):
    req = urllib.request.Request(
        server.base_url + "/v1/completions",
        data=json.dumps(
            {"model": "tiny", "prompt": "import", "max_tokens": 12, "stream": True, "ignore_eos": True}
        ).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"},
    )
    events = []
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        for raw in resp:
            line = raw.decode().strip()
            if line.startswith("data: "):
                events.append(line[len("data: ") :])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) >= 2  # tokens arrive incrementally
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_metrics_is_public(server):
    status, body = server.request("GET", "/metrics", auth=False)
    assert status == 200
    text = body.decode()
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert name in text, name
