"""vllmArgs judged by the rules of `vllm serve` of the release the VMs install.

catalog/vllm-serve-flags.json is that release's own argument parser, extracted by serving-test/serve_flags.py:
each option's destination (what vLLM stores), every flag that sets it (aliases such as -tp, the --no- form of a
switch), its type, nargs, choices, bounds and registry. The stack's arguments are read as vLLM's parser reads them
(FlexibleArgumentParser: `_` in a flag name is `-`, a unique start of a long flag is that flag) and refused, with
one line naming the flag, where vLLM would refuse them or the deployment would not serve:

- a destination given twice (vLLM keeps the last value; sizing must read the one vLLM uses);
- a destination vllm-fleet sets from another key, under any of its flags (-tp is --tensor-parallel-size);
- a value outside the option's type, choices, bounds or registry;
- flags that leave nothing answering on the port, or need more than one VM's GPUs or packages the VMs lack;
- the combinations vLLM's startup checks refuse (vllm/entrypoints/launchers/cli_args.py
  validate_parsed_serve_args, vllm/config/scheduler.py verify_max_model_len, vllm/config/parallel.py).

tests/serving/test_vllm_judges_vllm_args.py runs the same arguments through vLLM itself and checks both agree.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from . import catalog
from .errors import ConfigError
from .values import did_you_mean

FLAGS_FILE = catalog.CATALOG_FILE.parent / "vllm-serve-flags.json"
KEY = "vllmArgs"
EXAMPLE = "e.g. [--enable-prefix-caching, --max-num-seqs=64]"

# Destinations vllm-fleet sets itself from other keys (the key to set instead; None: the project's own): letting
# vllmArgs set them would fight the sizing or open the server (host/port/api-key).
MANAGED = {
    "model": "model", "host": None, "port": None, "api_key": "apiKeys", "config": None,
    "served_model_name": "servedModelName", "tensor_parallel_size": "accelerator", "pipeline_parallel_size": None,
    "max_model_len": "maxModelLen", "quantization": "quantization", "dtype": "dtype",
    "gpu_memory_utilization": "gpuMemoryUtilization", "download_dir": None, "revision": "modelRevision",
    "tokenizer_revision": "modelRevision",
}
# Options that, whatever their value, leave the load balancer nothing to reach on the port.
UNREACHABLE = {
    "uds": "makes vLLM listen on a Unix socket instead of the port the load balancer reaches",
    "headless": "starts no API server (engines for another node's data parallel), so nothing answers on the port",
    "grpc": "serves gRPC instead of the HTTP API the load balancer and its health check speak",
    "grpc_port": "needs vLLM's Rust frontend (VLLM_USE_RUST_FRONTEND), which the VMs do not run",
}
# Data parallel across nodes: each VM serves on its own behind the load balancer.
MULTI_NODE = ("data_parallel_address", "data_parallel_rpc_port", "data_parallel_rank", "data_parallel_start_rank",
              "data_parallel_size_local", "data_parallel_external_lb", "data_parallel_hybrid_lb",
              "data_parallel_multi_port_external_lb", "nnodes", "node_rank")
# Executors whose packages or launcher the VMs do not have (cloud-init/vllm-requirements.txt holds no ray); vLLM
# picks mp (several GPUs) or uni (one) itself.
EXECUTORS = {"ray": "the VMs do not install ray (cloud-init/vllm-requirements.txt)",
             "external_launcher": "it expects torchrun to start one vLLM per GPU, and the VMs start vllm serve"}

# A flag: --long-name (vLLM also reads --long_name); a single-dash alias: -tp.
_FLAG = re.compile(r"^--?[A-Za-z0-9][A-Za-z0-9_-]*$")
# One argv token: no whitespace, quotes, shell or YAML metacharacters, so it is inert wherever it is rendered.
_TOKEN = re.compile(r"^[A-Za-z0-9._:/=,+@%-]+$")
# A --flag=<JSON> argument: printable ASCII, no newline (the launcher quotes it for the shell).
_JSON_TOKEN = re.compile(r"^--[a-z0-9-]+=[ -~]+$")
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")  # argparse reads these as values, not flags
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([kKmMgGtT])$")  # vLLM's human_readable_int: 25.6k, 2K
_CHARACTERS = ("each argument may hold only letters, digits and . _ : / = , + @ % - (no spaces, quotes, newlines "
               "or shell/YAML characters)")


@functools.cache
def metadata() -> dict[str, Any]:
    """The pinned vLLM's `vllm serve` options, by destination, and its registries (catalog/vllm-serve-flags.json)."""
    return json.loads(FLAGS_FILE.read_text())


@functools.cache
def _flags() -> dict[str, str]:
    """Every option string -> its destination."""
    return {flag: dest for dest, option in metadata()["options"].items() for flag in option["flags"]}


