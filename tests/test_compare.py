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


def test_regions_without_recorded_prices_are_left_out_unless_asked_for():
    rows, _ = compare.compare(CODELLAMA_70B, clouds=["azure"])
    assert rows and all(r["priceRegion"] == r["region"] for r in rows)
    assert "westeurope" not in {r["region"] for r in rows}
    everywhere, _ = compare.compare(CODELLAMA_70B, clouds=["azure"], include_unpriced=True)
    europe = [r for r in everywhere if r["region"] == "westeurope"]
    assert europe and all(r["priceRegion"] == "eastus" for r in europe)
