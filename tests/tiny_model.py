"""Build a tiny random-init chat model for tests, fully offline.

Tests and CI cannot download models, so this writes a small but real model folder:
a byte-level BPE tokenizer trained on embedded text with a ChatML template, and a
random-init Llama (hidden 256, 4 layers, head_dim 64, which the vLLM CPU attention
kernels need). It loads with `transformers` `from_pretrained` and with vLLM on CPU.
Everything is seeded, so the same call gives the same weights and vocabulary.
"""

from __future__ import annotations

import json
import pathlib

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 1024
SEED = 1234

_ENGLISH = """\
The quick brown fox jumps over the lazy dog. A model reads a prompt and writes an answer.
You are a helpful assistant. Please answer the question in one short sentence.
What is the capital of France? The capital of France is Paris. Thank you very much!
Summarize the following text. The weather today is sunny with a light wind from the west.
Customers can return an order within thirty days. Shipping is free for orders over fifty.
Write a short poem about the sea. The waves are blue, the sky is wide, the boats go out.
Translate to French: good morning. Bonjour. How are you? I am fine, and you?
The user asked for help with a bug. The function returns None when the list is empty.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14 -1 true false null yes no.
Fine-tuning adapts a pretrained language model to a new task with a small dataset of examples.
Each training example is a conversation: a system message, a user question, an assistant reply.
Low rank adapters add two small matrices to every linear layer and train only those weights.
The server streams tokens back to the client as soon as they are generated, one chunk at a time.
Please extract the invoice number, the total amount, the currency and the due date as JSON.
My package arrived late and the box was damaged, but the support team replaced it quickly.
Classify the review as positive, negative or neutral, and explain your reasoning briefly.
Alice met Bob at the station on Monday morning; they took the train north to the mountains.
Water boils at one hundred degrees Celsius at sea level, and freezes at zero degrees.
Every job has a status: queued, running, succeeded, failed or cancelled, plus a created time.
The history of the city goes back two thousand years, to a small village beside the river.
Errors should be reported with a clear message, a type, a parameter name and a code.
Our library opens at nine and closes at six; children's books are on the second floor.
Learning rate, batch size, number of epochs and the random seed control how training runs.
She wrote the report, checked every figure twice, and sent it to the whole team on Friday.
"""

_JSON = """\
{"name": "Alice", "age": 30, "city": "Paris", "tags": ["admin", "user"], "active": true}
{"id": 1, "status": "ok", "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}]}
{"sentiment": "positive", "score": 0.93, "labels": ["happy", "calm"], "error": null}
{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Berlin"}}}
{"tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup"}}]}
<tool_call>{"name": "get_weather", "arguments": {"city": "Berlin", "unit": "celsius"}}</tool_call>
{"answer": "Paris", "confidence": "high", "sources": [], "meta": {"lang": "en"}}
{"invoice": "INV-0042", "total": 129.5, "currency": "EUR", "due_date": "2024-07-01"}
{"object": "chat.completion", "model": "tiny", "choices": [{"index": 0, "finish_reason": "stop"}]}
{"role": "assistant", "content": "Hello! How can I help you today?", "usage": {"prompt_tokens": 12}}
{"review": "great product", "label": "positive", "reason": "the customer is satisfied"}
{"error": {"message": "model not found", "type": "invalid_request_error", "code": 404}}
{"job": {"id": "ftjob-abc123", "status": "running", "hyperparameters": {"n_epochs": 3}}}
{"user": {"email": "bob@example.com", "roles": ["viewer"], "created_at": 1717171717}}
"""

# ChatML. Tools render in a leading system block and tool calls as JSON inside the
# assistant turn; nothing depends on later messages, so rendering is prefix-stable.
CHAT_TEMPLATE = (
    "{%- macro text(c) -%}"
    "{%- if c is string -%}{{ c }}"
    "{%- elif c is iterable -%}{%- for p in c -%}"
    "{%- if p is mapping and p.get('type') == 'text' -%}{{ p['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- if tools -%}<|im_start|>system{{ NL }}Tools:"
    "{%- for t in tools -%}{{ NL }}{{ t | tojson }}{%- endfor -%}<|im_end|>{{ NL }}{%- endif -%}"
    "{%- for m in messages -%}<|im_start|>{{ m['role'] }}{{ NL }}{{ text(m.get('content')) }}"
    "{%- for tc in m.get('tool_calls') or [] -%}"
    "{%- set f = tc['function'] if tc['function'] is defined else tc -%}"
    "{%- set a = f.get('arguments', {}) -%}"
    '{{ NL }}<tool_call>{"name": {{ f["name"] | tojson }}, "arguments": '
    "{{ a if a is string else a | tojson }}}</tool_call>"
    "{%- endfor -%}<|im_end|>{{ NL }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant{{ NL }}{%- endif -%}"
).replace("NL", "'\\n'")


def _train_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((_ENGLISH + _JSON).splitlines() * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHAT_TEMPLATE,
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )


def build_tiny_model(dest: pathlib.Path, **shape: int) -> pathlib.Path:
    """Write tokenizer, chat template, config, bf16 safetensors weights and generation config.

    bf16 is what vLLM on CPU runs (it casts float32 checkpoints, warning per tensor). `shape`
    overrides LlamaConfig sizes (benchmarks build larger models; a larger vocab_size leaves the
    extra ids unused by the tokenizer).
    """
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer()
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=8192,  # long streams for tests/e2e/test_adapters.py
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        dtype="bfloat16",
    )
    for name, value in shape.items():
        setattr(config, name, value)
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id)
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    # Keep the template in tokenizer_config.json too, for readers that look only there.
    cfg_path = dest / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.setdefault("chat_template", CHAT_TEMPLATE)
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return dest
