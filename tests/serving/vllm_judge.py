"""`vllm serve` arguments judged by the pinned vLLM itself, as far as it goes without a GPU. Run with .venv-vllm's
Python; reads a JSON list of cases on stdin, writes one JSON verdict a case on stdout's last line:

    [{"argv": [model, --flag, ...], "config": {config.json}}, ...]  ->  [{"refused": ..., "stored": {...}}, ...]

Each case's argv (the arguments after `vllm serve`, as the VM's launcher passes them) goes through what `vllm serve`
runs before it loads weights: FlexibleArgumentParser.parse_args of make_arg_parser (vllm/entrypoints/cli/serve.py),
validate_parsed_serve_args, then AsyncEngineArgs.from_cli_args and create_engine_config (vLLM's config classes and
their checks) and validate_api_server_args (the API server's setup). The model is a directory holding the case's
config.json and the tiny model's tokenizer (tests/serving/tiny_model.py); --config (the API keys file on a VM) is a
file with one key. A verdict says what vLLM refused, if it did ("refused": the exception's type and first line), and
what it stored: the parsed namespace's values, the destinations the parser set more than once (vLLM keeps the
last), and the engine config's parallel sizes, max_num_seqs, KV cache dtype and max_model_len.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
os.environ["HF_HUB_OFFLINE"] = "1"

from vllm.engine.arg_utils import AsyncEngineArgs  # noqa: E402
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args  # noqa: E402
from vllm.entrypoints.launchers.launcher import validate_api_server_args  # noqa: E402
from vllm.usage.usage_lib import UsageContext  # noqa: E402
from vllm.utils.argparse_utils import FlexibleArgumentParser  # noqa: E402

from tiny_model import make_tiny_model  # noqa: E402 (this folder)

# Some options make vLLM read the tokenizer while it builds its config (a reasoning parser does): the tiny model's.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class CountingNamespace(argparse.Namespace):
    """Counts how often the parser stores each destination: once for its default, once for each flag given."""

    def __setattr__(self, name, value):
        counts = self.__dict__.setdefault("_stored", {})
        counts[name] = counts.get(name, 0) + 1
        super().__setattr__(name, value)


def plain(value):
    return value if isinstance(value, (str, int, float, bool, type(None), list)) else str(value)


def judge(argv: list[str], config: dict, workdir: Path, tokenizer: Path) -> dict:
    model = workdir / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(json.dumps(config))
    for name in TOKENIZER_FILES:
        shutil.copy(tokenizer / name, model / name)
    keys = workdir / "api-keys.yaml"
    keys.write_text("api-key: [judge-key-0123456789]\n")
    argv = [str(model), *argv[1:]]
    if "--config" in argv:
        argv[argv.index("--config") + 1] = str(keys)
    verdict: dict = {"refused": None, "stored": {}, "repeated": [], "parallel": {}}
    try:
        namespace = CountingNamespace()
        args = make_arg_parser(FlexibleArgumentParser(prog="vllm serve")).parse_args(argv, namespace)
        counts = args.__dict__.pop("_stored")
        verdict["repeated"] = sorted(dest for dest, count in counts.items() if count > 2)
        verdict["stored"] = {dest: plain(value) for dest, value in vars(args).items()}
        args.model = args.model_tag
        validate_parsed_serve_args(args)
        engine_args = AsyncEngineArgs.from_cli_args(args)
        vllm_config = engine_args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
        validate_api_server_args(args)  # reads the structured-outputs config create_engine_config filled in
        parallel = vllm_config.parallel_config
        verdict["parallel"] = {"world_size_across_dp": parallel.world_size_across_dp,
                               "executor": plain(parallel.distributed_executor_backend),
                               "max_num_seqs": vllm_config.scheduler_config.max_num_seqs,
                               "cache_dtype": plain(vllm_config.cache_config.cache_dtype),
                               "max_model_len": vllm_config.model_config.max_model_len}
    except SystemExit as error:  # argparse's error(): usage and message on stderr
        verdict["refused"] = f"argparse: exit {error.code}"
    except Exception as error:  # noqa: BLE001 - what vLLM refuses with is the verdict
        verdict["refused"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    return verdict


def main() -> None:
    cases = json.load(sys.stdin)
    verdicts = []
    with tempfile.TemporaryDirectory() as tokenizer:
        make_tiny_model(Path(tokenizer))
        for case in cases:
            with tempfile.TemporaryDirectory() as directory:
                verdicts.append(judge(case["argv"], case["config"], Path(directory), Path(tokenizer)))
    sys.stdout.write("\n" + json.dumps(verdicts) + "\n")


if __name__ == "__main__":
    main()