def _error(value: Any, message: str) -> ConfigError:
    return ConfigError(KEY, value, message)


def _destination(flag: str, written: str) -> tuple[str, str]:
    """(destination, the long flag to write) of a flag as vLLM's parser resolves it."""
    flags = _flags()
    name = "--" + flag[2:].replace("_", "-") if flag.startswith("--") else flag
    if name not in flags and name.startswith("--") and metadata()["abbreviations"]:
        starts = sorted(f for f in flags if f.startswith(name))
        if len(starts) > 1:
            raise _error(written, f"{flag} is the start of {', '.join(starts[:4])}{'...' if len(starts) > 4 else ''}: "
                                  f"vLLM refuses an ambiguous flag; write it in full")
        name = starts[0] if starts else name
    if name not in flags:
        raise _error(written, f"is not a flag of `vllm serve` in vLLM {metadata()['vllm']}"
                              f"{did_you_mean(name, [f for f in flags if f.startswith('--')])}")
    dest = flags[name]
    long = name if name.startswith("--") else next(f for f in metadata()["options"][dest]["flags"] if f.startswith("--"))
    return dest, long


def _number(option: dict[str, Any], value: str) -> float | None:
    """The value as vLLM converts it (None: not a number of the option's type)."""
    kind = option["type"]
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind in ("size", "size_or_auto"):
            if kind == "size_or_auto" and value.lower() in ("-1", "auto"):
                return -1
            match = _SIZE.match(value)
            if not match:
                return int(value)
            number, suffix = match.groups()
            if suffix.islower():
                return int(float(number) * 1000 ** " kmgt".index(suffix))
            return int(number) * 1024 ** " KMGT".index(suffix)
    except ValueError:
        return None
    return None


def _check_value(flag: str, dest: str, value: str) -> None:
    """Raises where vLLM's parser or its config class would refuse `value` for `flag`."""
    option = metadata()["options"][dest]
    kind = option["kind"]
    problem = None
    if kind == "path":
        problem = ("names a file on the VM, and a VM has only what its image, vLLM and the model bring: give the "
                   "model a chat template (tokenizer_config.json) or serve a checkpoint that has one")
    elif option["type"] in ("int", "float", "size", "size_or_auto"):
        number = _number(option, value)
        if number is None:
            problem = {"int": "takes a whole number", "float": "takes a number"}.get(
                option["type"], "takes a whole number, or one like 8k (x1000) or 8K (x1024)")
        else:
            bounds = [(option.get("min"), lambda lo: number >= lo, "at least"),
                      (option.get("max"), lambda hi: number <= hi, "at most"),
                      (option.get("above"), lambda lo: number > lo, "more than"),
                      (option.get("below"), lambda hi: number < hi, "less than")]
            for bound, holds, words in bounds:
                if bound is not None and not holds(bound):
                    problem = f"must be {words} {bound}"
                    break
    elif kind == "choice" and value not in option["choices"]:
        problem = f"takes one of {', '.join(option['choices'])}{did_you_mean(value, option['choices'])}"
    elif option["type"] == "json" and kind == "json":
        try:
            json.loads(value)
        except ValueError:
            problem = "takes JSON, e.g. --hf-overrides={\"max_position_embeddings\": 32768}"
    registry = option.get("registry")
    if not problem and registry and value not in metadata()["registries"][registry]:
        names = metadata()["registries"][registry]
        problem = f"takes a name of vLLM's {registry.replace('_', ' ')}{did_you_mean(value, names)}"
    if problem:
        raise _error(f"{flag}={value}", f"{flag} {problem}")


def _read(items: list[str]) -> list[tuple[str, str, str, list[str]]]:
    """(destination, long flag, the item as written, values) of each flag, as vLLM's parser groups them."""
    found = []
    index = 0
    while index < len(items):
        token = items[index]
        flag, has_value, inline = token.partition("=")
        if not token.startswith("-") or _NEGATIVE_NUMBER.match(token):
            raise _error(token, "a value without its flag: the first argument, and every one after a complete "
                                "flag, must be a --flag")
        if not _TOKEN.match(token):
            # JSON values need quotes and braces, which the launcher quotes like any argument; everything else is
            # kept to characters that are inert wherever they are rendered.
            json_flag = _FLAG.match(flag) and has_value and _JSON_TOKEN.match(token) and _flags().get(
                "--" + flag[2:].replace("_", "-"))
            if not json_flag or metadata()["options"][json_flag]["type"] != "json":
                raise _error(token, f"{_CHARACTERS}; give a flag and its value as --flag=value")
        if not _FLAG.match(flag):
            raise _error(token, "flags are written --long-name or --long-name=value")
        dest, long = _destination(flag, token)
        values = [inline] if has_value else []
        index += 1
        while not has_value and index < len(items) and (not items[index].startswith("-")
                                                          or _NEGATIVE_NUMBER.match(items[index])):
            if not _TOKEN.match(items[index]):
                raise _error(items[index], _CHARACTERS)
            values.append(items[index])
            index += 1
        found.append((dest, long, token, values))
    return found


