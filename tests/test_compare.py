"""make compare: every way to serve a model across clouds, regions and precisions, cheapest first, sized by the
same code as the plan."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from cli import compare
from fleet.sizing import size
from fleet.spec import model_entries, parse_spec

CODELLAMA_70B = "codellama/CodeLlama-70b-Instruct-hf"
# The seed table's anchors ($/hour, 16-bit weights): what each cloud's best row must beat or match.
ANCHORS = {"aws": ("g5.48xlarge", 16.29), "gcp": ("g2-standard-96", 7.98), "azure": ("Standard_NC48ads_A100_v4", 7.35)}


@pytest.fixture(scope="module")
def codellama_rows():
    rows, _notes = compare.compare(CODELLAMA_70B)
    return rows


def test_rows_are_cheapest_first_and_carry_every_column(codellama_rows):
    assert [r["usdPerHour"] for r in codellama_rows] == sorted(r["usdPerHour"] for r in codellama_rows)
    for key in ("cloud", "region", "instanceType", "gpu", "gpuCount", "gpuMemoryGib", "tensorParallelSize",
                "quantization", "checkpoint", "usdPerHour", "usdPerMonth", "spotUsdPerHour",
                "fullContextRequestsPerReplica", "requestsPerReplica", "replicas", "quota", "pricesAsOf"):
        assert key in codellama_rows[0], key
    assert {r["cloud"] for r in codellama_rows} == {"aws", "gcp", "azure"}
    assert {r["quantization"] for r in codellama_rows} == {"bf16/fp16", "fp8", "awq"}


def test_codellama_70b_beats_or_matches_the_seed_table_on_every_cloud(codellama_rows):
    for cloud, (seed_type, seed_price) in ANCHORS.items():
        own = [r for r in codellama_rows if r["cloud"] == cloud and r["quantization"] == "bf16/fp16"]
        assert own[0]["usdPerHour"] <= seed_price, (cloud, own[0])
        seed_rows = [r for r in own if r["instanceType"] == seed_type]
        assert seed_rows and min(r["usdPerHour"] for r in seed_rows) == pytest.approx(seed_price, abs=0.01), cloud
    # GCP's 7.98 is g2-standard-96 in us-east4; AWS's best 16-bit fit is 4x L40S at 10.49
    assert [(r["instanceType"], r["region"]) for r in codellama_rows
            if r["cloud"] == "gcp" and r["quantization"] == "bf16/fp16"][0] == ("g2-standard-96", "us-east4")


def test_a_quantized_codellama_70b_costs_a_quarter_of_aws_or_less(codellama_rows):
    aws_16bit = ANCHORS["aws"][1]
    quantized = [r for r in codellama_rows if r["quantization"] in ("awq", "gptq", "fp8")]
    best = quantized[0]
    assert best["usdPerHour"] <= aws_16bit / 4
    assert best["checkpoint"] == "TheBloke/CodeLlama-70B-Instruct-AWQ" and best["instanceType"] == "g6e.xlarge"
    assert best["fullContextRequestsPerReplica"] >= 1


def test_a_row_is_what_the_plan_would_pick(codellama_rows):
    for row in codellama_rows[:40]:
        raw = {"cloud": row["cloud"], "region": row["region"], "model": row["checkpoint"],
               "allowedCidrs": '["10.0.0.0/8"]'}
        if row["quantization"] == "fp8" and row["checkpoint"] == CODELLAMA_70B:
            raw["quantization"] = "fp8"
        raw["accelerator"] = f"{row['gpu']}:{row['gpuCount']}"
        sized = size(parse_spec("t", raw, set()))
        assert (sized.instance.name, round(sized.instance.usd_per_hour, 2), sized.full_context_requests) == (
            row["instanceType"], round(row["usdPerHour"], 2), row["fullContextRequestsPerReplica"]), row


def test_a_load_is_served_by_a_fleet():
    rows, _ = compare.compare("Qwen/Qwen2.5-Coder-32B-Instruct", clouds=["aws"], max_model_len=16384,
                              capacity=(100, 8192))
    best = [r for r in rows if r["quantization"] == "bf16/fp16" and r["region"] == "us-east-1"][0]
    # docs/capacity.md: one p4d.24xlarge (105 requests) beats three g6e.12xlarge (46 each)
    assert (best["instanceType"], best["replicas"], best["requestsPerReplica"]) == ("p4d.24xlarge", 1, 105)
    assert all(r["requests"] >= 100 for r in rows)
    l40s = [r for r in rows if r["instanceType"] == "g6e.12xlarge" and r["region"] == "us-east-1"
            and r["quantization"] == "bf16/fp16"][0]
    assert l40s["replicas"] == 3 and l40s["usdPerHour"] == pytest.approx(3 * 10.49264, abs=0.01)
    assert l40s["quota"][0] == {"name": "Running On-Demand G and VT instances", "code": "L-DB2E81BA",
                                "unit": "vcpus", "scope": "us-east-1", "amount": 3 * 48}


def test_every_catalog_model_is_served_on_every_cloud():
    for model in model_entries():
        rows, notes = compare.compare(model)
        assert {r["cloud"] for r in rows} == {"aws", "gcp", "azure"}, (model, notes)


def test_a_model_that_fits_nowhere_in_16_bit_says_why_and_offers_fp8():
    rows, notes = compare.compare("Qwen/Qwen3-Coder-480B-A35B-Instruct", clouds=["aws"], max_model_len=32768)
    assert rows and {r["quantization"] for r in rows} == {"fp8"}
    assert any(row["checkpoint"] == "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8"
               and row["vllmArgs"] == ["--enable-expert-parallel"] for row in rows)
    assert any(note.startswith("aws bf16/fp16 (Qwen/Qwen3-Coder-480B-A35B-Instruct): cannot hold") for note in notes)


def test_make_compare_prints_json_rows_and_a_table():
    result = subprocess.run([sys.executable, "-m", "cli.compare", CODELLAMA_70B, "--format", "json",
                             "--clouds", "azure"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert isinstance(rows, list) and {r["cloud"] for r in rows} == {"azure"}
    assert rows[0]["usdPerHour"] == 3.67 and rows[0]["instanceType"] == "Standard_NC24ads_A100_v4"
    text = subprocess.run(["make", "--no-print-directory", "compare", f"MODEL={CODELLAMA_70B}", "LIMIT=5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    assert "Cheapest per cloud:" in text.stdout and "own weights $10.49/h g6e.12xlarge in us-east-1" in text.stdout
    bad = subprocess.run([sys.executable, "-m", "cli.compare", CODELLAMA_70B, "--clouds", "ibm"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "must be of aws, azure, gcp" in bad.stderr


def test_regions_without_recorded_prices_are_shown_marked_unless_left_out():
    rows, _ = compare.compare(CODELLAMA_70B, clouds=["azure"])
    europe = [r for r in rows if r["region"] == "westeurope"]
    assert europe and all(not r["priced"] and r["priceRegion"] == "eastus" for r in europe)
    assert all(r["priced"] == (r["priceRegion"] == r["region"]) for r in rows)
    text = compare.render_text(CODELLAMA_70B, europe, [], limit=5, capacity=None)
    assert "westeurope*" in text and "* no price recorded for the region" in text
    priced, _ = compare.compare(CODELLAMA_70B, clouds=["azure"], priced_only=True)
    assert priced and all(r["priced"] for r in priced) and "westeurope" not in {r["region"] for r in priced}


QWEN_30B = "Qwen/Qwen3-Coder-30B-A3B-Instruct"
QWEN_30B_FP8 = "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8"
TEAM = (30, 16384)  # the job: 30 developers


def test_on_a_price_tie_more_smaller_vms_win_in_compare_and_in_the_plan():
    """GCP europe-west4: 2x g2-standard-48 cost what 1x g2-standard-96 does; a failed VM then takes half the
    capacity, not all of it."""
    rows, _ = compare.compare(QWEN_30B, clouds=["gcp"], capacity=TEAM)
    here = [r for r in rows if r["region"] == "europe-west4"]
    assert [(r["instanceType"], r["replicas"], r["usdPerHour"]) for r in here[:2]] == [
        ("g2-standard-48", 2, 8.41), ("g2-standard-96", 1, 8.41)]
    raw = {"cloud": "gcp", "region": "europe-west4", "model": QWEN_30B_FP8, "allowedCidrs": '["10.0.0.0/8"]',
           "capacity": json.dumps({"concurrentRequests": TEAM[0], "tokensPerRequest": TEAM[1]}),
           "vllmArgs": '["--enable-expert-parallel"]'}
    sized = size(parse_spec("t", raw, set()))
    assert (sized.instance.name, sized.replicas.desired) == ("g2-standard-48", 2)


def test_load_time_fp8_and_the_fp8_checkpoint_share_a_row_that_says_which_to_prefer():
    rows, _ = compare.compare(QWEN_30B, clouds=["gcp"], capacity=TEAM)
    fp8 = [r for r in rows if r["quantization"] == "fp8"]
    assert fp8 and all(r["checkpoint"] == QWEN_30B_FP8 for r in fp8[:10])
    assert fp8[0]["alsoServedBy"] == {"model": QWEN_30B, "quantization": "fp8"}
    assert "downloads half the bytes" in fp8[0]["notes"] and "calibrated by its publisher" in fp8[0]["notes"]
    served = [(r["region"], r["instanceType"], r["replicas"]) for r in fp8]
    assert len(served) == len(set(served)), "one row a serving"
    text = compare.render_text(QWEN_30B, rows, [], limit=3, capacity=TEAM)
    assert f"fp8 ({QWEN_30B_FP8}) = fp8 at load" in text and "--enable-expert-parallel" in text


def test_the_plan_warns_when_a_flag_it_lacks_gives_a_cheaper_fit():
    from fleet.sizing import cheaper_with_flags

    raw = {"cloud": "gcp", "region": "europe-west4", "model": QWEN_30B_FP8, "allowedCidrs": '["10.0.0.0/8"]',
           "capacity": json.dumps({"concurrentRequests": TEAM[0], "tokensPerRequest": TEAM[1]})}
    spec = parse_spec("t", raw, set())
    sized = size(spec)
    assert sized.instance.gpu == "A100-80GB"  # without the flag no L4 machine splits the fp8 experts' blocks
    (warning,) = cheaper_with_flags(spec, sized)
    assert warning.startswith("with --enable-expert-parallel in vllmArgs, Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8 "
                              "fits 2x g2-standard-48 (4x L4 each) at $8.41/hour in europe-west4")
    assert "add --enable-expert-parallel to vllmArgs" in warning
    with_flag = parse_spec("t", {**raw, "vllmArgs": '["--enable-expert-parallel"]'}, set())
    assert cheaper_with_flags(with_flag, size(with_flag)) == []


# The walk of issue 21: compare -> the first row's stack file -> the real plan, on every cloud.
WALK = {CODELLAMA_70B: None, QWEN_30B: TEAM, "bigcode/starcoder2-15b": None}


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_the_first_row_as_a_stack_file_plans_its_instance_type_and_price_in_its_region(cloud, tmp_path):
    from cli.plan import stack_config

    for model, capacity in WALK.items():
        rows, _ = compare.compare(model, clouds=[cloud], capacity=capacity)
        row = rows[0]
        path = tmp_path / f"Pulumi.walk-{cloud}-{len(model)}.yaml"
        path.write_text(compare.snippet(row, 1))
        result = subprocess.run([sys.executable, "-m", "cli.plan", str(path), "--format", "json"], cwd=ROOT,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (model, result.stderr)
        outputs = json.loads(result.stdout)["outputs"]
        cost = outputs["estimatedCost"]
        assert (outputs["instanceType"], outputs["replicas"]["desired"], cost["usdPerHour"], cost["priceRegion"]) == (
            row["instanceType"], row["replicas"], row["usdPerHour"], row["region"]), model
        # Without the accelerator the row pins, the plan's own choice in that region is the same row.
        config, _ = stack_config(path)
        raw = {key.split(":", 1)[1]: value for key, value in config.items() if key != "vllm-fleet:accelerator"}
        sized = size(parse_spec("walk", raw, set()))
        assert (sized.instance.name, sized.replicas.desired) == (row["instanceType"], row["replicas"]), model


def test_make_compare_snippet_prints_a_rows_stack_file():
    result = subprocess.run(["make", "--no-print-directory", "compare", f"MODEL={QWEN_30B}", "CLOUDS=gcp",
                             "CONCURRENCY=30", "TOKENS=16384", "SNIPPET=1"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# make compare row 1: 2x g2-standard-48 (4x L4 each) in us-east4, $7.98/hour")
    for line in ("  vllm-fleet:model: Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8", "  vllm-fleet:accelerator: L4:4",
                 "    - --enable-expert-parallel", "    concurrentRequests: 30", "    project: my-project-123"):
        assert line in result.stdout.splitlines(), line
    bad = subprocess.run([sys.executable, "-m", "cli.compare", QWEN_30B, "--clouds", "gcp", "--snippet", "999"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--snippet 999: the table has rows 1 to" in bad.stderr
