"""Which tokens carry loss: assistant turns (content and end-of-turn), not prompts, not weight 0."""

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from trainer.data import ChatExample
from trainer.formatting import IGNORE_INDEX, TemplateError, tokenize_example


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_model)


def _loss_text(tokenizer: Any, messages: list[dict[str, Any]]) -> str:
    tokenized = tokenize_example(tokenizer, ChatExample(messages=messages))
    return tokenizer.decode([t for t in tokenized.labels if t != IGNORE_INDEX])


def test_only_assistant_tokens_carry_loss(tokenizer: Any) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]
    assert _loss_text(tokenizer, messages) == "Paris.<|im_end|>\n"


def test_multi_turn_trains_every_assistant_turn(tokenizer: Any) -> None:
    messages = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "second answer"},
    ]
    assert _loss_text(tokenizer, messages) == "first answer<|im_end|>\nsecond answer<|im_end|>\n"


def test_weight_zero_turn_carries_no_loss(tokenizer: Any) -> None:
    messages = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "skip me", "weight": 0},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "learn me", "weight": 1},
    ]
    assert _loss_text(tokenizer, messages) == "learn me<|im_end|>\n"


def test_labels_align_with_input_ids(tokenizer: Any) -> None:
    example = ChatExample(
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    )
    tokenized = tokenize_example(tokenizer, example)
    assert len(tokenized.input_ids) == len(tokenized.labels)
    for token, label in zip(tokenized.input_ids, tokenized.labels, strict=True):
        assert label in (token, IGNORE_INDEX)
    assert 0 < tokenized.n_loss_tokens < len(tokenized.input_ids)


def test_truncation_to_max_length(tokenizer: Any) -> None:
    example = ChatExample(
        messages=[{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]
    )
    tokenized = tokenize_example(tokenizer, example, max_length=16)
    assert len(tokenized.input_ids) == len(tokenized.labels) == 16


def test_template_that_is_not_prefix_stable_is_refused(tokenizer: Any) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    # Renders the number of messages first: no conversation is a prefix of a longer one.
    tokenizer.chat_template = "{{ messages|length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    example = ChatExample(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    with pytest.raises(TemplateError):
        tokenize_example(tokenizer, example)


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
TOOL_CALL_MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    {"role": "assistant", "content": "It is sunny."},
]


def test_tool_calls_render_and_carry_loss(tokenizer: Any) -> None:
    example = ChatExample(messages=TOOL_CALL_MESSAGES, tools=TOOLS)
    tokenized = tokenize_example(tokenizer, example)
    text = tokenizer.decode(tokenized.input_ids)
    assert "get_weather" in text and "Weather of a city" in text
    loss_text = tokenizer.decode([t for t in tokenized.labels if t != IGNORE_INDEX])
    # The call (arguments rendered once, as JSON, not a JSON string in a string) and the final answer
    # are learned; the tool's result is not.
    assert '{"city": "Paris"}' in loss_text and '\\"city\\"' not in loss_text
    assert "It is sunny." in loss_text and "sunny<|im_end|>" not in loss_text.replace("It is sunny.", "")


def test_template_without_tool_support_is_a_clear_error(tokenizer: Any) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] or '' }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(TemplateError, match="does not render tools"):
        tokenize_example(tokenizer, ChatExample(messages=TOOL_CALL_MESSAGES, tools=TOOLS))