def _shape(dest: str, long: str, token: str, values: list[str]) -> None:
    option = metadata()["options"][dest]
    if option["nargs"] == 0:
        if values:
            raise _error(f"{long} {' '.join(values)}", f"{long} takes no value")
    elif not values and option["nargs"] != "?":
        raise _error(token, f"{long} takes {'one or more values' if option['nargs'] == '+' else 'one value'}, "
                            f"e.g. {long}=<value>")
    elif len(values) > 1 and option["nargs"] in (None, "?"):
        raise _error(f"{long} {' '.join(values)}", f"{long} takes a single value, e.g. {long}=<value>")


def _servable(dest: str, long: str, token: str, value: str | None) -> None:
    """Raises for options that leave the deployment unreachable, or need more than the VM has."""
    if dest in MANAGED:
        owner, written, primary = MANAGED[dest], re.split("[= ]", token)[0], metadata()["options"][dest]["flags"][0]
        alias = f" ({written} is vLLM's alias of {primary})" if written != primary else ""
        raise _error(token, f"{primary} is managed by vllm-fleet{alias}: "
                            f"{f'set the {owner} key instead' if owner else 'the project sets it'}")
    if dest in UNREACHABLE:
        raise _error(token, f"{long} {UNREACHABLE[dest]}")
    number = _number(metadata()["options"][dest], value) if value is not None else None
    if dest in MULTI_NODE and not (dest == "nnodes" and number == 1 or dest == "node_rank" and number == 0):
        raise _error(token, f"{long} is for vLLM across several nodes; each VM serves on its own behind the load "
                            f"balancer (serve more requests with replicas)")
    if dest in ("data_parallel_size", "prefill_context_parallel_size") and number is not None and number > 1:
        raise _error(token, f"{long}={value} runs {value} x tensor parallel GPU workers, and vllm-fleet sets tensor "
                            f"parallel to all of the VM's GPUs: that needs {value}x the GPUs the VM has (serve more "
                            f"requests with replicas)")
    if dest == "api_server_count" and number is not None and number < 1:
        raise _error(token, f"{long}={value} starts no API server, so nothing answers on the port")
    if dest == "distributed_executor_backend" and value in EXECUTORS:
        raise _error(token, f"{long}={value}: {EXECUTORS[value]}; leave it out and vLLM runs mp")


def _combinations(given: dict[str, tuple[str, list[str]]], max_model_len: int) -> None:
    """The combinations vLLM's startup checks refuse (the file and function of each in its message's source)."""
    def on(dest: str) -> bool:  # a switch given, in its positive form
        return dest in given and not given[dest][0].startswith("--no-")

    def number(dest: str) -> float | None:
        return _number(metadata()["options"][dest], given[dest][1][0]) if dest in given else None

    def flag(dest: str) -> str:
        long, values = given[dest]
        return f"{long}={values[0]}" if values else long

    # vllm/entrypoints/launchers/cli_args.py validate_parsed_serve_args
    for needs, needed in (("enable_auto_tool_choice", "tool_call_parser"), ("enable_log_outputs", "enable_log_requests")):
        if on(needs) and not (on(needed) if metadata()["options"][needed]["nargs"] == 0 else needed in given):
            raise _error(flag(needs), f"{flag(needs)} needs {metadata()['options'][needed]['flags'][0]} too")
    if on("enable_per_request_metrics") and on("disable_log_stats"):
        raise _error(flag("enable_per_request_metrics"), "--enable-per-request-metrics needs engine statistics: "
                                                          "remove --disable-log-stats")
    # vllm/config/parallel.py
    if on("enable_eplb") and not on("enable_expert_parallel"):
        raise _error(flag("enable_eplb"), "--enable-eplb needs --enable-expert-parallel too")
    # vllm/config/scheduler.py verify_max_model_len
    seqs, batched = number("max_num_seqs"), number("max_num_batched_tokens")
    if seqs is not None and batched is not None and batched < seqs:
        raise _error(flag("max_num_batched_tokens"), f"{flag('max_num_batched_tokens')} is below "
                                                     f"{flag('max_num_seqs')}: vLLM needs at least one token a sequence")
    active = number("max_num_active_seqs")
    if active is not None and seqs is not None and active > seqs:
        raise _error(flag("max_num_active_seqs"), f"{flag('max_num_active_seqs')} is above {flag('max_num_seqs')}")
    no_chunks = "enable_chunked_prefill" in given and given["enable_chunked_prefill"][0].startswith("--no-")
    if no_chunks and batched is not None and batched < max_model_len:
        raise _error(flag("max_num_batched_tokens"), f"{flag('max_num_batched_tokens')} is below maxModelLen "
                                                     f"({max_model_len}) without chunked prefill: raise it, or "
                                                     f"leave out --no-enable-chunked-prefill")
    threshold = number("long_prefill_token_threshold")
    if threshold is not None and threshold > max_model_len:
        raise _error(flag("long_prefill_token_threshold"), f"{flag('long_prefill_token_threshold')} is above "
                                                           f"maxModelLen ({max_model_len})")


