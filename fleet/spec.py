"""Stack config -> one validated, immutable FleetSpec.

Everything the stack file says is checked here, before any resource is declared. Bad input raises ConfigError
naming the key, the value and what would work. Secrets are not values of the spec: the spec only records that
they are set (as secrets); the program reads them as Pulumi secret Outputs.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import json
import re
import unicodedata
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from . import catalog, iam_names
from . import autoscaling as _autoscaling
from . import alerts as _alerts
from . import catalog, iam_names, rate_limits
from .rate_limits import RateLimits
from .errors import PROJECT, SHOWN_SECRET, ConfigError
from .schedule import KEY_DOCS as SCHEDULE_DOCS, OfficeHours, parse_office_hours
from .wake_on_request import KEY_DOCS as WAKE_DOCS, WakeOnRequest, parse_wake_on_request
from .tool_calling import NO_TOOL_CALLING, ToolCalling, resolve as resolve_tool_calling
from .values import did_you_mean, whole_number as _int
from .vllm_args import parse as parse_vllm_args

MODELS_FILE = catalog.CATALOG_FILE.parent / "models.yaml"

SECRET_KEYS = ("hfToken", "apiKey", "apiKeys")
# The key clients send: a named key of apiKeys, or the one of apiKey, which is named "default".
DEFAULT_KEY_NAME = "default"
_KEY_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# Printable ASCII without spaces (what fits a `Bearer` header), not starting with "-" (vLLM's argument parser would
# read it as a flag); at least 16 characters.
_API_KEY = re.compile(r"^[!-~]{16,512}$")
_HF_TOKEN = re.compile(r"^[!-~]{8,512}$")
DTYPES = ("auto", "bfloat16", "float16")
QUANTIZATIONS = ("none", "awq", "gptq", "fp8")
PREQUANTIZED = ("awq", "gptq", "fp8")  # what a checkpoint's own weights may be
GPU_COUNTS = (1, 2, 4, 8)
PROJECT_TAGS = ("managed-by", "vllm-fleet-stack")  # the tags vllm-fleet puts on every resource
MAX_TAGS = 40

_HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_HF_URL = re.compile(r"^https?://(www\.)?(huggingface\.co|hf\.co)/(?P<id>[^/?#]+/[^/?#]+)")
_BUCKET_URI = re.compile(r"^([a-z0-9]+)://([a-z0-9][a-z0-9._-]{1,62})(/[A-Za-z0-9._/-]*)?$")
_REVISION = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SERVED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
# A top-level domain is letters or an internationalized one in punycode (xn--p1ai).
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,63}|xn--[a-z0-9-]{1,59})$")


@dataclass(frozen=True)
class ModelArch:
    """What sizing needs to know of a model's architecture (fleet/sizing.py says how each number is used)."""

    params_b: float  # every parameter: a mixture of experts counts all its experts
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    max_len: int
    quantization: str | None = None  # set for a pre-quantized checkpoint (awq, gptq, fp8, mxfp4)
    gated: bool = False
    # Multi-head latent attention (DeepSeek-V2/V3): the KV cache holds one latent of kv_lora_rank +
    # qk_rope_head_dim elements a token and layer instead of K and V of every KV head.
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    # Layers attending only to the last sliding_window tokens (gpt-oss: every other layer, window 128).
    sliding_window: int = 0
    sliding_layers: int = 0
    # Mixture of experts: experts per MoE layer, active parameters a token (informational), and the experts'
    # intermediate size, which a block-quantized checkpoint must split into whole blocks of quant_block.
    experts: int = 0
    active_params_b: float | None = None
    moe_intermediate_size: int = 0
    quant_block: int = 0
    # The parameters stored in the checkpoint's quantized format (mxfp4: the experts); the rest stay 16-bit.
    # None: all of them.
    quantized_params_b: float | None = None
    # The checkpoint's size in GB (10^9 bytes) when read from its safetensors metadata; sizing uses it as the
    # weights' size.
    weights_gb: float | None = None
    # The GPUs vLLM serves the model on, where it does not serve it on all (gpt-oss); None: any.
    gpus: tuple[str, ...] | None = None
    # config.json's hidden_size and vocab_size: the 16-bit embeddings and LM head of a 4-bit checkpoint, and the
    # expert shapes vLLM's mxfp4 kernels pad; 0 where not recorded.
    hidden_size: int = 0
    vocab_size: int = 0

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> ModelArch:
        """A catalog/models.yaml entry (its architecture keys; `source`, `base` and `notes` are for people)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in entry.items() if k in fields}
        return cls(**values)

    @property
    def mla(self) -> bool:
        return self.kv_lora_rank > 0


@dataclass(frozen=True)
class Replicas:
    min: int
    desired: int
    max: int
    # Autoscaling adds a VM when each gets more requests than this a minute (LLM requests are long: a replica
    # of a 70B model streams a few dozen at once).
    target_requests_per_minute: int = 30


@dataclass(frozen=True)
class Capacity:
    """The capacity key: size for `concurrent_requests` requests of `tokens_per_request` tokens each (prompt and
    completion) in flight at once. replicas.desired and replicas.max follow from it unless the stack sets them."""

    concurrent_requests: int
    tokens_per_request: int
    desired_set: bool = False  # the stack sets replicas.desired: size the instance type for that many replicas
    max_set: bool = False  # the stack sets replicas.max: no more replicas than that
    min_set: bool = False


@dataclass(frozen=True)
class FleetSpec:
    stack: str
    cloud: str
    region: str
    model: str
    model_is_bucket: bool
    model_revision: str | None  # a commit, tag or branch of the Hugging Face repository; None: main at boot time
    served_model_name: str
    arch: ModelArch
    dtype: str
    quantization: str | None
    max_model_len: int
    gpu_memory_utilization: float
    accelerator_gpu: str | None
    accelerator_count: int | None
    instance_type: str | None
    replicas: Replicas
    spot: bool
    on_demand_base: int
    allowed_cidrs: tuple[str, ...]
    domain: str | None
    certificate: str | None
    dns_zone: str | None
    vllm_args: tuple[str, ...]
    office_hours: OfficeHours | None  # None: the fleet serves around the clock
    data_disk_gb: int | None
    tags: Mapping[str, str]
    has_hf_token: bool
    has_api_key: bool  # apiKey is set: the key named "default"
    named_api_keys: tuple[str, ...]  # the names of apiKeys
    cloud_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # The load to size for (the capacity key); None: one VM that holds one sequence of max_model_len.
    capacity: Capacity | None = None
    # The bytes of the named-keys secret (fleet/program.py: JSON of name -> key) holding the first 1, 2, ... n keys
    # by name: the sizes, never the keys; each cloud checks them against its secret store (api_keys_fit).
    api_keys_secret_bytes: tuple[int, ...] = ()
    wake_on_request: WakeOnRequest | None = None  # None: a closed fleet answers 503 and wakes only by `make wake`
    rate_limits: RateLimits = RateLimits()  # rateLimits (fleet/rate_limits.py)
    # The tool-call and reasoning parsers vLLM runs with, and the flags added for them (fleet/tool_calling.py).
    tool_calling: ToolCalling = NO_TOOL_CALLING
    # The autoscaling key: targets of vLLM's signals, each None where the sizing sets it (fleet/autoscaling.py).
    autoscaling: _autoscaling.AutoscalingConfig = field(default_factory=_autoscaling.AutoscalingConfig)
    # The alerts key: where the stack's alarms notify, and their thresholds (fleet/alerts.py).
    alerts: _alerts.Alerts = field(default_factory=_alerts.Alerts)

    @property
    def resource_tags(self) -> dict[str, str]:
        """The tags (labels) every resource of the stack carries: the user's, who manages it and which stack."""
        return {**self.tags, "managed-by": "vllm-fleet", "vllm-fleet-stack": self.stack}

    @property
    def api_key_names(self) -> tuple[str, ...]:
        """Every API key the VMs accept, by name; with neither apiKey nor apiKeys set, the generated default."""
        return tuple(sorted({*self.named_api_keys, DEFAULT_KEY_NAME} if self.has_api_key or not self.named_api_keys
                            else self.named_api_keys))

    @property
    def pins_model(self) -> bool:
        """modelRevision is a commit (40 hex digits): a branch (main) or tag may move, so it pins nothing."""
        return bool(self.model_revision and _COMMIT.match(self.model_revision))

    @property
    def name(self) -> str:
        """The prefix of every resource name of the stack (at most 24 characters)."""
        return self.name_within(24)

    def cloud_section(self, known: Mapping[str, str], what: str) -> dict[str, Any]:
        """The stack's cloud-only section (`vllm-fleet:<cloud>`), after refusing a key the cloud does not take;
        `what` names the cloud's options in the message ("an AWS option")."""
        options = dict(self.cloud_options)
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"{self.cloud}.{unknown[0]}", options[unknown[0]],
                              f"is not {what}; known: {', '.join(known)}")
        return options

    def api_keys_fit(self, limit_bytes: int, store: str) -> None:
        """Refuses a key set whose secret exceeds the cloud's secret store limit (`store` names it), with how many
        of the keys would fit."""
        sizes = self.api_keys_secret_bytes
        if sizes and sizes[-1] > limit_bytes:
            fitting = sum(1 for size in sizes if size <= limit_bytes)
            raise ConfigError("apiKeys", f"{len(sizes)} keys",
                              f"the VMs read every key from one {store} secret, which holds at most {limit_bytes:,} "
                              f"bytes: these keys make {sizes[-1]:,} bytes, and {fitting} of them fit; use fewer or "
                              f"shorter keys (e.g. openssl rand -hex 32: 64 characters)")

    def name_within(self, limit: int) -> str:
        """The stack's name as a resource name of at most `limit` characters (fleet.iam_names.name_within)."""
        return iam_names.name_within(self.stack, limit)


