"""Make a tiny random-weight Llama checkpoint that real vLLM can load and serve on CPU.

    make_tiny_model(Path("/tmp/tiny"))           # -> Path("/tmp/tiny")
    python tests/serving/tiny_model.py /tmp/tiny  # same, from the shell
    make_tiny_model(Path("/tmp/tools"), tool_call={"name": "f", "arguments": {}})  # answers chats with that call

Writes a Hugging Face-style directory with no network access:
  config.json              LlamaForCausalLM, hidden 64, 2 layers, 4 heads (head_dim 32), vocab 1024
  generation_config.json   bos/eos ids only (so vLLM's default sampling params stay vLLM's defaults)
  model.safetensors        random float32 weights (fixed seed, ~0.9 MB)
  tokenizer.json           byte-level BPE trained here by `tokenizers` on a built-in code corpus
  tokenizer_config.json    special tokens + a chat template
  special_tokens_map.json

head_dim is 32 because vLLM's CPU attention backend only supports head sizes
32, 64, 80, ... (hidden 64 / 4 heads = 16 would be rejected).

Needs `numpy`, `safetensors` and `tokenizers` (all in .venv-vllm); not torch or transformers.
Output is deterministic for a given seed. Takes well under a second.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HIDDEN = 64
INTERMEDIATE = 128
LAYERS = 2
HEADS = 4
KV_HEADS = 2
HEAD_DIM = 32
VOCAB = 1024
MAX_POSITIONS = 2048

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2

# Simple role-tagged template; `bos_token` comes from the template, so vLLM's chat endpoint
# (which tokenizes rendered chat prompts without adding special tokens again) gets one BOS.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

# The tool-calling variant (make_tiny_model(dir, tool_call=...)): a Hermes-style template, as Qwen2.5's
# tokenizer_config.json has: the request's tools in a system turn, earlier tool calls as <tool_call> JSON, tool
# results as <tool_response>. Its generation prompt ends in the <|assistant|> token, whose successor the weights fix.
TOOL_CALL_START, TOOL_CALL_END = "<tool_call>", "</tool_call>"
TOOL_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if tools %}{{ '<|system|>\\nYou may call these functions:\\n<tools>\\n' }}"
    "{% for tool in tools %}{{ tool | tojson }}{{ '\\n' }}{% endfor %}"
    "{{ '</tools>\\nReply with <tool_call>{\"name\": <name>, \"arguments\": <arguments>}</tool_call>.' + eos_token + '\\n' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' and message['tool_calls'] %}{{ '<|assistant|>' }}"
    "{% for call in message['tool_calls'] %}{{ '<tool_call>' }}"
    "{{ {'name': call['function']['name'], 'arguments': call['function']['arguments']} | tojson }}"
    "{{ '</tool_call>' }}{% endfor %}{{ eos_token + '\\n' }}"
    "{% elif message['role'] == 'tool' %}"
    "{{ '<|user|>\\n<tool_response>' + message['content'] + '</tool_response>' + eos_token + '\\n' }}"
    "{% else %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
ASSISTANT_ID = SPECIAL_TOKENS.index("<|assistant|>")

_SNIPPETS = [
    '''def fibonacci(n: int) -> int:
    """Return the n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
''',
    '''class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        return self.items.pop()
''',
    '''import json
from pathlib import Path

def load_config(path: str) -> dict:
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)
''',
    '''function quickSort(arr) {
  if (arr.length <= 1) return arr;
  const pivot = arr[0];
  const left = arr.slice(1).filter((x) => x < pivot);
  const right = arr.slice(1).filter((x) => x >= pivot);
  return [...quickSort(left), pivot, ...quickSort(right)];
}
''',
    '''#include <stdio.h>

int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        printf("%d: %s\\n", i, argv[i]);
    }
    return 0;
}
''',
    '''fn main() {
    let numbers = vec![1, 2, 3, 4, 5];
    let total: i32 = numbers.iter().map(|x| x * 2).sum();
    println!("total = {}", total);
}
''',
    '''SELECT user_id, COUNT(*) AS orders
FROM orders
WHERE created_at >= '2024-01-01'
GROUP BY user_id
ORDER BY orders DESC
LIMIT 10;
''',
    '''#!/usr/bin/env bash
set -euo pipefail
for file in "$@"; do
  echo "processing ${file}"
  wc -l "${file}"
done
''',
    '''package main

import "fmt"

func main() {
    m := map[string]int{"a": 1, "b": 2}
    for k, v := range m {
        fmt.Println(k, v)
    }
}
''',
    '''async def fetch_all(session, urls):
    tasks = [session.get(url) for url in urls]
    responses = await asyncio.gather(*tasks)
    return [await r.text() for r in responses]
