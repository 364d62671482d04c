"""Capacity, not just fit: how many requests a VM holds, the capacity key that sizes the fleet for a team's load,
and the warning when a VM holds only a handful. The numbers are docs/capacity.md's worked examples."""

from __future__ import annotations

import json

import pytest

from conftest import run_plan
from fleet.errors import ConfigError
from fleet.sizing import GIB, capacity_warning, size
from fleet.spec import parse_spec

QWEN_32B = "Qwen/Qwen2.5-Coder-32B-Instruct"


def spec(model: str = QWEN_32B, cloud: str = "aws", region: str = "us-east-1", **config):
    raw = {"cloud": cloud, "region": region, "model": model, "allowedCidrs": '["10.0.0.0/8"]',
           **{k: (v if isinstance(v, str) else json.dumps(v)) for k, v in config.items()}}
    return parse_spec("t", raw, set())


def team(requests: int, tokens: int = 8192, **config):
    return spec(maxModelLen=16384, capacity={"concurrentRequests": requests, "tokensPerRequest": tokens}, **config)


def test_worked_example_40_requests_fit_one_4x_l40s():
    sized = size(team(40))
    # weights: 32.8e9 x 2 bytes = 61.10 GiB; a token: 2 x 64 layers x 8 KV heads x 128 x 2 bytes = 256 KiB,
    # so an 8192-token request is 2.00 GiB
    assert sized.memory.weights_gib == pytest.approx(61.10, abs=0.01)
    assert sized.memory.kv_gib_per_token * GIB == 2 * 64 * 8 * 128 * 2
    assert sized.memory.request_gib(8192) == pytest.approx(2.0)
    # g6e.12xlarge: 4 x 44.5 GiB x 0.9 - 4 x 1.5 - 61.10 = 93.10 GiB -> 46 requests of 2 GiB
    assert sized.instance.name == "g6e.12xlarge" and sized.kv_cache_gib == pytest.approx(93.10, abs=0.01)
    assert sized.requests_per_replica == 46
    assert (sized.replicas.min, sized.replicas.desired, sized.replicas.max) == (1, 1, 1)


def test_worked_example_100_requests_one_8x_a100_beats_three_4x_l40s():
    sized = size(team(100))
    # g6e.12xlarge would need ceil(100 / 46) = 3 VMs: 3 x $10.49 = $31.48/h; p4d.24xlarge holds
    # 8 x 39.4 x 0.9 - 8 x 1.5 - 61.10 = 210.58 GiB -> 105 requests on one VM for $21.96/h
    assert sized.instance.name == "p4d.24xlarge" and sized.requests_per_replica == 105
    assert sized.replicas.desired == 1 and sized.instance.usd_per_hour == pytest.approx(21.957642)


def test_a_fixed_desired_count_sizes_the_instance_type_for_it():
    sized = size(team(80, replicas={"min": 2, "desired": 2, "max": 6}))
    # two VMs must hold 80: two g6e.12xlarge (2 x 46 = 92) for $20.99/h beat two p4d.24xlarge
    assert sized.instance.name == "g6e.12xlarge"
    assert (sized.replicas.min, sized.replicas.desired, sized.replicas.max) == (2, 2, 6)


def test_replicas_follow_the_load_up_to_a_set_max():
    sized = size(team(300, replicas={"min": 1, "max": 4}))
    # p4de.24xlarge (8x A100 80GB) holds 248 requests, capped by nothing; 2 of them hold 300 for $54.89/h,
    # cheaper than 3 p4d (315 for $65.87/h) or 7 g6e.12xlarge
    assert sized.replicas.desired * sized.requests_per_replica >= 300
    assert sized.replicas.max == 4 and sized.replicas.min == 1
    with pytest.raises(ConfigError) as caught:
        size(team(2000, replicas={"max": 2}))
    assert caught.value.key == "capacity" and "needs more than replicas.max (2)" in str(caught.value)


