"""The drain for real on the CPU server (docs/drain.md): codellama-prod's VM, its launcher and arguments (among them
--shutdown-timeout, the stack's drain), gets SIGTERM in its main process, as `systemctl stop vllm` sends it
(KillMode=mixed), while a streamed generation is in flight: the stream completes, a request sent after the signal
is refused rather than started, and the server then exits by itself within the unit's TimeoutStopSec. (With
systemd's default KillMode=control-group every process gets the signal, vLLM's workers exit at once and the stream
hangs: seen here with vLLM 0.32.) One server of its own (the signal ends it): ~1-2 min on 2 busy cores."""

from __future__ import annotations

import os
import re
import signal
import time

import openai
import pytest

from conftest import write_files
from fleet import lifecycle
from stack_on_cpu import serve_stack_on_cpu

STACK = "codellama-prod"
TOKENS = 48
pytestmark = pytest.mark.timeout(400)


def test_sigterm_during_a_streamed_generation_lets_the_stream_complete(plan_of, tmp_path):
    plan = plan_of(STACK)
    unit = write_files(plan.user_data)["/etc/systemd/system/vllm.service"]["content"]
    stop_timeout = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M)[1])
    drain = plan.outputs["timeToServe"]["drainSeconds"]
    with serve_stack_on_cpu(plan, tmp_path) as stack:
        argv = stack.argv
        assert argv[argv.index("--shutdown-timeout") + 1] == str(drain)
        assert stop_timeout == drain + lifecycle.STOP_MARGIN_SECONDS
        client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=stack.api_key, timeout=120, max_retries=0)
        stream = client.completions.create(
            model=stack.served_model_name, prompt="def fibonacci(n):", max_tokens=TOKENS, stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
        chunks = iter(stream)
        received = [next(chunks)]  # the generation is under way
        assert "KillMode=mixed" in unit.splitlines()
        os.kill(stack.server.proc.pid, signal.SIGTERM)  # the launcher exec'd vllm: the unit's main process
        signalled = time.monotonic()
        after_signal = 0
        for chunk in chunks:
            received.append(chunk)
            after_signal += bool(chunk.choices and chunk.choices[0].text)
        finished = [chunk.choices[0].finish_reason for chunk in received if chunk.choices]
        assert finished[-1] == "length" and received[-1].usage.completion_tokens == TOKENS
        assert after_signal > 0  # tokens kept coming after the signal: the drain, not a generation already done
        # What arrives during the drain is not started: the load balancer has stopped sending by then (the drain
        # watcher or the cloud's deregistration), and vLLM refuses what still comes.
        try:
            late = client.completions.create(model=stack.served_model_name, prompt="x", max_tokens=4)
            assert late.choices[0].finish_reason == "abort" or not late.choices[0].text
        except (openai.APIError, openai.APIConnectionError):
            pass
        stack.server.proc.wait(timeout=stop_timeout)
        exited = time.monotonic() - signalled
    assert exited < stop_timeout
    log = stack.server.log_path.read_text(errors="replace")
    assert "mode=drain" in log, log[-3000:]
