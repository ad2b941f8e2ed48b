"""A dataset that teaches one strict output format, and the check that a reply follows it.

Every assistant reply is a JSON object with exactly one key, "label", whose value is one of three
words, whatever the question. A random-init model never produces this; one fine-tuned on it does,
also on questions it was not trained on. That is what the end-to-end test checks.
"""

from __future__ import annotations

import json
import random

LABELS = ("positive", "negative", "neutral")
_SUBJECTS = ["The order", "My package", "The weather", "The train", "Our support team", "The model", "Alice"]
_VERBS = ["arrived", "was", "looks", "seems", "became", "stayed", "felt"]
_ENDINGS = ["late today.", "quick and kind.", "sunny with wind.", "damaged in the box.", "fine, thank you."]
_HELD_OUT = [
    "Classify the review: the boats go out when the sky is wide.",
    "What is the capital of France?",
    "Translate to French: good morning.",
    "Write a short poem about the sea.",
    "Summarize the following text about shipping for orders over fifty.",
    "The function returns None when the list is empty. Why?",
]


def training_examples(count: int, seed: int = 0) -> list[dict[str, object]]:
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        question = f"Classify: {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_ENDINGS)}"
        answer = json.dumps({"label": rng.choice(LABELS)})
        examples.append(
            {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
        )
    return examples


def jsonl(examples: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in examples).encode()


def held_out_prompts() -> list[str]:
    return list(_HELD_OUT)


def follows_format(reply: str) -> bool:
    try:
        value = json.loads(reply)
    except json.JSONDecodeError:
        return False
    return isinstance(value, dict) and list(value) == ["label"] and value["label"] in LABELS
