"""vLLM is the judge of vllmArgs: every planned stack's launch arguments (as cloud-init writes them), and a corpus
of good and bad vllmArgs on a stack, run through the pinned vLLM's own argument parsing and engine-config
validation (tests/serving/vllm_judge.py, in .venv-vllm, one process for all cases) with a config.json written from
the catalog's numbers for the stack's model. The plan and vLLM must agree: a case is refused by both or by neither.

vLLM "refuses" a case when its parser, its startup checks or its config classes raise, and also when what it stored
would not serve this deployment: a destination set twice (it keeps the last, sizing read one), a flag vllm-fleet
sets stored with another value (an alias such as -tp), no HTTP server on the port (--uds, --headless,
--api-server-count 0, --grpc), workers for more GPUs than the VM has, or vLLM across several nodes. A vLLM release
that adds a check refuses a case the plan accepts, and this test fails.
"""

from __future__ import annotations

import json
import subprocess

from conftest import ROOT, STACK_FILES, config_of, launcher_argv, stack_name, write_files
from fleet import serving, sizing, vllm_args
from fleet.errors import ConfigError
from fleet.spec import ModelArch, parse_spec
from cli.serve_local import unit_setting
from stack_on_cpu import require_vllm
from vllm_server import VENV_PYTHON

BASE_STACK = "codellama-prod"  # 70B on 4 or 8 GPUs: tensor parallel > 1, so parallel flags matter
# (vllmArgs, refused): refused True = both must refuse, False = both must accept.
CORPUS = [
    ([], False),
    (["--enable-prefix-caching"], False),
    (["--max-num-seqs", 64], False),
    (["--max_num_seqs=32"], False),  # vLLM reads _ as -
    (["--max-num-seq=16"], False),  # a unique start of a flag is that flag
    (["--kv-cache-dtype=fp8"], False),
    (["--max-num-batched-tokens=8k", "--max-num-seqs=64"], False),
    (["--enable-auto-tool-choice", "--tool-call-parser=hermes"], False),
    (["--no-enable-auto-tool-choice"], False),  # how a stack turns the catalog's tool calling off (docs/tools.md)
    (["--no-enable-chunked-prefill", "--max-num-batched-tokens=8192"], False),
    (["--enable-log-outputs", "--enable-log-requests"], False),
    (["--api-server-count=1", "--data-parallel-size=1"], False),
    (["--long-prefill-token-threshold=1024"], False),
    # values outside the option's type, choices, bounds or registry
    (["--max-num-seqs=0"], True),
    (["--max-num-seqs=many"], True),
    (["--kv-cache-dtype=fp9"], True),
    (["--max-num-batched-tokens=2.5K"], True),  # no decimals with a binary suffix
    (["--enable-auto-tool-choice", "--tool-call-parser=nope"], True),
    (["--reasoning-parser=nope"], True),
    (["--max-logprobs=-2"], True),
    (["--max-num"], True),  # ambiguous start of several flags
    # combinations vLLM's startup checks refuse
    (["--max-num-seqs=512", "--max-num-batched-tokens=256"], True),
    (["--enable-auto-tool-choice"], True),
    (["--enable-log-outputs"], True),
    (["--enable-per-request-metrics", "--disable-log-stats"], True),
    (["--no-enable-chunked-prefill", "--max-num-batched-tokens=1024"], True),
    (["--max-num-active-seqs=300", "--max-num-seqs=256"], True),
    (["--long-prefill-token-threshold=100000"], True),
    (["--enable-eplb"], True),
    # a destination twice, or one vllm-fleet sets, under any of its flags
    (["--max-num-seqs=8", "--max-num-seqs=16"], True),
    (["--max-num-seqs=8", "--max_num_seqs=16"], True),
    (["--enable-prefix-caching", "--no-enable-prefix-caching"], True),
    (["-tp", "2"], True),
    (["--tensor-parallel=2"], True),
    (["--device-memory-utilization=0.5"], True),
    (["-q", "fp8"], True),
    # nothing answering on the port, more GPUs than the VM has, packages the VMs lack, several nodes
    (["--uds=/run/vllm.sock"], True),
    (["--headless"], True),
    (["--api-server-count=0"], True),
    (["--grpc"], True),
    (["-dp", "2"], True),
    (["--prefill-context-parallel-size=2"], True),
    (["--distributed-executor-backend=ray"], True),
    (["--nnodes=2"], True),
    (["--data-parallel-address=10.0.0.2"], True),
    (["--data-parallel-backend=mp"], False),  # used only with data parallel
    # decode context parallel shards the KV cache over the tensor parallel GPUs (vllm/config/parallel.py, model.py)
    (["--decode-context-parallel-size=1"], False),
    (["-dcp", "3"], True),  # does not divide tensor parallel
    (["--decode-context-parallel-size=2"], True),  # 8 KV heads: needs more GPUs than KV heads
]
# vLLM's destinations that make a deployment unreachable or multi-node when set (their defaults: None or False),
# listed apart from fleet/vllm_args.py's on purpose: the judge reads what vLLM stored, not the plan's lists.
UNREACHABLE = ("uds", "headless", "grpc", "grpc_port")
MULTI_NODE = ("data_parallel_address", "data_parallel_rpc_port", "data_parallel_rank", "data_parallel_start_rank",
              "data_parallel_size_local", "data_parallel_external_lb", "data_parallel_hybrid_lb",
              "data_parallel_multi_port_external_lb")