# key -> (what it is, parser). The parser gets the decoded value and returns the parsed one or raises ValueError
# with the text "what would work".
KEY_DOCS: dict[str, str] = {
    "cloud": "aws | gcp | azure",
    "region": "the cloud's region, e.g. us-east-1",
    "model": "a Hugging Face id (org/name) or a bucket URI of the cloud (s3://, gs://, az://)",
    "modelRevision": "the Hugging Face repository's commit (or tag) to serve, e.g. a 40-character sha: every VM "
                     "serves the same weights; changing it rolls the VMs (default: main as each VM boots)",
    "servedModelName": "the model name clients send (default: the model id, or the bucket path's last part)",
    "modelParams": "architecture of a model not in catalog/models.yaml: {like: <known id>} or "
                   "{params_b, layers, heads, kv_heads, head_dim, max_len}",
    "dtype": "auto | bfloat16 | float16",
    "quantization": "none | awq | gptq | fp8",
    "maxModelLen": "context length to serve (default: the model's)",
    "gpuMemoryUtilization": "fraction of GPU memory vLLM may use, 0.5-0.95 (default 0.9)",
    "accelerator": "GPU:count, e.g. A100-80GB:2 (default: the cheapest instance type that fits)",
    "instanceType": "an explicit instance type of the catalog (instead of accelerator)",
    "replicas": "{min, desired, max} VMs (default 1/1/1); on GCP also targetRequestsPerMinute, the requests a minute "
                "the load balancer sends one VM before it prefers another (default 30)",
    "autoscaling": _autoscaling.KEY_DOC,
    "alerts": _alerts.KEY_DOC,
    "capacity": "{concurrentRequests, tokensPerRequest}: size the fleet to hold that many requests of that many "
                "tokens (prompt + completion) at once; replicas.desired follows unless set",
    "spot": "true to run on spot/preemptible VMs",
    "onDemandBase": "with spot: how many VMs stay on-demand (default 0)",
    "allowedCidrs": "list of CIDRs that may reach the endpoint (required; 0.0.0.0/0 opens it to all)",
    "domain": "DNS name of the endpoint; with a certificate it is served over HTTPS",
    "certificate": "the cloud's certificate for domain (AWS: ACM certificate ARN; GCP: SslCertificate self link, "
                   "default a Google-managed one; Azure: Key Vault secret id)",
    "dnsZone": "the cloud's DNS zone to create the domain's record in (AWS: Route 53 hosted zone id; GCP: Cloud DNS "
               "managed zone name)",
    "vllmArgs": "extra vllm serve arguments, e.g. [--enable-prefix-caching, --max-num-seqs=64]",
    "officeHours": f"when the fleet serves; outside, it scales to offHoursReplicas: {SCHEDULE_DOCS}",
    "wakeOnRequest": WAKE_DOCS,
    "dataDiskGb": "size of the weights cache disk in GB (default: sized from the weights)",
    "tags": "map of tags/labels put on every resource",
    "hfToken": "Hugging Face token (secret: pulumi config set --secret hfToken ...)",
    "apiKey": "API key clients send (secret; default: generated, see the apiKey output); named default",
    "apiKeys": "named API keys, one per developer or tool, each a secret: pulumi config set --secret --path "
               "'apiKeys.alice' ...; removing one revokes it",
    "rateLimits": rate_limits.DOCS,
    "aws": "AWS-only options, see docs/config.md",
    "gcp": "GCP-only options, see docs/gcp.md",
    "azure": "Azure-only options, see docs/azure.md",
}