def test_the_capacity_key_is_checked():
    for bad, key, words in [
        ({"concurrentRequests": 10}, "capacity", "must be a map {concurrentRequests, tokensPerRequest}"),
        ({"concurrentRequests": 0, "tokensPerRequest": 4096}, "capacity.concurrentRequests", "from 1 to"),
        ({"concurrentRequests": 10, "tokensPerRequest": 32768}, "capacity.tokensPerRequest",
         "must not exceed maxModelLen (16384)"),
        ("lots", "capacity", "must be a map"),
    ]:
        with pytest.raises(ConfigError) as caught:
            spec(maxModelLen=16384, capacity=bad)
        assert caught.value.key == key and words in str(caught.value), (bad, str(caught.value))


def test_a_vm_serves_no_more_than_vllms_max_num_seqs():
    small = size(spec("bigcode/starcoder2-3b", maxModelLen=4096,
                      capacity={"concurrentRequests": 10, "tokensPerRequest": 1024}))
    # starcoder2-3b: 30 layers x 2 KV heads -> 30 KiB a token; its L4's KV cache holds 431 requests of 1024 tokens,
    # but vLLM schedules at most 256 sequences on a GPU under 70 GiB
    assert small.max_num_seqs == 256 and small.requests_per_replica == 256
    capped = size(spec("bigcode/starcoder2-3b", maxModelLen=4096, vllmArgs=["--max-num-seqs=64"],
                       capacity={"concurrentRequests": 10, "tokensPerRequest": 1024}))
    assert capped.requests_per_replica == 64


def test_without_the_key_the_plan_warns_when_a_vm_holds_only_a_handful():
    thirteen = spec("codellama/CodeLlama-13b-Instruct-hf")
    sized = size(thirteen)
    # CodeLlama-13B: 40 layers x 40 KV heads x 128 x 2 x 2 bytes = 800 KiB a token, 12.5 GiB for 16384 tokens;
    # g6e.xlarge has 44.5 x 0.9 - 1.5 - 24.2 = 14.3 GiB of KV cache: one request
    assert sized.instance.name == "g6e.xlarge" and sized.full_context_requests == 1
    warning = capacity_warning(thirteen, sized)
    assert warning and "holds 1 request of 16384 tokens" in warning and "capacity:" in warning
    seventy = spec("codellama/CodeLlama-70b-Instruct-hf")
    assert capacity_warning(seventy, size(seventy)) is None  # 20 requests of 4096 on g6e.12xlarge
    assert capacity_warning(team(40), size(team(40))) is None  # sized for a load: no warning


def test_the_plan_runs_the_replicas_the_load_needs_and_reports_capacity(stack_file):
    path = stack_file({"cloud": "aws", "region": "us-east-1", "model": QWEN_32B, "maxModelLen": 16384,
                       "allowedCidrs": ["10.0.0.0/8"], "replicas": {"min": 1, "max": 6},
                       "capacity": {"concurrentRequests": 400, "tokensPerRequest": 8192}})
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    outputs = plan["outputs"]
    held = outputs["capacity"]
    assert held["concurrentRequests"] == 400 and held["tokensPerRequest"] == 8192
    replicas = outputs["replicas"]
    # two p4de.24xlarge (8x A100 80GB, 248 requests each) are the cheapest fleet for 400 requests
    assert outputs["instanceType"] == "p4de.24xlarge" and replicas == {"min": 1, "desired": 2, "max": 6}
    assert held["requestsAtDesired"] == held["requestsPerReplica"] * replicas["desired"] >= 400
    assert held["requestsAtMax"] == held["requestsPerReplica"] * 6 and replicas["max"] == 6
    [group] = [s["newState"]["inputs"] for s in plan["steps"] if s["type"] == "aws:autoscaling/group:Group"]
    assert group["desiredCapacity"] == replicas["desired"] and group["maxSize"] == 6
    assert outputs["estimatedCost"]["usdPerHour"] == pytest.approx(
        outputs["estimatedCost"]["usdPerHourPerReplica"] * replicas["desired"], abs=0.01)
    assert not any("a team will queue" in d["message"] for d in plan["diagnostics"])


def test_the_dev_stack_is_warned_and_its_capacity_shown(plan_of):
    plan = plan_of("codellama-dev")
    assert any("one g6.xlarge holds 1 request of 8192 tokens" in w for w in plan.warnings)
    held = plan.outputs["capacity"]
    assert held["fullContextRequestsPerReplica"] == held["requestsPerReplica"] == 1
    assert held["limitedBy"] == "kv_cache"