def context_parallel_refusal(args: tuple[str, ...], tensor_parallel_size: int, heads: int, kv_heads: int,
                             mla: bool) -> str | None:
    """Why vLLM refuses --decode-context-parallel-size of parsed vllmArgs at this tensor parallel size (the VM's
    GPUs) for a model of `heads` attention and `kv_heads` KV heads, or None. Decode context parallel shards the KV
    cache over the tensor parallel GPUs (prefill context parallel, the other layout, is refused above):
    vllm/config/parallel.py ParallelConfig (tp divisible by dcp), and for GQA/MQA (not MLA)
    vllm/config/model.py verify_with_parallel_config (more GPUs than KV heads, dcp at most GPUs / KV heads, and a
    divisor of the query heads per KV head)."""
    dcp = number_of(args, "decode_context_parallel_size")
    if dcp is None or dcp == 1:
        return None
    dcp, tp = int(dcp), tensor_parallel_size
    flag = f"--decode-context-parallel-size={dcp}"
    gpus = f"{tp} GPU{'s' if tp > 1 else ''} (tensor parallel {tp}, all of the VM's)"
    if tp % dcp:
        return f"{flag} must divide the tensor parallel size: the VM has {gpus}"
    if mla:
        return None
    if tp <= kv_heads:
        return (f"{flag}: for a model with {kv_heads} KV heads vLLM shards the KV cache only over more GPUs than "
                f"KV heads, and the VM has {gpus}: leave it out or choose an accelerator with more GPUs")
    if dcp > tp // kv_heads:
        return f"{flag} is above {tp // kv_heads}, vLLM's most for {gpus} and {kv_heads} KV heads"
    if (heads // kv_heads) % dcp:
        return f"{flag} must divide the model's {heads // kv_heads} query heads per KV head"
    return None


def parse(value: Any, max_model_len: int) -> tuple[str, ...]:
    """vllmArgs as the pinned `vllm serve` reads them, each flag in its long form: a single value as --flag=value,
    several as --flag v1 v2. A flag and its value may be one item (--flag=value) or two (the value a YAML number
    too)."""
    if value is None or value == []:
        return ()
    if isinstance(value, str) or not isinstance(value, list):
        raise _error(value, f"must be a list of arguments, {EXAMPLE}")
    items = [str(item) if isinstance(item, (int, float)) and not isinstance(item, bool) else item for item in value]
    for item in items:
        if not isinstance(item, str):
            raise _error(item, "each argument is a flag or a value (text or a number)")
    given: dict[str, tuple[str, list[str]]] = {}
    result: list[str] = []
    for dest, long, token, values in _read(items):
        _shape(dest, long, token, values)
        _servable(dest, long, token if "=" in token else " ".join([token, *values]), values[0] if values else None)
        if dest in given:
            earlier = given[dest][0]
            raise _error(token, f"{long} sets what {earlier} set already ({dest}): vLLM keeps only the last, give it once")
        for item in values:
            _check_value(long, dest, item)
        given[dest] = (long, values)
        nargs = metadata()["options"][dest]["nargs"]
        result += [long] if not values else [f"{long}={values[0]}"] if nargs in (None, "?") else [long, *values]
    _combinations(given, max_model_len)
    return tuple(result)


def value_of(args: tuple[str, ...], dest: str) -> str | bool | None:
    """What vLLM stores in `dest` from parsed vllmArgs (as `parse` writes them): the last value given, True/False for
    a switch (its --no- form: False), None when not given."""
    found: str | bool | None = None
    flags = _flags()
    for index, arg in enumerate(args):
        flag, has_value, value = arg.partition("=")
        if flags.get(flag) != dest:
            continue
        if metadata()["options"][dest]["nargs"] == 0:
            found = not flag.startswith("--no-")
        else:
            found = value if has_value else (args[index + 1] if index + 1 < len(args) else "")
    return found


def number_of(args: tuple[str, ...], dest: str) -> float | None:
    """What vLLM stores in a numeric `dest` from parsed vllmArgs (`8k` is 8000, `2K` 2048), None when not given."""
    given = value_of(args, dest)
    return None if given is None else _number(metadata()["options"][dest], str(given))