''',
    "The quick brown fox jumps over the lazy dog. Hello, world! Write a function that "
    "returns the sum of a list of numbers. Explain what this code does.\n",
]


def _corpus() -> list[str]:
    """Snippets plus simple renamed variants, enough text to learn ~1000 merges."""
    names = ["value", "result", "count", "index", "buffer", "items", "total", "node", "data", "key"]
    texts = list(_SNIPPETS)
    for i, name in enumerate(names):
        for snippet in _SNIPPETS:
            texts.append(snippet.replace("a", name[: 1 + i % 3]).replace("x", name))
    return texts


def _train_tokenizer(added: tuple[str, ...] = ()):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - len(added),  # room for the added strings
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.add_tokens(list(added))  # whole strings, each one token (and one id) wherever it appears
    # Pad to exactly VOCAB tokens so tokenizer and embedding sizes agree (every id decodes).
    missing = VOCAB - tok.get_vocab_size()
    if missing > 0:
        tok.add_tokens([f"<extra_{i}>" for i in range(missing)])
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS[:3]] == [UNK_ID, BOS_ID, EOS_ID]
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS_ID)]
    )
    return tok


def _weights(seed: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    w = {
        "model.embed_tokens.weight": rand(VOCAB, HIDDEN),
        "model.norm.weight": np.ones(HIDDEN, dtype=np.float32),
        "lm_head.weight": rand(VOCAB, HIDDEN),
    }
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = np.ones(HIDDEN, dtype=np.float32)
        w[p + "post_attention_layernorm.weight"] = np.ones(HIDDEN, dtype=np.float32)
        w[p + "self_attn.q_proj.weight"] = rand(HEADS * HEAD_DIM, HIDDEN)
        w[p + "self_attn.k_proj.weight"] = rand(KV_HEADS * HEAD_DIM, HIDDEN)
        w[p + "self_attn.v_proj.weight"] = rand(KV_HEADS * HEAD_DIM, HIDDEN)
        w[p + "self_attn.o_proj.weight"] = rand(HIDDEN, HEADS * HEAD_DIM)
        w[p + "mlp.gate_proj.weight"] = rand(INTERMEDIATE, HIDDEN)
        w[p + "mlp.up_proj.weight"] = rand(INTERMEDIATE, HIDDEN)
        w[p + "mlp.down_proj.weight"] = rand(HIDDEN, INTERMEDIATE)
    return w


def _forced_weights(weights: dict, chain: list[int]) -> dict:
    """The weights changed so that greedy decoding after chain[0] gives chain[1:] and nothing else: every layer's
    attention and MLP write nothing (o_proj, down_proj zero), so the last hidden state is the current token's
    embedding; chain tokens get one-hot embeddings of their own dimensions, every other token none of those
    dimensions, and the LM head's row of chain[i + 1] reads chain[i]'s dimension. After chain[i] the logit of
    chain[i + 1] is 80 (RMSNorm makes the one-hot 8 wide, times 10) and every other logit 0."""
    import numpy as np

    embed = weights["model.embed_tokens.weight"].copy()
    embed[:, : len(chain)] = 0.0
    embed[chain] = 0.0
    head = np.zeros_like(weights["lm_head.weight"])
    for dim, (token, successor) in enumerate(zip(chain, chain[1:])):
        embed[token, dim] = 1.0
        head[successor, dim] = 10.0
    forced = {**weights, "model.embed_tokens.weight": embed, "lm_head.weight": head}
    for i in range(LAYERS):
        for name in ("self_attn.o_proj.weight", "mlp.down_proj.weight"):
            forced[f"model.layers.{i}.{name}"] = np.zeros_like(weights[f"model.layers.{i}.{name}"])
    return forced


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def make_tiny_model(dir: Path, seed: int = 0, tool_call: dict | None = None) -> Path:  # noqa: A002 - name fixed by callers
    """Write the tiny Llama checkpoint into ``dir`` (created if needed) and return ``dir``.

    With ``tool_call`` ({"name": ..., "arguments": {...}}) the model answers every chat request with that call in
    the Hermes format, greedily and with certainty: after its chat template's generation prompt (TOOL_CHAT_TEMPLATE,
    ending in <|assistant|>) it writes <tool_call>, the call's JSON and </tool_call> (each one added token), then
    </s> (_forced_weights)."""
    from safetensors.numpy import save_file

    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    call = json.dumps(tool_call) if tool_call is not None else None
    tok = _train_tokenizer((TOOL_CALL_START, call, TOOL_CALL_END) if call else ())
    weights = _weights(seed)
    if call:
        weights = _forced_weights(weights, [ASSISTANT_ID, *map(tok.token_to_id, (TOOL_CALL_START, call, TOOL_CALL_END)),
                                            EOS_ID])

    _write_json(
        out / "config.json",
        {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": HIDDEN,
            "intermediate_size": INTERMEDIATE,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS,
            "head_dim": HEAD_DIM,
            "vocab_size": VOCAB,
            "max_position_embeddings": MAX_POSITIONS,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            "attention_bias": False,
            "mlp_bias": False,
            "tie_word_embeddings": False,
            "initializer_range": 0.02,
            "bos_token_id": BOS_ID,
            "eos_token_id": EOS_ID,
            "torch_dtype": "float32",
            "dtype": "float32",
        },
    )
    _write_json(
        out / "generation_config.json",
        {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": EOS_ID},
    )
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})

    tok.save(str(out / "tokenizer.json"))
    _write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": "</s>",
            "add_bos_token": True,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": MAX_POSITIONS,
            "chat_template": TOOL_CHAT_TEMPLATE if call else CHAT_TEMPLATE,
        },
    )
    _write_json(
        out / "special_tokens_map.json",
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"},
    )
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: {sys.argv[0]} OUTPUT_DIR [TOOL_CALL_JSON]")
    print(make_tiny_model(Path(sys.argv[1]), tool_call=json.loads(sys.argv[2]) if len(sys.argv) == 3 else None))
