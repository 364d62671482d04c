"""The plan reads a stack file as the Pulumi CLI does (Go's yaml.v3, then the CLI's config encoding), not as PyYAML
(YAML 1.1) would: the scalars table is yaml.v3's resolve.go, the texts are what the program gets under `pulumi up`."""

from __future__ import annotations

import pytest
import yaml

from fleet import stack_yaml
from fleet.errors import ConfigError
from cli.plan import PlanError, SECRET_STAND_IN, stack_config
from fleet.spec import parse_spec


def text_of(value: str, key: str = "k") -> str:
    """What the program gets for `key: <value>` of a stack file."""
    config = stack_yaml.read(f"config:\n  vllm-fleet:{key}: {value}\n", "vllm-fleet")
    return config[f"vllm-fleet:{key}"].text(lambda ciphertext: f"decrypted({ciphertext})")


# Plain scalar -> what yaml.v3 decodes it into (then the program gets it as text, see SCALAR_TEXTS).
SCALARS = [
    ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("y", "y"), ("Yes", "Yes"),  # YAML 1.1 bools: text
    ("true", True), ("True", True), ("TRUE", True), ("false", False), ("tRue", "tRue"),
    ("~", None), ("null", None), ("Null", None), ("NULL", None), ("nULL", "nULL"),
    ("0x2000", 8192), ("0X1f", 31), ("-0x10", -16), ("0o17", 15), ("017", 15), ("010000", 4096),  # 1.1 octal kept
    ("0b101", 5), ("-0b101", -5), ("1_000", 1000), ("+12", 12), ("-0", 0), ("00", 0),
    ("08", 8.0), ("09.5", 9.5),  # not octal: a float
    ("9223372036854775807", 2**63 - 1), ("18446744073709551615", 2**64 - 1),  # int64, then uint64
    ("18446744073709551616", 1.8446744073709552e19),  # past uint64: a float
    (".85", 0.85), ("0.85", 0.85), ("1e3", 1000.0), ("1.", 1.0), (".5e3", 500.0), ("+.5", 0.5), ("3.0", 3.0),
    ("1e400", "1e400"),  # out of float64's range: Go's ParseFloat fails, the text stays
    ("._5", "._5"), (".x", ".x"), ("0x", "0x"), ("-", "-"), ("1:30", "1:30"), ("19:00", "19:00"),  # no sexagesimal
    ("190:20:30", "190:20:30"), ("0x1p3", "0x1p3"), ("1__0", 10), ("12e", "12e"),
    ("2024-13-01", "2024-13-01"), ("2024-02-30", "2024-02-30"),  # not a date: text
]


@pytest.mark.parametrize("text, decoded", SCALARS)
def test_plain_scalars_resolve_as_yaml_v3_does(text, decoded):
    value = stack_yaml.resolve(text)
    assert value == decoded and type(value) is type(decoded)


def test_special_floats_and_timestamps():
    assert stack_yaml.resolve(".inf") == float("inf") and stack_yaml.resolve("-.Inf") == float("-inf")
    assert stack_yaml.resolve(".NaN") != stack_yaml.resolve(".NaN")
    assert stack_yaml.resolve("2024-01-02") == stack_yaml.Timestamp("2024-01-02 00:00:00 +0000 UTC")
    assert stack_yaml.resolve("2024-1-2T10:00:00.500Z") == stack_yaml.Timestamp("2024-01-02 10:00:00.5 +0000 UTC")
    assert stack_yaml.resolve("2001-12-14t21:59:43.10-05:00") == stack_yaml.Timestamp(
        "2001-12-14 21:59:43.1 -0500 -0500")
    assert stack_yaml.resolve("2024-01-02 10:00:00") == stack_yaml.Timestamp("2024-01-02 10:00:00 +0000 UTC")


# Top-level value as written -> the text the program gets.
SCALAR_TEXTS = [
    ("yes", "yes"), ("on", "on"), ("0x2000", "8192"), ("010000", "4096"), (".85", "0.85"), ("19:00", "19:00"),
    ('"19:00"', "19:00"), ('"2024"', "2024"), ("2024", "2024"), ("'0x2000'", "0x2000"), ("true", "true"),
    ("1e3", "1000"), ("16384.0", "16384"), ("1e21", "1e+21"), ("1e-7", "1e-7"), ("0.000001", "0.000001"),
    ("-0.0", "0"), ("", ""), ("~", ""), ("null", ""), ("2024-01-02", "2024-01-02 00:00:00 +0000 UTC"),
    ("!!float 1", "1"), ("!!str 0x10", "0x10"), ("|\n    a\n    b", "a\nb\n"),
    ("{b: 1, a: .5, c: [yes, 0x10, ~, '08']}", '{"a":0.5,"b":1,"c":["yes",16,null,"08"]}'),
    ("{start: 19:00, d: 2024-01-02}", '{"d":"2024-01-02 00:00:00 +0000 UTC","start":"19:00"}'),
    ("{secure: abc}", "decrypted(abc)"), ("{a: {secure: abc}, b: <x>}", '{"a":"decrypted(abc)","b":"<x>"}'),
    ("{secure: 12}", '{"secure":12}'),  # not a secret: the ciphertext is not a string
]


@pytest.mark.parametrize("written, text", SCALAR_TEXTS)
def test_the_program_gets_each_top_level_value_as_the_cli_passes_it(written, text):
    assert text_of(written) == text


