"""A reinforcement job's `response_format` applied to the answers GRPO samples: each generation
step masks the tokens the JSON grammar does not allow (xgrammar, the grammar engine vLLM serves
structured outputs with, through its transformers logits processor), so the policy is trained on
the answers it would give under the same constraint when served.

TRL's GRPOTrainer builds its GenerationConfig itself and has no hook for logits processors, so the
trained model's `generate` is wrapped: a fresh processor per call (it keeps per-sequence state).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import xgrammar
from transformers import LogitsProcessorList
from xgrammar.contrib.hf import LogitsProcessor

from trainer.data import DataValidationError

PARAM = "method.reinforcement.response_format"


def compile_response_format(
    response_format: dict[str, Any] | None, tokenizer: Any, model_config: Any, stop_ids: Any
) -> xgrammar.CompiledGrammar | None:
    """The grammar of `response_format` (OpenAI's shape): None for none or `text`. `stop_ids`: the
    generation's end-of-answer token id(s), the only tokens allowed once the JSON is complete."""
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    stops = [stop_ids] if isinstance(stop_ids, int) else list(stop_ids or [])
    info = xgrammar.TokenizerInfo.from_huggingface(
        tokenizer, vocab_size=model_config.vocab_size, stop_token_ids=stops or None
    )
    compiler = xgrammar.GrammarCompiler(info)
    try:
        if kind == "json_object":
            return compiler.compile_builtin_json_grammar()
        schema = (response_format or {}).get("json_schema", {}).get("schema")
        # No free whitespace: as served (vLLM's disable_any_whitespace), and a small model cannot
        # spend its token budget on blank space.
        return compiler.compile_json_schema(schema if schema is not None else {}, any_whitespace=False)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise DataValidationError(
            "invalid_response_format", f"The response_format's JSON schema cannot be used: {exc}", PARAM
        ) from None


def constrain_generation(model: Any, grammar: xgrammar.CompiledGrammar) -> None:
    """Every later `model.generate(...)` samples within `grammar`."""
    generate: Callable[..., Any] = model.generate

    @functools.wraps(generate)
    def constrained(*args: Any, **kwargs: Any) -> Any:
        processors = LogitsProcessorList(kwargs.pop("logits_processor", None) or [])
        processors.append(LogitsProcessor(grammar))
        return generate(*args, logits_processor=processors, **kwargs)

    model.generate = constrained
