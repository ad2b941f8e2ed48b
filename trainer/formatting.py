"""Turning chat examples into token ids and labels with the base model's own chat template.

Loss falls on assistant turns only (their content and end-of-turn tokens), minus those with
`weight: 0`. Assistant spans are found on the rendered text: the template renders the conversation
up to turn i with a generation prompt, and up to turn i included; the difference is turn i. Any
template that renders conversations prefix-stably works, without `{% generation %}` markers.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from trainer.data import ChatExample, PreferenceExample

IGNORE_INDEX = -100


class TemplateError(Exception):
    """The base model's chat template cannot render this example the way training needs."""


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def n_loss_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def _clean(message: dict[str, Any]) -> dict[str, Any]:
    """A message as chat templates expect it: no `weight`; tool-call arguments as objects (OpenAI
    sends them as JSON strings; templates serialise them themselves)."""
    cleaned = {k: v for k, v in message.items() if k != "weight"}
    if cleaned.get("tool_calls"):
        cleaned["tool_calls"] = [_parsed_call(call) for call in cleaned["tool_calls"]]
    return cleaned


def _parsed_call(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        with contextlib.suppress(json.JSONDecodeError):  # else left as text, rendered as given
            function["arguments"] = json.loads(arguments)
    return {**call, "function": function}


def _check_tools_rendered(text: str, example: ChatExample) -> None:
    """Templates without tool support drop tools silently; training on that would teach nothing."""
    names = [t.get("function", {}).get("name") for t in example.tools or [] if isinstance(t, dict)]
    names += [
        call.get("function", {}).get("name")
        for m in example.messages
        for call in m.get("tool_calls") or []
        if isinstance(call, dict)
    ]
    missing = sorted({n for n in names if isinstance(n, str) and n not in text})
    if missing:
        raise TemplateError(
            "the base model's chat template does not render tools or tool calls "
            f"(missing: {', '.join(missing)}); use a base model whose template supports tools"
        )


def _render(tokenizer: Any, messages: list[dict[str, Any]], tools: Any, generation_prompt: bool) -> str:
    if not messages and not generation_prompt:
        return ""
    try:
        text = tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt
        )
    except Exception as exc:  # jinja errors from the model's template
        raise TemplateError(f"the base model's chat template could not render an example: {exc}") from exc
    return str(text)


def assistant_spans(tokenizer: Any, example: ChatExample) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans that carry loss."""
    messages = [_clean(m) for m in example.messages]
    text = _render(tokenizer, messages, example.tools, generation_prompt=False)
    _check_tools_rendered(text, example)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(example.messages):
        if message.get("role") != "assistant" or message.get("weight", 1) == 0:
            continue
        before = _render(tokenizer, messages[:i], example.tools, generation_prompt=True)
        through = _render(tokenizer, messages[: i + 1], example.tools, generation_prompt=False)
        if not (text.startswith(through) and through.startswith(before)):
            raise TemplateError(
                "the base model's chat template does not render conversations prefix-stably "
                f"(assistant message {i + 1}), so assistant turns cannot be located for the loss mask"
            )
        spans.append((len(before), len(through)))
    return text, spans


def tokenize_example(tokenizer: Any, example: ChatExample, max_length: int | None = None) -> TokenizedExample:
    text, spans = assistant_spans(tokenizer, example)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids: list[int] = list(encoded["input_ids"])
    labels = [
        token if any(lo <= start < hi for lo, hi in spans) else IGNORE_INDEX
        for token, (start, _end) in zip(input_ids, encoded["offset_mapping"], strict=True)
    ]
    truncated = max_length is not None and len(input_ids) > max_length
    if truncated:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return TokenizedExample(input_ids=input_ids, labels=labels, truncated=truncated)


def example_texts(example: ChatExample | PreferenceExample) -> list[str]:
    """What one example puts through the model in a step, as JSON text: a chat, or a preference
    pair's two completions each with the conversation (one forward pass carries both)."""
    if isinstance(example, PreferenceExample):
        return [
            json.dumps([*example.messages, reply, example.tools])
            for reply in (example.preferred, example.non_preferred)
        ]
    return [json.dumps([example.messages, example.tools])]


def longest_example_tokens(
    tokenizer: Any,
    examples: list[ChatExample] | list[PreferenceExample],
    max_length: int,
    candidates: int = 8,
) -> int:
    """Tokens in the longest example (each completion capped at max_length), without rendering the
    whole file: the few longest by characters are tokenized as JSON text, which has more tokens
    than the rendered template (quotes, keys), so the count errs on the large side."""
    texts = sorted((example_texts(e) for e in examples), key=lambda t: sum(map(len, t)), reverse=True)
    return (
        max(
            (sum(min(max_length, len(tokenizer(t, add_special_tokens=False)["input_ids"])) for t in pair))
            for pair in texts[:candidates]
        )
        if texts
        else 0
    )