def raw_config(stack: str, **changes) -> dict[str, str]:
    """A stack file's keys as Pulumi hands them to the program (structured values as JSON)."""
    config = {**config_of(stack), **changes}
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}


def config_json(arch: ModelArch) -> dict:
    """A config.json with the catalog's numbers for the model (a Llama-shaped decoder: the numbers vLLM's config
    checks read are these)."""
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": arch.layers,
            "num_attention_heads": arch.heads, "num_key_value_heads": arch.kv_heads, "head_dim": arch.head_dim,
            "hidden_size": arch.heads * arch.head_dim, "intermediate_size": 4 * arch.heads * arch.head_dim,
            "max_position_embeddings": arch.max_len, "vocab_size": 32016, "rms_norm_eps": 1e-5,
            "torch_dtype": "bfloat16"}


def vllm_verdicts(cases: list[dict]) -> list[dict]:
    require_vllm()
    result = subprocess.run([str(VENV_PYTHON), "tests/serving/vllm_judge.py"], input=json.dumps(cases), cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def vllm_refuses(verdict: dict, project_set: dict, gpus: int) -> str | None:
    """Why vLLM refuses the case, or what it stored that would not serve the deployment; None: it serves."""
    if verdict["refused"]:
        return verdict["refused"]
    stored = verdict["stored"]
    if verdict["repeated"]:
        return f"set twice: {verdict['repeated']}"
    changed = {dest: stored[dest] for dest, value in project_set.items() if stored.get(dest) != value}
    if changed:
        return f"vllm-fleet's flags stored with other values: {changed}"
    for dest in UNREACHABLE + MULTI_NODE:
        if stored.get(dest) not in (None, False):
            return f"{dest} = {stored[dest]}"
    if stored.get("api_server_count") is not None and stored["api_server_count"] < 1:
        return "no API server"
    if stored.get("nnodes", 1) > 1:
        return "several nodes"
    if verdict["parallel"]["world_size_across_dp"] > gpus:
        return f"{verdict['parallel']['world_size_across_dp']} GPU workers on {gpus} GPUs"
    return None


def project_set(argv: list[str]) -> dict:
    """The destinations the project's own flags set, with the values vLLM stores for them."""
    flags = dict(zip(argv[1::2], argv[2::2]))
    return {"tensor_parallel_size": int(flags["--tensor-parallel-size"]),
            "max_model_len": int(flags["--max-model-len"]),
            "gpu_memory_utilization": float(flags["--gpu-memory-utilization"]),
            "served_model_name": [flags["--served-model-name"]], "dtype": flags["--dtype"],
            "host": flags["--host"], "port": int(flags["--port"]), "quantization": flags.get("--quantization")}


def plan_argv(stack: str, vllm_args: list) -> tuple[list[str] | None, str | None, int]:
    """(the plan's `vllm serve` arguments, or None and why it refuses; the VM's GPUs)."""
    base = parse_spec(stack, raw_config(stack, vllmArgs=[]), set())
    gpus = sizing.size(base).instance.gpu_count
    try:
        spec = parse_spec(stack, raw_config(stack, vllmArgs=vllm_args), set())
        return serving.serve_argv(spec, sizing.size(spec)), None, gpus
    except ConfigError as error:
        return None, str(error), gpus


def test_the_vms_install_no_ray():
    """--distributed-executor-backend=ray is refused because the VMs' lock has no ray (vLLM in .venv-vllm, which
    has none either, refuses it for that reason)."""
    locked = (ROOT / "cloud-init" / "vllm-requirements.txt").read_text()
    assert not any(line.split("==")[0].strip() == "ray" for line in locked.splitlines())


def test_every_stack_and_the_corpus_are_judged_alike_by_the_plan_and_by_vllm(plan_of):
    cases, expected = [], []
    for path in STACK_FILES:  # the launch arguments as cloud-init writes them on the VM
        planned = plan_of(stack_name(path))
        files = write_files(planned.user_data)
        [exec_start] = unit_setting(files["/etc/systemd/system/vllm.service"]["content"], "ExecStart")
        argv = launcher_argv(files[exec_start]["content"])
        spec = parse_spec(planned.name, raw_config(planned.name), set())
        cases.append({"argv": argv, "config": config_json(spec.arch)})
        expected.append((planned.name, argv, None, planned.outputs["gpuCount"], spec))
    base = parse_spec(BASE_STACK, raw_config(BASE_STACK, vllmArgs=[]), set())
    base_argv = serving.serve_argv(base, sizing.size(base))
    for given, _ in CORPUS:
        argv, refusal, gpus = plan_argv(BASE_STACK, given)
        # vLLM gets the user's arguments as written, after the project's own
        cases.append({"argv": argv or base_argv + [str(arg) for arg in given], "config": config_json(base.arch)})
        spec = None if refusal else parse_spec(BASE_STACK, raw_config(BASE_STACK, vllmArgs=given), set())
        expected.append((f"{BASE_STACK} + {given}", base_argv, refusal, gpus, spec))

    verdicts = vllm_verdicts(cases)
    disagreements = []
    for (name, argv, plan_refusal, gpus, spec), verdict in zip(expected, verdicts):
        vllm_refusal = vllm_refuses(verdict, project_set(argv), gpus)
        if (plan_refusal is None) != (vllm_refusal is None):
            disagreements.append(f"{name}: plan {plan_refusal or 'accepts'}; vLLM {vllm_refusal or 'accepts'}")
        if spec is not None and vllm_refusal is None:  # vLLM holds what the plan sized by
            sized = sizing.size(spec)
            assert verdict["parallel"]["max_model_len"] == spec.max_model_len, name
            assert verdict["stored"]["tensor_parallel_size"] == sized.tensor_parallel_size, name
            assert sizing.kv_fp8(spec) == verdict["parallel"]["cache_dtype"].startswith("fp8"), name
            if vllm_args.value_of(spec.vllm_args, "max_num_seqs") is not None:  # else vLLM's default for its GPU
                assert sized.max_num_seqs == verdict["parallel"]["max_num_seqs"], name
    assert not disagreements, "\n".join(disagreements)
    # the corpus's verdicts are the ones it states: neither side silently flips
    for (_, refused), (name, _, plan_refusal, _, _) in zip(CORPUS, expected[len(STACK_FILES):]):
        assert (plan_refusal is not None) == refused, f"{name}: plan {plan_refusal or 'accepts'}"