@pytest.mark.parametrize("document, words", [
    ("config:\n  vllm-fleet:spot: .nan\n", "json: unsupported value: NaN"),
    ("config:\n  vllm-fleet:replicas: {max: .inf}\n", "json: unsupported value: +Inf"),
    ("config:\n  vllm-fleet:tags: {1: a}\n", "expected only string keys, got '1'"),
    ("config:\n  vllm-fleet:model: a\n  vllm-fleet:model: b\n", 'line 3: mapping key "vllm-fleet:model" already '
                                                                 'defined at line 2'),
    ("config:\n  model: a\n  vllm-fleet:model: b\n", "given twice, as model and vllm-fleet:model"),
    ("config:\n  vllm-fleet:maxModelLen: !!int 8k\n", "line 2: cannot decode !!str `8k` as a !!int"),
    ("config:\n  a:b:c: 1\n", "could not parse a:b:c as a configuration key"),
    ("- a\n", "expected project to be an object, was a list"),
    ("config: [a]\n", "must be a stack file: a map with a `config:` map"),
    ("config:\n  k: [a\n", "invalid YAML file"),
])
def test_what_the_cli_refuses_the_plan_refuses(document, words):
    with pytest.raises(stack_yaml.StackFileError, match=None) as caught:
        stack_yaml.read(document, "vllm-fleet")
    assert words in str(caught.value)


def test_keys_merges_and_documents():
    config = stack_yaml.read("base: &b {min: 1, max: 2}\nconfig:\n  replicas: {<<: *b, max: 4}\n"
                             "  vllm-fleet:config:cloud: aws\n  other:key: 1\n---\nconfig: {x: 1}\n", "vllm-fleet")
    assert {k: v.text(str) for k, v in config.items()} == {
        "vllm-fleet:replicas": '{"max":4,"min":1}', "vllm-fleet:cloud": "aws", "other:key": "1"}
    assert stack_yaml.read("", "p") == {} and stack_yaml.read("config:\n", "p") == {}


def test_pyyaml_would_read_these_otherwise():
    """The cases of the issue: each gives PyYAML (YAML 1.1, what the plan used) another value than the CLI."""
    for written, cli in [("yes", "yes"), ("on", "on"), ("19:00", "19:00"), ("1e3", "1000"), ("08", "8"),
                         ("!!float 1", "1"), ("2024-01-02", "2024-01-02 00:00:00 +0000 UTC")]:
        assert text_of(written) == cli
        assert str(yaml.safe_load(f"k: {written}")["k"]) != cli


def stack(tmp_path, body: str):
    path = tmp_path / "Pulumi.case.yaml"
    path.write_text("config:\n  vllm-fleet:cloud: aws\n  vllm-fleet:region: us-east-1\n"
                    "  vllm-fleet:model: codellama/CodeLlama-7b-Instruct-hf\n"
                    "  vllm-fleet:allowedCidrs: [203.0.113.0/24]\n" + body)
    return path


def spec_of(path):
    config, secret_keys = stack_config(path)
    raw = {k.split(":", 1)[1]: v for k, v in config.items()}
    return parse_spec("case", raw, {k.split(":", 1)[1] for k in secret_keys})


def test_a_quoted_number_for_a_text_key_stays_text(tmp_path):
    spec = spec_of(stack(tmp_path, '  vllm-fleet:servedModelName: "2024"\n  vllm-fleet:maxModelLen: 0x2000\n'
                                   '  vllm-fleet:gpuMemoryUtilization: .85\n  vllm-fleet:spot: true\n'))
    assert (spec.served_model_name, spec.max_model_len, spec.gpu_memory_utilization, spec.spot) == \
        ("2024", 8192, 0.85, True)


def test_yes_is_not_a_bool_for_pulumi(tmp_path):
    with pytest.raises(ConfigError) as caught:
        spec_of(stack(tmp_path, "  vllm-fleet:spot: yes\n"))
    assert str(caught.value) == "config vllm-fleet:spot = 'yes': must be true or false"


def test_a_file_the_cli_refuses_is_a_plan_error_naming_the_file(tmp_path):
    path = stack(tmp_path, "  vllm-fleet:maxModelLen: .nan\n")
    with pytest.raises(PlanError, match=r"Pulumi.case.yaml: json: unsupported value: NaN"):
        stack_config(path)


def test_secrets_get_stand_ins_and_are_secret_keys(tmp_path):
    config, secret_keys = stack_config(stack(tmp_path, "  vllm-fleet:apiKeys:\n    alice: {secure: v1:abc}\n"))
    assert secret_keys == ["vllm-fleet:apiKeys"]
    assert config["vllm-fleet:apiKeys"].startswith('{"alice":"' + SECRET_STAND_IN)


@pytest.mark.parametrize("body, key", [
    ("  vllm-fleet:apiKeys:\n    alice: {secure: v1:abc}\n    bob: plain-text-key-0123456789\n", "apiKeys.bob"),
    ("  vllm-fleet:apiKeys:\n    alice: {secure: v1:abc}\n    bob: {nested: {secure: v1:x}, k: 1}\n", "apiKeys.bob.k"),
    ("  vllm-fleet:hfToken: [{secure: v1:abc}, hf_plain]\n", "hfToken[1]"),
])
def test_every_leaf_of_a_secret_key_must_be_secure(tmp_path, body, key):
    """Issue 18 point 6: Pulumi marks the whole key secret when one leaf is, so only the stack file tells."""
    with pytest.raises(ConfigError) as caught:
        stack_config(stack(tmp_path, body))
    assert str(caught.value).startswith(f"config vllm-fleet:{key} = '<plain text>': is a secret and must be stored "
                                        f"encrypted")
    assert "plain-text-key" not in str(caught.value) and "hf_plain" not in str(caught.value)