# Keys whose value is text. The Pulumi CLI hands the program every top-level value as text (a number or bool as its
# JSON, fleet/stack_yaml.py), so the program cannot tell `2024` from "2024": a text key takes the text as it is.
TEXT_KEYS = ("cloud", "region", "model", "modelRevision", "servedModelName", "dtype", "quantization", "accelerator",
             "instanceType", "domain", "certificate", "dnsZone")


def _decode(raw: Any) -> Any:
    """Pulumi hands structured config to programs as JSON text; plain strings stay strings."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise ConfigError(key, value, "must be true or false")


def _str(key: str, value: Any, pattern: re.Pattern[str], expected: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ConfigError(key, value, expected)
    return value


def _one_of(key: str, value: Any, choices: tuple[str, ...] | list[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(key, value, f"must be one of {', '.join(choices)}{did_you_mean(value, choices)}")
    return value


# Keys of a catalog/models.yaml entry that are for people, not sizing.
MODEL_INFO_KEYS = ("source", "base", "notes")


@functools.cache
def model_entries() -> dict[str, dict[str, Any]]:
    """catalog/models.yaml as written: architecture, `source` (where the numbers come from), `base` (the model a
    pre-quantized checkpoint quantizes) and `notes`."""
    entries = yaml.safe_load(MODELS_FILE.read_text())["models"]
    for model, entry in entries.items():
        catalog.check_model_entry(model, entry, f"catalog/{MODELS_FILE.name}")
    return entries


@functools.cache
def known_models() -> dict[str, dict[str, Any]]:
    """Model id -> its architecture keys (ModelArch(**known_models()[id]))."""
    return {model: {k: (tuple(v) if isinstance(v, list) else v) for k, v in entry.items() if k not in MODEL_INFO_KEYS}
            for model, entry in model_entries().items()}


def _arch(model: str, is_bucket: bool, params: Any, revision: str | None = None) -> ModelArch:
    table = known_models()
    if params is None:
        if model in table:
            return ModelArch(**table[model])
        what = "a bucket URI" if is_bucket else "a model not in catalog/models.yaml"
        why = ""
        if not is_bucket:
            from . import hub  # only for a model the catalog lacks: asks the Hugging Face hub for its config.json

            try:
                return ModelArch.from_entry(hub.fetch_entry(model, revision))
            except hub.HubError as error:
                why = (f" (asking the Hugging Face hub failed: {error}; where the hub is reachable, make "
                       f"catalog-add MODEL={model} records it in the catalog)")
        raise ConfigError("modelParams", None,
                          f"{what} needs its architecture{why}{did_you_mean(model, table) if not is_bucket else ''}: "
                          f"set modelParams to {{like: <a known model id such as codellama/CodeLlama-7b-hf>}} or to "
                          f"{{params_b, layers, heads, kv_heads, head_dim, max_len}}")
    if not isinstance(params, dict):
        raise ConfigError("modelParams", params, KEY_DOCS["modelParams"])
    if "like" in params:
        like = params["like"]
        if not isinstance(like, str) or like not in table:
            raise ConfigError("modelParams.like", like, f"must be a model id of catalog/models.yaml"
                                                        f"{did_you_mean(like, table)}")
        if set(params) - {"like", "max_len"}:
            raise ConfigError("modelParams", params, "with like, only max_len may be set too (a longer context of "
                                                     "the same architecture)")
        arch = ModelArch(**table[like])
        if "max_len" in params:
            arch = dataclasses.replace(arch, max_len=_int("modelParams.max_len", params["max_len"], 128, 10_000_000))
        return arch
    need = {"params_b", "layers", "heads", "kv_heads", "head_dim", "max_len"}
    optional = {"kv_lora_rank", "qk_rope_head_dim", "sliding_window", "sliding_layers", "experts"}
    unknown = set(params) - need - optional - {"quantization"}
    if unknown or not need <= set(params):
        raise ConfigError("modelParams", params, f"needs exactly {sorted(need)} (optionally quantization and "
                                                 f"{', '.join(sorted(optional))})")
    quantization = params.get("quantization")
    if quantization is not None:
        _one_of("modelParams.quantization", quantization, PREQUANTIZED)
    try:
        arch = ModelArch(params_b=float(params["params_b"]),
                         **{k: _int(f"modelParams.{k}", params[k], 1, 10_000_000)
                            for k in (need - {"params_b"}) | (optional & set(params))},
                         quantization=quantization)
    except (TypeError, ValueError):
        raise ConfigError("modelParams", params, "params_b is a number of billions; the others are whole numbers") from None
    if not (0 < arch.params_b < 100_000) or arch.heads % arch.kv_heads:
        raise ConfigError("modelParams", params, "all numbers must be positive and heads a multiple of kv_heads")
    problem = catalog.model_entry_problem(params)
    if problem:
        raise ConfigError(f"modelParams.{problem[0]}", problem[1], problem[2])
    return arch


def _quantization(value: Any, model: str, arch: ModelArch, from_table: bool) -> str | None:
    asked = _one_of("quantization", value, QUANTIZATIONS) if value is not None else None
    if arch.quantization:
        if asked not in (None, arch.quantization):
            raise ConfigError("quantization", asked,
                              f"{model} is a {arch.quantization} checkpoint: leave quantization unset or set {arch.quantization}")
        return arch.quantization
    if asked in ("awq", "gptq") and from_table:
        prequantized = sorted((m for m, a in known_models().items()
                               if a.get("quantization") == asked and a["layers"] == arch.layers
                               and a["heads"] == arch.heads),
                              key=lambda m: model_entries()[m].get("base") != model)
        hint = f", e.g. {prequantized[0]}" if prequantized else ""
        raise ConfigError("quantization", asked,
                          f"{model} is not an {asked.upper()} checkpoint: {asked} needs a pre-quantized model{hint}; "
                          f"fp8 quantizes any model at load time")
    return None if asked in (None, "none") else asked


def _accelerator(value: Any) -> tuple[str, int | None]:
    gpus = catalog.gpu_names()
    expected = f"must be GPU or GPU:count with GPU one of {', '.join(gpus)} and count one of {GPU_COUNTS}, e.g. A100-80GB:2"
    if not isinstance(value, str):
        raise ConfigError("accelerator", value, expected)
    gpu, _, count = value.partition(":")
    if gpu not in gpus:
        raise ConfigError("accelerator", value, expected + did_you_mean(gpu, gpus))
    if not count:
        return gpu, None
    if not count.isdigit() or int(count) not in GPU_COUNTS:
        raise ConfigError("accelerator", value, expected)
    return gpu, int(count)


def _replicas(value: Any) -> Replicas:
    if value is None:
        return Replicas(1, 1, 1)
    if not isinstance(value, dict) or set(value) - {"min", "desired", "max", "targetRequestsPerMinute"}:
        raise ConfigError("replicas", value, "must be a map {min, desired, max, targetRequestsPerMinute}, "
                                             "e.g. {min: 1, desired: 1, max: 4}")
    lo = _int("replicas.min", value.get("min", 1), 0, 100)
    hi = _int("replicas.max", value.get("max", max(lo, 1)), 1, 100)
    desired = _int("replicas.desired", value.get("desired", max(lo, 1)), 0, 100)
    if lo > hi:
        raise ConfigError("replicas.min", lo, f"must not exceed replicas.max ({hi})")
    if not lo <= desired <= hi:
        raise ConfigError("replicas.desired", desired, f"must lie between replicas.min ({lo}) and replicas.max ({hi})")
    target = _int("replicas.targetRequestsPerMinute", value.get("targetRequestsPerMinute", 30), 1, 100000)
    if lo == 0:
        # Autoscaling reads vLLM's metrics on the VMs: with no VM there is nothing to read, and no VM ever comes back.
        raise ConfigError("replicas.min", 0, "must be at least 1: a group scaled to 0 VMs is never scaled up again "
                                             "by load (autoscaling reads vLLM's own metrics on the VMs); to run no VM at "
                                             "night or at weekends, set officeHours")
    return Replicas(lo, desired, hi, target)


def _capacity(value: Any, replicas: Any, max_len: int) -> Capacity | None:
    if value is None:
        return None
    expected = ("must be a map {concurrentRequests, tokensPerRequest}, e.g. {concurrentRequests: 40, "
                "tokensPerRequest: 8192}: that many requests of that many tokens (prompt + completion) at once")
    if not isinstance(value, dict) or set(value) != {"concurrentRequests", "tokensPerRequest"}:
        raise ConfigError("capacity", value, expected)
    requests = _int("capacity.concurrentRequests", value["concurrentRequests"], 1, 100000)
    tokens = _int("capacity.tokensPerRequest", value["tokensPerRequest"], 16, 10**7)
    if tokens > max_len:
        raise ConfigError("capacity.tokensPerRequest", tokens,
                          f"must not exceed maxModelLen ({max_len}): a request longer than the context is refused; "
                          f"raise maxModelLen (up to the model's) or lower tokensPerRequest")
    given = set(replicas) if isinstance(replicas, dict) else set()
    return Capacity(requests, tokens, desired_set="desired" in given, max_set="max" in given, min_set="min" in given)


def _cidrs(value: Any) -> tuple[str, ...]:
    if not value:
        raise ConfigError("allowedCidrs", value,
                          "must list who may reach the endpoint, e.g. [203.0.113.0/24]; "
                          "0.0.0.0/0 opens it to the internet (the API key still applies)")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError("allowedCidrs", value, "must be a list of CIDRs, e.g. [203.0.113.0/24]")
    cidrs = []
    for item in value:
        try:
            network = ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            raise ConfigError("allowedCidrs", item, "is not a CIDR; write address/prefix, e.g. 203.0.113.0/24") from None
        if network.version != 4 or "/" not in str(item):
            raise ConfigError("allowedCidrs", item, "must be an IPv4 address/prefix, e.g. 203.0.113.0/24")
        if str(network) != item:
            raise ConfigError("allowedCidrs", item, f"has host bits set; the network is {network}")
        if item in cidrs:
            raise ConfigError("allowedCidrs", item, "is listed twice (AWS refuses a duplicate security group rule): "
                                                    "list each range once")
        cidrs.append(item)
    return tuple(cidrs)


# The VMs' user-data carries vllmArgs, and EC2 takes at most 16 KB of user-data (gzip-compressed; Azure 64 KB,
# GCP 256 KiB uncompressed): this many characters of vllmArgs, however they compress, keep it within every cloud's
# limit (tests/test_spec.py plans the worst case on AWS, the smallest).
VLLM_ARGS_MAX_CHARS = 4096


def _within_user_data(args: tuple[str, ...]) -> tuple[str, ...]:
    length = len(" ".join(args))
    if length > VLLM_ARGS_MAX_CHARS:
        raise ConfigError("vllmArgs", f"{length} characters", f"at most {VLLM_ARGS_MAX_CHARS} characters in all: the "
                                                              f"VMs' user-data carries them, and EC2 takes at most "
                                                              f"16 KB of it")
    return args


def _tags(value: Any) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        raise ConfigError("tags", value, "must be a map of tag names to values, e.g. {team: platform}")
    if len(value) > MAX_TAGS:
        raise ConfigError("tags", f"{len(value)} tags", f"at most {MAX_TAGS}: with vllm-fleet's own, within the 50 a "
                                                       f"resource may carry on AWS and Azure")
    for key, item in value.items():
        if key in PROJECT_TAGS:
            raise ConfigError(f"tags.{key}", item, f"is set by vllm-fleet on every resource ({', '.join(PROJECT_TAGS)}); "
                                                   f"choose another tag name")
        # Which characters and lengths a tag takes is each cloud's rule (components/<cloud>/options.py).
        if (not isinstance(item, (str, int, float)) or isinstance(item, bool) or not str(key)
                or any(unicodedata.category(c).startswith("C") for c in f"{key}{item}")):
            raise ConfigError(f"tags.{key}", item, "tags map names to text values, without control characters, "
                                                   "e.g. {team: platform}")
    return MappingProxyType({str(k): str(v) for k, v in value.items()})


def parse_spec(stack: str, raw: Mapping[str, Any], secret_keys: set[str]) -> FleetSpec:
    """`raw` maps this project's config keys (without the `vllm-fleet:` prefix) to what Pulumi gives the program."""
    unknown = sorted(set(raw) - set(KEY_DOCS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(KEY_DOCS), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(unknown[0], _decode(raw[unknown[0]]), f"is not a vllm-fleet key; {hint}known keys are listed in docs/config.md")
    for key in SECRET_KEYS:
        if key in raw and _decode(raw[key]) in ("", None, {}, []):
            how = f"--path '{key}.<name>' <key>" if key == "apiKeys" else f"{key} <value>"
            raise ConfigError(key, _decode(raw[key]), f"is empty: set it with pulumi config set --secret {how}, or "
                                                      f"remove the key from the stack file")
        if key in raw and key not in secret_keys:
            how = f"--path '{key}.<name>'" if key == "apiKeys" else key
            raise ConfigError(key, "<plain text>",
                              f"is a secret and must be stored encrypted: pulumi config set --secret {how} <value> "
                              f"(and remove the plain value from the stack file)")
    values = {key: value if key in TEXT_KEYS and isinstance(value, str) else _decode(value)
              for key, value in raw.items() if key not in SECRET_KEYS}
    named_api_keys, api_keys_secret_bytes = _api_keys(raw)
    if "hfToken" in raw and not _HF_TOKEN.match(str(raw["hfToken"])):
        raise ConfigError("hfToken", SHOWN_SECRET, "must be a Hugging Face access token (hf_...), one line")

    cloud = _one_of("cloud", values.get("cloud"), catalog.clouds())
    cloud_catalog = catalog.cloud(cloud)
    for other in set(catalog.clouds()) - {cloud}:
        if other in values:
            raise ConfigError(other, values[other], f"is for cloud {other}, but this stack's cloud is {cloud}")
    region = _one_of("region", values.get("region"), list(cloud_catalog.regions))

    model = values.get("model")
    hub_page = _HF_URL.match(model) if isinstance(model, str) else None
    if hub_page:
        raise ConfigError("model", model, f"give the Hugging Face repository id, {hub_page['id']}, not its page")
    bucket = _BUCKET_URI.match(model) if isinstance(model, str) else None
    if bucket:
        if bucket.group(1) != cloud_catalog.bucket_scheme:
            raise ConfigError("model", model, f"a bucket URI on {cloud} starts with {cloud_catalog.bucket_scheme}://")
        if {".", ".."} & set((bucket.group(3) or "").split("/")):
            raise ConfigError("model", model, "a bucket path without . or .. segments: the VMs' identity is granted "
                                              "read on the prefix as written")
    elif not isinstance(model, str) or not _HF_ID.match(model):
        raise ConfigError("model", model, KEY_DOCS["model"])
    revision = values.get("modelRevision")
    if revision is not None:
        if bucket:
            raise ConfigError("modelRevision", revision, "applies to a Hugging Face model; a bucket's weights are "
                                                         "what its path holds")
        revision = _str("modelRevision", revision, _REVISION, "a commit sha, tag or branch of the model's repository, "
                                                               "e.g. 0bd2d8f1c0e04ec7a2e5b5a9c1e8f0d2b3a4c5d6")
    from_table = not bucket and "modelParams" not in values and model in known_models()
    arch = _arch(model, bool(bucket), values.get("modelParams"), revision)

    served = values.get("servedModelName") or (model.rstrip("/").rsplit("/", 1)[-1] if bucket else model)
    served = _str("servedModelName", served, _SERVED_NAME, "letters, digits and . _ / - (at most 128)")

    dtype = _one_of("dtype", values.get("dtype", "auto"), DTYPES)
    quantization = _quantization(values.get("quantization"), model, arch, from_table)
    max_len = _int("maxModelLen", values.get("maxModelLen", arch.max_len), 128, arch.max_len)
    utilization = values.get("gpuMemoryUtilization", 0.9)
    highest, smallest_gpu = catalog.max_gpu_memory_utilization()
    if isinstance(utilization, bool) or not isinstance(utilization, (int, float)) or not 0.5 <= utilization <= highest:
        raise ConfigError("gpuMemoryUtilization", utilization,
                          f"must be a number from 0.5 to {highest}: vLLM needs ~{catalog.CUDA_CONTEXT_GIB:.0f} GiB "
                          f"of each GPU free for the CUDA context besides its share, and the smallest GPU "
                          f"({smallest_gpu}) has {catalog.gpu_memory_gib(smallest_gpu):.0f} GiB")

    gpu, count, instance_type = None, None, None
    if "accelerator" in values and "instanceType" in values:
        raise ConfigError("instanceType", values["instanceType"], "set either accelerator or instanceType, not both")
    if "accelerator" in values:
        gpu, count = _accelerator(values["accelerator"])
    if "instanceType" in values:
        instance_type = _one_of("instanceType", values["instanceType"], sorted(cloud_catalog.instance_types))

    replicas = _replicas(values.get("replicas"))
    capacity = _capacity(values.get("capacity"), values.get("replicas"), max_len)
    spot = _bool("spot", values.get("spot", False))
    on_demand_base = _int("onDemandBase", values.get("onDemandBase", 0), 0, replicas.max)
    if on_demand_base and not spot:
        raise ConfigError("onDemandBase", on_demand_base, "only applies with spot: true")

    domain = values.get("domain")
    if domain is not None:
        domain = _str("domain", domain, _DOMAIN, "a lower-case DNS name, e.g. code.example.com")
    certificate = values.get("certificate")
    if certificate is not None and domain is None:
        raise ConfigError("domain", None, "a certificate needs the domain it is issued for")
    dns_zone = values.get("dnsZone")
    if dns_zone is not None and domain is None:
        raise ConfigError("domain", None, "dnsZone needs the domain to create a record for")

    data_disk = values.get("dataDiskGb")
    data_disk = None if data_disk is None else _int("dataDiskGb", data_disk, 20, 16384)
    extra_args = _within_user_data(parse_vllm_args(values.get("vllmArgs"), max_len))

    office_hours = parse_office_hours(values.get("officeHours"), replicas.min)
    spec = FleetSpec(
        stack=stack, cloud=cloud, region=region, model=model, model_is_bucket=bool(bucket), model_revision=revision,
        served_model_name=served, arch=arch, dtype=dtype, quantization=quantization, max_model_len=max_len,
        gpu_memory_utilization=float(utilization), accelerator_gpu=gpu, accelerator_count=count,
        instance_type=instance_type, replicas=replicas, spot=spot, on_demand_base=on_demand_base,
        allowed_cidrs=_cidrs(values.get("allowedCidrs")), domain=domain,
        certificate=str(certificate) if certificate is not None else None,
        dns_zone=str(dns_zone) if dns_zone is not None else None,
        vllm_args=extra_args, tool_calling=resolve_tool_calling(None if bucket else model, extra_args),
        office_hours=office_hours, data_disk_gb=data_disk,
        tags=_tags(values.get("tags")),
        has_hf_token="hfToken" in raw, has_api_key="apiKey" in raw, named_api_keys=named_api_keys,
        cloud_options=_cloud_options(cloud, values.get(cloud)), capacity=capacity,
        api_keys_secret_bytes=api_keys_secret_bytes,
        autoscaling=_autoscaling.parse(values.get("autoscaling"), values.get("replicas"), cloud),
        alerts=_alerts.parse_alerts(values.get("alerts"), cloud),
        wake_on_request=parse_wake_on_request(values.get("wakeOnRequest"), cloud, office_hours is not None),
    )
    return dataclasses.replace(spec, rate_limits=rate_limits.parse_rate_limits(values.get("rateLimits"),
                                                                              spec.api_key_names))


# The length of the key the program generates where the stack sets neither apiKey nor apiKeys (fleet/program.py).
GENERATED_KEY_LENGTH = 48


def _api_keys(raw: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The names of apiKeys, and FleetSpec.api_keys_secret_bytes; every key's value (apiKey's too) checked without
    ever showing it."""
    keys: dict[str, Any] = {}
    if "apiKeys" in raw:
        named = _decode(raw["apiKeys"])
        if not isinstance(named, dict) or not named:
            raise ConfigError("apiKeys", SHOWN_SECRET, "must map names to keys, each set with pulumi config set "
                                                       "--secret --path 'apiKeys.<name>' <key>")
        for name, key in named.items():
            if not _KEY_NAME.match(str(name)):
                raise ConfigError("apiKeys", name, "key names are 1-32 lower-case letters, digits, _ and -, "
                                                   "starting with a letter or digit, e.g. alice or ci")
            keys[name] = key
    if "apiKey" in raw:
        if DEFAULT_KEY_NAME in keys:
            raise ConfigError("apiKeys.default", SHOWN_SECRET, f"apiKey is the key named {DEFAULT_KEY_NAME}: set one "
                                                               f"of the two")
        keys[DEFAULT_KEY_NAME] = raw["apiKey"]
    for name, key in keys.items():
        where = "apiKey" if name == DEFAULT_KEY_NAME and "apiKey" in raw else f"apiKeys.{name}"
        if not isinstance(key, str) or not _API_KEY.match(key) or key.startswith("-"):
            raise ConfigError(where, SHOWN_SECRET, "an API key is 16-512 printable ASCII characters without spaces, "
                                                   "not starting with -, e.g. $(openssl rand -hex 32)")
    if len(set(keys.values())) < len(keys):
        raise ConfigError("apiKeys", SHOWN_SECRET, "two names have the same key: each key must be its own, so that "
                                                   "removing one revokes only that one")
    in_secret = sorted(keys.items()) or [(DEFAULT_KEY_NAME, "k" * GENERATED_KEY_LENGTH)]
    sizes = tuple(len(json.dumps(dict(in_secret[:count]), sort_keys=True).encode())
                  for count in range(1, len(in_secret) + 1))
    return tuple(sorted(set(keys) - ({DEFAULT_KEY_NAME} if "apiKey" in raw else set()))), sizes


def _cloud_options(cloud: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        raise ConfigError(cloud, value, f"must be a map of {cloud} options, see docs/config.md")
    return MappingProxyType(value)


def read_pulumi_config() -> tuple[dict[str, Any], set[str]]:
    """This project's config as the running Pulumi program sees it: (key -> raw value, secret keys)."""
    from pulumi import runtime
    from pulumi.runtime import config as runtime_config

    everything = {**runtime.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = PROJECT + ":"
    raw = {key[len(prefix):]: value for key, value in everything.items() if key.startswith(prefix)}
    secret = set(runtime.get_config_secret_keys_env()) | {key for key in everything if runtime.is_config_secret(key)}
    return raw, {key[len(prefix):] for key in secret if key.startswith(prefix)}
