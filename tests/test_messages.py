"""Messages that say the truth (issue 20 §5): each asserts the property of the message that was wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from fleet import program
from fleet.errors import ConfigError
from fleet.schedule import parse_office_hours
from test_spec import error_of, parse


@pytest.mark.parametrize("written", ["{}", "", "null"])
def test_an_empty_api_keys_map_is_called_empty_not_plain_text(written):
    with pytest.raises(ConfigError) as caught:
        from fleet.spec import parse_spec
        from test_spec import BASE

        parse_spec("case", {**BASE, "apiKeys": written}, set())
    message = str(caught.value)
    assert caught.value.key == "apiKeys" and "is empty" in message and "plain" not in message


@pytest.mark.parametrize("start, hint", [("8:00", "write 08:00"), (800, "write 08:00"), ("0800", "write 08:00"),
                                         ("25:00", "e.g. 08:00")])
def test_a_time_hint_differs_from_what_the_file_says(start, hint):
    with pytest.raises(ConfigError) as caught:
        parse_office_hours({"timezone": "UTC", "days": "Mon-Fri", "start": start, "end": "19:00"}, 1)
    message = str(caught.value)
    assert message.endswith(hint) and f"write {start}" not in message and "quoted" not in message


def test_spot_only_types_that_would_fit_say_spot_true():
    """a3-highgpu-1g/2g/4g (H100) are sold only as spot VMs; a model with 12 heads cannot use 8 GPUs."""
    params = {"params_b": 30, "layers": 48, "heads": 12, "kv_heads": 12, "head_dim": 128, "max_len": 8192}
    spec = parse(cloud="gcp", region="us-central1", gcp={"project": "my-project-123"}, modelParams=params,
                 model="acme/coder-30b", accelerator="H100")
    from fleet.sizing import size

    with pytest.raises(ConfigError) as caught:
        size(spec)
    message = str(caught.value)
    assert "a3-highgpu-1g" in message and "only as spot VMs: set spot: true, or choose another region" in message
    size(parse(cloud="gcp", region="us-central1", gcp={"project": "my-project-123"}, modelParams=params,
               model="acme/coder-30b", accelerator="H100", spot=True))  # and with spot it is sized


@pytest.mark.parametrize("revision, warned", [(None, True), ("main", True), ("v1.0", True),
                                               ("0bd2d8f1c0e04ec7a2e5b5a9c1e8f0d2b3a4c5d6", False)])
def test_a_branch_revision_warns_as_if_unset(revision, warned):
    spec = parse(**({"modelRevision": revision} if revision else {}))
    warnings = [w for w in program._warnings(spec) if "modelRevision" in w]
    assert bool(warnings) == warned
    if revision and warned:
        assert f"modelRevision {revision} is a branch or tag, not a commit" in warnings[0]
        assert f"whatever {spec.model}'s {revision} holds" in warnings[0]


def test_an_unknown_model_with_the_hub_unreachable_fails_in_one_line_fast(tmp_path):
    path = tmp_path / "Pulumi.case.yaml"
    path.write_text(json.dumps({"config": {"vllm-fleet:cloud": "aws", "vllm-fleet:region": "us-east-1",
                                           "vllm-fleet:model": "acme/unknown-coder",
                                           "vllm-fleet:allowedCidrs": ["203.0.113.0/24"]}}))
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens on the discard port: the connection is refused
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "cli.plan", str(path)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[1] == "Nothing was planned or created.", result.stderr
    assert "cannot reach http://127.0.0.1:9" in lines[0] and "vllm-fleet:modelParams" in lines[0]
    assert elapsed < 10, f"{elapsed:.1f} s"


def test_an_empty_api_key_is_not_a_plain_text_secret():
    error = error_of(apiKey="")
    assert error.key == "apiKey" and "is empty" in str(error)


def test_a_utc_offset_is_named_as_its_etc_zone_not_a_zone_hours_off():
    from fleet.errors import ConfigError
    from fleet.schedule import canonical_zone

    with pytest.raises(ConfigError) as caught:
        canonical_zone("officeHours.timezone", "GMT+2")
    message = str(caught.value)
    assert "Etc/GMT-2" in message and "GMT+0" not in message
    with pytest.raises(ConfigError) as caught:
        canonical_zone("officeHours.timezone", "UTC-5")
    assert "Etc/GMT+5" in str(caught.value)
